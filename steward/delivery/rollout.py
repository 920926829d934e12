"""Rollout state, the one-rollout-per-model lock, resume decisions and the delivery timeline.

A rollout (a canary or a blue-green switch) keeps its state in the registry, as the version tag
``steward.rollout`` (JSON) on the version being rolled out: who owns it (a flow run), which
step it is at, since when, and when its owner last showed it was alive. That one record is
the lock, the resume point after a crash and, once the rollout ends, the version's account of
how it went. Everything here is pure: the tasks read the registry and Prefect, these functions
decide.

The lock: a rollout is *active* while its phase is not terminal. An active rollout is *alive*
while its flow run is not known to have ended and its heartbeat is younger than its lease; a
second rollout of the same model is refused while one is alive. A stale one (its run ended or
went silent) is resumed when the new request is for the same version and the registry still
looks as the rollout left it; otherwise it is cleaned up, or, if it had already decided to
promote or roll back, that decision is finished first.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

from steward import events
from steward.delivery.decisions import ArmEvidence, StepAction, StepDecision
from steward.delivery.traffic import DEFAULT_PLAN, Arm, TrafficMode, TrafficPlan
from steward.findings import Priority
from steward.registry.history import CHALLENGER, CHAMPION, AuditEntry
from steward.spec import CanaryPlan

ROLLOUT_TAG = "steward.delivery.rollout"
MAX_STATE_CHARS = 3500  # version tags are truncated at 4000 characters; a truncated state would not parse
CLAIM_SETTLE_SECONDS = 1.0  # a claim is checked again after this long, so two concurrent claims see each other
HOLD_RECORD_SECONDS = 60.0  # a holding step writes its reason to the audit history at most this often
DEFAULT_LEASE_SECONDS = 60.0


class RolloutError(RuntimeError):
    """A rollout that cannot start or go on; the message says why and what to do."""


class RolloutRefused(RolloutError):
    """Another rollout of the model is running, or the requested version cannot be rolled out."""


class RolloutInterrupted(RolloutError):
    """The registry changed under a running rollout (a rollback, a manual promote, a takeover)."""


class RolloutKind(StrEnum):
    CANARY = "canary"
    BLUE_GREEN = "blue_green"


class Phase(StrEnum):
    RAMPING = "ramping"  # canary steps; blue-green smoke test (step 0) and watch (step 1)
    PROMOTING = "promoting"  # decided to promote, finishing
    ROLLING_BACK = "rolling_back"  # decided to roll back, finishing
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    ABORTED = "aborted"  # stopped without a decision: cleaned up, stopped by a rollback, lost a claim

    @property
    def terminal(self) -> bool:
        return self in (Phase.PROMOTED, Phase.ROLLED_BACK, Phase.ABORTED)


class RolloutResult(StrEnum):
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    REJECTED = "rejected"  # failed before taking traffic (a blue-green smoke test)
    ABORTED = "aborted"


class OwnerRun(StrEnum):
    """What Prefect says about the flow run that owns a rollout."""

    RUNNING = "running"  # scheduled, pending, running, paused or cancelling
    ENDED = "ended"  # completed, failed, crashed or cancelled
    UNKNOWN = "unknown"  # not found on this Prefect server


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@dataclass(frozen=True)
class StepWindow:
    """A closed period of a rollout: the traffic share it had and when."""

    percent: float
    start: datetime
    end: datetime


@dataclass(frozen=True)
class RolloutState:
    """One rollout as stored in its version's ``steward.rollout`` tag."""

    id: str
    model: str
    kind: RolloutKind
    version: str
    champion_version: str
    owner: str
    phase: Phase
    step: int
    step_started: datetime
    started: datetime
    claimed: datetime
    heartbeat: datetime
    lease_seconds: float
    windows: tuple[StepWindow, ...] = ()
    reason: str = ""

    @classmethod
    def begin(
        cls, model: str, kind: RolloutKind, version: str, champion_version: str, owner: str, *,
        now: datetime, lease_seconds: float,
    ) -> RolloutState:
        return cls(
            id=uuid.uuid4().hex[:12], model=model, kind=kind, version=str(version),
            champion_version=str(champion_version), owner=owner, phase=Phase.RAMPING, step=0, step_started=now,
            started=now, claimed=now, heartbeat=now, lease_seconds=lease_seconds,
        )

    def to_json(self) -> str:
        document = {
            **{k: v for k, v in asdict(self).items() if k != "windows"},
            "kind": self.kind.value,
            "phase": self.phase.value,
            "windows": [[w.percent, w.start.isoformat(), w.end.isoformat()] for w in self.windows],
            **{k: getattr(self, k).isoformat() for k in ("step_started", "started", "claimed", "heartbeat")},
            "reason": self.reason[:600],
        }
        text = json.dumps(document, sort_keys=True)
        if len(text) > MAX_STATE_CHARS:
            raise RolloutError(f"the rollout state of {self.model} v{self.version} has grown to {len(text)} characters, "
                               f"more than a registry tag holds ({MAX_STATE_CHARS}); use fewer canary steps")
        return text

    @classmethod
    def from_json(cls, text: str) -> RolloutState:
        try:
            document = json.loads(text)
            return cls(
                id=document["id"], model=document["model"], kind=RolloutKind(document["kind"]),
                version=str(document["version"]), champion_version=str(document["champion_version"]),
                owner=document["owner"], phase=Phase(document["phase"]), step=int(document["step"]),
                step_started=_time(document["step_started"]), started=_time(document["started"]),
                claimed=_time(document["claimed"]), heartbeat=_time(document["heartbeat"]),
                lease_seconds=float(document["lease_seconds"]),
                windows=tuple(StepWindow(float(p), _time(s), _time(e)) for p, s, e in document.get("windows", [])),
                reason=document.get("reason", ""),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise RolloutError(
                f"the {ROLLOUT_TAG} tag cannot be read ({error}); delete the tag from the version in the MLflow UI "
                "once no rollout of it is running"
            ) from error

    def evolve(self, **changes: Any) -> RolloutState:
        return replace(self, **changes)

    def next_step(self, now: datetime, percent: float) -> RolloutState:
        """Close the current step's window and start the next step now."""
        window = StepWindow(percent, self.step_started, now)
        return replace(self, step=self.step + 1, step_started=now, windows=(*self.windows, window), heartbeat=now)

    @property
    def exposed(self) -> bool:
        """Whether the challenger has taken real traffic (a blue-green at its smoke test has not)."""
        return not (self.kind is RolloutKind.BLUE_GREEN and self.step == 0)

    @property
    def arms(self) -> dict[str, str]:
        """The version each arm must be serving for its rows to count as this rollout's evidence."""
        return {CHAMPION: self.champion_version, CHALLENGER: self.version}

    def describe(self) -> str:
        return (f"{self.kind.value} of {self.model} v{self.version} (champion v{self.champion_version}), "
                f"step {self.step + 1}, {self.phase.value}, owned by flow run {self.owner}")


def active_rollouts(version_tags: Mapping[str, Mapping[str, str]]) -> list[RolloutState]:
    """Rollouts that have not ended, from every version's tags (version -> tags)."""
    found = []
    for tags in version_tags.values():
        text = tags.get(ROLLOUT_TAG)
        if text:
            state = RolloutState.from_json(text)
            if not state.phase.terminal:
                found.append(state)
    return sorted(found, key=lambda s: (s.claimed, s.owner))


@dataclass(frozen=True)
class Liveness:
    alive: bool
    reason: str


def liveness(state: RolloutState, owner_run: OwnerRun, now: datetime) -> Liveness:
    """Whether the rollout's owner is still at work: its run not ended and its heartbeat within the lease.

    Prefect alone cannot tell: a process killed outright leaves its run 'running' for ever,
    so a silent heartbeat makes the lock stale too.
    """
    age = (now - state.heartbeat).total_seconds()
    if owner_run is OwnerRun.ENDED:
        return Liveness(False, f"its flow run {state.owner} has ended")
    if age > state.lease_seconds:
        return Liveness(False, f"its flow run {state.owner} has not shown a heartbeat for {age:.0f} s "
                               f"(lease {state.lease_seconds:.0f} s)")
    return Liveness(True, f"flow run {state.owner} is running it (heartbeat {age:.0f} s ago)")


class StartAction(StrEnum):
    START = "start"  # a new rollout from the first step
    RESUME = "resume"  # take over a stale rollout of the same version at its current step
    FINISH_PROMOTION = "finish_promotion"  # a stale rollout had decided to promote: finish that
    FINISH_ROLLBACK = "finish_rollback"  # a stale rollout had decided to roll back: finish that
    REFUSE = "refuse"


@dataclass(frozen=True)
class StartPlan:
    action: StartAction
    reason: str
    state: RolloutState | None = None  # the rollout to resume or finish
    cleanup: tuple[RolloutState, ...] = ()  # stale rollouts to withdraw and mark aborted first


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
        ))
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
        return StartPlan(StartAction.REFUSE, refusal, None, cleanup)
    return StartPlan(StartAction.START, f"starting a {kind.value} of {model} v{candidate.version} against "
                                        f"champion v{candidate.champion}", None, cleanup)


