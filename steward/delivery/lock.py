"""The one-rollout-per-model lock, kept in the rollout tag of the version being rolled out.

A rollout is *active* while its phase is not terminal. An active rollout is *alive* while its
flow run is not known to have ended and its heartbeat is younger than its lease; a second
rollout of the same model is refused while one is alive. A stale one (its run ended or went
silent) is resumed when the new request is for the same version and the registry still looks
as the rollout left it; otherwise it is cleaned up, or, if it had already decided to promote or
roll back, that decision is finished first.

The decisions are pure functions; ``RolloutLock`` carries out the protocol (claim, settle,
re-read, heartbeat, release) on anything that reads and writes version tags, with an injectable
clock and sleep, so it runs against the real registry in the tasks and an in-memory fake in tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol

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
    active_rollouts,
)

CLAIM_SETTLE_SECONDS = 1.0  # a claim is checked again after this long, so two concurrent claims see each other


class LeaseStatus(StrEnum):
    HELD = "held"  # the owner's run has not ended and its heartbeat is within the lease
    OWNER_ENDED = "owner_ended"
    LEASE_EXPIRED = "lease_expired"  # no heartbeat within the lease: the owner crashed or was killed


@dataclass(frozen=True)
class Liveness:
    status: LeaseStatus
    reason: str

    @property
    def alive(self) -> bool:
        return self.status is LeaseStatus.HELD


def liveness(state: RolloutState, owner_run: OwnerRun, now: datetime) -> Liveness:
    """Whether the rollout's owner is still at work: its run not ended and its heartbeat within the lease.

    Prefect alone cannot tell: a process killed outright leaves its run 'running' for ever,
    so a silent heartbeat makes the lock stale too.
    """
    age = (now - state.heartbeat).total_seconds()
    if owner_run is OwnerRun.ENDED:
        return Liveness(LeaseStatus.OWNER_ENDED, f"its flow run {state.owner} has ended")
    if age > state.lease_seconds:
        return Liveness(LeaseStatus.LEASE_EXPIRED, f"its flow run {state.owner} has not shown a heartbeat for "
                                                   f"{age:.0f} s (lease {state.lease_seconds:.0f} s)")
    return Liveness(LeaseStatus.HELD, f"flow run {state.owner} is running it (heartbeat {age:.0f} s ago)")


class StartAction(StrEnum):
    START = "start"  # a new rollout from the first step
    RESUME = "resume"  # take over a stale rollout of the same version at its current step
    FINISH_PROMOTION = "finish_promotion"  # a stale rollout had decided to promote: finish that
    FINISH_ROLLBACK = "finish_rollback"  # a stale rollout had decided to roll back: finish that
    REFUSE = "refuse"


@dataclass(frozen=True)
class Refusal:
    code: RefusalCode
    reason: str


@dataclass(frozen=True)
class StartPlan:
    action: StartAction
    reason: str
    state: RolloutState | None = None  # the rollout to resume or finish
    cleanup: tuple[RolloutState, ...] = ()  # stale rollouts to withdraw and mark aborted first
    refusal: RefusalCode | None = None  # why, when the action is REFUSE


@dataclass(frozen=True)
class Candidate:
    """What the registry says about the version asked for, when a rollout is requested."""

    version: str | None  # resolved: the requested version, or the challenger when none was named
    champion: str | None
    challenger: str | None
    validation_status: str | None
    stage: str | None


def plan_start(
    model: str,
    kind: RolloutKind,
    candidate: Candidate,
    active: Sequence[tuple[RolloutState, Liveness]],
    owner: str,
) -> StartPlan:
    """Start, resume, finish an interrupted decision, or refuse, and which stale rollouts to clean up.

    One rollout per model: a second request while one is alive is refused (not queued), because a
    queued rollout would start later against a registry the first one has changed.
    """
    alive = [(s, live) for s, live in active if live.alive and s.owner != owner]
    if alive:
        state, live = alive[0]
        return StartPlan(StartAction.REFUSE, (
            f"a {state.kind.value} rollout of {model} v{state.version} is already running ({live.reason}, "
            f"step {state.step + 1}, {state.phase.value}); one rollout per model at a time: wait for it to finish, "
            "or stop it (cancel its flow run, or `steward rollback` to also return to the previous champion)"
        ), refusal=RefusalCode.ALREADY_RUNNING)
    stale = [s for s, _ in active]
    for state in stale:  # a decision already taken is finished before anything else happens
        if state.phase is Phase.PROMOTING:
            return StartPlan(StartAction.FINISH_PROMOTION,
                             f"finishing the interrupted promotion of {model} v{state.version}", state)
        if state.phase is Phase.ROLLING_BACK:
            return StartPlan(StartAction.FINISH_ROLLBACK,
                             f"finishing the interrupted roll-back of {model} v{state.version}", state)
    resumable = [
        s for s in stale
        if s.kind is kind and s.version == candidate.version and s.champion_version == candidate.champion
        and candidate.challenger == s.version
    ]
    cleanup = tuple(s for s in stale if s not in resumable)
    if resumable:
        state = resumable[0]
        return StartPlan(StartAction.RESUME,
                         f"resuming the {kind.value} of {model} v{state.version} at step {state.step + 1}",
                         state, cleanup)
    refusal = _refusal(model, candidate)
    if refusal:
        return StartPlan(StartAction.REFUSE, refusal.reason, None, cleanup, refusal.code)
    return StartPlan(StartAction.START, f"starting a {kind.value} of {model} v{candidate.version} against "
                                        f"champion v{candidate.champion}", None, cleanup)


def _refusal(model: str, candidate: Candidate) -> Refusal | None:
    version = candidate.version
    if version is None:
        return Refusal(RefusalCode.NO_CHALLENGER,
                       f"{model} has no challenger to roll out; validate a candidate first (`steward validate`), "
                       "which makes it the challenger, or name a version")
    if candidate.champion is None:
        return Refusal(RefusalCode.NO_CHAMPION, f"{model} has no champion to compare v{version} with; promote a "
                                                "first version with `steward validate`")
    if version == candidate.champion:
        return Refusal(RefusalCode.ALREADY_CHAMPION, f"{model} v{version} is already the champion; nothing to roll out")
    if candidate.validation_status != "passed":
        return Refusal(RefusalCode.NOT_VALIDATED,
                       f"{model} v{version} has not passed validation (status: "
                       f"{candidate.validation_status or 'never validated'}); "
                       f"run `steward validate --version {version}` first")
    if candidate.stage == "rejected":
        return Refusal(RefusalCode.REJECTED_EARLIER,
                       f"{model} v{version} was rejected earlier; validate a new candidate instead")
    if candidate.challenger != version:
        return Refusal(RefusalCode.NOT_THE_CHALLENGER,
                       f"{model} v{version} is not the challenger (the challenger is "
                       f"{'v' + candidate.challenger if candidate.challenger else 'none'}); "
                       f"run `steward validate --version {version}` to make it the challenger")
    return None


def claim_holds(mine: RolloutState, active: Sequence[tuple[RolloutState, Liveness]]) -> Refusal | None:
    """None when ``mine`` is still the one live claim on the model after the settle time; else why not.

    Two runs that claim at the same moment both see both claims once settled; the earlier claim
    (then the smaller owner id) wins, so exactly one goes on.
    """
    stored = next((s for s, _ in active if s.version == mine.version and s.kind is mine.kind), None)
    if stored is None or stored.owner != mine.owner or stored.id != mine.id:
        owner = stored.owner if stored else "another run"
        return Refusal(RefusalCode.CLAIM_OVERWRITTEN,
                       f"flow run {owner} claimed the rollout of {mine.model} v{mine.version} at the same time")
    rivals = [s for s, live in active if live.alive and s.owner != mine.owner and s.id != mine.id]
    for rival in rivals:
        if (rival.claimed, rival.owner) < (mine.claimed, mine.owner):
            return Refusal(RefusalCode.CLAIMED_FIRST,
                           f"flow run {rival.owner} claimed a {rival.kind.value} of {mine.model} v{rival.version} "
                           "first; one rollout per model at a time")
    return None


@dataclass(frozen=True)
class Interruption:
    code: InterruptionCode
    reason: str


def interruption(
    mine: RolloutState, stored: RolloutState | None, champion: str | None, challenger: str | None
) -> Interruption | None:
    """None while the registry still looks as the rollout left it; otherwise what changed."""
    if stored is None or stored.id != mine.id:
        return Interruption(InterruptionCode.RECORD_REPLACED,
                            f"the {ROLLOUT_TAG} record of v{mine.version} was replaced")
    if stored.owner != mine.owner:
        return Interruption(InterruptionCode.TAKEN_OVER, f"flow run {stored.owner} took the rollout over")
    if stored.phase.terminal:
        return Interruption(InterruptionCode.ENDED_FROM_OUTSIDE, f"the rollout was ended from outside "
                            f"({stored.phase.value}: {stored.reason or 'no reason given'})")
    if champion != mine.champion_version:
        return Interruption(InterruptionCode.CHAMPION_CHANGED,
                            f"the champion changed to {'v' + champion if champion else 'none'} during the rollout "
                            f"(it was v{mine.champion_version})")
    if challenger != mine.version:
        return Interruption(InterruptionCode.CHALLENGER_CHANGED,
                            f"the challenger changed to {'v' + challenger if challenger else 'none'} during the "
                            f"rollout (it was v{mine.version})")
    return None


# ---------------------------------------------------------------------------------------- the protocol
class VersionTags(Protocol):
    """One version and its tags (``steward.registry.adapter.VersionInfo``)."""

    @property
    def version(self) -> str: ...

    @property
    def tags(self) -> Mapping[str, str]: ...


class RolloutTagStore(Protocol):
    """Where the lock lives: the versions' tags (``steward.registry.adapter.Registry`` is one)."""

    def list_versions(self, model: str) -> Sequence[VersionTags]: ...

    def get_version(self, model: str, version: str) -> VersionTags: ...

    def set_version_tags(self, model: str, version: str, tags: dict[str, str]) -> None: ...


