"""The retrain decision: the threshold refit, the gate on the triggering metric, pending and tried retrains."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from steward.estimators import build_estimator
from steward.findings import CheckStatus
from steward.simulation.suite import START, SuiteSize, catalogue, scenario_spec
from steward.training.evaluation import compute_metrics, predict_scores
from steward.training.gates import ComparisonCode, ValidationVerdict, check_trigger_metric
from steward.training.paired import PairedInterval
from steward.training.retrain_decision import (
    PendingCandidate,
    Reading,
    RetrainKind,
    RetrainNeedCode,
    RetrainTrigger,
    TriedRetrain,
    decide_retrain_need,
    retrain_kind,
)
from steward.training.threshold import ShiftedLogOdds, fit_threshold
from steward.training.train import labelled_frame
from steward.training.validation import Contender, validate_candidate

T0 = datetime(2026, 1, 20, tzinfo=UTC)
HIGHER = {"roc_auc": True, "accuracy": True}


@pytest.fixture(scope="module")
def shifted_world():
    """The suite's threshold-shift world: a champion on 10 clean days, then the default rate moves."""
    size = SuiteSize.quick()
    case = next(c for c in catalogue(size) if c.name == "threshold_shift")
    spec = scenario_spec(case.scenario, size.training_days, trees=40)
    history = case.scenario.generate(START, case.onset + pd.Timedelta(days=3))
    times = pd.to_datetime(history[spec.timestamp_column], utc=True)
    before = labelled_frame(history[times < case.first_window], spec)
    champion = build_estimator(spec).fit(before[spec.feature_names], before[spec.target])
    after = history[times >= case.onset]
    after_times = pd.to_datetime(after[spec.timestamp_column], utc=True)
    fit_rows = labelled_frame(after[after_times < case.onset + pd.Timedelta(days=1)], spec)
    holdout = labelled_frame(after[after_times >= case.onset + pd.Timedelta(days=1)], spec)
    return spec, champion, fit_rows, holdout


def test_a_refitted_threshold_repairs_a_base_rate_shift_and_keeps_the_ranking(shifted_world):
    spec, champion, fit_rows, holdout = shifted_world
    refit, fit = fit_threshold(spec, champion, fit_rows)
    assert 1.0 < fit.shift < 2.2  # the world moved the log-odds by +1.5
    y = holdout[spec.target].to_numpy()
    before = compute_metrics(spec.task, y, *predict_scores(champion, holdout[spec.feature_names], spec.task))
    after = compute_metrics(spec.task, y, *predict_scores(refit, holdout[spec.feature_names], spec.task))
    assert after["roc_auc"] == pytest.approx(before["roc_auc"], abs=1e-12)
    assert after["accuracy"] > before["accuracy"] + 0.03
    assert isinstance(refit, ShiftedLogOdds) and list(refit.classes_) == list(champion.classes_)


def test_the_gate_passes_a_threshold_refit_on_the_triggering_metric_and_the_same_ranking(shifted_world):
    spec, champion, fit_rows, holdout = shifted_world
    refit, _ = fit_threshold(spec, champion, fit_rows)
    report = validate_candidate(spec, Contender(refit, "2", {}), Contender(champion, "1", {}), holdout,
                                trigger_metric="accuracy")
    checks = {c.name: c for c in report.checks}
    assert checks["metric_vs_champion"].code is ComparisonCode.NON_INFERIOR  # same ranking: no sampling error
    assert checks["trigger_metric_vs_champion"].code is ComparisonCode.CLEAR_GAIN
    assert report.verdict is ValidationVerdict.PASSED

    # Judged on ROC AUC alone (the old gate), the same candidate shows no gain to pass on.
    unchanged = validate_candidate(spec, Contender(ShiftedLogOdds(champion, 0.0), "3", {}),
                                   Contender(champion, "1", {}), holdout, trigger_metric="accuracy")
    trigger = next(c for c in unchanged.checks if c.name == "trigger_metric_vs_champion")
    assert trigger.code is ComparisonCode.NO_EXPECTED_GAIN and unchanged.verdict is ValidationVerdict.FAILED


def test_a_gain_on_the_triggering_metric_not_yet_clear_is_inconclusive_with_rows_needed():
    noisy = PairedInterval("accuracy", 0.70, 0.68, 0.02, -0.01, 0.05, 0.0153, 0.95, 150, "test")
    check = check_trigger_metric("accuracy", noisy)
    assert check.status is CheckStatus.INCONCLUSIVE and check.rows_needed is not None
    assert 100 < check.rows_needed < 400  # (1.96 * 0.0153 / 0.02)^2 * 150 - 150