def _refusal(model: str, candidate: Candidate) -> str | None:
    version = candidate.version
    if version is None:
        return (f"{model} has no challenger to roll out; validate a candidate first (`steward validate`), "
                "which makes it the challenger, or name a version")
    if candidate.champion is None:
        return f"{model} has no champion to compare v{version} with; promote a first version with `steward validate`"
    if version == candidate.champion:
        return f"{model} v{version} is already the champion; nothing to roll out"
    if candidate.validation_status != "passed":
        return (f"{model} v{version} has not passed validation (status: {candidate.validation_status or 'never validated'}); "
                f"run `steward validate --version {version}` first")
    if candidate.stage == "rejected":
        return f"{model} v{version} was rejected earlier; validate a new candidate instead"
    if candidate.challenger != version:
        return (f"{model} v{version} is not the challenger (the challenger is "
                f"{'v' + candidate.challenger if candidate.challenger else 'none'}); "
                f"run `steward validate --version {version}` to make it the challenger")
    return None


def claim_holds(mine: RolloutState, active: Sequence[tuple[RolloutState, Liveness]]) -> str | None:
    """None when ``mine`` is still the one live claim on the model after the settle time; else why not.

    Two runs that claim at the same moment both see both claims once settled; the earlier claim
    (then the smaller owner id) wins, so exactly one goes on.
    """
    stored = next((s for s, _ in active if s.version == mine.version and s.kind is mine.kind), None)
    if stored is None or stored.owner != mine.owner or stored.id != mine.id:
        owner = stored.owner if stored else "another run"
        return f"flow run {owner} claimed the rollout of {mine.model} v{mine.version} at the same time"
    rivals = [s for s, live in active if live.alive and s.owner != mine.owner and s.id != mine.id]
    for rival in rivals:
        if (rival.claimed, rival.owner) < (mine.claimed, mine.owner):
            return (f"flow run {rival.owner} claimed a {rival.kind.value} of {mine.model} v{rival.version} first; "
                    "one rollout per model at a time")
    return None


