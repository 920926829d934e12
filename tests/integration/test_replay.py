"""Replayed traffic reads back through the store exactly as the gateway's would."""

from __future__ import annotations

import pandas as pd
import pytest

from steward.simulation.replay import ReplayArm, replay_to_store
from steward.simulation.scenario import credit_default_scenario
from steward.spec import load_spec
from steward.store.reader import PredictionStore, join_labels

pytestmark = pytest.mark.slow


def test_replay_writes_predictions_and_delayed_labels(tmp_path, write_spec, register_version, example_frame,
                                                      registry, model_name):
    spec_path = write_spec()
    spec = load_spec(spec_path)
    champion = register_version(spec_path, example_frame)
    challenger = register_version(spec_path, example_frame.tail(4000))
    scenario = credit_default_scenario(rows_per_day=400, start=pd.Timestamp("2026-02-01", tz="UTC"))
    traffic = scenario.generate(scenario.start, scenario.start + pd.Timedelta(days=3))
    store = PredictionStore(str(tmp_path / "log"))
    arms = [
        ReplayArm("champion", champion.version, registry.load_model(model_name, champion.version).model, share=0.9),
        ReplayArm("challenger", challenger.version, registry.load_model(model_name, challenger.version).model,
                  share=0.1, extra_latency_ms=20, error_rate=0.5),
    ]
    cutoff = scenario.start + pd.Timedelta(days=4)
    summary = replay_to_store(store, spec, traffic, arms, labels_until=cutoff)

    logged = store.read_predictions(model_name, scenario.start, scenario.start + pd.Timedelta(days=3))
    assert len(logged) == summary.predictions == len(traffic)
    assert set(logged["version"]) == {champion.version, challenger.version}
    assert abs((logged["arm"] == "challenger").mean() - 0.1) < 0.03
    slow = logged[logged["arm"] == "challenger"]
    # each arm's latency is drawn from its own measured calls, so only the planted 20 ms is certain under load
    assert slow["latency_ms"].min() >= 20 and logged[logged["arm"] == "champion"]["latency_ms"].min() > 0
    assert (slow["status"] == "error").mean() == pytest.approx(0.5, abs=0.1)
    assert logged["income"].isna().any() and set(spec.feature_names) <= set(logged.columns)

    labelled = join_labels(logged, store.read_labels(model_name))
    expected = (pd.to_datetime(traffic["label_available_at"], utc=True) <= cutoff).sum()
    assert len(labelled) == summary.labels == expected < len(traffic)

    # the next period, replayed with the same seed, never reuses a request id (its labels would join these rows)
    later = scenario.generate(scenario.start + pd.Timedelta(days=3), scenario.start + pd.Timedelta(days=4))
    replay_to_store(store, spec, later, arms[:1])
    everything = store.read_predictions(model_name, scenario.start, scenario.start + pd.Timedelta(days=4))
    assert everything["request_id"].is_unique
