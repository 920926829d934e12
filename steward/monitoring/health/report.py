"""The health check's vocabulary and verdict: areas, issues with codes, each check's result, the report.

Each check turns what was measured into a ``CheckResult``: metrics, issues (each a warning or
critical, with a recommendation) and the check's status. ``HealthReport.combine`` gives the
overall verdict: healthy if every check passed, critical if any issue is critical, warning
otherwise; a check that could not run is a failed check, never a pass.

Nothing here reads the store, the registry or the process table: the callers (tasks/health.py)
measure, these functions judge. The severity rules, and the constants at the top of each check's
module that carry their numbers, are written down in docs/monitoring.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import pandas as pd
from scipy.stats import binomtest

from steward.findings import CheckStatus, Finding, MaintenanceKind, Priority
from steward.training.scores import SkippedCheck

ALPHA = 0.01  # a breach of a share limit must be significant at 1% (one-sided binomial test)
CRITICAL_FACTOR = 3.0  # a share limit (errors, missing, outliers, schema) exceeded 3x over is critical


class Area(StrEnum):
    PERFORMANCE = "performance"
    DATA_QUALITY = "data_quality"
    ACCURACY = "accuracy"
    INFRASTRUCTURE = "infrastructure"
    COST = "cost"


class Severity(StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"



class Verdict(StrEnum):
    HEALTHY = "healthy"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def exit_code(self) -> int:
        """What ``steward health`` exits with: 0 healthy, 1 warning, 2 critical."""
        return list(Verdict).index(self)


class IssueCode(StrEnum):
    NO_TRAFFIC = "no_traffic"
    LOW_THROUGHPUT = "low_throughput"
    OVER_CAPACITY = "over_capacity"
    LATENCY = "latency"
    ERROR_RATE = "error_rate"
    MISSING_VALUES = "missing_values"
    OUTLIERS = "outliers"
    SCHEMA_VIOLATIONS = "schema_violations"
    REJECTED_REQUESTS = "rejected_requests"
    ACCURACY_DROP = "accuracy_drop"
    ACCURACY_BELOW_SLO = "accuracy_below_slo"
    CONCEPT_DRIFT = "concept_drift"
    ESTIMATED_ACCURACY_DROP = "estimated_accuracy_drop"
    SECONDARY_METRIC_DROP = "secondary_metric_drop"  # e.g. accuracy fell while the primary (ROC AUC) held
    CALIBRATION_DRIFT = "calibration_drift"  # probabilities no longer match outcomes as on the holdout
    GATEWAY_DOWN = "gateway_down"
    CPU = "cpu"
    MEMORY = "memory"
    COST_PER_REQUEST = "cost_per_request"
    IDLE_CAPACITY = "idle_capacity"
    CHECK_FAILED = "check_failed"


_ADAPTIVE = frozenset(
    {IssueCode.ACCURACY_DROP, IssueCode.ACCURACY_BELOW_SLO, IssueCode.CONCEPT_DRIFT, IssueCode.ESTIMATED_ACCURACY_DROP,
     IssueCode.SECONDARY_METRIC_DROP, IssueCode.CALIBRATION_DRIFT}
)
_PERFECTIVE = frozenset({IssueCode.COST_PER_REQUEST, IssueCode.IDLE_CAPACITY})

@dataclass(frozen=True)
class Issue:
    """One finding: ``title`` is stable wording (the ledger title), ``detail`` carries the numbers."""

    area: Area
    code: IssueCode
    severity: Severity
    title: str
    detail: str
    recommendation: str
    subject: str | None = None  # the version ("v3") or feature the issue is about

    @property
    def critical(self) -> bool:
        return self.severity is Severity.CRITICAL

    @property
    def fingerprint(self) -> str:
        """Same finding, same fingerprint: the ledger counts a repeat instead of opening a new entry."""
        return f"health:{self.area.value}:{self.code.value}:{self.subject or '-'}"

    @property
    def kind(self) -> MaintenanceKind:
        if self.code in _ADAPTIVE:
            return MaintenanceKind.ADAPTIVE
        if self.code in _PERFECTIVE:
            return MaintenanceKind.PERFECTIVE
        return MaintenanceKind.CORRECTIVE

    @property
    def priority(self) -> Priority:
        if self.critical:
            return Priority.CRITICAL
        if self.area in (Area.PERFORMANCE, Area.ACCURACY):
            return Priority.HIGH  # users see these
        return Priority.LOW if self.area is Area.COST else Priority.MEDIUM

    def to_finding(self, source: str, *, with_advice: bool = False) -> Finding:
        """The issue as a ledger finding; ``with_advice`` appends the recommendation to the detail."""
        detail = f"{self.detail}. {self.recommendation[0].upper()}{self.recommendation[1:]}." if with_advice else (
            self.detail)
        return Finding(self.title, detail, self.kind, self.priority, source, self.fingerprint, incident=self.critical)

    def describe(self) -> str:
        return f"{self.severity.value}: {self.title}: {self.detail}"

    def to_payload(self) -> dict[str, str | None]:
        return {"area": self.area.value, "code": self.code.value, "severity": self.severity.value,
                "subject": self.subject, "title": self.title, "detail": self.detail}


Metric = float | int | str | None


@dataclass(frozen=True)
class CheckResult:
    area: Area
    status: CheckStatus
    metrics: dict[str, Metric]
    issues: tuple[Issue, ...] = ()
    recommendations: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # facts worth reading that are not issues (what could not be measured, caveats)
    skipped: tuple[SkippedCheck, ...] = ()  # checks that could not apply, each with its code (e.g. no_scores)

    @classmethod
    def judged(
        cls, area: Area, metrics: dict[str, Metric], issues: Iterable[Issue], notes: Iterable[str] = (),
        *, failed: bool = False, skipped: Iterable[SkippedCheck] = (),
    ) -> CheckResult:
        """Status from the issues: critical beats a failed measurement, which beats a warning."""
        issues = tuple(sorted(issues, key=lambda i: (not i.critical, i.code.value, i.subject or "")))
        if any(i.critical for i in issues):
            status = CheckStatus.CRITICAL
        elif failed:
            status = CheckStatus.FAILED_CHECK
        else:
            status = CheckStatus.WARNING if issues else CheckStatus.PASSED
        recommendations = tuple(dict.fromkeys(i.recommendation for i in issues))
        return cls(area, status, metrics, issues, recommendations, tuple(notes), tuple(skipped))


def failed_check(area: Area, error: BaseException | str) -> CheckResult:
    """A check that could not run: reported as failed, with the reason, never as a pass."""
    reason = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    issue = Issue(
        area, IssueCode.CHECK_FAILED, Severity.WARNING, f"the {area.value} check could not run", reason,
        "fix the cause named in the detail, then run the health check again",
    )
    return CheckResult.judged(area, {}, [issue], failed=True)


@dataclass(frozen=True)
class HealthWindow:
    """The window a health check looks at: ``start <= time < end``."""

    start: datetime
    end: datetime

    @classmethod
    def ending(cls, as_of: datetime | None, hours: float) -> HealthWindow:
        if not hours > 0:
            raise ValueError(f"window_hours must be positive, got {hours}")
        end = _utc(as_of) if as_of is not None else datetime.now(UTC)
        return cls(end - timedelta(hours=hours), end)

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    @property
    def hours(self) -> float:
        return self.seconds / 3600

    def describe(self) -> str:
        return f"{self.start:%Y-%m-%d %H:%M} to {self.end:%Y-%m-%d %H:%M} UTC ({self.hours:g} h)"


def _utc(value: datetime) -> datetime:
    stamp = pd.Timestamp(value)
    return (stamp.tz_localize("UTC") if stamp.tz is None else stamp.tz_convert("UTC")).to_pydatetime()


@dataclass(frozen=True)
class HealthReport:
    model: str
    window: HealthWindow
    checks: tuple[CheckResult, ...]
    verdict: Verdict

    @classmethod
    def combine(cls, model: str, window: HealthWindow, checks: Sequence[CheckResult]) -> HealthReport:
        issues = [issue for check in checks for issue in check.issues]
        if any(issue.critical for issue in issues):
            verdict = Verdict.CRITICAL
        elif all(check.status is CheckStatus.PASSED for check in checks):
            verdict = Verdict.HEALTHY
        else:
            verdict = Verdict.WARNING
        return cls(model, window, tuple(checks), verdict)

    @property
    def issues(self) -> tuple[Issue, ...]:
        return tuple(sorted((i for c in self.checks for i in c.issues), key=lambda i: not i.critical))

    @property
    def degraded(self) -> bool:
        return self.verdict is not Verdict.HEALTHY

    @property
    def skipped(self) -> tuple[SkippedCheck, ...]:
        """Every check the report's checks skipped, with its code: what this report does not cover."""
        return tuple(s for check in self.checks for s in check.skipped)

    @property
    def degraded_areas(self) -> tuple[Area, ...]:
        """Areas with a finding about the model (a check that could not run is not one)."""
        found = {i.area for i in self.issues if i.code is not IssueCode.CHECK_FAILED}
        return tuple(area for area in Area if area in found)

    def check(self, area: Area) -> CheckResult:
        for check in self.checks:
            if check.area is area:
                return check
        raise KeyError(f"the report has no {area.value} check")

    def summary(self) -> str:
        head = f"{self.model} is {self.verdict.value} over {self.window.describe()}"
        if not self.issues:
            return head
        critical = sum(i.critical for i in self.issues)
        return f"{head}: {len(self.issues)} issue(s), {critical} critical; " + "; ".join(
            f"{i.title} ({i.detail})" for i in self.issues[:5]
        )

    def to_table_rows(self) -> list[dict[str, str]]:
        """One row per check, for the Prefect table artifact and the CLI."""
        return [
            {
                "area": check.area.value,
                "status": check.status.value,
                "metrics": ", ".join(f"{k}={_format(v)}" for k, v in check.metrics.items()),
                "issues": " | ".join(i.describe() for i in check.issues) or "none",
                "recommendations": " | ".join(check.recommendations),
                "notes": " | ".join(check.notes),
                "skipped": " | ".join(s.describe() for s in check.skipped),
            }
            for check in self.checks
        ]