def interruption(
    mine: RolloutState, stored: RolloutState | None, champion: str | None, challenger: str | None
) -> str | None:
    """None while the registry still looks as the rollout left it; otherwise what changed."""
    if stored is None or stored.id != mine.id:
        return f"the {ROLLOUT_TAG} record of v{mine.version} was replaced"
    if stored.owner != mine.owner:
        return f"flow run {stored.owner} took the rollout over"
    if stored.phase.terminal:
        return f"the rollout was ended from outside ({stored.phase.value}: {stored.reason or 'no reason given'})"
    if champion != mine.champion_version:
        return (f"the champion changed to {'v' + champion if champion else 'none'} during the rollout "
                f"(it was v{mine.champion_version})")
    if challenger != mine.version:
        return (f"the challenger changed to {'v' + challenger if challenger else 'none'} during the rollout "
                f"(it was v{mine.version})")
    return None


def champion_only(kind: RolloutKind) -> TrafficPlan:
    """The plan that withdraws a rollout's challenger: a blue-green switches back, a canary goes to 0 %."""
    if kind is RolloutKind.BLUE_GREEN:
        return TrafficPlan(mode=TrafficMode.BLUE_GREEN, live=Arm.CHAMPION)
    return DEFAULT_PLAN


def routes_to_challenger(plan: TrafficPlan | None, kind: RolloutKind) -> bool:
    """Whether ``plan`` is one this kind of rollout sets, so that withdrawing it cannot undo someone else's plan."""
    if plan is None:
        return False
    if kind is RolloutKind.BLUE_GREEN:
        return plan.mode is TrafficMode.BLUE_GREEN and plan.live is Arm.CHALLENGER
    return plan.mode is TrafficMode.CANARY and plan.challenger_percent > 0


