"""The canary flow against a real gateway over HTTP, traffic from the scenario simulator, the real registry,
prediction log, ledger and Prefect server.

Each test has its own model (champion v1 and a challenger v2 that is good, or bad in one real way), all served
by one gateway process for the module. Bad challengers: one that raises on a category it never saw (the
traffic carries the simulator's unseen-category injection), a random forest that is genuinely slower, and
one trained on inverted labels (labels are sent back through the gateway's feedback endpoint).
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from delivery_fixtures import (
    REPOSITORY,
    GatewayProcess,
    launch_gateway,
    register,
    served,
    share_within,
    spec_document,
    traffic,
    train,
    wait_for_log,
    write_spec,
)

from flows.canary_promote import canary_promote
from steward import events
from steward.delivery.decisions import Check, StepAction, StepCode, Wait
from steward.delivery.rollout import (
    ROLLOUT_TAG,
    InterruptionCode,
    Phase,
    RefusalCode,
    RolloutKind,
    RolloutRefused,
    RolloutResult,
    RolloutState,
)
from steward.delivery.timeline import StepRecord
from steward.findings import MaintenanceKind, Priority
from steward.registry.adapter import Registry
from steward.registry.history import CHALLENGER, CHAMPION, ChangeKind
from steward.registry.traffic import DEFAULT_PLAN, TrafficPlan
from steward.simulation.candidates import TRUSTED_TYPES, SlowerClassifier, units_for
from steward.simulation.injections import DriftKind, Injection
from steward.simulation.load import cpu_hog
from tests.support.polling import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("admin_token")]  # flows tell the gateway

GOOD, ERRORS, SLOW, WORSE, HOLD, KILLED = (f"canary-{n}" for n in ("good", "errors", "slow", "worse", "hold", "killed"))
HOG_GOOD, HOG_SLOWER = "canary-hog-good", "canary-hog-slower"  # judged while a CPU hog keeps every core busy
DECIDED, FAILING, JUDGED = "canary-decided", "canary-failing", "canary-judged"  # not served: registry only
SLOWER_BREACHES = (Check.LATENCY, Check.COMPUTE_TIME)  # end to end or in its own model call: both measure it
BAD_STEPS = {"steps": [10, 50, 100], "min_requests_per_arm": 30, "min_step_seconds": 1, "max_hold_seconds": 120}
POLL = 0.5


@dataclass(frozen=True)
class World:
    tmp: Path
    gateway: GatewayProcess
    champion: str
    challenger: dict[str, str]


@pytest.fixture(scope="module")
def world(registry, example_frame, tmp_path_factory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("canary")
    champion = train(example_frame.iloc[:4500])
    models = [GOOD, ERRORS, SLOW, WORSE, HOLD, KILLED, HOG_GOOD, HOG_SLOWER]
    champions = {name: register(registry, name, champion) for name in models}
    for name, version in champions.items():
        registry.promote(name, version, reason="canary tests: champion")
    gateway = launch_gateway(models, tmp)  # boots while the challengers train
    try:
        good = train(example_frame.iloc[1500:], params={"estimator": "sklearn.ensemble.HistGradientBoostingClassifier",
                                                        "max_iter": 40, "random_state": 1})
        # Three times the champion's answer through the gateway: a fixed amount of real work on every call.
        slower = dataclasses.replace(good, estimator=SlowerClassifier(good.estimator, work_units=units_for(6.0)))
        challengers = {
            GOOD: good, HOLD: good, KILLED: good, HOG_GOOD: good, HOG_SLOWER: slower,
            ERRORS: train(example_frame.iloc[:4500], factory="delivery_fixtures:strict_pipeline"),
            SLOW: train(example_frame.iloc[:4500], params={"estimator": "sklearn.ensemble.RandomForestClassifier",
                                                           "n_estimators": 300, "max_depth": 8, "n_jobs": 1,
                                                           "random_state": 0}),
            WORSE: train(example_frame.iloc[:4500].assign(default=lambda f: 1 - f["default"])),
        }
        versions = {}
        trusting = Registry(registry.tracking_uri, registry.artifact_root, extra_trusted_types=TRUSTED_TYPES)
        for name, trained in challengers.items():
            versions[name] = register(trusting, name, trained)
            registry.set_alias(name, CHALLENGER, versions[name], reason="canary tests: validated challenger",
                               kind=ChangeKind.ASSIGN)
        for name in (DECIDED, FAILING, JUDGED):
            champions[name] = register(registry, name, champion)
            registry.promote(name, champions[name], reason="canary tests: champion")
            versions[name] = register(registry, name, good)
            registry.set_alias(name, CHALLENGER, versions[name], reason="canary tests: validated challenger",
                               kind=ChangeKind.ASSIGN)
        gateway.wait_ready()
        yield World(tmp, gateway, champions[GOOD], versions)
    finally:
        gateway.stop()


def _sender(world: World, model: str, **options):
    from steward.simulation.http_traffic import TrafficSender
    from steward.spec import parse_spec

    return TrafficSender(world.gateway.url, parse_spec(spec_document(model)), **options)


def _step_windows_respected(model: str, outcome) -> None:
    """Challenger share of served requests in each step's window never above the step's weight."""
    for record in outcome.steps:
        if record.percent >= 100 or record.action is StepAction.HOLD:
            continue
        window = served(model, record.started, record.decided)
        challenger = int((window["arm"] == CHALLENGER).sum())
        assert share_within(challenger, len(window), record.percent), (record.step, challenger, len(window))


def _step_records(registry, model: str, action: StepAction) -> list[StepRecord]:
    """The step decisions of ``action`` in the model's audit history, as recorded."""
    records = [StepRecord.from_details(e.details) for e in registry.history(model)
               if e.kind is ChangeKind.DELIVERY_DECISION and "record" in e.details]
    return [r for r in records if r.action is action]


