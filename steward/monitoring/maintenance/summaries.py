"""What a scheduled maintenance run did: tasks, findings recorded in the ledger, actions, as one summary."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from steward.findings import Finding, MaintenanceKind, Priority
from steward.monitoring.ledger import LedgerEntry


class Cadence(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"


class TaskStatus(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class TaskRecord:
    name: str
    status: TaskStatus
    detail: str


class FindingState(StrEnum):
    NEW = "new"
    SEEN_AGAIN = "seen again"
    OPEN = "open"  # recorded by an earlier run or another flow, still open


@dataclass(frozen=True)
class RecordedFinding:
    """A finding as it stands in the ledger after the run."""

    entry_id: str
    title: str
    detail: str
    kind: MaintenanceKind
    priority: Priority
    occurrences: int
    incident: bool
    state: FindingState

    @classmethod
    def from_entry(cls, entry: LedgerEntry, state: FindingState | None = None) -> RecordedFinding:
        if state is None:
            state = FindingState.NEW if entry.occurrences == 1 else FindingState.SEEN_AGAIN
        return cls(entry.id, entry.title, entry.detail, entry.kind, entry.priority, entry.occurrences,
                   entry.incident, state)


@dataclass(frozen=True)
class MaintenanceRunSummary:
    """What one scheduled maintenance run did: tasks completed, issues found, actions taken."""

    model: str
    cadence: Cadence
    as_of: datetime
    tasks_completed: tuple[TaskRecord, ...]
    issues_found: tuple[RecordedFinding, ...]
    actions_taken: tuple[str, ...]
    flow_run_id: str | None = None

    @property
    def failed_tasks(self) -> tuple[TaskRecord, ...]:
        return tuple(t for t in self.tasks_completed if t.status is TaskStatus.FAILED)

    def to_markdown(self) -> str:
        lines = [
            f"# {self.cadence.value.capitalize()} maintenance of {self.model} as of {self.as_of:%Y-%m-%d %H:%M} UTC",
            "",
            f"{len(self.tasks_completed)} tasks ({len(self.failed_tasks)} failed), "
            f"{len(self.issues_found)} issues, {len(self.actions_taken)} actions.",
            "",
            "## Tasks",
            "",
            "| task | status | detail |",
            "|---|---|---|",
        ]
        lines += [f"| {t.name} | {t.status.value} | {_cell(t.detail)} |" for t in self.tasks_completed]
        lines += ["", "## Issues (ledger)", ""]
        if self.issues_found:
            lines += ["| entry | priority | kind | issue | state |", "|---|---|---|---|---|"]
            for i in sorted(self.issues_found, key=lambda i: i.priority.rank):
                title = ("INCIDENT: " if i.incident else "") + i.title
                seen = f" ({i.occurrences}x)" if i.occurrences > 1 else ""
                lines.append(f"| {i.entry_id} | {i.priority.value} | {i.kind.value} | {_cell(title)} | {i.state}{seen} |")
        else:
            lines.append("None.")
        lines += ["", "## Actions taken", ""]
        lines += [f"- {a}" for a in self.actions_taken] or ["None."]
        return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows of one shape as a Markdown table (for the sections of a run's Prefect artifact)."""
    if not rows:
        return "None."
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell("" if r.get(c) is None else str(r.get(c))) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


@dataclass
class RunLog:
    """Collects a run's tasks, findings, already-recorded issues and actions while the flow runs."""

    model: str
    cadence: Cadence
    as_of: datetime
    tasks: list[TaskRecord] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    issues: list[RecordedFinding] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)

    def completed(self, name: str, detail: str, findings: Iterable[Finding] = ()) -> None:
        self.tasks.append(TaskRecord(name, TaskStatus.COMPLETED, detail))
        self.findings.extend(findings)

    def skipped(self, name: str, why: str) -> None:
        self.tasks.append(TaskRecord(name, TaskStatus.SKIPPED, why))

    def failed(self, name: str, error: str) -> None:
        """A check that itself fails is a failed task and a finding, never a silent pass."""
        self.tasks.append(TaskRecord(name, TaskStatus.FAILED, error))
        self.findings.append(
            Finding(
                f"maintenance task '{name}' failed",
                f"{error}. Until it runs, what it checks is unknown; fix the cause and rerun the "
                f"{self.cadence.value} maintenance.",
                MaintenanceKind.CORRECTIVE, Priority.HIGH, f"maintenance-{self.cadence.value}",
                f"maintenance-failed:{name}",
            )
        )

    def summary(self, recorded: Iterable[RecordedFinding], flow_run_id: str | None) -> MaintenanceRunSummary:
        """The run as recorded; an entry listed twice (a health finding that is also an open critical alert) once."""
        issues: dict[str, RecordedFinding] = {}
        for issue in [*self.issues, *recorded]:
            issues.setdefault(issue.entry_id, issue)
        return MaintenanceRunSummary(
            self.model, self.cadence, self.as_of, tuple(self.tasks), tuple(issues.values()), tuple(self.actions),
            flow_run_id,
        )