@dataclass(frozen=True)
class RollBackRecord:
    """What a roll-back leaves behind: its result, event and ledger entry."""

    result: RolloutResult
    event: str
    title: str
    priority: Priority
    incident: bool


def roll_back_record(state: RolloutState) -> RollBackRecord:
    """A challenger that took traffic is an incident (critical when it took all of it, as in blue-green);
    one that failed its smoke test never served anyone: a rejected candidate, a finding."""
    if not state.exposed:
        return RollBackRecord(RolloutResult.REJECTED, events.CANDIDATE_REJECTED,
                              f"v{state.version} failed its smoke test", Priority.HIGH, False)
    return RollBackRecord(RolloutResult.ROLLED_BACK, events.ROLLED_BACK,
                          f"{state.kind.value} of v{state.version} rolled back",
                          Priority.HIGH if state.kind is RolloutKind.CANARY else Priority.CRITICAL, True)


def baseline_window(state: RolloutState, now: datetime, min_seconds: float) -> tuple[datetime, datetime]:
    """Where the champion's evidence comes from when the challenger takes all traffic.

    At 100% there is no champion traffic in the same period, so the champion is judged on the
    last closed window of the rollout (the previous canary step, or the period before a
    blue-green switch), else on the period of the same length just before this step.
    """
    if state.windows:
        return state.windows[-1].start, state.windows[-1].end
    length = max((now - state.step_started).total_seconds(), min_seconds)
    return state.step_started - timedelta(seconds=length), state.step_started


def baseline_requests(rows: pd.DataFrame, start: datetime, min_requests: int) -> pd.DataFrame:
    """The rows of the champion's requests from ``start`` on, or of its last ``min_requests`` requests if fewer.

    ``rows`` are the champion's logged rows before the window's end. A closed window never gains
    traffic, so holding for more would be futile: a thin baseline reaches further back instead.
    """
    if rows.empty:
        return rows
    times = rows.groupby("request_id")["time"].min().sort_values()
    chosen = times[times >= pd.Timestamp(start)].index
    if len(chosen) < min_requests:
        chosen = times.index[-min_requests:]
    return rows[rows["request_id"].isin(chosen)]


def should_record_hold(last_recorded: datetime | None, now: datetime) -> bool:
    """The first hold of a step goes to the audit history, then one at most every HOLD_RECORD_SECONDS."""
    return last_recorded is None or (now - last_recorded).total_seconds() >= HOLD_RECORD_SECONDS


def lease_for(poll_seconds: float, lease_seconds: float | None = None) -> float:
    """How long a silent owner keeps the lock: several polls, so a slow read never looks like a crash."""
    if lease_seconds is not None:
        if lease_seconds <= 2 * poll_seconds:
            raise RolloutError(f"lease_seconds ({lease_seconds:g}) must be more than twice poll_seconds "
                               f"({poll_seconds:g}), or a live rollout would look stale between two polls")
        return lease_seconds
    return max(DEFAULT_LEASE_SECONDS, 5 * poll_seconds)


# ---------------------------------------------------------------------------------------- timeline
@dataclass(frozen=True)
class ArmSummary:
    """What a person reads about one arm in the timeline."""

    requests: int = 0
    errors: int = 0
    p95_latency_ms: float | None = None
    labelled: int = 0
    loss: float | None = None  # misclassification rate (classification) or mean absolute error

    @classmethod
    def of(cls, evidence: ArmEvidence) -> ArmSummary:
        latencies, losses = evidence.latencies_ms, evidence.losses
        return cls(
            requests=evidence.requests, errors=evidence.errors,
            p95_latency_ms=round(float(np.quantile(latencies, 0.95)), 2) if len(latencies) else None,
            labelled=len(losses), loss=round(float(losses.mean()), 4) if len(losses) else None,
        )

    def describe(self) -> str:
        parts = [f"{self.requests} req", f"{self.errors} err"]
        if self.p95_latency_ms is not None:
            parts.append(f"p95 {self.p95_latency_ms:.1f} ms")
        if self.labelled:
            parts.append(f"loss {self.loss:.3f} on {self.labelled} labels")
        return ", ".join(parts)