def _rolled_back_at_first_step(registry, world: World, model: str, outcome, started: pd.Timestamp,
                               breach: Check | tuple[Check, ...], ledger, model_events) -> None:
    version = world.challenger[model]
    assert outcome.result is RolloutResult.ROLLED_BACK, outcome.reason
    decided = [r for r in outcome.steps if r.action is not StepAction.HOLD]
    assert [(r.step, r.action) for r in decided] == [(0, StepAction.ROLLBACK)], [r.row() for r in outcome.steps]
    expected = breach if isinstance(breach, tuple) else (breach,)
    assert decided[0].code is StepCode.BREACH and set(expected) & set(decided[0].breaches), [
        r.row() for r in outcome.steps]
    assert outcome.reason == decided[0].reason

    # Weight to 0 right after the decision, and every gateway told and acknowledging it. How many seconds
    # that takes depends on the machine's load (registry writes), so the test holds the order, not a time.
    assert decided[0].decided <= outcome.withdrawn_at
    assert outcome.reach is not None and outcome.reach.acknowledged, outcome.reach
    # Exposure: before the roll-back at most the first step's weight; after the acknowledgement nothing.
    assert registry.get_traffic_plan(model) == DEFAULT_PLAN
    after = pd.Timestamp(outcome.reach.acknowledged_at)
    wait_for_log(model, pd.Timestamp(after))
    before = served(model, started, after)
    exposed = int((before["arm"] == CHALLENGER).sum())
    assert exposed > 0 and share_within(exposed, len(before), BAD_STEPS["steps"][0]), (exposed, len(before))
    assert not (served(model, after)["arm"] == CHALLENGER).any()

    info = registry.get_version(model, version)
    assert info.stage == "rejected" and info.tags["steward.rejected_reason"] == outcome.reason
    assert RolloutState.from_json(info.tags[ROLLOUT_TAG]).phase is Phase.ROLLED_BACK
    assert registry.alias_version(model, CHAMPION) == world.champion
    assert registry.alias_version(model, CHALLENGER) is None
    [incident] = [e for e in ledger.entries(model) if e.incident]
    assert incident.kind is MaintenanceKind.CORRECTIVE and incident.priority is Priority.HIGH
    assert incident.detail == outcome.reason
    rolled_back = [e for e in model_events(model) if e.event == events.ROLLED_BACK]
    assert rolled_back and rolled_back[0].payload["version"] == version
    assert rolled_back[0].payload["champion_version"] == world.champion
    assert rolled_back[0].payload["reason"] == outcome.reason


