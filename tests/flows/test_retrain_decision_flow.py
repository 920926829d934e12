"""The production retrain decides as the backtest does: the health/drift trigger's findings reach the flow
(trigger parameters), the metric that fell reaches the gate, a threshold-only drop re-fits the threshold, and a
repeat trigger with no new evidence folds into the ledger. Real Prefect server, MLflow store and prediction log."""

from __future__ import annotations

import json
from datetime import timedelta

import pandas as pd
import pytest

from flows.retrain import retrain
from flows.validate import validate
from steward import events
from steward.training.gates import MODEL_TRAINED_AS_OF_TAG, TRAINED_AS_OF_TAG, model_trained_as_of
from steward.training.retrain_decision import TRIGGER_METRIC_TAG, TRIGGER_TAG, RetrainKind, RetrainNeedCode
from steward.training.train import RetrainSkip
from tests.flows.test_triggers import WANTED, _flush_events, _the_run_started_by, register  # noqa: F401

pytestmark = pytest.mark.slow

START, DAY = pd.Timestamp("2026-02-01", tz="UTC"), pd.Timedelta(days=1)


def _champion_with_traffic(registry, settings, write_spec, example_frame, *, injections=(), days: int = 2,
                           **overrides):
    """A champion trained on the example data (its training event time a day before the traffic), and ``days``
    of labelled traffic served by it; returns the spec path and the last window's end."""
    from steward.simulation.replay import ReplayArm, replay_to_store
    from steward.simulation.scenario import credit_default_scenario
    from steward.spec import load_spec
    from steward.store.reader import PredictionStore
    from tests.support.models import register_champion, train_spec

    spec_path = write_spec(estimator__params={"estimator": "sklearn.ensemble.HistGradientBoostingClassifier",
                                              "max_iter": 30, "random_state": 0}, **overrides)
    spec = load_spec(spec_path)
    trained = train_spec(spec, example_frame, str(spec_path))
    champion = register_champion(registry, spec, trained)
    registry.set_version_tags(spec.name, champion.version, {TRAINED_AS_OF_TAG: (START - DAY).isoformat()})
    world = credit_default_scenario(rows_per_day=1000, injections=injections, label_delay=pd.Timedelta(hours=1))
    end = START + days * DAY
    replay_to_store(PredictionStore.from_settings(settings), spec, world.generate(START, end),
                    [ReplayArm("champion", champion.version, trained.estimator)], labels_until=end)
    return spec_path, end


def test_an_accuracy_drop_reaches_the_gate_and_re_fits_the_threshold(register, write_spec, registry, settings,  # noqa: F811
                                                                       example_frame, model_name):
    from steward.simulation.injections import DriftKind, Injection

    spec_path, end = _champion_with_traffic(
        registry, settings, write_spec, example_frame,
        injections=(Injection(DriftKind.BASE_RATE_SHIFT, START, None, (), 1.5),),
        data={"kind": "production", "window_days": 2, "candidate_window_days": [1, 2]})
    ids = register(spec_path, ["retrain"])
    window_start = end - DAY
    # the payload tasks/health.py emit_health_degraded sends for accuracy falling while ROC AUC held
    run = _the_run_started_by(ids["retrain"], events.HEALTH_DEGRADED, model_name,
                              {events.HEALTH_AREAS_LABEL: "accuracy", **WANTED}, reason="accuracy fell",
                              trigger_metric="accuracy", primary_dropped=False,
                              window_start=window_start.isoformat(), window_end=end.isoformat())
    parameters = run.parameters
    assert parameters["trigger_metric"] == "accuracy" and parameters["primary_dropped"] is False
    assert parameters["drift_columns"] == [] and parameters["window_start"] == window_start.isoformat()

    result = retrain(**parameters)
    assert result.registered and result.kind is RetrainKind.REFIT_THRESHOLD
    tags = registry.get_version(model_name, result.version).tags
    assert tags[TRIGGER_METRIC_TAG] == "accuracy" and json.loads(tags[TRIGGER_TAG])["metric"] == "accuracy"
    assert tags["steward.producer"] == "threshold_refit"
    # the re-fit keeps its model's training time: a scheduled refresh counts the model's age, not the re-fit's
    assert model_trained_as_of(tags, end.to_pydatetime()) == (START - DAY).to_pydatetime()
    assert tags[TRAINED_AS_OF_TAG] != tags[MODEL_TRAINED_AS_OF_TAG]

    outcome = validate(spec_path=str(spec_path), version=result.version)
    checks = {c.name: c for c in outcome.report.checks}
    assert "trigger_metric_vs_champion" in checks  # the gate judged the metric that fell
    assert checks["trigger_metric_vs_champion"].interval.metric == "accuracy"
    assert outcome.passed, outcome.summary  # the base rate moved 1.5 log-odds: the re-fit is clearly better