def test_the_repair_is_a_threshold_only_when_a_threshold_metric_fell_and_the_ranking_held(shifted_world):
    spec = shifted_world[0]
    assert retrain_kind(spec, RetrainTrigger(metric="accuracy")) is RetrainKind.REFIT_THRESHOLD
    assert retrain_kind(spec, RetrainTrigger(metric="brier")) is RetrainKind.REFIT_THRESHOLD
    assert retrain_kind(spec, RetrainTrigger(metric="roc_auc", primary_dropped=True)) is RetrainKind.TRAIN
    assert retrain_kind(spec, RetrainTrigger(("utilization",), "accuracy", input_drift=True)) is RetrainKind.TRAIN


def reading(value: float, error: float = 0.02) -> Reading:
    return Reading("roc_auc", value, error, 300)


def test_a_pending_candidate_blocks_a_second_retrain_for_the_same_trigger_until_it_expires():
    drift = RetrainTrigger(("utilization",), None, input_drift=True)
    pending = PendingCandidate("2", drift, T0, 400, T0 + timedelta(days=7))
    need = decide_retrain_need(drift, T0 + timedelta(days=1), pending=pending, tried=None, readings={}, limit=0.05,
                               higher_is_better=HIGHER)
    assert need.code is RetrainNeedCode.CANDIDATE_PENDING and "400 more labelled rows" in need.reason
    spread = RetrainTrigger(("utilization", "income"), None, input_drift=True)
    assert decide_retrain_need(spread, T0 + timedelta(days=1), pending=pending, tried=None, readings={}, limit=0.05,
                               higher_is_better=HIGHER).go
    assert decide_retrain_need(drift, T0 + timedelta(days=8), pending=pending, tried=None, readings={}, limit=0.05,
                               higher_is_better=HIGHER).go


def test_a_retrain_without_gain_is_not_repeated_for_the_same_drift_without_new_evidence():
    drift = RetrainTrigger(("utilization", "score"), "roc_auc", primary_dropped=True, input_drift=True)
    tried = TriedRetrain(drift, T0, T0 + timedelta(days=7), {"roc_auc": reading(0.846, 0.027)})
    later = T0 + timedelta(days=2)
    accuracy_alarm = RetrainTrigger((), "accuracy")
    # The covariate case: ROC AUC 0.846 -> 0.785 with +/-0.03 each is within noise of the limit: folded.
    folded = decide_retrain_need(accuracy_alarm, later, pending=None, tried=tried,
                                 readings={"roc_auc": reading(0.785, 0.03)}, limit=0.05, higher_is_better=HIGHER)
    assert folded.code is RetrainNeedCode.NO_NEW_EVIDENCE
    fell = decide_retrain_need(accuracy_alarm, later, pending=None, tried=tried,
                               readings={"roc_auc": reading(0.70, 0.02)}, limit=0.05, higher_is_better=HIGHER)
    assert fell.go  # the judged metric fell significantly further: new evidence
    spread = RetrainTrigger(("utilization", "income"), None, input_drift=True)
    assert decide_retrain_need(spread, later, pending=None, tried=tried, readings={}, limit=0.05,
                               higher_is_better=HIGHER).go
    assert decide_retrain_need(accuracy_alarm, T0 + timedelta(days=8), pending=None, tried=tried,
                               readings={"roc_auc": reading(0.785, 0.03)}, limit=0.05, higher_is_better=HIGHER).go


def test_a_one_class_window_cannot_fit_a_threshold(shifted_world):
    from steward.training.data import DataError

    spec, champion, fit_rows, _ = shifted_world
    one_class = fit_rows[fit_rows[spec.target] == 0]
    with pytest.raises(DataError, match="one class"):
        fit_threshold(spec, champion, one_class)
    assert np.isfinite(fit_threshold(spec, champion, fit_rows)[1].threshold)