@dataclass(frozen=True)
class StepRecord:
    """One step of a rollout's timeline: its traffic, its evidence and what was decided."""

    rollout: str
    step: int
    percent: float
    started: datetime
    decided: datetime
    action: StepAction
    reason: str
    challenger: ArmSummary
    champion: ArmSummary
    holds: int = 0
    baseline: bool = False  # the champion's evidence is from the previous window

    def details(self) -> dict[str, str]:
        """The record as audit-history details (kept well under a tag's size)."""
        document = {
            "step": self.step, "percent": self.percent, "started": self.started.isoformat(),
            "decided": self.decided.isoformat(), "action": self.action.value, "reason": self.reason[:800],
            "challenger": asdict(self.challenger), "champion": asdict(self.champion), "holds": self.holds,
            "baseline": self.baseline,
        }
        return {"rollout": self.rollout, "record": json.dumps(document, sort_keys=True)}

    @classmethod
    def from_details(cls, details: Mapping[str, str]) -> StepRecord:
        document = json.loads(details["record"])
        return cls(
            rollout=details["rollout"], step=int(document["step"]), percent=float(document["percent"]),
            started=_time(document["started"]), decided=_time(document["decided"]),
            action=StepAction(document["action"]), reason=document["reason"],
            challenger=ArmSummary(**document["challenger"]), champion=ArmSummary(**document["champion"]),
            holds=int(document.get("holds", 0)), baseline=bool(document.get("baseline", False)),
        )

    def row(self) -> dict[str, Any]:
        """One row of the Prefect table artifact."""
        return {
            "step": self.step + 1,
            "traffic": f"{self.percent:g}%",
            "started": self.started.strftime("%H:%M:%S"),
            "seconds": round((self.decided - self.started).total_seconds(), 1),
            "challenger": self.challenger.describe(),
            "champion": self.champion.describe() + (" (previous window)" if self.baseline else ""),
            "holds": self.holds,
            "decision": self.action.value,
            "reason": self.reason,
        }


def step_record(
    rollout: RolloutState, percent: float, decision: StepDecision, evidence: Mapping[str, ArmEvidence], *,
    now: datetime, holds: int, baseline: bool,
) -> StepRecord:
    return StepRecord(
        rollout=rollout.id, step=rollout.step, percent=percent, started=rollout.step_started, decided=now,
        action=decision.action, reason=decision.reason, challenger=ArmSummary.of(evidence[CHALLENGER]),
        champion=ArmSummary.of(evidence[CHAMPION]), holds=holds, baseline=baseline,
    )


def timeline(entries: Iterable[AuditEntry], rollout_id: str) -> list[StepRecord]:
    """A rollout's step records from the audit history, in order (so a resumed run shows the whole story)."""
    records = [
        StepRecord.from_details(entry.details) for entry in entries
        if entry.details.get("rollout") == rollout_id and "record" in entry.details
    ]
    return sorted(records, key=lambda r: r.decided)


