"""Blue-green and the rollback flow against a real gateway over HTTP, with traffic from the scenario simulator.

Blue-green: a good challenger passes the smoke test through the gateway, is switched live and promoted; a
slower one passes the smoke test (it answers correctly) but is switched back by the watch; one that raises on
an unseen category fails the smoke test and never takes traffic. Rollback: `steward rollback` restores the
previous champion while a canary is in progress, and every request answered after it returns comes from it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml
from delivery_fixtures import (
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

from flows.blue_green import blue_green
from flows.canary_promote import canary_promote
from steward import events
from steward.delivery.decisions import Check, StepAction, StepCode
from steward.delivery.rollout import ROLLOUT_TAG, InterruptionCode, Phase, RolloutResult, RolloutState
from steward.findings import Priority
from steward.registry.history import CHALLENGER, CHAMPION, ChangeKind
from steward.registry.traffic import DEFAULT_PLAN, Arm, TrafficMode, TrafficPlan
from tests.support.polling import wait_until

pytestmark = pytest.mark.slow

GOOD, SLOW, BROKEN, ROLLBACK, MOVED = "bg-good", "bg-slow", "bg-broken", "rollback-model", "bg-moved"
WATCH = {"min_requests_per_arm": 30, "min_step_seconds": 2, "max_hold_seconds": 60}
POLL = 0.5


@dataclass(frozen=True)
class World:
    tmp: Path
    gateway: GatewayProcess
    champion: dict[str, str]
    challenger: dict[str, str]


@pytest.fixture(scope="module")
def world(registry, example_frame, tmp_path_factory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("blue-green")
    champion = train(example_frame.iloc[:4500])
    good = train(example_frame.iloc[1500:], params={"estimator": "sklearn.ensemble.HistGradientBoostingClassifier",
                                                    "max_iter": 40, "random_state": 1})
    models = [GOOD, SLOW, BROKEN, ROLLBACK, MOVED]
    champions = {name: register(registry, name, champion) for name in models}
    for name, version in champions.items():
        registry.promote(name, version, reason="blue-green tests: champion")
    gateway = launch_gateway(models, tmp)
    try:
        challengers = {
            GOOD: good,
            SLOW: train(example_frame.iloc[:4500], params={"estimator": "sklearn.ensemble.RandomForestClassifier",
                                                           "n_estimators": 300, "max_depth": 8, "n_jobs": 1,
                                                           "random_state": 0}),
            BROKEN: train(example_frame.iloc[:4500], factory="delivery_fixtures:strict_pipeline"),
        }
        challengers[MOVED] = challengers[BROKEN]
        versions = {}
        for name, trained in challengers.items():
            versions[name] = register(registry, name, trained)
            registry.set_alias(name, CHALLENGER, versions[name], reason="blue-green tests: validated challenger",
                               kind=ChangeKind.ASSIGN)
        gateway.wait_ready()
        # The rollback model's history as in production: the gateway served v1, then v2 was promoted over it
        # (v1 stays warm in the gateway), and v3 waits as the challenger.
        champions[ROLLBACK] = register(registry, ROLLBACK, good)
        registry.promote(ROLLBACK, champions[ROLLBACK], reason="blue-green tests: second champion")
        with gateway.admin() as admin:
            wait_until(lambda: _serving(admin, ROLLBACK) == champions[ROLLBACK], "the gateway to serve v2")
        versions[ROLLBACK] = register(registry, ROLLBACK, good)
        registry.set_alias(ROLLBACK, CHALLENGER, versions[ROLLBACK], reason="blue-green tests: validated challenger",
                           kind=ChangeKind.ASSIGN)
        yield World(tmp, gateway, champions, versions)
    finally:
        gateway.stop()


def _serving(admin, model: str) -> str | None:
    models = {m["model"]: m for m in admin.get("/admin/status").json()["models"]}
    return (models[model].get("champion") or {}).get("version")


def _sender(world: World, model: str, **options):
    from steward.simulation.http_traffic import TrafficSender
    from steward.spec import parse_spec

    return TrafficSender(world.gateway.url, parse_spec(spec_document(model)), send_labels=False, **options)


def _plans(registry, model: str) -> list[TrafficPlan]:
    return [TrafficPlan.model_validate_json(e.details["plan"]) for e in registry.history(model)
            if e.kind is ChangeKind.TRAFFIC_PLAN]


def test_good_candidate_passes_the_smoke_test_is_switched_and_promoted(world, registry, admin_token, model_events):
    # The watch judges latency only against the SLO (no champion traffic alongside), and at load 12 on two
    # cores the example's 25 ms is missed by any model (48.8 ms measured): this test is about the switch and
    # the promotion, so its SLO is one the machine can keep.
    document = spec_document(GOOD, canary=WATCH)
    document["slo"]["p95_latency_ms"] = 500
    spec_path = world.tmp / f"{GOOD}.yaml"
    spec_path.write_text(yaml.safe_dump(document, sort_keys=False))
    with _sender(world, GOOD, concurrency=2) as sender:
        sender.start(traffic(), loop=True)
        time.sleep(2.0)  # the champion's baseline: traffic before the switch
        outcome = blue_green(spec_path=str(spec_path), gateway_url=world.gateway.url, poll_seconds=POLL)

    assert outcome.result is RolloutResult.PROMOTED, outcome.reason
    smoke, watch = outcome.steps[0], outcome.steps[-1]
    assert smoke.percent == 0 and smoke.code is StepCode.SMOKE_PASSED and smoke.challenger.requests >= 25
    assert watch.percent == 100 and watch.baseline and watch.challenger.requests >= 30
    version = world.challenger[GOOD]
    assert registry.alias_version(GOOD, CHAMPION) == version
    assert registry.alias_version(GOOD, CHALLENGER) is None
    assert registry.rollback_target(GOOD) == world.champion[GOOD]
    assert registry.get_traffic_plan(GOOD) == DEFAULT_PLAN
    assert TrafficPlan(mode=TrafficMode.BLUE_GREEN, live=Arm.CHALLENGER) in _plans(registry, GOOD)  # one switch
    promoted = [e for e in model_events(GOOD) if e.event == events.PROMOTED]
    assert promoted and promoted[0].payload["version"] == version and promoted[0].payload["rollout"] == "blue_green"


def test_slower_candidate_is_switched_back_by_the_watch(world, registry, admin_token, model_events):
    from tasks.common import ledger

    # In the watch no champion traffic runs alongside, so latency is judged against the SLO: here 10 ms, which
    # the champion's answers (1-5 ms through the gateway) meet and the forest's (22-38 ms measured) do not.
    document = spec_document(SLOW, canary=WATCH)
    document["slo"]["p95_latency_ms"] = 10
    spec_path = world.tmp / f"{SLOW}.yaml"
    spec_path.write_text(yaml.safe_dump(document, sort_keys=False))
    start = pd.Timestamp.now(tz="UTC")
    with _sender(world, SLOW, concurrency=1) as sender:  # one connection: see test_canary's slow test
        sender.start(traffic(), loop=True)
        time.sleep(2.0)
        outcome = blue_green(spec_path=str(spec_path), gateway_url=world.gateway.url, poll_seconds=POLL)
        time.sleep(2.0)

    assert outcome.result is RolloutResult.ROLLED_BACK, outcome.reason
    assert outcome.steps[0].action is StepAction.ADVANCE  # it answered the smoke test correctly
    watch = outcome.steps[-1]
    assert watch.code is StepCode.BREACH and Check.LATENCY in watch.breaches, watch.reason
    assert watch.challenger.p95_latency_ms > 1.5 * watch.champion.p95_latency_ms
    # Switched back: everything answered a second after the switch back came from the champion.
    assert registry.get_traffic_plan(SLOW) == TrafficPlan(mode=TrafficMode.BLUE_GREEN, live=Arm.CHAMPION)
    after = pd.Timestamp(outcome.withdrawn_at) + pd.Timedelta(seconds=1)
    wait_for_log(SLOW, after)
    later = served(SLOW, after)
    assert len(later) and (later["version"] == world.champion[SLOW]).all()
    live = served(SLOW, start, after)
    assert (live["arm"] == CHALLENGER).any()  # it was live during the watch
    assert registry.alias_version(SLOW, CHAMPION) == world.champion[SLOW]
    assert registry.get_version(SLOW, world.challenger[SLOW]).stage == "rejected"
    [incident] = [e for e in ledger().entries(SLOW) if e.incident]
    assert incident.priority is Priority.CRITICAL and incident.detail == outcome.reason
    assert any(e.event == events.ROLLED_BACK for e in model_events(SLOW))


def test_candidate_failing_the_smoke_test_never_takes_traffic(world, registry, admin_token, model_events):
    from tasks.common import ledger

    spec_path = write_spec(world.tmp, BROKEN, canary=WATCH)
    outcome = blue_green(spec_path=str(spec_path), gateway_url=world.gateway.url, poll_seconds=POLL)

    assert outcome.result is RolloutResult.REJECTED, outcome.reason
    assert [(r.step, r.code) for r in outcome.steps] == [(0, StepCode.SMOKE_FAILED)]
    assert "unseen_category" in outcome.reason and "500" in outcome.reason  # the failing case and its answer
    assert not any(p.needs_challenger for p in _plans(registry, BROKEN))  # never switched
    version = world.challenger[BROKEN]
    assert registry.get_version(BROKEN, version).stage == "rejected"
    assert registry.alias_version(BROKEN, CHALLENGER) is None
    assert registry.alias_version(BROKEN, CHAMPION) == world.champion[BROKEN]
    [entry] = ledger().entries(BROKEN)
    assert not entry.incident and "smoke test" in entry.title
    rejected = [e for e in model_events(BROKEN) if e.event == events.CANDIDATE_REJECTED]
    assert rejected and rejected[0].payload["version"] == version


def test_a_champion_moved_during_the_smoke_test_stops_the_blue_green_instead_of_rejecting_the_challenger(
    world, registry, admin_token, monkeypatch, example_frame
):
    """As for a canary's step: the registry is read again after the smoke test, so a failure seen while
    an operator promoted another version is not the challenger's to answer for."""
    import flows.blue_green as blue_green_flow

    version = world.challenger[MOVED]
    spec_path = write_spec(world.tmp, MOVED, canary=WATCH)
    elsewhere = register(registry, MOVED, train(example_frame.iloc[:4500]))
    smoke = blue_green_flow.smoke_test

    def smoke_tested_while_the_champion_moves(spec, gateway_url, state):
        report = smoke(spec, gateway_url, state)
        registry.promote(MOVED, elsewhere, reason="an operator promotes another version")
        return report

    monkeypatch.setattr(blue_green_flow, "smoke_test", smoke_tested_while_the_champion_moves)
    outcome = blue_green(spec_path=str(spec_path), gateway_url=world.gateway.url, poll_seconds=POLL)

    assert outcome.result is RolloutResult.ABORTED, outcome.reason
    assert outcome.interruption is InterruptionCode.CHAMPION_CHANGED, outcome.reason
    assert registry.get_version(MOVED, version).stage != "rejected"
    assert registry.alias_version(MOVED, CHAMPION) == elsewhere
    assert not any(p.needs_challenger for p in _plans(registry, MOVED))  # never switched


