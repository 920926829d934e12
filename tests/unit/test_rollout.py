"""The rollout lock's decisions, resume decisions, timeline and smoke-test types, on plain values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from steward.delivery.blue_green import SmokeReport, SmokeResult, smoke_record, valid_scores, watch_plan
from steward.delivery.decisions import ArmEvidence, Check, StepAction, StepCode, StepDecision, Wait
from steward.delivery.lock import (
    Candidate,
    LeaseStatus,
    Liveness,
    StartAction,
    claim_holds,
    interruption,
    liveness,
    plan_start,
)
from steward.delivery.rollout import (
    ROLLOUT_TAG,
    InterruptionCode,
    OwnerRun,
    Phase,
    RefusalCode,
    RolloutError,
    RolloutKind,
    RolloutResult,
    RolloutState,
    StepWindow,
    active_rollouts,
    baseline_window,
    lease_for,
    should_record_hold,
)
from steward.delivery.timeline import RolloutOutcome, StepRecord, step_record, timeline
from steward.registry.history import AuditEntry, ChangeKind
from steward.spec import CanaryPlan

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def state(**changes) -> RolloutState:
    base = RolloutState.begin("m", RolloutKind.CANARY, "2", "1", "run-a", now=T0, lease_seconds=60)
    return base.evolve(**changes)


def candidate(**changes) -> Candidate:
    values = {"version": "2", "champion": "1", "challenger": "2", "validation_status": "passed", "stage": "validated"}
    return Candidate(**{**values, **changes})


ALIVE = Liveness(LeaseStatus.HELD, "flow run run-a is running it (heartbeat 3 s ago)")
STALE = Liveness(LeaseStatus.OWNER_ENDED, "its flow run run-a has ended")


def test_state_round_trips_through_its_tag_text():
    original = state(phase=Phase.PROMOTING, step=3, windows=(StepWindow(25.0, T0, T0 + timedelta(seconds=9)),),
                     reason="passed")
    assert RolloutState.from_json(original.to_json()) == original


def test_the_tag_keeps_its_name_so_rollouts_recorded_earlier_are_still_found():
    assert ROLLOUT_TAG == "steward.rollout"


def test_unreadable_tag_says_what_to_do():
    with pytest.raises(RolloutError, match="delete the tag"):
        RolloutState.from_json('{"id": "x"}')


def test_state_too_large_for_a_tag_is_refused_rather_than_truncated():
    windows = tuple(StepWindow(float(i), T0, T0) for i in range(60))
    with pytest.raises(RolloutError, match="fewer canary steps"):
        state(windows=windows).to_json()


def test_only_unfinished_rollouts_are_active():
    tags = {
        "1": {},
        "2": {ROLLOUT_TAG: state().to_json()},
        "3": {ROLLOUT_TAG: state(version="3", phase=Phase.PROMOTED).to_json()},
    }
    assert [s.version for s in active_rollouts(tags)] == ["2"]


@pytest.mark.parametrize(
    ("owner", "age", "status"),
    [
        (OwnerRun.RUNNING, 5, LeaseStatus.HELD),
        (OwnerRun.UNKNOWN, 5, LeaseStatus.HELD),
        (OwnerRun.ENDED, 5, LeaseStatus.OWNER_ENDED),
        (OwnerRun.RUNNING, 61, LeaseStatus.LEASE_EXPIRED),  # killed: Prefect still says running
    ],
)
def test_liveness_needs_a_running_owner_and_a_fresh_heartbeat(owner, age, status):
    verdict = liveness(state(), owner, T0 + timedelta(seconds=age))
    assert verdict.status is status and verdict.alive is (status is LeaseStatus.HELD)
    assert verdict.reason


def test_second_rollout_is_refused_while_one_is_alive_with_what_to_do():
    plan = plan_start("m", RolloutKind.CANARY, candidate(version="3", challenger="3"), [(state(), ALIVE)], "run-b")
    assert plan.action is StartAction.REFUSE and plan.refusal is RefusalCode.ALREADY_RUNNING
    assert "run-a" in plan.reason  # the sentence names the run that holds the lock


def test_stale_rollout_of_the_same_version_is_resumed_at_its_step():
    stale = state(step=2, owner="dead")
    plan = plan_start("m", RolloutKind.CANARY, candidate(), [(stale, STALE)], "run-b")
    assert plan.action is StartAction.RESUME and plan.state == stale and plan.cleanup == ()
    assert plan.state.step == 2 and plan.refusal is None


def test_own_lock_after_a_flow_retry_is_resumed_not_refused():
    plan = plan_start("m", RolloutKind.CANARY, candidate(), [(state(step=1), ALIVE)], "run-a")
    assert plan.action is StartAction.RESUME


@pytest.mark.parametrize(("phase", "action"), [(Phase.PROMOTING, StartAction.FINISH_PROMOTION),
                                               (Phase.ROLLING_BACK, StartAction.FINISH_ROLLBACK)])
def test_a_decision_taken_before_a_crash_is_finished_first(phase, action):
    stale = state(phase=phase, owner="dead")
    plan = plan_start("m", RolloutKind.CANARY, candidate(version="5", challenger="5"), [(stale, STALE)], "run-b")
    assert plan.action is action and plan.state == stale


@pytest.mark.parametrize("changed", [
    {"version": "3", "challenger": "3"},  # a newer candidate was validated meanwhile
    {"champion": "7"},  # someone promoted by hand
])
def test_stale_rollout_that_cannot_resume_is_cleaned_up_before_a_fresh_start(changed):
    stale = state(owner="dead", step=1)
    plan = plan_start("m", RolloutKind.CANARY, candidate(**changed), [(stale, STALE)], "run-b")
    assert plan.action is StartAction.START and plan.cleanup == (stale,)


def test_stale_canary_is_not_resumed_as_a_blue_green():
    plan = plan_start("m", RolloutKind.BLUE_GREEN, candidate(), [(state(owner="dead"), STALE)], "run-b")
    assert plan.action is StartAction.START and len(plan.cleanup) == 1


@pytest.mark.parametrize(("changes", "code"), [
    ({"version": None, "challenger": None}, RefusalCode.NO_CHALLENGER),
    ({"champion": None}, RefusalCode.NO_CHAMPION),
    ({"version": "1"}, RefusalCode.ALREADY_CHAMPION),
    ({"validation_status": "failed"}, RefusalCode.NOT_VALIDATED),
    ({"stage": "rejected"}, RefusalCode.REJECTED_EARLIER),
    ({"version": "4"}, RefusalCode.NOT_THE_CHALLENGER),
])
def test_a_version_that_cannot_be_rolled_out_is_refused_with_the_reason(changes, code):
    plan = plan_start("m", RolloutKind.CANARY, candidate(**changes), [], "run-b")
    assert plan.action is StartAction.REFUSE and plan.refusal is code and plan.reason


def test_of_two_simultaneous_claims_the_earlier_wins():
    first = state(owner="run-a", claimed=T0)
    second = state(id="other", version="3", owner="run-b", claimed=T0 + timedelta(milliseconds=5))
    both = [(first, ALIVE), (second, ALIVE)]
    assert claim_holds(first, both) is None
    lost = claim_holds(second, both)
    assert lost.code is RefusalCode.CLAIMED_FIRST and "run-a" in lost.reason


def test_a_claim_overwritten_by_another_run_is_lost():
    mine = state(owner="run-a")
    theirs = mine.evolve(owner="run-b", id="zzz")
    lost = claim_holds(mine, [(theirs, ALIVE)])
    assert lost.code is RefusalCode.CLAIM_OVERWRITTEN and "run-b" in lost.reason


@pytest.mark.parametrize(("stored", "champion", "challenger", "expected"), [
    ("same", "1", "2", None),
    ("other-owner", "1", "2", InterruptionCode.TAKEN_OVER),
    ("ended", "1", "2", InterruptionCode.ENDED_FROM_OUTSIDE),
    ("same", "0", "2", InterruptionCode.CHAMPION_CHANGED),
    ("same", "1", None, InterruptionCode.CHALLENGER_CHANGED),
    (None, "1", "2", InterruptionCode.RECORD_REPLACED),
])
def test_interruption_names_what_changed_under_the_rollout(stored, champion, challenger, expected):
    mine = state()
    record = {"same": mine, "other-owner": mine.evolve(owner="run-z"), None: None,
              "ended": mine.evolve(phase=Phase.ABORTED, reason="stopped by a rollback")}[stored]
    found = interruption(mine, record, champion, challenger)
    assert (found is None) if expected is None else (found.code is expected and found.reason)


def test_next_step_closes_the_window_and_the_full_step_is_judged_against_it():
    later = T0 + timedelta(seconds=30)
    moved = state().next_step(later, 50.0)
    assert moved.step == 1 and moved.step_started == later
    assert moved.windows == (StepWindow(50.0, T0, later),)
    assert baseline_window(moved, later + timedelta(seconds=5), 10) == (T0, later)


def test_without_a_previous_window_the_baseline_is_the_period_just_before():
    start, end = baseline_window(state(), T0 + timedelta(seconds=4), 10)
    assert end == T0 and start == T0 - timedelta(seconds=10)


def test_holds_are_recorded_once_then_at_most_every_minute():
    assert should_record_hold(None, T0)
    assert not should_record_hold(T0, T0 + timedelta(seconds=30))
    assert should_record_hold(T0, T0 + timedelta(seconds=60))
    assert should_record_hold(T0, T0 + timedelta(seconds=5), code_changed=True)  # e.g. the step was extended


def test_lease_outlives_several_polls_and_refuses_one_that_would_not():
    assert lease_for(5.0) == 60.0 and lease_for(30.0) == 150.0 and lease_for(0.5, 4.0) == 4.0
    with pytest.raises(RolloutError, match="twice poll_seconds"):
        lease_for(5.0, 8.0)


def evidence(requests: int, latency: float) -> ArmEvidence:
    return ArmEvidence(requests, 1, latencies_ms=np.full(requests, latency), scores=np.full(requests, 0.3),
                       losses=np.array([0.0, 1.0, 0.0, 0.0]))


def test_step_record_round_trips_through_the_audit_history():
    decision = StepDecision(StepAction.ADVANCE, StepCode.NO_BREACH, "no breach on the step's evidence: error rate ...",
                            ("error rate",))
    record = step_record(state(step=1, step_started=T0), 5.0, decision,
                         {"challenger": evidence(40, 12.0), "champion": evidence(800, 10.0)},
                         now=T0 + timedelta(seconds=8), holds=3, baseline=False)
    assert record.challenger.requests == 40 and record.challenger.p95_latency_ms == 12.0
    assert record.champion.loss == 0.25 and record.champion.labelled == 4
    entry = AuditEntry(T0, "m", ChangeKind.DELIVERY_DECISION, "steward", "x", details=record.details())
    other = AuditEntry(T0, "m", ChangeKind.DELIVERY_DECISION, "steward", "y", details={"rollout": "else"})
    assert timeline([other, entry], record.rollout) == [record]
    row = record.row()
    assert row["step"] == 2 and row["traffic"] == "5%" and row["decision"] == "advance" and row["holds"] == 3
    assert timeline([entry], record.rollout)[0].code is StepCode.NO_BREACH


def test_the_codes_of_a_decision_travel_with_its_record_and_old_records_still_read():
    decision = StepDecision(StepAction.ROLLBACK, StepCode.BREACH, "breach: ...", (), breaches=(Check.LATENCY,))
    record = step_record(state(), 1.0, decision, {"challenger": evidence(5, 1), "champion": evidence(5, 1)},
                         now=T0, holds=0, baseline=False)
    again = StepRecord.from_details(record.details())
    assert again == record and again.breaches == (Check.LATENCY,)
    waiting = StepDecision(StepAction.HOLD, StepCode.WAITING, "waiting", (), waiting=(Wait.REQUESTS,))
    held = step_record(state(), 1.0, waiting, {"challenger": evidence(5, 1), "champion": evidence(5, 1)},
                       now=T0, holds=1, baseline=False)
    assert StepRecord.from_details(held.details()).waiting == (Wait.REQUESTS,)
    import json

    old = json.loads(record.details()["record"])
    for key in ("code", "breaches", "waiting"):
        del old[key]
    before_codes = StepRecord.from_details({"rollout": record.rollout, "record": json.dumps(old)})
    assert before_codes.code is None and before_codes.breaches == () and before_codes.action is StepAction.ROLLBACK


def test_outcome_markdown_has_a_row_per_step():
    decision = StepDecision(StepAction.ROLLBACK, StepCode.BREACH, "breach: error rate | rose", (),
                            breaches=(Check.ERROR_RATE,))
    record = step_record(state(), 1.0, decision, {"challenger": evidence(5, 1), "champion": evidence(50, 1)},
                         now=T0, holds=0, baseline=False)
    outcome = RolloutOutcome("m", RolloutKind.CANARY, "2", "1", RolloutResult.ROLLED_BACK, "breach", "id",
                             (record,))
    text = outcome.to_markdown()
    assert "v2 rolled back, v1 stays champion" in text and "| 1 | 1% |" in text and "error rate / rose" in text


def smoke(case="row", status=200, version="2", arm="challenger", rows=1, answered=1, valid=True, must=True):
    return SmokeResult(case, rows, must, status, version, arm, answered, valid)


def test_smoke_passes_only_when_the_idle_colour_answers_everything_admissible():
    assert SmokeReport("2", (smoke(), smoke("empty_batch", 400, None, None, 0, 0, False, must=False))).passed
    failing = {
        "5xx": smoke(status=500),
        "refused": smoke(status=422, version=None, arm=None, answered=0),
        "wrong arm": smoke(arm="champion", version="1"),
        "missing rows": smoke(rows=3, answered=2),
        "bad scores": smoke(valid=False),
        "no answer": smoke(status=0, version=None, arm=None, answered=0),
    }
    for name, result in failing.items():
        report = SmokeReport("2", (smoke(), result))
        assert not report.passed and report.failures, name
        assert smoke_record(state(), report, T0).code is StepCode.SMOKE_FAILED
    assert not SmokeReport("2", ()).passed
    passed = smoke_record(state(), SmokeReport("2", (smoke(),)), T0)
    assert passed.code is StepCode.SMOKE_PASSED and passed.action is StepAction.ADVANCE


def test_scores_must_be_one_finite_value_per_row():
    assert valid_scores([0.1, 0.9], 2) and valid_scores(None, 3)
    assert not valid_scores([0.1, None], 2) and not valid_scores([0.1], 2) and not valid_scores([float("inf")], 1)


def test_watch_plan_uses_the_watch_as_the_minimum_and_keeps_the_thresholds():
    plan = watch_plan(CanaryPlan(max_hold_seconds=100), 300)
    assert plan.min_step_seconds == 300 and plan.max_hold_seconds == 600
    assert plan.max_p95_latency_factor == CanaryPlan().max_p95_latency_factor


def test_blue_green_is_exposed_only_after_its_switch():
    bg = RolloutState.begin("m", RolloutKind.BLUE_GREEN, "2", "1", "r", now=T0, lease_seconds=60)
    assert not bg.exposed and bg.evolve(step=1).exposed and state().exposed


def test_step_record_details_stay_small_enough_for_a_tag():
    decision = StepDecision(StepAction.HOLD, StepCode.WAITING, "waiting " * 500, (), waiting=tuple(Wait))
    record = step_record(state(), 1.0, decision, {"challenger": evidence(5, 1), "champion": evidence(5, 1)},
                         now=T0, holds=1, baseline=True)
    assert len(record.details()["record"]) < 2000
    assert StepRecord.from_details(record.details()).baseline is True


def test_thin_baseline_reaches_back_for_enough_champion_requests():
    import pandas as pd

    from steward.delivery.rollout import baseline_requests

    times = pd.date_range(T0, periods=10, freq="1s", tz="UTC")
    rows = pd.DataFrame({"request_id": [f"r{i}" for i in range(10)], "time": times})
    start = T0 + timedelta(seconds=7)
    assert list(baseline_requests(rows, start, 2)["request_id"]) == ["r7", "r8", "r9"]  # the window suffices
    assert list(baseline_requests(rows, start, 5)["request_id"]) == ["r5", "r6", "r7", "r8", "r9"]
    assert len(baseline_requests(rows, start, 50)) == 10 and baseline_requests(rows.iloc[:0], start, 5).empty


def test_withdrawing_resets_only_a_plan_this_kind_of_rollout_sets():
    from steward.delivery.rollout import champion_only, routes_to_challenger
    from steward.registry.traffic import DEFAULT_PLAN, Arm, TrafficPlan

    canary, blue_green = RolloutKind.CANARY, RolloutKind.BLUE_GREEN
    assert champion_only(canary) == DEFAULT_PLAN and champion_only(blue_green).live is Arm.CHAMPION
    assert routes_to_challenger(TrafficPlan(challenger_percent=10), canary)
    assert not routes_to_challenger(DEFAULT_PLAN, canary)
    assert not routes_to_challenger(TrafficPlan(mode="ab", challenger_percent=50, sticky_key="field:entity_id"), canary)
    assert routes_to_challenger(TrafficPlan(mode="blue_green", live="challenger"), blue_green)
    assert not routes_to_challenger(TrafficPlan(challenger_percent=10), blue_green)
    assert not routes_to_challenger(None, canary)


def test_a_roll_back_is_an_incident_only_when_the_challenger_took_traffic():
    from steward import events
    from steward.delivery.timeline import roll_back_record
    from steward.findings import Priority

    canary = roll_back_record(state())
    assert canary.incident and canary.priority is Priority.HIGH and canary.event == events.ROLLED_BACK
    live = roll_back_record(RolloutState.begin("m", RolloutKind.BLUE_GREEN, "2", "1", "r", now=T0,
                                               lease_seconds=60).evolve(step=1))
    assert live.incident and live.priority is Priority.CRITICAL and live.result is RolloutResult.ROLLED_BACK
    smoke = roll_back_record(RolloutState.begin("m", RolloutKind.BLUE_GREEN, "2", "1", "r", now=T0, lease_seconds=60))
    assert not smoke.incident and smoke.event == events.CANDIDATE_REJECTED and smoke.result is RolloutResult.REJECTED