def _format(value: Metric) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4g}"
    return "n/a" if value is None else str(value)



def exceeds(hits: int, n: int, rate: float) -> bool:
    """Whether ``hits`` out of ``n`` is above ``rate`` beyond chance (one-sided binomial test at ALPHA).

    A handful of requests cannot raise an issue on its own: 1 error in 20 is not a 5% error rate yet.
    """
    if n == 0 or hits / n <= rate:
        return False
    if rate <= 0:
        return True
    return bool(binomtest(int(hits), int(n), rate, alternative="greater").pvalue < ALPHA)


def share_severity(
    hits: int, n: int, limit: float, critical_factor: float = CRITICAL_FACTOR
) -> Severity | None:
    if exceeds(hits, n, critical_factor * limit):
        return Severity.CRITICAL
    if exceeds(hits, n, limit):
        return Severity.WARNING
    return None


def served_requests(predictions: pd.DataFrame) -> pd.DataFrame:
    """One row per request the clients got an answer to (shadow copies and extra batch rows left out)."""
    served = predictions[predictions["served"].astype(bool)]
    return served.drop_duplicates("request_id")


def peak_rps(times: pd.Series, window: HealthWindow) -> float:
    """Requests per second in the busiest hour of the window (the whole window if shorter)."""
    if times.empty:
        return 0.0
    per_hour = pd.to_datetime(times, utc=True).dt.floor("h").value_counts()
    return float(per_hour.max()) / min(3600.0, window.seconds)


def version_key(version: Any) -> tuple[int, str]:
    text = str(version)
    return (int(text), text) if text.isdigit() else (10**9, text)



@dataclass(frozen=True)
class VersionsInWindow:
    """The versions that answered in a window, busiest first: the first one's training data is the reference."""

    versions: tuple[str, ...] = field(default=())

    @classmethod
    def of(cls, predictions: pd.DataFrame) -> VersionsInWindow:
        served = predictions[predictions["served"].astype(bool)] if len(predictions) else predictions
        counts = served["version"].value_counts() if len(served) else pd.Series(dtype=int)
        others = sorted(set(predictions["version"]) - set(counts.index), key=version_key)
        return cls(tuple(str(v) for v in [*counts.index, *others]))

    @classmethod
    def of_counts(cls, served: Mapping[str, int]) -> VersionsInWindow:
        """From served rows per version, in order of first appearance (0 for a version that only shadowed)."""
        busy = sorted((v for v, n in served.items() if n), key=lambda v: -served[v])  # stable: ties keep first seen
        others = sorted((v for v, n in served.items() if not n), key=version_key)
        return cls(tuple(str(v) for v in [*busy, *others]))

    @property
    def busiest(self) -> str | None:
        return self.versions[0] if self.versions else None