def _utc_now() -> datetime:
    return datetime.now(UTC)


class RolloutLock:
    """The lock protocol on a tag store: claim (write, settle, re-read), heartbeat, release.

    ``owner_run`` says whether a flow run id still runs (Prefect, in the tasks); ``now`` and
    ``sleep`` are the clock, injectable so tests need neither time nor Prefect.
    """

    def __init__(
        self,
        tags: RolloutTagStore,
        owner_run: Callable[[str], OwnerRun],
        *,
        now: Callable[[], datetime] = _utc_now,
        sleep: Callable[[float], None] = time.sleep,
        settle_seconds: float = CLAIM_SETTLE_SECONDS,
    ) -> None:
        self._tags, self._owner_run, self._now, self._sleep = tags, owner_run, now, sleep
        self._settle_seconds = settle_seconds

    def active(self, model: str) -> list[tuple[RolloutState, Liveness]]:
        """The model's unfinished rollouts, each with whether its owner is still at work."""
        version_tags = {info.version: info.tags for info in self._tags.list_versions(model)}
        now = self._now()
        return [(state, liveness(state, self._owner_run(state.owner), now)) for state in active_rollouts(version_tags)]

    def read(self, model: str, version: str) -> RolloutState | None:
        text = self._tags.get_version(model, version).tags.get(ROLLOUT_TAG)
        return RolloutState.from_json(text) if text else None

    def save(self, state: RolloutState) -> RolloutState:
        self._tags.set_version_tags(state.model, state.version, {ROLLOUT_TAG: state.to_json()})
        return state

    def plan(self, model: str, kind: RolloutKind, candidate: Candidate, owner: str) -> StartPlan:
        return plan_start(model, kind, candidate, self.active(model), owner)

    def claim(
        self, plan: StartPlan, model: str, kind: RolloutKind, candidate: Candidate, owner: str, lease_seconds: float
    ) -> RolloutState:
        """Take the lock as ``plan`` says; raises ``RolloutRefused`` (with its code) when refused or outrun.

        The claim is written, then read again after the settle time: two runs claiming at the same
        moment then see each other and exactly one goes on. A fresh claim that lost is ended, so it
        holds nothing.
        """
        if plan.action is StartAction.REFUSE:
            raise RolloutRefused(plan.reason, plan.refusal)
        now = self._now()
        if plan.state is None:
            mine = RolloutState.begin(model, kind, candidate.version, candidate.champion, owner, now=now,
                                      lease_seconds=lease_seconds)
        else:
            mine = plan.state.evolve(owner=owner, claimed=now, heartbeat=now, lease_seconds=lease_seconds,
                                     step_started=now if plan.action is StartAction.RESUME else plan.state.step_started)
        self.save(mine)
        self._sleep(self._settle_seconds)
        lost = claim_holds(mine, self.active(model))
        if lost:
            stored = self.read(model, mine.version)
            if plan.action is StartAction.START and stored is not None and stored.id == mine.id and stored.owner == owner:
                self.save(mine.evolve(phase=Phase.ABORTED, reason=lost.reason))
            raise RolloutRefused(lost.reason, lost.code)
        return mine

    def heartbeat(self, state: RolloutState, champion: str | None, challenger: str | None) -> RolloutState:
        """Check that the registry still looks as this rollout left it, then renew the lease.

        Raises ``RolloutInterrupted`` (with its code) when it does not.
        """
        found = interruption(state, self.read(state.model, state.version), champion, challenger)
        if found:
            raise RolloutInterrupted(found.reason, found.code)
        return self.touch(state)

    def touch(self, state: RolloutState) -> RolloutState:
        """Save the state with a fresh heartbeat."""
        return self.save(state.evolve(heartbeat=self._now()))

    def release(self, state: RolloutState, phase: Phase, reason: str) -> RolloutState:
        """End the rollout's record (a terminal phase frees the lock); returns it as saved."""
        return self.save(state.evolve(phase=phase, reason=reason, heartbeat=self._now()))

    def abandon(self, state: RolloutState, why: str) -> bool:
        """End the record as aborted if it is still this rollout's and this owner's; True if it was."""
        stored = self.read(state.model, state.version)
        if stored is None or stored.id != state.id or stored.owner != state.owner or stored.phase.terminal:
            return False
        self.save(stored.evolve(phase=Phase.ABORTED, reason=why))
        return True
