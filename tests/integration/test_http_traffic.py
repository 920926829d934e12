"""The HTTP traffic sender against a real gateway on loopback."""

from __future__ import annotations

import pandas as pd
import pytest

from steward.registry.traffic import TrafficPlan
from steward.simulation.http_traffic import TrafficSender
from steward.simulation.scenario import credit_default_scenario
from steward.spec import load_spec
from steward.store.reader import PredictionStore, join_labels

pytestmark = pytest.mark.slow


def test_sender_drives_the_gateway_and_sends_labels(start_gateway, two_versions, registry, write_spec):
    model, _, _ = two_versions
    registry.set_traffic_plan(model, TrafficPlan(mode="canary", challenger_percent=30), reason="test split")
    gateway = start_gateway([model])
    spec = load_spec(write_spec())
    scenario = credit_default_scenario(rows_per_day=300)
    frame = scenario.generate(scenario.start, scenario.start + pd.Timedelta(days=1))
    with TrafficSender(gateway.url, spec, concurrency=4) as sender:
        summary = sender.send(frame)
    assert summary.sent == len(frame) == summary.ok + summary.client_errors
    assert summary.server_errors == 0 and summary.labels_sent == summary.ok
    assert set(summary.by_arm) == {"champion", "challenger"}
    gateway.stop()
    store = PredictionStore(gateway.store_uri)
    logged = store.read_predictions(model, pd.Timestamp("2000-01-01", tz="UTC"), pd.Timestamp.now(tz="UTC"))
    assert len(logged) == summary.ok
    assert len(join_labels(logged, store.read_labels(model))) == summary.ok