def test_good_candidate_is_promoted_through_every_step(world, registry, model_events):
    spec_path = write_spec(world.tmp, GOOD, canary={"min_requests_per_arm": 5, "min_step_seconds": 1,
                                                   "max_hold_seconds": 120})
    with _sender(world, GOOD, concurrency=2, send_labels=False) as sender:
        sender.start(traffic(), loop=True)
        outcome = canary_promote(spec_path=str(spec_path), poll_seconds=POLL)

    assert outcome.result is RolloutResult.PROMOTED, outcome.reason
    advanced = [r for r in outcome.steps if r.action is StepAction.ADVANCE]
    assert [r.percent for r in advanced] == [1, 5, 25, 50, 100]
    assert all(r.challenger.requests >= 5 and r.champion.requests >= 5 for r in advanced)
    # At 100% the champion is judged on the 50% step's window, read again (so with its last flush).
    assert advanced[-1].baseline and advanced[-1].champion.requests >= advanced[-2].champion.requests
    _step_windows_respected(GOOD, outcome)

    version = world.challenger[GOOD]
    assert registry.alias_version(GOOD, CHAMPION) == version
    assert registry.alias_version(GOOD, CHALLENGER) is None
    assert registry.rollback_target(GOOD) == world.champion  # the old champion stays loadable as the target
    assert registry.get_traffic_plan(GOOD) == DEFAULT_PLAN
    assert RolloutState.from_json(registry.get_version(GOOD, version).tags[ROLLOUT_TAG]).phase is Phase.PROMOTED
    advances = _step_records(registry, GOOD, StepAction.ADVANCE)
    assert len(advances) == 5 and {r.code for r in advances} == {StepCode.NO_BREACH}
    promoted = [e for e in model_events(GOOD) if e.event == events.PROMOTED]
    assert promoted and promoted[0].payload["version"] == version
    assert promoted[0].payload["previous_version"] == world.champion and promoted[0].payload["reason"]


def test_candidate_with_more_errors_is_rolled_back_at_the_first_step(world, registry, model_events):
    from tasks.common import ledger

    spec_path = write_spec(world.tmp, ERRORS, canary=BAD_STEPS)
    start = pd.Timestamp.now(tz="UTC")
    # 60% of requests fail: the error test is significant within a few challenger requests. At 30% a
    # run of lucky draws could leave it short while the failures' slow retries had shown in the latency.
    unseen = Injection(DriftKind.UNSEEN_CATEGORY, "2000-01-01", None, ("region",), 0.6)
    with _sender(world, ERRORS, concurrency=2, send_labels=False) as sender:
        sender.start(traffic(injections=(unseen,)), loop=True)
        outcome = canary_promote(spec_path=str(spec_path), poll_seconds=POLL)
        time.sleep(2.0)  # traffic after the roll-back shows the challenger no longer answers
    _rolled_back_at_first_step(registry, world, ERRORS, outcome, start, Check.ERROR_RATE, ledger(), model_events)
    first = outcome.steps[-1]
    assert first.challenger.errors > 0 and first.champion.errors == 0


def test_slower_candidate_is_rolled_back_at_the_first_step(world, registry, model_events):
    from tasks.common import ledger

    spec_path = write_spec(world.tmp, SLOW, canary=BAD_STEPS)
    start = pd.Timestamp.now(tz="UTC")
    # One connection: the gateway scores requests that arrive together in one batch, so concurrent
    # champion requests would wait for the slow challenger and hide its latency.
    with _sender(world, SLOW, concurrency=1, send_labels=False) as sender:
        sender.start(traffic(), loop=True)
        outcome = canary_promote(spec_path=str(spec_path), poll_seconds=POLL)
        time.sleep(2.0)
    _rolled_back_at_first_step(registry, world, SLOW, outcome, start, SLOWER_BREACHES, ledger(), model_events)
    first = outcome.steps[-1]
    assert first.challenger.p95_latency_ms > 1.5 * first.champion.p95_latency_ms  # measured, on this machine


def test_candidate_with_worse_accuracy_on_labels_is_rolled_back_at_the_first_step(world, registry, model_events):
    from tasks.common import ledger

    # Score-distribution check off (max_score_ks 1): this test isolates accuracy on labelled traffic.
    spec_path = write_spec(world.tmp, WORSE, canary={**BAD_STEPS, "min_labelled": 20, "max_score_ks": 1.0})
    start = pd.Timestamp.now(tz="UTC")
    with _sender(world, WORSE, concurrency=2, send_labels=True) as sender:
        sender.start(traffic(), loop=True)
        outcome = canary_promote(spec_path=str(spec_path), poll_seconds=POLL)
        time.sleep(2.0)
    _rolled_back_at_first_step(registry, world, WORSE, outcome, start, Check.ACCURACY, ledger(), model_events)
    first = outcome.steps[-1]
    assert first.challenger.labelled >= 20 and first.challenger.loss > first.champion.loss + 0.3


