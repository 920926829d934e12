"""A classifier that gives labels only, end to end on the real MLflow store, a real gateway over HTTP and the
Prefect server: registered by plain MLflow code, adopted, monitored (drift report, health check), a scikit-learn
challenger validated against it and canaried to champion. Every check that needs a score is skipped with the
code ``no_scores``; nothing crashes and no score is made up."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml
from delivery_fixtures import launch_gateway, register, spec_document, traffic, train

from flows.adopt import adopt
from flows.canary_promote import canary_promote
from flows.drift_report import DriftCheckStatus, drift_report
from flows.health_check import health_check
from flows.validate import validate
from steward.delivery.rollout import RolloutResult
from steward.findings import CheckStatus
from steward.monitoring.health.report import Area
from steward.registry.history import CHALLENGER, CHAMPION
from steward.training.gates import ComparisonCode
from steward.training.scores import ScoreCheck, SkipCode
from tests.support.models import LabelOnlyClassifier

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("admin_token")]  # the canary tells the gateway

MODEL = "label-only-team-model"


def log_team_model(estimator, features: pd.DataFrame) -> str:
    """The team's label-only python function, registered with plain MLflow (none of Steward's tags)."""
    import mlflow
    from mlflow.models import infer_signature

    wrapped = LabelOnlyClassifier(estimator)
    mlflow.set_experiment("team/label-only")
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="model", python_model=wrapped, registered_model_name=MODEL,
                                       signature=infer_signature(features, wrapped.predict(None, features)))
    return str(info.registered_model_version)


def no_scores(skipped) -> set[tuple[ScoreCheck, str | None]]:
    return {(s.check, s.subject) for s in skipped if s.code is SkipCode.NO_SCORES}


def test_a_label_only_model_is_adopted_monitored_and_replaced_by_a_scored_challenger(
    registry, example_frame, tmp_path
):
    from steward.spec import parse_spec
    from steward.training.data import prepare_features

    document = spec_document(MODEL, canary={"steps": [25, 100], "min_requests_per_arm": 5, "min_step_seconds": 1,
                                            "max_hold_seconds": 120})
    document["gates"].update(primary_metric="accuracy", floor=None)  # a gate on labels: adoption requires it
    spec_path = tmp_path / f"{MODEL}.yaml"
    spec_path.write_text(yaml.safe_dump(document, sort_keys=False))
    spec = parse_spec(document)

    fitted = train(example_frame.iloc[:4500])
    version = log_team_model(fitted.estimator, prepare_features(fitted.train, spec)[spec.feature_names])
    urls = {}
    for name, frame in (("reference", fitted.train), ("holdout", fitted.holdout)):
        frame.to_parquet(tmp_path / f"{name}.parquet", index=False)
        urls[name] = str(tmp_path / f"{name}.parquet")

    adopted = adopt(spec_path=str(spec_path), reference=urls["reference"], holdout=urls["holdout"], model=MODEL)
    assert (adopted.scores, adopted.action) == ("none", "champion"), adopted.summary
    assert "roc_auc" not in adopted.metrics and adopted.metrics["accuracy"] > 0.7

    gateway = launch_gateway([MODEL], tmp_path)
    try:
        gateway.wait_ready()
        from steward.simulation.http_traffic import TrafficSender

        with TrafficSender(gateway.url, spec, concurrency=2) as sender:
            sender.send(traffic().head(400))
        as_of = pd.Timestamp.now(tz="UTC") + pd.Timedelta(seconds=2)  # after the gateway's last flush
        import time

        time.sleep(2)

        drift = drift_report(spec_path=str(spec_path), window_hours=1, as_of=as_of.to_pydatetime())
        assert drift.status is DriftCheckStatus.CHECKED, drift.reason
        assert no_scores(drift.skipped) == {(ScoreCheck.SCORE_DRIFT, f"v{version}")}
        watched = drift.result.prediction  # the predicted class, not a score
        assert watched is not None and (watched.column, watched.kind) == ("prediction", "categorical")

        health = health_check(spec_path=str(spec_path), window_hours=1, as_of=as_of.to_pydatetime())
        assert (ScoreCheck.CALIBRATION, f"v{version}") in no_scores(health.skipped)
        assert health.check(Area.ACCURACY).status is not CheckStatus.FAILED_CHECK, health.to_table_rows()

        # A scikit-learn challenger with the same labels: gated on accuracy against the label-only champion.
        challenger = register(registry, MODEL, fitted, validated=False)
        validated = validate(spec_path=str(spec_path), version=challenger)
        assert validated.action == "challenger", validated.summary
        [skip] = validated.report.skipped_for_no_scores
        assert (skip.name, skip.code) == ("score_metrics", ComparisonCode.NO_SCORES)
        assert f"v{version} give labels only" in skip.reason

        with TrafficSender(gateway.url, spec, concurrency=2, send_labels=False) as sender:
            sender.start(traffic(), loop=True)
            outcome = canary_promote(spec_path=str(spec_path), poll_seconds=0.5)
        assert outcome.result is RolloutResult.PROMOTED, outcome.reason
        assert {(ScoreCheck.SCORE_DISTRIBUTION, CHAMPION)} <= no_scores(s for r in outcome.steps for s in r.skipped)
        assert registry.alias_version(MODEL, CHAMPION) == challenger
        assert registry.alias_version(MODEL, CHALLENGER) is None
    finally:
        gateway.stop()
