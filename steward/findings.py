"""The shared vocabulary of checks and findings: gates, health checks, drift and maintenance speak it.

A *check* ends in a ``CheckStatus``.  What a check found that someone should act on is a
``Finding``; the ledger turns each finding into an entry (a repeat of an open one counts again).
It sits at the top of the package because the validation gate (training) and monitoring both use
it, and neither domain should import the other for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class CheckStatus(StrEnum):
    """How one check ended; the values are what MLflow tags, artifacts and the CLI show."""

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"  # nothing to compare with (gates)
    INCONCLUSIVE = "inconclusive"  # the evidence cannot decide yet; not a pass (gates)
    NOT_MEASURABLE = "not measurable"  # an input is missing, so the check cannot judge (security audit)
    WARNING = "warning"  # a health check with warnings
    CRITICAL = "critical"  # a health check with a critical issue
    FAILED_CHECK = "failed_check"  # a health check that could not measure


class MaintenanceKind(StrEnum):
    PREVENTIVE = "preventive"
    CORRECTIVE = "corrective"
    ADAPTIVE = "adaptive"
    PERFECTIVE = "perfective"


class Priority(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        return list(Priority).index(self)


# When a finding is due, counted from when it is recorded: the ledger orders by priority, then due.
DUE_AFTER: Mapping[Priority, timedelta] = {
    Priority.CRITICAL: timedelta(hours=4),
    Priority.HIGH: timedelta(days=1),
    Priority.MEDIUM: timedelta(days=3),
    Priority.LOW: timedelta(days=14),
}


@dataclass(frozen=True)
class Finding:
    """Something a check found that someone should act on; it becomes a ledger entry.

    ``fingerprint`` identifies the same problem across runs, so a repeat updates the open entry
    instead of opening another.
    """

    title: str
    detail: str
    kind: MaintenanceKind
    priority: Priority
    source: str
    fingerprint: str
    incident: bool = False

    def due(self, now: datetime) -> datetime:
        return now + DUE_AFTER[self.priority]