def test_under_a_cpu_hog_a_good_candidate_is_promoted_and_a_three_times_slower_one_stopped_at_its_first_step(
    world, registry, model_events
):
    """Machine load slows both arms in the same time slices, so it cannot read as a slower challenger; at
    100% (no champion traffic alongside) the challenger's p95 is judged against the spec's SLO."""
    from tasks.common import ledger

    good_path = write_spec(world.tmp, HOG_GOOD, canary=BAD_STEPS)
    slower_path = write_spec(world.tmp, HOG_SLOWER, canary=BAD_STEPS)
    with cpu_hog():
        with _sender(world, HOG_GOOD, concurrency=1, send_labels=False) as sender:
            sender.start(traffic(), loop=True)
            promoted = canary_promote(spec_path=str(good_path), poll_seconds=POLL)
        start = pd.Timestamp.now(tz="UTC")
        with _sender(world, HOG_SLOWER, concurrency=1, send_labels=False) as sender:
            sender.start(traffic(), loop=True)
            stopped = canary_promote(spec_path=str(slower_path), poll_seconds=POLL)
            time.sleep(2.0)

    assert promoted.result is RolloutResult.PROMOTED, [r.row() for r in promoted.steps]
    assert [r.percent for r in promoted.steps if r.action is StepAction.ADVANCE] == BAD_STEPS["steps"]
    assert registry.alias_version(HOG_GOOD, CHAMPION) == world.challenger[HOG_GOOD]
    _rolled_back_at_first_step(registry, world, HOG_SLOWER, stopped, start, SLOWER_BREACHES, ledger(), model_events)


def test_too_little_traffic_holds_rather_than_aborts(world, registry):
    # The trickle's requests arrive a second apart at an idle process with cold caches and are several
    # times slower than the flood's that follow, so each arm's p95 sits on the edge between the two, and a
    # handful of trickle requests more on one arm moved it past the 2 ms floor once in CI (+4.4 ms, ratio
    # 2.23). Latency breaches have their own test (the forest, 21-37 ms slower); this one is about holding,
    # so its floor is well above that edge.
    spec_path = write_spec(world.tmp, HOLD, canary={"steps": [50, 100], "min_requests_per_arm": 20,
                                                   "min_step_seconds": 1, "max_hold_seconds": 120,
                                                   "min_p95_latency_increase_ms": 15})
    version = world.challenger[HOLD]

    def holds() -> list[StepRecord]:
        return _step_records(registry, HOLD, StepAction.HOLD)

    with ThreadPoolExecutor(1) as pool, _sender(world, HOLD, concurrency=1, send_labels=False) as sender:
        running = pool.submit(canary_promote, spec_path=str(spec_path), poll_seconds=POLL)
        sender.start(traffic(), rate_per_second=1.0, loop=True)  # a trickle: far from 20 per arm
        [first] = wait_until(holds, "the first hold", timeout=60)
        time.sleep(4 * POLL)
        assert first.code is StepCode.WAITING and Wait.REQUESTS in first.waiting, first.reason
        assert not running.done()  # still waiting, not aborted
        state = RolloutState.from_json(registry.get_version(HOLD, version).tags[ROLLOUT_TAG])
        assert state.phase is Phase.RAMPING and state.step == 0
        assert registry.get_traffic_plan(HOLD) == TrafficPlan(mode="canary", challenger_percent=50)
        sender.stop()
        sender.start(traffic(), loop=True)  # now enough traffic
        outcome = running.result(timeout=120)

    assert outcome.result is RolloutResult.PROMOTED, outcome.reason
    first_step = [r for r in outcome.steps if r.step == 0 and r.action is StepAction.ADVANCE]
    assert first_step and first_step[0].holds >= 3, outcome.steps
    assert registry.alias_version(HOLD, CHAMPION) == version


