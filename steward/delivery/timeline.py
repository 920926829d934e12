"""A rollout's timeline and outcome: one record per step decision, what the run did, what a rollback did.

Each decision of a step goes to the model's audit history as a ``StepRecord`` (its traffic, both
arms' evidence, the decision's code and reason), so a resumed run shows the whole story.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from steward import events
from steward.delivery.decisions import ArmEvidence, Check, StepAction, StepCode, StepDecision, Wait
from steward.delivery.evidence import score_checks_skipped
from steward.delivery.rollout import InterruptionCode, RolloutKind, RolloutResult, RolloutState, parse_time
from steward.findings import Priority
from steward.registry.history import CHALLENGER, CHAMPION, AuditEntry
from steward.training.scores import ScoreCheck, SkipCode, SkippedCheck

if TYPE_CHECKING:  # the type only: serving sits above delivery
    from steward.serving.fleet import FleetReach


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
    code: StepCode | None = None  # None in records written before decisions carried codes
    breaches: tuple[Check, ...] = ()
    waiting: tuple[Wait, ...] = ()
    skipped: tuple[SkippedCheck, ...] = ()  # score checks an arm that gives labels only could not take

    def details(self) -> dict[str, str]:
        """The record as audit-history details (kept well under a tag's size)."""
        document = {
            "step": self.step, "percent": self.percent, "started": self.started.isoformat(),
            "decided": self.decided.isoformat(), "action": self.action.value, "reason": self.reason[:800],
            "challenger": asdict(self.challenger), "champion": asdict(self.champion), "holds": self.holds,
            "baseline": self.baseline, "code": self.code.value if self.code else None,
            "breaches": [c.value for c in self.breaches], "waiting": [w.value for w in self.waiting],
            "skipped": [s.to_payload() for s in self.skipped],
        }
        return {"rollout": self.rollout, "record": json.dumps(document, sort_keys=True)}

    @classmethod
    def from_details(cls, details: Mapping[str, str]) -> StepRecord:
        document = json.loads(details["record"])
        return cls(
            rollout=details["rollout"], step=int(document["step"]), percent=float(document["percent"]),
            started=parse_time(document["started"]), decided=parse_time(document["decided"]),
            action=StepAction(document["action"]), reason=document["reason"],
            challenger=ArmSummary(**document["challenger"]), champion=ArmSummary(**document["champion"]),
            holds=int(document.get("holds", 0)), baseline=bool(document.get("baseline", False)),
            code=StepCode(document["code"]) if document.get("code") else None,
            breaches=tuple(Check(c) for c in document.get("breaches", [])),
            waiting=tuple(Wait(w) for w in document.get("waiting", [])),
            skipped=tuple(SkippedCheck(ScoreCheck(s["check"]), SkipCode(s["code"]), s["reason"], s.get("subject"))
                          for s in document.get("skipped", [])),
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
        champion=ArmSummary.of(evidence[CHAMPION]), holds=holds, baseline=baseline, code=decision.code,
        breaches=decision.breaches, waiting=decision.waiting, skipped=score_checks_skipped(evidence),
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
    interruption: InterruptionCode | None = None  # what stopped an aborted rollout
    reach: FleetReach | None = None  # how the final alias/plan change reached the gateways
    finished_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_markdown(self) -> str:
        title = {RolloutResult.PROMOTED: f"v{self.version} promoted to champion",
                 RolloutResult.ROLLED_BACK: f"v{self.version} rolled back, v{self.champion_version} stays champion",
                 RolloutResult.REJECTED: f"v{self.version} rejected before taking traffic",
                 RolloutResult.ABORTED: f"{self.kind.value} of v{self.version} stopped"}[self.result]
        lines = [f"# {self.model}: {title}", "", f"- {self.reason}",
                 f"- {self.kind.value} {self.rollout_id}" + (" (resumed after an interruption)" if self.resumed else ""),
                 *([f"- gateways: {self.reach.describe()}"] if self.reach is not None else []),
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
    reach: FleetReach | None = None  # which gateways acknowledged serving the restored champion
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_markdown(self) -> str:
        lines = [f"# {self.model}: rolled back from v{self.from_version} to v{self.to_version}", "",
                 f"- by {self.actor}: {self.reason}", f"- incident {self.incident_id} in the maintenance ledger"]
        lines += [f"- stopped: {stopped}" for stopped in self.stopped_rollouts]
        if self.reach is not None:
            lines.append(f"- gateways: {self.reach.describe()}")
        return "\n".join(lines)


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