def test_the_registry_record_of_a_pending_candidate(shifted_world):
    from steward.training.retrain_decision import pending_from_tags

    spec = shifted_world[0]
    tags = {"steward.stage": "inconclusive", "steward.validation.rows_needed": "420",
            "steward.validation.expects_gain": "true", "steward.retrain.trigger_metric": "accuracy"}
    pending = pending_from_tags(spec, "4", tags, T0)
    assert pending is not None and pending.rows_needed == 420 and pending.trigger_metric == "accuracy"
    assert pending.expires == T0 + timedelta(days=spec.retrain.pending_days)
    assert pending_from_tags(spec, "4", {**tags, "steward.validation.expects_gain": "false"}, T0) is None
    assert pending_from_tags(spec, "4", {**tags, "steward.stage": "rejected"}, T0) is None


# --------------------------------------------------------------------------------------------------
# One code path: what the health event carries, and the registry's memory of a retrain without gain.

def _accuracy_report(*issues, metrics=None):
    from steward.monitoring.health.report import Area, CheckResult, HealthReport, HealthWindow

    check = CheckResult.judged(Area.ACCURACY, metrics or {}, issues)
    return HealthReport.combine("m", HealthWindow(T0 - timedelta(days=1), T0), [check])


def _issue(code, subject="v1"):
    from steward.monitoring.health.report import Area, Issue, Severity

    return Issue(Area.ACCURACY, code, Severity.WARNING, "t", "d", "r", subject=subject)


def test_the_health_trigger_names_the_metric_that_fell():
    from steward.monitoring.health.report import IssueCode
    from steward.training.retrain_decision import health_trigger

    secondary = _accuracy_report(_issue(IssueCode.SECONDARY_METRIC_DROP), metrics={"accuracy_drop[v1]": 0.08})
    assert (health_trigger(secondary).metric, health_trigger(secondary).primary_dropped) == ("accuracy", False)
    primary = _accuracy_report(_issue(IssueCode.ACCURACY_DROP), _issue(IssueCode.SECONDARY_METRIC_DROP),
                               metrics={"accuracy_drop[v1]": 0.08})
    assert (health_trigger(primary).metric, health_trigger(primary).primary_dropped) == (None, True)
    assert health_trigger(primary).also_fell == "accuracy"  # a threshold re-fit's repair if a new model fails
    assert health_trigger(_accuracy_report(_issue(IssueCode.ACCURACY_DROP))).also_fell is None
    calibration = _accuracy_report(_issue(IssueCode.CALIBRATION_DRIFT))
    assert health_trigger(calibration).metric == "brier"


def test_a_trigger_built_from_the_events_is_a_threshold_refit_only_without_input_drift(example_spec):
    from steward.training.retrain_decision import retrain_trigger

    accuracy_only = retrain_trigger(example_spec, metric="accuracy")
    assert retrain_kind(example_spec, accuracy_only) is RetrainKind.REFIT_THRESHOLD
    score_drift = retrain_trigger(example_spec, drift_columns=["score"], metric="accuracy")
    assert not score_drift.input_drift and retrain_kind(example_spec, score_drift) is RetrainKind.REFIT_THRESHOLD
    inputs = retrain_trigger(example_spec, drift_columns=["income", "income"], metric="accuracy")
    assert inputs.drift_columns == ("income",) and retrain_kind(example_spec, inputs) is RetrainKind.TRAIN
    primary = retrain_trigger(example_spec, primary_dropped=True)
    assert primary.metric == example_spec.primary_metric and retrain_kind(example_spec, primary) is RetrainKind.TRAIN


def test_a_retrain_without_gain_is_remembered_from_its_tags_against_the_same_champion_only(example_spec):
    from steward.training.retrain_decision import tried_from_tags, trigger_tags

    trigger = RetrainTrigger(("income",), "roc_auc", True, True)
    readings = {"roc_auc": Reading("roc_auc", 0.71, 0.02, 400), "accuracy": Reading("accuracy", 0.8, 0.02, 400)}
    tags = {**trigger_tags(trigger, readings), "steward.validation.status": "failed",
            "steward.validation.expects_gain": "false", "steward.validation.against": "3"}
    tried = tried_from_tags(example_spec, tags, T0, "3")
    assert tried is not None and tried.trigger == trigger and set(tried.readings) == {"roc_auc"}
    assert tried.until == T0 + timedelta(days=example_spec.retrain.no_gain_days)
    assert tried_from_tags(example_spec, tags, T0, "4") is None  # another champion since
    assert tried_from_tags(example_spec, {**tags, "steward.validation.expects_gain": "true"}, T0, "3") is None
    same = decide_retrain_need(trigger, T0 + timedelta(days=1), pending=None, tried=tried, readings=readings,
                               limit=0.05, higher_is_better=HIGHER)
    assert same.code is RetrainNeedCode.NO_NEW_EVIDENCE