def test_rollback_command_restores_the_previous_champion_before_it_returns_and_stops_a_canary(
    world, registry, admin_token, model_events
):
    from typer.testing import CliRunner

    from steward.cli import app
    from tasks.common import ledger

    current, waiting = world.champion[ROLLBACK], world.challenger[ROLLBACK]
    previous = registry.rollback_target(ROLLBACK)
    assert previous is not None and previous != current
    # A canary that will hold (it needs more traffic than the test sends) is running when the rollback comes.
    spec_path = write_spec(world.tmp, ROLLBACK, canary={"steps": [5, 100], "min_requests_per_arm": 100_000,
                                                        "min_step_seconds": 1, "max_hold_seconds": 120})
    with ThreadPoolExecutor(1) as pool, _sender(world, ROLLBACK, concurrency=2) as sender:
        sender.start(traffic(), loop=True)
        canary = pool.submit(canary_promote, spec_path=str(spec_path), poll_seconds=POLL)
        wait_until(lambda: registry.get_traffic_plan(ROLLBACK).challenger_percent == 5, "the canary's first step")
        result = CliRunner().invoke(app, ["rollback", ROLLBACK, "--reason", "error surge after the release"])
        returned = pd.Timestamp.now(tz="UTC")
        stopped = canary.result(timeout=60)
        time.sleep(2.0)

    assert result.exit_code == 0, result.output
    assert f"rolled back from v{current} to v{previous}" in " ".join(result.output.split())
    [entry] = [e for e in registry.history(ROLLBACK) if e.kind is ChangeKind.ROLLBACK]
    assert entry.from_version == current and entry.to_version == previous
    assert entry.reason == "error surge after the release" and entry.actor
    assert registry.alias_version(ROLLBACK, CHAMPION) == previous
    assert registry.get_traffic_plan(ROLLBACK) == DEFAULT_PLAN

    # Every request received after the command returned was answered by the restored champion: the rollback
    # told the gateway and waited for it, so this holds however long a busy machine makes the registry writes.
    assert "1 gateway(s) acknowledged" in " ".join(result.output.split())
    after = returned
    wait_for_log(ROLLBACK, after)
    later = served(ROLLBACK, after)
    assert len(later) and (later["version"] == previous).all() and (later["arm"] == CHAMPION).all()
    before = served(ROLLBACK, after - pd.Timedelta(seconds=30), entry.time)
    assert share_within(int((before["arm"] == CHALLENGER).sum()), len(before), 5)

    # The canary in progress was stopped: its challenger lost the alias and its run ended without touching more.
    # It stops on seeing the rollback's mark on its record, or the champion moved (whichever it reads first).
    assert stopped.result is RolloutResult.ABORTED, stopped.reason
    assert registry.alias_version(ROLLBACK, CHALLENGER) is None
    state = RolloutState.from_json(registry.get_version(ROLLBACK, waiting).tags[ROLLOUT_TAG])
    assert state.phase is Phase.ABORTED

    [incident] = [e for e in ledger().entries(ROLLBACK) if e.incident]
    assert incident.priority is Priority.CRITICAL and "error surge" in incident.detail
    assert f"v{current} to v{previous}" in incident.title
    rolled_back = [e for e in model_events(ROLLBACK) if e.event == events.ROLLED_BACK]
    assert rolled_back and rolled_back[0].payload == {
        "model": ROLLBACK, "version": previous, "from_version": current, "champion_version": previous,
        "reason": "error surge after the release", "actor": entry.actor,
    }