def _flow_process(spec_path: Path, tmp: Path) -> subprocess.Popen:
    """The canary flow in a process of its own, on this session's Prefect server and Steward home."""
    import os

    from prefect.settings import PREFECT_API_URL

    code = ("from flows.canary_promote import canary_promote; "
            f"canary_promote(spec_path={str(spec_path)!r}, poll_seconds={POLL}, lease_seconds=4.0)")
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "OMP_NUM_THREADS": "1"}
    log = (tmp / "killed-flow.log").open("w")
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPOSITORY, env=env, stdout=log, stderr=log)


def test_killed_promotion_is_refused_while_its_lease_holds_then_resumes_and_ends_consistent(world, registry):
    spec_path = write_spec(world.tmp, KILLED, canary={"steps": [5, 25, 50, 100], "min_requests_per_arm": 10,
                                                     "min_step_seconds": 1, "max_hold_seconds": 120})
    version = world.challenger[KILLED]

    def state() -> RolloutState | None:
        text = registry.get_version(KILLED, version).tags.get(ROLLOUT_TAG)
        return RolloutState.from_json(text) if text else None

    with _sender(world, KILLED, concurrency=2, send_labels=False) as sender:
        sender.start(traffic(), loop=True)
        process = _flow_process(spec_path, world.tmp)
        try:
            killed_at = wait_until(lambda: (s := state()) is not None and s.step >= 1 and s, "step 2", timeout=120)
        finally:
            process.kill()  # SIGKILL: no hook runs, Prefect still believes the run is running
            process.wait(timeout=30)
        stranded = state()
        assert stranded.phase is Phase.RAMPING and stranded.owner == killed_at.owner
        # Left as it was: one champion, the challenger at the killed step's weight, not more.
        assert registry.alias_version(KILLED, CHAMPION) == world.champion
        plan = registry.get_traffic_plan(KILLED)
        assert plan.challenger_percent <= [5, 25, 50, 100][stranded.step]

        with pytest.raises(RolloutRefused) as refused:
            canary_promote(spec_path=str(spec_path), poll_seconds=POLL)
        assert refused.value.code is RefusalCode.ALREADY_RUNNING and stranded.owner in str(refused.value)

        wait_until(lambda: (pd.Timestamp.now(tz="UTC") - stranded.heartbeat).total_seconds() > 4.5, "the lease")
        outcome = canary_promote(spec_path=str(spec_path), poll_seconds=POLL)

    assert outcome.result is RolloutResult.PROMOTED and outcome.resumed, outcome.reason
    assert outcome.rollout_id == stranded.id
    advanced = [r.percent for r in outcome.steps if r.action is StepAction.ADVANCE]
    assert advanced == [5, 25, 50, 100]  # the killed run's steps and the resumed ones, none repeated
    claims = [e for e in registry.history(KILLED) if e.details.get("rollout") == stranded.id
              and e.details.get("action") == "resume"]
    assert len(claims) == 1 and claims[0].details["owner"] != stranded.owner
    assert registry.alias_version(KILLED, CHAMPION) == version
    assert registry.alias_version(KILLED, CHALLENGER) is None
    assert registry.rollback_target(KILLED) == world.champion
    assert registry.get_traffic_plan(KILLED) == DEFAULT_PLAN
    assert state().phase is Phase.PROMOTED


def test_run_killed_after_deciding_to_roll_back_is_finished_by_the_next_run(world, registry, model_events):
    from tasks.common import ledger

    version = world.challenger[DECIDED]
    spec_path = write_spec(world.tmp, DECIDED)
    # What a run killed right after its decision leaves: the decision saved, the challenger still at its step.
    registry.set_traffic_plan(DECIDED, TrafficPlan(mode="canary", challenger_percent=10), reason="canary step 1")
    long_ago = pd.Timestamp.now(tz="UTC").to_pydatetime() - pd.Timedelta(minutes=10)
    decided = RolloutState.begin(DECIDED, RolloutKind.CANARY, version, world.champion, "a-run-that-died",
                                 now=long_ago, lease_seconds=60)
    registry.set_version_tags(DECIDED, version, {ROLLOUT_TAG: decided.evolve(
        phase=Phase.ROLLING_BACK, reason="breach: error rate: 0.4 vs 0").to_json()})

    outcome = canary_promote(spec_path=str(spec_path), poll_seconds=POLL)

    assert outcome.result is RolloutResult.ROLLED_BACK and outcome.resumed and outcome.rollout_id == decided.id
    assert outcome.reason == "breach: error rate: 0.4 vs 0"
    assert registry.get_traffic_plan(DECIDED) == DEFAULT_PLAN
    assert registry.alias_version(DECIDED, CHAMPION) == world.champion
    assert registry.alias_version(DECIDED, CHALLENGER) is None
    assert registry.get_version(DECIDED, version).stage == "rejected"
    assert RolloutState.from_json(registry.get_version(DECIDED, version).tags[ROLLOUT_TAG]).phase is Phase.ROLLED_BACK
    assert [e.incident for e in ledger().entries(DECIDED)] == [True]
    assert [e.event for e in model_events(DECIDED)] == [events.ROLLED_BACK]


