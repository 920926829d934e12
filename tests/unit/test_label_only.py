"""A classifier that gives labels only: each procedure works from its labels and skips what needs a score,
with the code ``no_scores``, never a made-up score (issue 16, item 1)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from steward.delivery.decisions import StepAction, StepCode
from steward.delivery.evidence import arm_evidence, score_checks_skipped, validation_scores
from steward.delivery.timeline import ArmSummary, StepRecord
from steward.findings import CheckStatus
from steward.monitoring.drift.monitor import build_drift_reference, score_drift_skipped
from steward.monitoring.health.accuracy import check_accuracy, measure_calibration
from steward.monitoring.model_card import build_model_card
from steward.registry.adapter import VersionInfo
from steward.training.data import prepare_features
from steward.training.gates import ComparisonCode, ValidationVerdict
from steward.training.scores import ScoreCheck, SkipCode, SkippedCheck
from steward.training.validation import Contender, validate_candidate
from tests.support.models import LabelsOf

T0 = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def holdout(quick_spec, quick_model) -> pd.DataFrame:
    raw = quick_model.holdout_frame
    prepared = prepare_features(raw, quick_spec)
    prepared[quick_spec.target] = raw[quick_spec.target].to_numpy()
    return prepared


def gate(spec, candidate, champion, holdout):
    return validate_candidate(spec, Contender(candidate, "2", {}), Contender(champion, "1", {}) if champion else None,
                              holdout)


def skipped_names(report) -> set[str]:
    return {c.name for c in report.skipped_for_no_scores}


# ---------------------------------------------------------------------------------------------- the gate


def test_a_label_only_candidate_is_gated_on_accuracy_with_the_score_checks_skipped(quick_spec, quick_model, holdout):
    assert quick_spec.primary_metric == "roc_auc" and quick_spec.gates.floor is not None
    report = gate(quick_spec, LabelsOf(quick_model.estimator), quick_model.estimator, holdout)

    assert report.verdict is ValidationVerdict.PASSED, report.summary()  # the same labels as the champion's
    assert report.primary_interval.metric == "accuracy" and report.primary_interval.difference == 0
    assert skipped_names(report) == {"metric_floor", "score_metrics"}
    assert {c.code for c in report.skipped_for_no_scores} == {ComparisonCode.NO_SCORES}
    assert "roc_auc" not in report.candidate_metrics and "roc_auc" in report.champion_metrics
    assert "| score_metrics | skipped | v2 give labels only" in report.to_markdown()


def test_a_worse_label_only_candidate_fails_on_accuracy(quick_spec, quick_model, holdout):
    report = gate(quick_spec, LabelsOf(quick_model.estimator, flip=True), quick_model.estimator, holdout)
    assert report.verdict is ValidationVerdict.FAILED
    failed = {c.name: c for c in report.failures}
    assert failed["metric_vs_champion"].code is ComparisonCode.INFERIOR
    assert failed["metric_vs_champion"].interval.metric == "accuracy"
    assert failed["slices"].code is ComparisonCode.SIGNIFICANT_DROP  # the slices are compared on accuracy too


def test_a_scored_candidate_against_a_label_only_champion_keeps_its_floor(quick_spec, quick_model, holdout):
    report = gate(quick_spec, quick_model.estimator, LabelsOf(quick_model.estimator), holdout)
    checks = {c.name: c for c in report.checks}
    assert checks["metric_floor"].status is CheckStatus.PASSED and "roc_auc" in checks["metric_floor"].reason
    assert checks["metric_vs_champion"].interval.metric == "accuracy"
    assert skipped_names(report) == {"score_metrics"} and "v1 give labels only" in checks["score_metrics"].reason


def test_a_label_only_candidate_with_a_label_metric_has_nothing_replaced(quick_spec, quick_model, holdout):
    spec = quick_spec.model_copy(update={"gates": quick_spec.gates.model_copy(
        update={"primary_metric": "accuracy", "floor": 0.5})})
    report = gate(spec, LabelsOf(quick_model.estimator), None, holdout)  # bootstrap
    checks = {c.name: c for c in report.checks}
    assert report.passed and checks["metric_floor"].status is CheckStatus.PASSED
    assert skipped_names(report) == {"score_metrics"} and "instead" not in checks["score_metrics"].reason


def test_a_scored_pair_skips_nothing(quick_spec, quick_model, holdout):
    report = gate(quick_spec, quick_model.estimator, quick_model.estimator, holdout)
    assert report.skipped_for_no_scores == () and report.primary_interval.metric == "roc_auc"


# ---------------------------------------------------------------------------------------------- drift


def test_drift_watches_the_predicted_class_of_a_label_only_model(quick_spec, quick_model, holdout):
    reference = prepare_features(quick_model.train_frame, quick_spec).head(1500)
    profile, importances = build_drift_reference(LabelsOf(quick_model.estimator), reference, holdout.head(800),
                                                 quick_spec)
    assert (profile.prediction_column, profile.prediction_kind) == ("prediction", "categorical")
    assert set(importances) == set(quick_spec.feature_names) and max(importances.values()) > 0  # on accuracy
    [skip] = score_drift_skipped(quick_spec, profile.prediction_column, "4")
    assert (skip.check, skip.code, skip.subject) == (ScoreCheck.SCORE_DRIFT, SkipCode.NO_SCORES, "v4")

    scored, _ = build_drift_reference(quick_model.estimator, reference, holdout.head(800), quick_spec)
    assert scored.prediction_column == "score" and score_drift_skipped(quick_spec, scored.prediction_column) == ()


# ---------------------------------------------------------------------------------------------- health


def label_only_log(n: int, accuracy: float, *, labelled: bool = True, seed: int = 0) -> pd.DataFrame:
    """Logged predictions of a model that gives labels only: no score on any row."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    predicted = np.where(rng.random(n) < accuracy, y, 1 - y)
    frame = pd.DataFrame({
        "request_id": [f"r{i}" for i in range(n)], "row": np.zeros(n, dtype="int32"),
        "time": pd.date_range(T0, T0 + timedelta(hours=20), periods=n), "version": "1", "arm": "champion",
        "served": True, "status": "ok", "prediction": predicted.astype(str), "score": np.nan, "latency_ms": 5.0,
    })
    if labelled:
        frame["label"] = y.astype(str)
    return frame


