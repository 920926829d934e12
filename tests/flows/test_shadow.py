"""The shadow flow against a real gateway over HTTP: the challenger scores copies of live traffic, the flow
waits out its window, compares the two versions' answers and latency, and ends the shadow."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from experiment_fixtures import (
    champion_and_challenger,
    read_artifacts,
    start_gateway,
    train,
    wait_for_log,
    write_spec,
)

from flows.shadow import shadow_analysis
from steward.delivery.experiments import ExperimentError
from steward.registry.traffic import DEFAULT_PLAN
from steward.simulation.http_traffic import TrafficSender
from steward.simulation.scenario import credit_default_scenario
from steward.spec import load_spec
from tests.support.gateway import RunningGateway

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("admin_token")]

MODEL = "shadow-model"
WINDOW_MINUTES = 0.2
SETTLE_SECONDS = 2.0
RATE = 40.0  # requests/s, before and during the shadow


@dataclass(frozen=True)
class Served:
    gateway: RunningGateway
    spec_path: str
    versions: tuple[str, str]


@pytest.fixture(scope="module")
def served(registry, example_frame, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shadow")
    path = write_spec(tmp, MODEL, example_frame)
    # trained on different months, so the two versions disagree on some customers
    versions = champion_and_challenger(registry, path, train(path, example_frame.iloc[:3000]),
                                       train(path, example_frame.iloc[3000:]))
    gateway = start_gateway(registry, [MODEL], shadow_collect_seconds=0.05)
    yield Served(gateway, str(path), versions)
    gateway.stop()


def test_shadow_reports_agreement_by_slice_and_latency_cost_then_ends(served, registry):
    from tasks.common import store

    champion, challenger = served.versions
    spec = load_spec(served.spec_path)
    scenario = credit_default_scenario(rows_per_day=2000)
    frame = scenario.generate(scenario.start, scenario.start + pd.Timedelta(days=1))
    since = datetime.now(UTC)
    with TrafficSender(served.gateway.url, spec, concurrency=2) as sender:  # the champion alone: the baseline
        before = sender.send(frame.iloc[:200], rate_per_second=RATE)
    wait_for_log(store(), MODEL, since, served=before.ok)

    with TrafficSender(served.gateway.url, spec, concurrency=2) as sender:  # the same load during the shadow
        sender.start(frame.iloc[200:], rate_per_second=RATE)
        outcome = shadow_analysis(spec_path=served.spec_path, action="start", challenger_percent=100,
                                  window_minutes=WINDOW_MINUTES, settle_seconds=SETTLE_SECONDS)
        sender.stop()
    report = outcome.report
    print(f"\n{report.to_markdown()}")

    assert outcome.flushed is not None and outcome.flushed.complete, outcome.flushed  # the copies were all in
    assert outcome.stopped and registry.get_traffic_plan(MODEL) == DEFAULT_PLAN
    served.gateway.wait_for_plan(MODEL, DEFAULT_PLAN)
    assert (report.champion_version, report.challenger_version) == (champion, challenger)
    assert report.pairs >= 200 and report.coverage > 0.8 and report.shadow_errors == 0

    # the agreement the report gives is what the two registered models say on the logged inputs
    log = store().read_predictions(MODEL, report.window.start, report.window.end)
    answered = log[log["served"]].merge(log.loc[~log["served"], ["request_id", "row"]], on=["request_id", "row"])
    features = answered[spec.feature_names]
    predictions = [registry.load_model(MODEL, v).model.predict(features) for v in (champion, challenger)]
    assert len(answered) == report.pairs
    assert report.agreement_rate == pytest.approx(float(np.mean(predictions[0] == predictions[1])), abs=0.01)
    assert 0 < report.agreement_rate < 1  # different training data: they disagree somewhere

    # disagreement by each slice feature of the spec, covering every pair
    assert {s.feature for s in report.slices} == set(spec.gates.slice_features)
    for feature in spec.gates.slice_features:
        assert sum(s.pairs for s in report.slices if s.feature == feature) == report.pairs
    assert report.labelled is not None and report.labelled.pairs > 0

    # latency cost from the log: the copies' time, and the champion during the shadow against before it
    latency = report.latency
    assert latency.champion.n > 100 and latency.challenger.n > 100 and latency.champion_before.n >= 30
    assert latency.challenger_vs_champion_p95 is not None and latency.champion_p95_change is not None
    assert latency.champion_slowed in (True, False)

    artifacts = read_artifacts(MODEL)
    title = f"# Shadow of {MODEL}, challenger v{challenger}: agreement"
    assert artifacts[f"shadow-{MODEL}"]["data"].startswith(title)
    assert f"shadow-slices-{MODEL}" in artifacts
    entries = [e for e in registry.history(MODEL) if e.details.get("experiment_id") == outcome.experiment_id]
    assert [e.details["action"] for e in entries] == ["start", "analyse", "stop"]
    with pytest.raises(ExperimentError, match="no shadow is running"):
        shadow_analysis(spec_path=served.spec_path, action="analyse")
