"""Rollout state: the record a canary or blue-green keeps in the registry, its phases, results and errors.

A rollout keeps its state in the registry, as the version tag ``steward.rollout`` (JSON)
on the version being rolled out: who owns it (a flow run), which step it is at, since when, and
when its owner last showed it was alive. That one record is the lock
(``steward.delivery.lock``), the resume point after a crash and, once the rollout ends, the
version's account of how it went. The step's timeline and outcome are in
``steward.delivery.timeline``, the blue-green smoke test in ``steward.delivery.blue_green``.
Everything here is pure.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import pandas as pd

from steward.registry.history import CHALLENGER, CHAMPION
from steward.registry.traffic import DEFAULT_PLAN, Arm, TrafficMode, TrafficPlan

ROLLOUT_TAG = "steward.rollout"  # the registry tag name: existing rollouts are read by it
MAX_STATE_CHARS = 3500  # version tags are truncated at 4000 characters; a truncated state would not parse
HOLD_RECORD_SECONDS = 60.0  # a holding step writes its reason to the audit history at most this often
DEFAULT_LEASE_SECONDS = 60.0


class RolloutError(RuntimeError):
    """A rollout that cannot start or go on; the message says why and what to do."""


class RefusalCode(StrEnum):
    """Why a rollout was not started (the lock's typed refusal)."""

    ALREADY_RUNNING = "already_running"  # another rollout of the model is alive
    NO_CHALLENGER = "no_challenger"
    NO_CHAMPION = "no_champion"
    ALREADY_CHAMPION = "already_champion"
    NOT_VALIDATED = "not_validated"
    REJECTED_EARLIER = "rejected_earlier"
    NOT_THE_CHALLENGER = "not_the_challenger"
    CLAIM_OVERWRITTEN = "claim_overwritten"  # lost a race: another run wrote its claim over this one
    CLAIMED_FIRST = "claimed_first"  # lost a race: another run's claim is earlier


class InterruptionCode(StrEnum):
    """What changed under a running rollout."""

    RECORD_REPLACED = "record_replaced"  # the version's rollout record belongs to another rollout now
    TAKEN_OVER = "taken_over"  # another flow run took the rollout over (its lease had expired)
    ENDED_FROM_OUTSIDE = "ended_from_outside"  # e.g. stopped by a rollback
    CHAMPION_CHANGED = "champion_changed"
    CHALLENGER_CHANGED = "challenger_changed"


class RolloutRefused(RolloutError):
    """Another rollout of the model is running, or the requested version cannot be rolled out."""

    def __init__(self, reason: str, code: RefusalCode | None = None) -> None:
        super().__init__(reason)
        self.code = code

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (str(self), self.code)


class RolloutInterrupted(RolloutError):
    """The registry changed under a running rollout (a rollback, a manual promote, a takeover)."""

    def __init__(self, reason: str, code: InterruptionCode | None = None) -> None:
        super().__init__(reason)
        self.code = code

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (str(self), self.code)


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


def parse_time(text: str | None) -> datetime | None:
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
                step_started=parse_time(document["step_started"]), started=parse_time(document["started"]),
                claimed=parse_time(document["claimed"]), heartbeat=parse_time(document["heartbeat"]),
                lease_seconds=float(document["lease_seconds"]),
                windows=tuple(StepWindow(float(p), parse_time(s), parse_time(e)) for p, s, e in document.get("windows", [])),
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


def should_record_hold(last_recorded: datetime | None, now: datetime, *, code_changed: bool = False) -> bool:
    """The first hold of a step goes to the audit history, then one at most every HOLD_RECORD_SECONDS, and
    any hold whose code differs from the last recorded one (a step extended past its hold)."""
    return last_recorded is None or code_changed or (now - last_recorded).total_seconds() >= HOLD_RECORD_SECONDS


def lease_for(poll_seconds: float, lease_seconds: float | None = None) -> float:
    """How long a silent owner keeps the lock: several polls, so a slow read never looks like a crash."""
    if lease_seconds is not None:
        if lease_seconds <= 2 * poll_seconds:
            raise RolloutError(f"lease_seconds ({lease_seconds:g}) must be more than twice poll_seconds "
                               f"({poll_seconds:g}), or a live rollout would look stale between two polls")
        return lease_seconds
    return max(DEFAULT_LEASE_SECONDS, 5 * poll_seconds)
