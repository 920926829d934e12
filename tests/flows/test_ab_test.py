"""The A/B test flow against a real gateway over HTTP, the session's MLflow registry and Prefect server.

Three models, each a champion and a challenger, served by one gateway:
- ``ab-equal``: the same trained model registered twice, so the arms differ only in which customers
  they got; customers come back (a population of 400 for 1200 requests), so outcomes are per entity.
- ``ab-better``: the champion learnt from flipped labels (a known, large accuracy gap); one-shot customers.
- ``ab-srm``: the challenger's schema makes ``income`` required while the traffic has it missing in
  40% of rows: the gateway refuses those challenger requests (422) and never logs them, the classic
  way an arm loses traffic after assignment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd
import pytest
import yaml
from experiment_fixtures import (
    champion_and_challenger,
    read_artifacts,
    start_gateway,
    train,
    wait_for_log,
    write_spec,
)

from flows.ab_test import ABTestOutcome, ab_test
from steward.delivery.ab_verdict import ABReason, ABStatus
from steward.delivery.experiments import ExperimentError, ExperimentRun, active_experiment
from steward.events import AB_TEST_CONCLUDED
from steward.registry.traffic import DEFAULT_PLAN, sticky_arm
from steward.simulation.http_traffic import TrafficSender, TrafficSummary
from steward.simulation.injections import DriftKind, Injection
from steward.simulation.scenario import credit_default_scenario
from steward.spec import load_spec
from tests.support.gateway import RunningGateway
from tests.support.polling import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("admin_token")]

EQUAL, BETTER, SRM = "ab-equal", "ab-better", "ab-srm"
DESIGN = {"metric": "accuracy", "minimum_effect": 0.05, "sticky_key": "field:entity_id"}
SETTLE_SECONDS = 1.0


@dataclass(frozen=True)
class World:
    gateway: RunningGateway
    specs: dict[str, str]
    versions: dict[str, tuple[str, str]]


@pytest.fixture(scope="module")
def world(registry, example_frame, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ab")
    specs, versions = {}, {}

    path = write_spec(tmp, EQUAL, example_frame, ab_test=DESIGN)
    same = train(path, example_frame)
    versions[EQUAL], specs[EQUAL] = champion_and_challenger(registry, path, same, same), str(path)

    path = write_spec(tmp, BETTER, example_frame, ab_test=DESIGN)
    flipped = example_frame.assign(default=1 - example_frame["default"])
    versions[BETTER] = champion_and_challenger(registry, path, train(path, flipped), train(path, example_frame))
    specs[BETTER] = str(path)

    path = write_spec(tmp, SRM, example_frame, ab_test=DESIGN)
    features = [dict(f, nullable=False) if f["name"] == "income" else f
                for f in yaml.safe_load(path.read_text())["features"]]
    complete = example_frame.dropna(subset=["income"])
    (tmp / "strict").mkdir()
    strict = write_spec(tmp / "strict", SRM, complete, ab_test=DESIGN, features=features)
    versions[SRM] = champion_and_challenger(registry, path, train(path, example_frame), train(strict, complete),
                                            challenger_spec=strict)
    specs[SRM] = str(path)

    gateway = start_gateway(registry, [EQUAL, BETTER, SRM])
    yield World(gateway, specs, versions)
    gateway.stop()


def traffic(rows: int, *, population: int, day: int, injections: tuple = ()) -> pd.DataFrame:
    scenario = credit_default_scenario(rows_per_day=rows, population=population, injections=injections)
    start = scenario.start + pd.Timedelta(days=day)
    return scenario.generate(start, start + pd.Timedelta(days=1))


def start(world: World, registry, model: str) -> ExperimentRun:
    outcome = ab_test(spec_path=world.specs[model], action="start", settle_seconds=SETTLE_SECONDS)
    assert outcome.status is None and "--action analyse" in outcome.recommendation
    run = active_experiment(registry.history(model))
    assert run.experiment_id == outcome.experiment_id
    world.gateway.wait_for_plan(model, run.plan)
    wait_until(lambda: datetime.now(UTC) >= run.analysis_from, "the plan to settle")
    return run


def send(world: World, model: str, frame: pd.DataFrame) -> TrafficSummary:
    from tasks.common import store

    since = datetime.now(UTC)
    with TrafficSender(world.gateway.url, load_spec(world.specs[model]), concurrency=4) as sender:
        summary = sender.send(frame)
    assert summary.server_errors == 0
    wait_for_log(store(), model, since, served=summary.ok, labels=summary.labels_sent)
    return summary


def look(world: World, model: str, action: str = "analyse") -> ABTestOutcome:
    outcome = ab_test(spec_path=world.specs[model], action=action)
    print(f"\n{outcome.report.to_markdown()}")
    return outcome


def test_equal_models_find_no_winner_at_any_look_and_stop_restores_the_champion(world, registry):
    from tasks.common import store

    run = start(world, registry, EQUAL)
    frame = traffic(1200, population=400, day=0)
    send(world, EQUAL, frame.iloc[:600])
    first = look(world, EQUAL)
    send(world, EQUAL, frame.iloc[600:])
    last = look(world, EQUAL, action="stop")

    for outcome in (first, last):
        report = outcome.report
        assert outcome.status is ABStatus.RUNNING and report.winner is None, report.recommendation
        assert report.code is ABReason.NO_CLEAR_WINNER and outcome.recommendation == report.recommendation
        assert not report.srm.mismatch and report.data.crossover_entities == 0
        assert not report.data.binary  # customers came back: per-entity accuracy, Welch
    assert last.report.data.units[0] > first.report.data.units[0]
    assert last.report.result.additional_samples_per_arm > 0
    # the always-valid p-value is carried from look to look and never rises
    assert last.report.previous_p_value == first.report.p_value >= last.report.p_value

    # assignment was sticky: every customer saw one arm, the one the plan's hash gives
    logged = store().read_predictions(EQUAL, run.analysis_from, datetime.now(UTC), served_only=True)
    arms = logged.groupby("entity")["arm"].agg(set)
    assert all(len(a) == 1 for a in arms)
    assert all(next(iter(a)) == sticky_arm(entity, 50, run.plan.salt) for entity, a in arms.items())

    # stop: traffic back to the champion, in the registry and in the gateway; the looks are in the history
    assert last.stopped and registry.get_traffic_plan(EQUAL) == DEFAULT_PLAN
    world.gateway.wait_for_plan(EQUAL, DEFAULT_PLAN)
    entries = [e for e in registry.history(EQUAL) if e.details.get("experiment_id") == run.experiment_id]
    assert [e.details["action"] for e in entries] == ["start", "analyse", "analyse", "stop"]
    assert float(entries[2].details["p_value"]) == last.report.p_value
    with pytest.raises(ExperimentError, match="no ab-test is running"):
        ab_test(spec_path=world.specs[EQUAL], action="analyse")


def test_a_known_difference_finds_the_right_winner_and_only_recommends_promotion(world, registry, model_events):
    from tasks.common import ledger

    champion, challenger = world.versions[BETTER]
    start(world, registry, BETTER)
    send(world, BETTER, traffic(400, population=1_000_000, day=1))
    outcome = look(world, BETTER)

    report = outcome.report
    assert outcome.status is ABStatus.CONCLUDED and report.winner == "challenger", report.recommendation
    assert report.data.binary  # one request per customer: two-proportion test
    comparison = report.result.comparison
    assert comparison.treatment > comparison.control and comparison.ci_low > 0  # effect with its interval
    assert report.code is ABReason.WINNER and report.winner_version == challenger

    # a recommendation, not an action: the champion is unchanged; the event and ledger entry say what to do
    assert registry.alias_version(BETTER, "champion") == champion
    assert registry.alias_version(BETTER, "challenger") == challenger
    titles = [e.title for e in ledger().entries(BETTER)]
    assert any("promotion recommended" in title for title in titles), titles
    concluded = [e for e in model_events(BETTER, expected=1) if e.event == AB_TEST_CONCLUDED]
    assert concluded and concluded[0].payload["winner"] == "challenger"
    assert concluded[0].payload["winner_version"] == challenger
    artifact = read_artifacts(f"ab-test-{BETTER}")[f"ab-test-{BETTER}"]
    assert artifact["data"].startswith(f"# A/B test of {BETTER}: challenger v{challenger} wins")

    again = look(world, BETTER, action="stop")  # a later look repeats the verdict without a second entry
    assert again.status is ABStatus.CONCLUDED
    assert sum("promotion recommended" in e.title for e in ledger().entries(BETTER)) == 1


def test_a_sample_ratio_mismatch_refuses_any_conclusion(world, registry):
    from tasks.common import ledger

    start(world, registry, SRM)
    scenario_start = credit_default_scenario().start
    # 80% of rows without income: the challenger's arm keeps ~1 in 6 of the rows, far past SRM's alpha 0.001 on
    # any split the experiment's fresh assignment salt draws (at 40% the share reached 0.418, p=0.0012, ~1 run in 30)
    missing = Injection(DriftKind.MISSING_SPIKE, scenario_start, None, ("income",), 0.8)
    summary = send(world, SRM, traffic(500, population=1_000_000, day=2, injections=(missing,)))
    assert summary.client_errors > 50  # the challenger refused rows without income; the log never saw them

    outcome = look(world, SRM, action="stop")
    report = outcome.report
    assert outcome.status is ABStatus.INVALID and report.srm.mismatch and report.winner is None
    assert report.data.assigned[0] < report.data.assigned[1]
    assert report.code is ABReason.SAMPLE_RATIO_MISMATCH
    assert report.p_value == 1.0  # the untrusted look is not carried into later ones
    assert not ledger().entries(SRM)