def test_a_primary_drop_a_new_model_did_not_repair_re_fits_the_threshold_once_when_accuracy_fell_too(example_spec):
    from steward.training.retrain_decision import latest_tried, retrain_trigger, tried_from_tags, trigger_tags

    primary = retrain_trigger(example_spec, primary_dropped=True, also_fell="accuracy")
    assert primary.also_fell == "accuracy" and retrain_kind(example_spec, primary) is RetrainKind.TRAIN
    tried = TriedRetrain(primary, T0, T0 + timedelta(days=7), {"roc_auc": reading(0.72, 0.025)})
    later, steady = T0 + timedelta(days=3), {"roc_auc": reading(0.70, 0.025)}
    need = decide_retrain_need(primary, later, pending=None, tried=tried, readings=steady, limit=0.05,
                               higher_is_better=HIGHER)
    assert need.go and need.code is RetrainNeedCode.RECALIBRATE
    assert need.trigger is not None and need.trigger.recalibration and need.trigger.metric == "accuracy"
    assert retrain_kind(example_spec, need.trigger) is RetrainKind.REFIT_THRESHOLD
    # once: after the re-fit was tried, the repeat folds as before; without what fell beside, it always did
    for memory, trigger in ((replace(tried, recalibrated=True), primary),
                            (tried, retrain_trigger(example_spec, primary_dropped=True))):
        assert decide_retrain_need(trigger, later, pending=None, tried=memory, readings=steady, limit=0.05,
                                   higher_is_better=HIGHER).code is RetrainNeedCode.NO_NEW_EVIDENCE
    # only a threshold metric or calibration is a threshold's to repair, and only without the primary held
    assert retrain_trigger(example_spec, primary_dropped=True, also_fell="roc_auc").also_fell is None
    assert retrain_trigger(example_spec, primary_dropped=True, also_fell="brier").also_fell == "brier"
    assert retrain_trigger(example_spec, metric="accuracy", also_fell="brier").also_fell is None

    # the registry's memory: a failed re-fit after the new model leaves the new model's memory, re-fit tried
    readings = {"roc_auc": Reading("roc_auc", 0.72, 0.025, 800)}
    against = {"steward.validation.status": "failed", "steward.validation.expects_gain": "false",
               "steward.validation.against": "1"}
    new_model = tried_from_tags(example_spec, {**trigger_tags(primary, readings), **against}, T0, "1")
    refit = tried_from_tags(example_spec, {**trigger_tags(need.trigger, readings), **against}, later, "1")
    assert new_model is not None and refit is not None and refit.kind is RetrainKind.REFIT_THRESHOLD
    assert refit.trigger == need.trigger  # the tags keep what fell beside, and that it was the re-fit
    assert latest_tried([new_model, refit]) == replace(new_model, recalibrated=True)
    assert latest_tried([refit]) == refit and latest_tried([new_model]) == new_model and latest_tried([]) is None


def test_the_scheduled_refresh_is_due_once_the_champion_is_as_old_as_the_spec_says(example_spec):
    from steward.training.retrain_decision import recorded_trigger, refresh_check, trigger_tags

    assert not refresh_check(example_spec, T0, T0 + timedelta(days=400)).due  # no refresh_after_days: off
    spec = example_spec.model_copy(update={"retrain": example_spec.retrain.model_copy(
        update={"refresh_after_days": 30.0})})
    young = refresh_check(spec, T0, T0 + timedelta(days=29.5))
    assert not young.due and young.trigger is None and "29.5 days" in young.reason
    due = refresh_check(spec, T0, T0 + timedelta(days=30))
    assert due.due and due.trigger == RetrainTrigger(refresh=True)
    assert retrain_kind(spec, due.trigger) is RetrainKind.TRAIN and due.trigger.describe() == "scheduled refresh"
    assert not refresh_check(spec, None, T0).due  # nothing to refresh before a first champion
    # the validate flow reads the refresh back from the version's tags
    assert recorded_trigger(trigger_tags(due.trigger, {})) == due.trigger
    assert recorded_trigger({}) is None