def test_a_drift_trigger_carries_its_columns(register, write_spec, model_name):  # noqa: F811
    ids = register(write_spec(), ["retrain"])
    run = _the_run_started_by(ids["retrain"], events.DRIFT_DETECTED, model_name, WANTED, reason="drift",
                              columns=[{"column": "income", "drifted": True}, {"column": "score", "drifted": True}])
    assert run.parameters["drift_columns"] == ["income", "score"] and run.parameters["trigger_metric"] is None


def test_a_repeat_trigger_after_a_retrain_without_gain_folds_into_the_ledger(
        write_spec, registry, settings, example_frame, model_name):
    from tasks.common import ledger

    spec_path, end = _champion_with_traffic(registry, settings, write_spec, example_frame)
    # the team's retrain cannot beat the champion: its gate finds no expected gain
    weak = write_spec(estimator={"factory": "steward.estimators:tabular_pipeline",
                                 "params": {"estimator": "sklearn.dummy.DummyClassifier", "strategy": "prior"}})
    trigger = dict(spec_path=str(weak), reason="drift detected", drift_columns=["income"], primary_dropped=True,
                   window_start=(end - DAY).to_pydatetime())
    first = retrain(**trigger, as_of=end.to_pydatetime())
    assert first.registered
    outcome = validate(spec_path=str(weak), version=first.version)
    assert not outcome.passed and not outcome.report.expects_gain

    later = (end + timedelta(hours=30)).to_pydatetime()  # past the cooldown: only the memory stops it
    again = retrain(**trigger, as_of=later)
    assert (again.registered, again.need, again.skip) == (False, RetrainNeedCode.NO_NEW_EVIDENCE,
                                                           RetrainSkip.NO_NEW_EVIDENCE)
    assert "found no expected gain" in again.skipped_because and again.ledger_entry_id
    repeat = retrain(**trigger, as_of=later + timedelta(hours=1))
    assert repeat.ledger_entry_id == again.ledger_entry_id  # folded into the open entry, counted again
    entry = ledger().get(again.ledger_entry_id)
    assert entry.is_open and entry.occurrences == 2

    spread = retrain(**{**trigger, "drift_columns": ["income", "utilization"]}, as_of=later + timedelta(hours=2))
    assert spread.registered  # a newly drifted column is new evidence


def test_a_primary_drop_no_new_model_repaired_re_fits_the_threshold_once_when_accuracy_fell_too(
        register, write_spec, registry, settings, example_frame, model_name):  # noqa: F811
    """Decision 0040: the health event names what fell beside the primary; after a new model without gain the
    repeat trigger re-fits the champion's threshold (once: tests/unit/test_retrain_decision.py), and the gate
    judges the re-fit on the metric that fell."""
    from steward.simulation.injections import DriftKind, Injection

    spec_path, end = _champion_with_traffic(registry, settings, write_spec, example_frame, days=3,
                                            injections=(Injection(DriftKind.BASE_RATE_SHIFT, START, None, (), 1.5),))
    weak = write_spec(estimator={"factory": "steward.estimators:tabular_pipeline",
                                 "params": {"estimator": "sklearn.dummy.DummyClassifier", "strategy": "prior"}},
                      data={"kind": "production", "window_days": 3})
    ids = register(weak, ["retrain"])
    run = _the_run_started_by(ids["retrain"], events.HEALTH_DEGRADED, model_name,
                              {events.HEALTH_AREAS_LABEL: "accuracy", **WANTED}, reason="roc_auc fell",
                              trigger_metric=None, primary_dropped=True, also_fell="accuracy",
                              window_start=(end - DAY).isoformat(), window_end=end.isoformat())
    assert run.parameters["primary_dropped"] is True and run.parameters["also_fell"] == "accuracy"

    def trigger(as_of):
        return dict(spec_path=str(weak), reason="accuracy degraded", primary_dropped=True, also_fell="accuracy",
                    window_start=as_of - timedelta(days=1), as_of=as_of)

    first = retrain(**trigger((end - timedelta(hours=30)).to_pydatetime()))
    assert first.registered and first.kind is RetrainKind.TRAIN
    assert not validate(spec_path=str(weak), version=first.version).report.expects_gain

    refit = retrain(**trigger(end.to_pydatetime()))  # past the cooldown, nothing moved: the threshold instead
    assert refit.registered and refit.kind is RetrainKind.REFIT_THRESHOLD, refit.skipped_because
    recorded = json.loads(registry.get_version(model_name, refit.version).tags[TRIGGER_TAG])
    assert recorded["recalibration"] and recorded["metric"] == "accuracy"
    gate = validate(spec_path=str(weak), version=refit.version).report
    checks = {c.name: c for c in gate.checks}
    assert checks["trigger_metric_vs_champion"].interval.metric == "accuracy"
    assert gate.passed, gate.summary()  # the base rate moved 1.5 log-odds: the re-fit is clearly better