def test_health_judges_accuracy_and_skips_the_score_metric_and_calibration(quick_spec):
    frame = label_only_log(1000, 0.6)
    result = check_accuracy(frame.drop(columns="label"), frame, quick_spec, {"1": {"accuracy": 0.85}},
                            {"1": "unused"}, None)
    assert {(s.check, s.code, s.subject) for s in result.skipped} == {
        (ScoreCheck.PRIMARY_METRIC, SkipCode.NO_SCORES, "v1"), (ScoreCheck.CALIBRATION, SkipCode.NO_SCORES, "v1")}
    assert result.metrics["accuracy[v1]"] == pytest.approx(0.6, abs=0.05) and "roc_auc[v1]" not in result.metrics
    assert [i.code.value for i in result.issues] == ["accuracy_drop"]  # 0.6 against 0.85 at validation


def test_health_skips_the_label_free_estimate_while_labels_are_pending(quick_spec):
    frame = label_only_log(500, 0.8, labelled=False)
    result = check_accuracy(frame, frame.iloc[:0].assign(label=[]), quick_spec, {"1": {"accuracy": 0.8}}, {}, None)
    assert ScoreCheck.ACCURACY_ESTIMATE in {s.check for s in result.skipped}
    assert not any(k.startswith("estimated_accuracy") for k in result.metrics)


def test_calibration_of_a_label_only_model_is_skipped_not_raised(quick_spec, quick_model):
    skip = measure_calibration(LabelsOf(quick_model.estimator), quick_model.holdout_frame, quick_spec)
    assert isinstance(skip, SkippedCheck) and (skip.check, skip.code) == (ScoreCheck.CALIBRATION, SkipCode.NO_SCORES)


# ---------------------------------------------------------------------------------------------- model card


def test_the_model_card_says_what_a_label_only_version_cannot_show(quick_spec):
    def card(tags, metrics):
        info = VersionInfo(quick_spec.name, "3", "run3", "models:/m-1", T0, ("champion",), tags, metrics)
        return build_model_card(quick_spec, info, holdout_slices=[], production=None, drift_records=[],
                                former_champions=[], generated_at=T0)

    adopted = card({"steward.scores": "none"}, {"accuracy": 0.81})
    assert {(s.check, s.code) for s in adopted.skipped} == {(ScoreCheck.SCORE_METRICS, SkipCode.NO_SCORES),
                                                            (ScoreCheck.PRIMARY_METRIC, SkipCode.NO_SCORES)}
    assert "Not measured (no_scores): primary_metric: the model gives labels only" in adopted.to_markdown()
    trained = card({}, {"accuracy": 0.81, "f1": 0.4})  # registered by Steward: its metrics say it
    assert len(trained.skipped) == 2
    assert card({}, {"accuracy": 0.81, "roc_auc": 0.84}).skipped == ()


# ---------------------------------------------------------------------------------------------- the canary


def test_the_canary_records_the_score_check_a_label_only_arm_cannot_take(quick_spec, quick_model):
    assert validation_scores(LabelsOf(quick_model.estimator), quick_model.holdout_frame, quick_spec).size == 0
    rows = [(f"r{i}", 0, arm, version, True, "ok", "1", score, 5.0)
            for i in range(40) for arm, version, score in (("champion", "1", 0.8), ("challenger", "2", None))]
    predictions = pd.DataFrame(rows, columns=["request_id", "row", "arm", "version", "served", "status", "prediction",
                                              "score", "latency_ms"]).assign(time=pd.Timestamp(T0))
    evidence = arm_evidence(predictions, quick_spec, versions={"champion": "1", "challenger": "2"})
    [skip] = score_checks_skipped(evidence)
    assert (skip.check, skip.code, skip.subject) == (ScoreCheck.SCORE_DISTRIBUTION, SkipCode.NO_SCORES, "challenger")

    summary = ArmSummary.of(evidence["challenger"])
    record = StepRecord("r-1", 0, 1.0, T0, T0, StepAction.HOLD, "waiting", summary, summary, code=StepCode.WAITING,
                        skipped=(skip,))
    details = record.details()
    assert json.loads(details["record"])["skipped"][0]["code"] == "no_scores"
    assert StepRecord.from_details(details).skipped == (skip,)