@dataclass(frozen=True)
class RolloutOutcome:
    """What a canary or blue-green run did, for the caller and the CLI."""

    model: str
    kind: RolloutKind
    version: str
    champion_version: str
    result: RolloutResult
    reason: str
    rollout_id: str
    steps: tuple[StepRecord, ...] = ()
    resumed: bool = False
    withdrawn_at: datetime | None = None  # when the challenger's traffic was set back to 0
    finished_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_markdown(self) -> str:
        title = {RolloutResult.PROMOTED: f"v{self.version} promoted to champion",
                 RolloutResult.ROLLED_BACK: f"v{self.version} rolled back, v{self.champion_version} stays champion",
                 RolloutResult.REJECTED: f"v{self.version} rejected before taking traffic",
                 RolloutResult.ABORTED: f"{self.kind.value} of v{self.version} stopped"}[self.result]
        lines = [f"# {self.model}: {title}", "", f"- {self.reason}",
                 f"- {self.kind.value} {self.rollout_id}" + (" (resumed after an interruption)" if self.resumed else ""),
                 "", "| step | traffic | seconds | challenger | champion | holds | decision | reason |",
                 "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for record in self.steps:
            row = record.row()
            lines.append("| " + " | ".join(str(row[k]).replace("|", "/") for k in (
                "step", "traffic", "seconds", "challenger", "champion", "holds", "decision", "reason")) + " |")
        return "\n".join(lines)


CanaryOutcome = RolloutOutcome
BlueGreenOutcome = RolloutOutcome


@dataclass(frozen=True)
class RollbackOutcome:
    """What the rollback flow did: who returned which version to champion, from which, and why."""

    model: str
    from_version: str
    to_version: str
    actor: str
    reason: str
    incident_id: str
    stopped_rollouts: tuple[str, ...] = ()  # descriptions of rollouts the rollback ended
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_markdown(self) -> str:
        lines = [f"# {self.model}: rolled back from v{self.from_version} to v{self.to_version}", "",
                 f"- by {self.actor}: {self.reason}", f"- incident {self.incident_id} in the maintenance ledger"]
        lines += [f"- stopped: {stopped}" for stopped in self.stopped_rollouts]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------- smoke test
@dataclass(frozen=True)
class SmokeResult:
    """One forced-arm request to the idle colour and what came back."""

    case: str
    rows: int
    must_answer: bool
    status: int
    version: str | None
    arm: str | None
    answered_rows: int
    valid_output: bool
    error: str | None = None


@dataclass(frozen=True)
class SmokeReport:
    version: str
    results: tuple[SmokeResult, ...]

    @property
    def failures(self) -> list[str]:
        problems = []
        for r in self.results:
            if r.status >= 500 or r.status == 0:
                problems.append(f"{r.case}: the gateway answered {r.status or 'nothing'} ({r.error or 'no detail'})")
            elif r.status >= 400:
                if r.must_answer:
                    problems.append(f"{r.case}: refused with {r.status} ({r.error or 'no detail'})")
            elif r.version != self.version or r.arm != CHALLENGER:
                problems.append(f"{r.case}: answered by {r.arm} v{r.version}, not the challenger v{self.version}")
            elif r.answered_rows != r.rows or not r.valid_output:
                problems.append(f"{r.case}: {r.answered_rows} of {r.rows} rows answered"
                                + ("" if r.valid_output else ", with invalid scores"))
        return problems

    @property
    def passed(self) -> bool:
        return bool(self.results) and not self.failures

    def summary(self) -> str:
        if self.passed:
            return f"smoke test of v{self.version}: {len(self.results)} requests answered by the idle colour"
        return f"smoke test of v{self.version} failed: " + "; ".join(self.failures[:5])


def smoke_record(state: RolloutState, report: SmokeReport, now: datetime | None = None) -> StepRecord:
    """The smoke test as the first row of a blue-green timeline (no traffic share: forced requests only)."""
    errors = sum(1 for r in report.results if r.status >= 500 or r.status == 0)
    return StepRecord(
        rollout=state.id, step=0, percent=0.0, started=state.step_started, decided=now or datetime.now(UTC),
        action=StepAction.ADVANCE if report.passed else StepAction.ROLLBACK, reason=report.summary(),
        challenger=ArmSummary(requests=len(report.results), errors=errors), champion=ArmSummary(),
    )


def valid_scores(scores: Sequence[Any] | None, rows: int) -> bool:
    """Scores a client can use: one per row, finite (a regression answer carries none)."""
    if scores is None:
        return True
    values = np.asarray([np.nan if s is None else s for s in scores], float)
    return len(values) == rows and bool(np.isfinite(values).all())


def watch_plan(canary: CanaryPlan, watch_seconds: float) -> CanaryPlan:
    """The canary thresholds with the watch window as the step's minimum duration (blue-green)."""
    return canary.model_copy(update={"min_step_seconds": watch_seconds,
                                     "max_hold_seconds": max(canary.max_hold_seconds, watch_seconds * 2)})