def test_a_concept_retrain_on_late_labels_is_caught_up_by_the_daily_refresh_once(
        write_spec, registry, settings, example_frame, model_name):
    """Labels 3 days late, the concept changed: the retrain for the drop learnt it from the first labels only.
    The daily refresh run retrains it once more after the cooldown, as the backtest does (decision 0038)."""
    from steward.simulation.injections import DriftKind, Injection
    from steward.simulation.replay import ReplayArm, replay_to_store
    from steward.simulation.scenario import credit_default_scenario
    from steward.spec import load_spec
    from steward.store.reader import PredictionStore
    from steward.training.retrain_decision import (
        ChampionTraining,
        champion_training_from_tags,
        recorded_trigger,
    )
    from tests.support.models import register_champion, train_spec

    spec_path = write_spec(data={"kind": "production", "window_days": 7},
                           estimator__params={"estimator": "sklearn.ensemble.HistGradientBoostingClassifier",
                                              "max_iter": 30, "random_state": 0})
    spec = load_spec(spec_path)
    first = register_champion(registry, spec, train_spec(spec, example_frame, str(spec_path)))
    registry.set_version_tags(model_name, first.version, {TRAINED_AS_OF_TAG: (START - DAY).isoformat()})
    changed = Injection(DriftKind.CONCEPT_DRIFT, START, None, ("utilization", "num_late_payments", "debt_ratio"), 1.0)
    world = credit_default_scenario(rows_per_day=1000, injections=(changed,), label_delay=pd.Timedelta(days=3))
    end = START + 9 * DAY
    replay_to_store(PredictionStore.from_settings(settings), spec, world.generate(START, end),
                    [ReplayArm("champion", first.version, registry.load_model(model_name, first.version).model)],
                    labels_until=end)

    detected = START + 5 * DAY  # the change's first two days of labels have arrived
    concept = retrain(spec_path=str(spec_path), reason="health degraded", primary_dropped=True,
                      as_of=detected.to_pydatetime())
    assert concept.registered
    judged = validate(spec_path=str(spec_path), version=concept.version)
    assert judged.passed, judged.summary
    registry.promote(model_name, concept.version, reason="test: the concept retrain won its canary")
    tags = registry.get_version(model_name, concept.version).tags
    training = champion_training_from_tags(tags, detected.to_pydatetime())
    assert training.trigger is not None and training.trigger.primary_dropped
    assert training.labels_through < (detected - 2 * DAY).to_pydatetime()  # its newest label: 3 days behind

    early = retrain(spec_path=str(spec_path), reason="daily refresh schedule", refresh=True,
                    as_of=(detected + DAY / 2).to_pydatetime())
    assert (early.registered, early.skip) == (False, RetrainSkip.NOT_DUE) and "after the cooldown" in early.skipped_because
    caught_up = retrain(spec_path=str(spec_path), reason="daily refresh schedule", refresh=True,
                        as_of=(detected + 1.5 * DAY).to_pydatetime())
    assert caught_up.registered and "catch-up" in caught_up.reason
    trigger = recorded_trigger(registry.get_version(model_name, caught_up.version).tags)
    assert trigger is not None and trigger.refresh and trigger.catch_up
    outcome = validate(spec_path=str(spec_path), version=caught_up.version)
    assert outcome.passed and outcome.action == "challenger", outcome.summary  # the gate of a refresh

    # once: the caught-up model was not trained for a drop, so the next day's run has nothing to do
    registry.promote(model_name, caught_up.version, reason="test: the catch-up won its canary")
    again = retrain(spec_path=str(spec_path), reason="daily refresh schedule", refresh=True,
                    as_of=(detected + 3 * DAY).to_pydatetime())
    assert (again.registered, again.skip) == (False, RetrainSkip.NOT_DUE) and "not trained for a drop" in again.skipped_because
    # a file source never lags a clock: no catch-up
    assert champion_training_from_tags(tags, detected.to_pydatetime(), from_log=False) == ChampionTraining(
        training.trigger, detected.to_pydatetime(), None)