def test_a_refresh_counts_the_models_age_and_is_not_folded_into_a_failed_threshold_re_fit(example_spec):
    from steward.training.gates import (
        MODEL_TRAINED_AS_OF_TAG,
        TRAINED_AS_OF_TAG,
        model_trained_as_of,
        trained_as_of,
    )
    from steward.training.retrain_decision import tried_from_tags, trigger_tags

    refit_at, model_at = T0 + timedelta(days=20), T0
    tags = {TRAINED_AS_OF_TAG: refit_at.isoformat(), MODEL_TRAINED_AS_OF_TAG: model_at.isoformat()}
    assert trained_as_of(tags, T0) == refit_at  # the cooldown counts the re-fit
    assert model_trained_as_of(tags, T0) == model_at  # the refresh counts the model it wraps
    assert model_trained_as_of({TRAINED_AS_OF_TAG: refit_at.isoformat()}, T0) == refit_at

    accuracy = RetrainTrigger((), "accuracy")
    failed = {**trigger_tags(accuracy, {}), "steward.validation.status": "failed",
              "steward.validation.expects_gain": "false", "steward.validation.against": "3"}
    tried_refit = tried_from_tags(example_spec, failed, refit_at, "3")
    assert tried_refit is not None and tried_refit.kind is RetrainKind.REFIT_THRESHOLD
    refresh = RetrainTrigger(refresh=True)
    later = refit_at + timedelta(days=1)
    assert decide_retrain_need(refresh, later, pending=None, tried=tried_refit, readings={}, limit=0.05,
                               higher_is_better=HIGHER).go
    tried_model = TriedRetrain(RetrainTrigger(("income",), input_drift=True), refit_at, later + timedelta(days=6))
    assert decide_retrain_need(refresh, later, pending=None, tried=tried_model, readings={}, limit=0.05,
                               higher_is_better=HIGHER).code is RetrainNeedCode.NO_NEW_EVIDENCE


def test_a_concept_retrain_on_lagging_labels_is_caught_up_once_between_the_cooldown_and_the_lag(example_spec):
    from steward.training.retrain_decision import (
        ChampionTraining,
        catch_up_check,
        champion_training_from_tags,
        recorded_trigger,
        refresh_due,
        trigger_tags,
    )

    concept = RetrainTrigger(metric="roc_auc", primary_dropped=True)
    lagging = ChampionTraining(concept, T0, T0 - timedelta(days=6))  # labels come about 6 days late
    assert example_spec.retrain.cooldown_hours == 24 and example_spec.retrain.catch_up_lagging_labels
    assert not catch_up_check(example_spec, lagging, T0 + timedelta(hours=12)).due  # within the cooldown
    due = catch_up_check(example_spec, lagging, T0 + timedelta(days=1))
    assert due.due and due.trigger == RetrainTrigger(refresh=True, catch_up=True) and "6.0 days" in due.reason
    assert due.trigger.describe() == "catch-up on lagging labels"
    assert recorded_trigger(trigger_tags(due.trigger, {})) == due.trigger  # the validate flow reads it back
    assert catch_up_check(example_spec, lagging, T0 + timedelta(days=7)).due  # lag plus cooldown: the last day
    assert not catch_up_check(example_spec, lagging, T0 + timedelta(days=7, hours=1)).due  # its labels are in
    # labels within the cooldown of training, a drift or refresh trigger, the first model, the switch: no catch-up
    prompt = ChampionTraining(concept, T0, T0 - timedelta(hours=20))
    later = T0 + timedelta(days=2)
    assert not catch_up_check(example_spec, prompt, later).due
    for trigger in (RetrainTrigger(("income",), input_drift=True), RetrainTrigger(refresh=True), None):
        assert not catch_up_check(example_spec, ChampionTraining(trigger, T0, lagging.labels_through), later).due
    assert not catch_up_check(example_spec, None, later).due
    off = example_spec.model_copy(update={"retrain": example_spec.retrain.model_copy(
        update={"catch_up_lagging_labels": False})})
    assert "off" in catch_up_check(off, lagging, later).reason and not catch_up_check(off, lagging, later).due

    # the refresh the flows and the backtest run: the scheduled one first, else the catch-up
    assert refresh_due(example_spec, lagging, T0, later).due
    assert not refresh_due(off, lagging, T0, later).due
    # the registry's record: the trigger tag and the lineage's data window end
    tags = {**trigger_tags(concept, {}), "steward.data_window_end": lagging.labels_through.isoformat()}
    assert champion_training_from_tags(tags, T0) == lagging
    assert champion_training_from_tags({}, T0) == ChampionTraining(None, T0, None)