def test_run_that_fails_mid_ramp_sends_the_challenger_no_more_traffic(world, registry, monkeypatch):
    from tasks.common import store

    def unreachable(*args, **kwargs):
        raise OSError("the prediction log is unreachable")

    monkeypatch.setattr(store(), "read_predictions", unreachable)
    spec_path = write_spec(world.tmp, FAILING, canary={"steps": [10, 100], "min_requests_per_arm": 5,
                                                      "min_step_seconds": 1})
    with pytest.raises(OSError, match="unreachable"):
        canary_promote(spec_path=str(spec_path), poll_seconds=POLL)

    version = world.challenger[FAILING]
    assert TrafficPlan(mode="canary", challenger_percent=10) in [
        TrafficPlan.model_validate_json(e.details["plan"]) for e in registry.history(FAILING)
        if e.kind is ChangeKind.TRAFFIC_PLAN]  # it had started its first step
    assert registry.get_traffic_plan(FAILING) == DEFAULT_PLAN
    state = RolloutState.from_json(registry.get_version(FAILING, version).tags[ROLLOUT_TAG])
    assert state.phase is Phase.ABORTED and "Failed" in state.reason
    # A failure is no evidence against the version: it stays the challenger, the champion is untouched.
    assert registry.alias_version(FAILING, CHALLENGER) == version
    assert registry.alias_version(FAILING, CHAMPION) == world.champion


def test_canary_command_refuses_a_version_that_cannot_be_rolled_out(world):
    from typer.testing import CliRunner

    from steward.cli import app

    spec_path = write_spec(world.tmp, DECIDED)
    result = CliRunner().invoke(app, ["canary", str(spec_path), "--version", world.champion])
    assert result.exit_code == 1
    assert f"{DECIDED} v{world.champion} is already the champion" in " ".join(result.output.split())


def test_a_champion_moved_while_a_step_is_judged_stops_the_canary_instead_of_rejecting_the_challenger(
    world, registry, monkeypatch, example_frame
):
    """The registry is read again after the verdict: a breach seen in a window that an operator's
    promotion (or rollback) changed under the rollout is not the challenger's to answer for."""
    import dataclasses

    import tasks.rollout as rollout_tasks
    from steward.delivery.decisions import StepDecision

    version = world.challenger[JUDGED]
    spec_path = write_spec(world.tmp, JUDGED)
    judge = rollout_tasks.analyse_step
    elsewhere = register(registry, JUDGED, train(example_frame.iloc[:4500]))

    def judged_while_the_champion_moves(spec, state, percent, plan, baseline, references=None):
        analysis = judge(spec, state, percent, plan, baseline, references)
        registry.promote(JUDGED, elsewhere, reason="an operator promotes another version")
        moved = StepDecision(StepAction.ROLLBACK, StepCode.BREACH, "breach: scores moved", (),
                             breaches=(Check.SCORE_DISTRIBUTION,))
        return dataclasses.replace(analysis, decision=moved)

    monkeypatch.setattr(rollout_tasks, "analyse_step", judged_while_the_champion_moves)
    outcome = canary_promote(spec_path=str(spec_path), poll_seconds=POLL)

    assert outcome.result is RolloutResult.ABORTED, outcome.reason
    assert outcome.interruption is InterruptionCode.CHAMPION_CHANGED, outcome.reason
    assert registry.get_version(JUDGED, version).tags.get("steward.stage") != "rejected"
    assert registry.alias_version(JUDGED, CHAMPION) == elsewhere
