"""The rollout lock's protocol (claim, settle, re-read, heartbeat, lease expiry, release) on an in-memory tag store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from steward.delivery.lock import Candidate, RolloutLock, StartAction, StartPlan
from steward.delivery.rollout import (
    ROLLOUT_TAG,
    InterruptionCode,
    OwnerRun,
    Phase,
    RefusalCode,
    RolloutInterrupted,
    RolloutKind,
    RolloutRefused,
    RolloutState,
)

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
CANARY = RolloutKind.CANARY


@dataclass(frozen=True)
class Version:
    version: str
    tags: dict[str, str]


@dataclass
class MemoryTags:
    """The registry's version tags, in memory (what ``RolloutLock`` needs of a registry)."""

    versions: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)

    def list_versions(self, model: str) -> list[Version]:
        return [Version(v, dict(tags)) for v, tags in self.versions.get(model, {}).items()]

    def get_version(self, model: str, version: str) -> Version:
        return Version(version, dict(self.versions[model][version]))

    def set_version_tags(self, model: str, version: str, tags: dict[str, str]) -> None:
        self.versions.setdefault(model, {}).setdefault(version, {}).update(tags)


@dataclass
class Clock:
    now: datetime = T0
    on_sleep: list[Callable[[], None]] = field(default_factory=list)  # run once each, at the next sleeps

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        if self.on_sleep:
            self.on_sleep.pop(0)()


@pytest.fixture
def tags() -> MemoryTags:
    return MemoryTags({"m": {"1": {}, "2": {}, "3": {}}})


@pytest.fixture
def clock() -> Clock:
    return Clock()


ENDED: set[str] = set()


def owner_run(owner: str) -> OwnerRun:
    return OwnerRun.ENDED if owner in ENDED else OwnerRun.RUNNING


def lock_on(tags: MemoryTags, clock: Clock) -> RolloutLock:
    return RolloutLock(tags, owner_run, now=clock, sleep=clock.sleep)


def candidate(version: str = "2", challenger: str | None = None) -> Candidate:
    return Candidate(version, "1", challenger or version, "passed", "validated")


def claim(lock: RolloutLock, owner: str, version: str = "2", lease: float = 60.0) -> RolloutState:
    wanted = candidate(version)
    return lock.claim(lock.plan("m", CANARY, wanted, owner), "m", CANARY, wanted, owner, lease)


def test_a_claim_writes_the_tag_waits_the_settle_time_and_holds(tags, clock):
    lock = lock_on(tags, clock)
    mine = claim(lock, "run-a")
    assert clock.now == T0 + timedelta(seconds=1)  # re-read only after the settle time
    assert RolloutState.from_json(tags.versions["m"]["2"][ROLLOUT_TAG]) == mine
    assert mine.owner == "run-a" and mine.phase is Phase.RAMPING and mine.claimed == T0
    [(active, live)] = lock.active("m")
    assert active == mine and live.alive


def test_a_second_claim_while_the_first_is_alive_is_refused_with_a_code(tags, clock):
    lock = lock_on(tags, clock)
    claim(lock, "run-a")
    with pytest.raises(RolloutRefused) as refused:
        claim(lock, "run-b", version="3")
    assert refused.value.code is RefusalCode.ALREADY_RUNNING and "run-a" in str(refused.value)
    assert ROLLOUT_TAG not in tags.versions["m"]["3"]  # nothing written by the refused run


def test_heartbeats_renew_the_lease_and_a_silent_owner_loses_it(tags, clock):
    lock = lock_on(tags, clock)
    mine = claim(lock, "run-a", lease=60)
    clock.now += timedelta(seconds=50)
    mine = lock.heartbeat(mine, "1", "2")
    assert mine.heartbeat == clock.now and lock.read("m", "2").heartbeat == clock.now
    clock.now += timedelta(seconds=50)  # 100 s after the claim, 50 s after the heartbeat: still held
    assert lock.active("m")[0][1].alive
    clock.now += timedelta(seconds=11)  # no heartbeat for 61 s: the lease has expired
    assert not lock.active("m")[0][1].alive


def test_a_stale_lease_is_taken_over_and_its_old_owner_is_told_so(tags, clock):
    lock = lock_on(tags, clock)
    first = claim(lock, "run-a", lease=60)
    first = lock.touch(first.next_step(clock.now, 5.0))  # it reached step 2, then went silent
    clock.now += timedelta(seconds=120)
    plan = lock.plan("m", CANARY, candidate(), "run-b")
    assert plan.action is StartAction.RESUME and plan.state == first
    resumed_at = clock.now
    taken = lock.claim(plan, "m", CANARY, candidate(), "run-b", 60)
    assert taken.id == first.id and taken.owner == "run-b" and taken.step == 1  # resumed at its step
    assert taken.step_started == taken.claimed == resumed_at  # the step starts again: its window was unattended
    with pytest.raises(RolloutInterrupted) as stopped:  # the old owner wakes up
        lock.heartbeat(first, "1", "2")
    assert stopped.value.code is InterruptionCode.TAKEN_OVER


def test_an_owner_whose_run_ended_loses_the_lease_at_once(tags, clock):
    lock = lock_on(tags, clock)
    claim(lock, "run-ended")
    ENDED.add("run-ended")
    try:
        plan = lock.plan("m", CANARY, candidate(), "run-b")
    finally:
        ENDED.discard("run-ended")
    assert plan.action is StartAction.RESUME


def test_of_two_claims_of_one_version_at_the_same_moment_one_wins_and_the_other_is_refused(tags, clock):
    """Both plan before either writes: the later write replaces the earlier, whose re-read sees it."""
    lock = lock_on(tags, clock)
    wanted = candidate()
    plan_a = lock.plan("m", CANARY, wanted, "run-a")
    plan_b = lock.plan("m", CANARY, wanted, "run-b")
    won: list[RolloutState] = []
    clock.on_sleep.append(lambda: won.append(lock.claim(plan_b, "m", CANARY, wanted, "run-b", 60)))
    with pytest.raises(RolloutRefused) as lost:
        lock.claim(plan_a, "m", CANARY, wanted, "run-a", 60)
    assert lost.value.code is RefusalCode.CLAIM_OVERWRITTEN
    [winner] = won
    assert winner.owner == "run-b" and lock.read("m", "2") == winner


def test_of_two_claims_of_different_versions_the_earlier_wins_and_the_loser_frees_its_claim(tags, clock):
    lock = lock_on(tags, clock)
    plan_a = lock.plan("m", CANARY, candidate("2"), "run-a")
    plan_b = lock.plan("m", CANARY, candidate("3"), "run-b")
    assert plan_a.action is plan_b.action is StartAction.START
    outcome: list[BaseException] = []

    def rival_claims() -> None:  # while run-a settles, run-b writes a later claim and settles too
        try:
            lock.claim(plan_b, "m", CANARY, candidate("3"), "run-b", 60)
        except RolloutRefused as refused:
            outcome.append(refused)

    clock.on_sleep.append(lambda: (setattr(clock, "now", clock.now + timedelta(milliseconds=5)), rival_claims()))
    mine = lock.claim(plan_a, "m", CANARY, candidate("2"), "run-a", 60)
    [refused] = outcome
    assert refused.code is RefusalCode.CLAIMED_FIRST and "run-a" in str(refused)
    assert lock.read("m", "3").phase is Phase.ABORTED  # the loser holds nothing
    assert [s for s, _ in lock.active("m")] == [mine]


def test_release_frees_the_lock_for_the_next_rollout(tags, clock):
    lock = lock_on(tags, clock)
    mine = claim(lock, "run-a")
    released = lock.release(mine, Phase.PROMOTED, "canary passed all steps")
    assert released.phase is Phase.PROMOTED and lock.active("m") == []
    with pytest.raises(RolloutInterrupted) as stopped:
        lock.heartbeat(mine, "1", "2")
    assert stopped.value.code is InterruptionCode.ENDED_FROM_OUTSIDE
    assert claim(lock, "run-b", version="3").owner == "run-b"


def test_a_heartbeat_after_the_registry_moved_is_an_interruption_with_its_code(tags, clock):
    lock = lock_on(tags, clock)
    mine = claim(lock, "run-a")
    with pytest.raises(RolloutInterrupted) as stopped:
        lock.heartbeat(mine, "7", "2")
    assert stopped.value.code is InterruptionCode.CHAMPION_CHANGED
    assert lock.abandon(mine, str(stopped.value)) and lock.read("m", "2").phase is Phase.ABORTED
    assert not lock.abandon(mine, "again")  # already ended: left as it is


def test_a_refusing_plan_writes_nothing(tags, clock):
    lock = lock_on(tags, clock)
    plan = StartPlan(StartAction.REFUSE, "v1 is already the champion", refusal=RefusalCode.ALREADY_CHAMPION)
    with pytest.raises(RolloutRefused) as refused:
        lock.claim(plan, "m", CANARY, candidate("1"), "run-a", 60)
    assert refused.value.code is RefusalCode.ALREADY_CHAMPION and clock.now == T0
    assert all(ROLLOUT_TAG not in t for t in tags.versions["m"].values())


def test_refusals_and_interruptions_keep_their_codes_through_pickling():
    import pickle

    refused = pickle.loads(pickle.dumps(RolloutRefused("busy", RefusalCode.ALREADY_RUNNING)))
    assert refused.code is RefusalCode.ALREADY_RUNNING and str(refused) == "busy"
    stopped = pickle.loads(pickle.dumps(RolloutInterrupted("moved", InterruptionCode.CHAMPION_CHANGED)))
    assert stopped.code is InterruptionCode.CHAMPION_CHANGED and str(stopped) == "moved"
