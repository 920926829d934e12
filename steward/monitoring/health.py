"""The five health checks of the maintenance guide, as pure functions over the prediction log and measurements.

Each check turns what was measured into a ``CheckResult``: metrics, issues (each a warning or
critical, with a recommendation) and the check's status. ``HealthReport.combine`` gives the
overall verdict: healthy if every check passed, critical if any issue is critical, warning
otherwise; a check that could not run is a failed check, never a pass.

Nothing here reads the store, the registry or the process table: the callers (tasks/health.py)
measure, these functions judge. The severity rules, and the constants below that carry their
numbers, are written down in docs/monitoring.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import binomtest, rankdata
from sklearn import metrics as skm

from steward.monitoring.ledger import MaintenanceKind, Priority
from steward.spec import FeatureType, ModelSpec, Task
from steward.store.log import typed_labels
from steward.training.data import prepare_features
from steward.training.evaluation import metric_change, predict_scores

ALPHA = 0.01  # a breach of a share limit must be significant at 1% (one-sided binomial test)
CRITICAL_FACTOR = 3.0  # a share limit (errors, missing, outliers, schema) exceeded 3x over is critical
LATENCY_CRITICAL_FACTOR = 2.0  # p95 latency at twice the SLO is critical
ACCURACY_CRITICAL_FACTOR = 2.0  # an accuracy drop of twice health.max_accuracy_drop is critical
SATURATION = 0.95  # CPU or memory share of a gateway process at which it is critical
MIN_LABELLED = 200  # labelled predictions of a version before its measured accuracy is judged
SIGNIFICANT_Z = 2.326  # an accuracy drop must be this many standard errors clear of zero (one-sided 1%)
MAX_CALIBRATION_ERROR = 0.05  # expected calibration error on the holdout above which estimates are not trusted
BOOTSTRAP_RESAMPLES = 200
GATEWAY_CORES = 1.0  # a gateway scores and logs under one GIL: one core is its CPU capacity
SLOW_SHARE = 0.05  # p95 above a limit means more than 5% of requests slower than it
INVALID_STATUSES = frozenset({"400", "413", "422"})  # refused because the request did not fit the schema
RATE_LIMITED_STATUS = "429"


class Area(StrEnum):
    PERFORMANCE = "performance"
    DATA_QUALITY = "data_quality"
    ACCURACY = "accuracy"
    INFRASTRUCTURE = "infrastructure"
    COST = "cost"


class Severity(StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"


class CheckStatus(StrEnum):
    PASSED = "passed"
    WARNING = "warning"
    CRITICAL = "critical"
    FAILED_CHECK = "failed_check"


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
    GATEWAY_DOWN = "gateway_down"
    CPU = "cpu"
    MEMORY = "memory"
    COST_PER_REQUEST = "cost_per_request"
    IDLE_CAPACITY = "idle_capacity"
    CHECK_FAILED = "check_failed"


_ADAPTIVE = frozenset(
    {IssueCode.ACCURACY_DROP, IssueCode.ACCURACY_BELOW_SLO, IssueCode.CONCEPT_DRIFT, IssueCode.ESTIMATED_ACCURACY_DROP}
)
_PERFECTIVE = frozenset({IssueCode.COST_PER_REQUEST, IssueCode.IDLE_CAPACITY})
_DUE = {Priority.CRITICAL: timedelta(hours=4), Priority.HIGH: timedelta(days=1),
        Priority.MEDIUM: timedelta(days=3), Priority.LOW: timedelta(days=14)}


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

    def due(self, now: datetime) -> datetime:
        return now + _DUE[self.priority]

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

    @classmethod
    def judged(
        cls, area: Area, metrics: dict[str, Metric], issues: Iterable[Issue], notes: Iterable[str] = (),
        *, failed: bool = False,
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
        return cls(area, status, metrics, issues, recommendations, tuple(notes))


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
            }
            for check in self.checks
        ]


def _format(value: Metric) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4g}"
    return "n/a" if value is None else str(value)


# ---------------------------------------------------------------------------------------------- helpers


def exceeds(hits: int, n: int, rate: float) -> bool:
    """Whether ``hits`` out of ``n`` is above ``rate`` beyond chance (one-sided binomial test at ALPHA).

    A handful of requests cannot raise an issue on its own: 1 error in 20 is not a 5% error rate yet.
    """
    if n == 0 or hits / n <= rate:
        return False
    if rate <= 0:
        return True
    return bool(binomtest(int(hits), int(n), rate, alternative="greater").pvalue < ALPHA)


def _share_issue(
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


def _version_key(version: Any) -> tuple[int, str]:
    text = str(version)
    return (int(text), text) if text.isdigit() else (10**9, text)


# ---------------------------------------------------------------------------------------------- performance


def check_performance(predictions: pd.DataFrame, window: HealthWindow, spec: ModelSpec) -> CheckResult:
    """p50/p95/p99 latency and error rate per version, throughput and peak load, from the log."""
    area = Area.PERFORMANCE
    requests = served_requests(predictions)
    total = len(requests)
    throughput = total / window.seconds
    metrics: dict[str, Metric] = {"requests": total, "throughput_rps": throughput}
    issues: list[Issue] = []
    if total == 0:
        issues.append(Issue(
            area, IssueCode.NO_TRAFFIC, Severity.WARNING, "no predictions logged",
            f"no served prediction of {spec.name} in {window.describe()}",
            "check that a gateway serves the model with its prediction log on (`steward serve`, log mode not off)",
        ))
        return CheckResult.judged(area, metrics, issues)

    floor = spec.health.min_throughput_rps
    if floor > 0 and throughput < floor:
        issues.append(Issue(
            area, IssueCode.LOW_THROUGHPUT, Severity.WARNING, "throughput below the floor",
            f"{throughput:.3g} requests/s, floor {floor:g}",
            "consider scaling or batching if clients are queueing; if demand fell, lower health.min_throughput_rps",
        ))
    peak = peak_rps(requests["time"], window)
    capacity = spec.cost.replicas * spec.cost.replica_capacity_rps
    metrics.update(peak_hour_rps=peak, capacity_rps=capacity)
    if peak > capacity:
        issues.append(Issue(
            area, IssueCode.OVER_CAPACITY, Severity.WARNING, "peak load above the configured capacity",
            f"busiest hour {peak:.3g} requests/s, {spec.cost.replicas} replica(s) x "
            f"{spec.cost.replica_capacity_rps:g} = {capacity:g} requests/s",
            f"consider scaling out to {math.ceil(peak / spec.cost.replica_capacity_rps)} replicas, or batching",
        ))

    limit = spec.slo.p95_latency_ms
    for version, group in sorted(requests.groupby("version"), key=lambda item: _version_key(item[0])):
        v = f"v{version}"
        latency = group["latency_ms"].to_numpy(dtype=float)
        n = len(latency)
        p50, p95, p99 = np.percentile(latency, [50, 95, 99])
        errors = int((group["status"] != "ok").sum())
        metrics.update({f"requests[{v}]": n, f"p50_ms[{v}]": p50, f"p95_ms[{v}]": p95, f"p99_ms[{v}]": p99,
                        f"error_rate[{v}]": errors / n})
        slow_critical = int((latency > LATENCY_CRITICAL_FACTOR * limit).sum())
        slow = int((latency > limit).sum())
        severity = (Severity.CRITICAL if exceeds(slow_critical, n, SLOW_SHARE)
                    else Severity.WARNING if exceeds(slow, n, SLOW_SHARE) else None)
        if severity:
            issues.append(Issue(
                area, IssueCode.LATENCY, severity, f"p95 latency of {v} above the SLO",
                f"p95 {p95:.1f} ms (p50 {p50:.1f}, p99 {p99:.1f}) against {limit:g} ms; "
                f"{slow / n:.1%} of {n} requests slower",
                "consider optimization or caching; compare with the previous version and roll back if it regressed",
                subject=v,
            ))
        severity = _share_issue(errors, n, spec.health.max_error_rate)
        if severity:
            issues.append(Issue(
                area, IssueCode.ERROR_RATE, severity, f"error rate of {v} above the limit",
                f"{errors} of {n} requests failed ({errors / n:.1%}), limit {spec.health.max_error_rate:.1%}",
                "read the gateway's model_error log lines; roll back if the version is new",
                subject=v,
            ))
    return CheckResult.judged(area, metrics, issues)


# ---------------------------------------------------------------------------------------------- data quality


@dataclass(frozen=True)
class OutlierFences:
    """Per numeric feature, the range outside which a value counts as an outlier.

    From the version's training sample: [P1 - R, P99 + R] with R = P99 - P1. Percentiles rather than
    quartiles because count features are mostly zeros (their interquartile range is 0).
    """

    bounds: dict[str, tuple[float, float]]
    version: str
    reference_rows: int

    @classmethod
    def from_reference(cls, reference: pd.DataFrame, spec: ModelSpec, version: str) -> OutlierFences:
        bounds = {}
        for name in spec.numeric_features:
            if name not in reference.columns:
                continue
            values = pd.to_numeric(reference[name], errors="coerce").dropna().to_numpy(dtype=float)
            if values.size == 0:
                continue
            low, high = np.percentile(values, [1, 99])
            spread = high - low
            bounds[name] = (float(low - spread), float(high + spread))
        return cls(bounds, version, len(reference))


@dataclass(frozen=True)
class GatewayReading:
    """What a gateway's ``/metrics`` counted for the model since the gateway started (counters are cumulative)."""

    url: str
    requests_by_status: dict[str, int] | None = None  # None when the gateway could not be read
    error: str | None = None

    @property
    def reachable(self) -> bool:
        return self.error is None

    @property
    def total(self) -> int:
        return sum((self.requests_by_status or {}).values())

    @property
    def invalid(self) -> int:
        return sum(n for status, n in (self.requests_by_status or {}).items() if status in INVALID_STATUSES)

    @property
    def rate_limited(self) -> int:
        return (self.requests_by_status or {}).get(RATE_LIMITED_STATUS, 0)


def schema_violations(rows: pd.DataFrame, spec: ModelSpec) -> dict[str, pd.Series]:
    """Per feature, which accepted rows hold a value outside the spec's declared range or categories."""
    found = {}
    for feature in spec.features:
        if feature.name not in rows.columns:
            continue
        column = rows[feature.name]
        present = column.notna()
        if feature.is_numeric:
            values = pd.to_numeric(column, errors="coerce")
            bad = pd.Series(False, index=rows.index)
            if feature.min is not None:
                bad |= values < feature.min
            if feature.max is not None:
                bad |= values > feature.max
        elif feature.type is FeatureType.BOOLEAN:
            bad = present & ~column.astype(str).str.lower().isin(["true", "false"])
        elif feature.categories is not None:
            bad = present & ~column.astype(str).isin(feature.categories)
        else:
            continue
        if bad.any():
            found[feature.name] = bad & present
    return found


def check_data_quality(
    predictions: pd.DataFrame,
    spec: ModelSpec,
    fences: OutlierFences | None,
    gateway: GatewayReading | None,
    *,
    fences_error: str | None = None,
) -> CheckResult:
    """Missing values, outliers against the training data, schema violations and rejected requests."""
    area = Area.DATA_QUALITY
    rows = predictions[predictions["served"].astype(bool)]
    n = len(rows)
    limits = spec.health
    metrics: dict[str, Metric] = {"rows": n}
    issues: list[Issue] = []
    notes: list[str] = []
    present = [name for name in spec.feature_names if name in rows.columns]
    absent = [name for name in spec.feature_names if name not in rows.columns]
    if absent and n:
        notes.append(f"features of the spec not in the log: {', '.join(absent)} (added after the serving version?)")

    if n and present:
        missing = rows[present].isna().sum()
        metrics["missing_share"] = float(missing.sum() / (n * len(present)))
        metrics["max_feature_missing_share"] = float(missing.max() / n)
        for name, count in missing.items():
            severity = _share_issue(int(count), n, limits.max_missing_share)
            if severity:
                issues.append(Issue(
                    area, IssueCode.MISSING_VALUES, severity, f"missing values in {name}",
                    f"{count / n:.1%} of {n} rows missing {name}, limit {limits.max_missing_share:.0%}",
                    "investigate the data pipeline that feeds this feature", subject=name,
                ))

    if fences is None and n:
        notes.append(f"outliers not measured: {fences_error or 'no training sample to compare with'}")
    elif n:
        metrics["outlier_reference"] = f"v{fences.version}"
        any_outlier = pd.Series(False, index=rows.index)
        for name, (low, high) in fences.bounds.items():
            if name not in rows.columns:
                continue
            values = pd.to_numeric(rows[name], errors="coerce")
            outside = (values < low) | (values > high)
            any_outlier |= outside
            counted = int(values.notna().sum())
            severity = _share_issue(int(outside.sum()), counted, limits.max_outlier_share)
            if severity:
                issues.append(Issue(
                    area, IssueCode.OUTLIERS, severity, f"outliers in {name}",
                    f"{outside.sum() / counted:.1%} of {counted} values outside [{low:.4g}, {high:.4g}] "
                    f"(training range of v{fences.version} widened by its P1-P99 spread), "
                    f"limit {limits.max_outlier_share:.0%}",
                    "review preprocessing and validation upstream; if the population really moved, retrain",
                    subject=name,
                ))
        metrics["outlier_share"] = float(any_outlier.mean())

    if n:
        violations = schema_violations(rows, spec)
        violating = pd.Series(False, index=rows.index)
        for bad in violations.values():
            violating |= bad
        count = int(violating.sum())
        metrics["schema_violation_share"] = count / n
        severity = _share_issue(count, n, limits.max_schema_violation_share)
        if severity:
            worst = ", ".join(f"{name} {bad.sum()}" for name, bad in
                              sorted(violations.items(), key=lambda item: -int(item[1].sum()))[:5])
            issues.append(Issue(
                area, IssueCode.SCHEMA_VIOLATIONS, severity, "accepted rows outside the declared schema",
                f"{count} of {n} rows ({count / n:.1%}) hold values outside the spec's ranges or categories "
                f"({worst}), limit {limits.max_schema_violation_share:.0%}",
                "review preprocessing and validation upstream; if the new values are legitimate, "
                "extend the spec's ranges or categories and retrain",
            ))

    if gateway is None:
        notes.append("rejected-request counts unavailable: no gateway URL given; "
                     "schema violations are judged from the accepted rows in the log only")
    elif not gateway.reachable:
        notes.append(f"rejected-request counts unavailable: {gateway.error}")
    else:
        total, invalid = gateway.total, gateway.invalid
        metrics.update(gateway_requests=total, rejected_requests=invalid, rate_limited_requests=gateway.rate_limited)
        metrics["rejected_share"] = invalid / total if total else 0.0
        notes.append(f"rejected requests are counted by {gateway.url}/metrics since that gateway started")
        severity = _share_issue(invalid, total, limits.max_schema_violation_share)
        if severity:
            issues.append(Issue(
                area, IssueCode.REJECTED_REQUESTS, severity, "requests rejected by the schema",
                f"{invalid} of {total} requests ({invalid / total:.1%}) refused as invalid (400/413/422), "
                f"limit {limits.max_schema_violation_share:.0%}",
                "read the problems in the gateway's 422 answers and fix the client or the pipeline that builds requests",
            ))
    return CheckResult.judged(area, metrics, issues, notes, failed=fences is None and n > 0)


# ---------------------------------------------------------------------------------------------- accuracy


@dataclass(frozen=True)
class Outcomes:
    """Labels and model outputs as arrays a metric takes; binary classes as 0/1 (1 = the scored class)."""

    y: np.ndarray
    prediction: np.ndarray
    score: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def take(self, index: np.ndarray) -> Outcomes:
        return Outcomes(self.y[index], self.prediction[index], self.score[index])


def outcomes(labelled: pd.DataFrame, task: Task) -> Outcomes:
    """Typed outcomes of labelled log rows (label and prediction are stored as text)."""
    n = len(labelled)
    both = typed_labels(pd.concat([labelled["label"], labelled["prediction"]], ignore_index=True),
                        classification=task.is_classification)
    y, prediction = both.iloc[:n].to_numpy(), both.iloc[n:].to_numpy()
    score = labelled["score"].to_numpy(dtype=float)
    if task is Task.BINARY_CLASSIFICATION:
        positive = sorted(set(y.tolist()) | set(prediction.tolist()))[-1]  # sklearn's classes_ are sorted
        y, prediction = (y == positive).astype(int), (prediction == positive).astype(int)
    return Outcomes(y, prediction, score)


def _auc(o: Outcomes) -> float:
    """ROC AUC from ranks (Mann-Whitney U, ties averaged): sklearn's value, fast enough to bootstrap."""
    positives = o.y == 1
    n1 = int(positives.sum())
    n0 = len(o.y) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(o.score)
    return float((ranks[positives].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


_METRICS: dict[str, Callable[[Outcomes], float]] = {
    "accuracy": lambda o: float(np.mean(o.y == o.prediction)),
    "roc_auc": _auc,
    "precision": lambda o: float(skm.precision_score(o.y, o.prediction, zero_division=0)),
    "recall": lambda o: float(skm.recall_score(o.y, o.prediction, zero_division=0)),
    "f1": lambda o: float(skm.f1_score(o.y, o.prediction, zero_division=0)),
    "brier": lambda o: float(np.mean((o.score - o.y) ** 2)),
    "log_loss": lambda o: float(skm.log_loss(o.y, np.clip(o.score, 1e-15, 1 - 1e-15), labels=[0, 1])),
    "f1_macro": lambda o: float(skm.f1_score(o.y, o.prediction, average="macro", zero_division=0)),
    "rmse": lambda o: float(np.sqrt(np.mean((o.y.astype(float) - o.prediction.astype(float)) ** 2))),
    "mae": lambda o: float(np.mean(np.abs(o.y.astype(float) - o.prediction.astype(float)))),
    "r2": lambda o: float(skm.r2_score(o.y, o.prediction)) if len(o) > 1 else float("nan"),
}


def metric_value(metric: str, o: Outcomes) -> float:
    """The metric on logged outcomes; the same names the registry's validation metrics use."""
    try:
        return _METRICS[metric](o)
    except KeyError:
        raise ValueError(
            f"the metric {metric!r} cannot be computed from logged predictions; set gates.primary_metric "
            f"to one of {sorted(_METRICS)}"
        ) from None


@dataclass(frozen=True)
class Estimate:
    value: float
    error: float  # bootstrap standard error
    rows: int


def estimate_metric(metric: str, o: Outcomes, seed: int = 0) -> Estimate:
    value = metric_value(metric, o)
    rng = np.random.default_rng(seed)
    resampled = [metric_value(metric, o.take(rng.integers(0, len(o), len(o)))) for _ in range(BOOTSTRAP_RESAMPLES)]
    return Estimate(value, float(np.nanstd(resampled)), len(o))


def _drop(metric: str, current: float, baseline: float) -> float:
    """How much worse ``current`` is than ``baseline``, whatever the metric's direction (positive = worse)."""
    return -metric_change(metric, current, baseline)


@dataclass(frozen=True)
class Calibration:
    """How well a version's probabilities match outcomes on its holdout: the label-free estimate's validity."""

    rows: int
    expected_accuracy: float  # mean top-class probability
    observed_accuracy: float
    calibration_error: float  # expected calibration error, 10 equal-width bins of confidence

    @property
    def calibrated(self) -> bool:
        return self.calibration_error <= MAX_CALIBRATION_ERROR


def calibration_from(probabilities: np.ndarray, y_true: np.ndarray, classes: Sequence[Any]) -> Calibration:
    """Expected calibration error of top-class confidences against outcomes."""
    probabilities = np.asarray(probabilities, dtype=float)
    confidence = probabilities.max(axis=1)
    correct = np.asarray(classes)[probabilities.argmax(axis=1)] == np.asarray(y_true)
    bins = np.minimum((confidence * 10).astype(int), 9)
    error = sum(
        abs(confidence[bins == b].mean() - correct[bins == b].mean()) * np.sum(bins == b) / len(confidence)
        for b in np.unique(bins)
    )
    return Calibration(len(confidence), float(confidence.mean()), float(correct.mean()), float(error))


def measure_calibration(model: Any, holdout: pd.DataFrame, spec: ModelSpec) -> Calibration:
    """Score the version's holdout and compare its confidences with what happened."""
    features = prepare_features(holdout, spec)
    _, probabilities = predict_scores(model, features, spec.task)
    if probabilities is None:
        raise ValueError(f"{spec.name}'s model has no predict_proba, so it gives no probabilities to calibrate")
    y = typed_labels(holdout[spec.target].astype(str), classification=True).to_numpy()
    classes = typed_labels(pd.Series([str(c) for c in model.classes_]), classification=True).to_numpy()
    return calibration_from(probabilities, y, classes)


def expected_accuracy(scores: np.ndarray, task: Task) -> np.ndarray:
    """Per row, the probability the prediction is right if the model is calibrated: max(p, 1 - p) for binary
    (the log keeps P(positive)); the top-class probability the log keeps for multiclass."""
    scores = np.asarray(scores, dtype=float)
    return np.maximum(scores, 1 - scores) if task is Task.BINARY_CLASSIFICATION else scores


@dataclass(frozen=True)
class InputStability:
    stable: bool
    drift_share: float
    drifted: tuple[str, ...]

    def describe(self, against: str) -> str:
        state = "stable" if self.stable else "drifted"
        names = f": {', '.join(self.drifted)}" if self.drifted else ""
        return f"inputs {state} against {against} ({self.drift_share:.0%} of features drifted{names})"


def input_stability(reference: pd.DataFrame, current: pd.DataFrame, spec: ModelSpec) -> InputStability:
    """Whether the inputs moved, by the drift engine's per-feature tests and the spec's share threshold."""
    from steward.monitoring.drift import detect_drift

    def usable(names: list[str]) -> list[str]:
        return [c for c in names if c in reference and c in current
                and reference[c].notna().any() and current[c].notna().any()]

    numeric, categorical = usable(spec.numeric_features), usable(spec.categorical_features)
    if not numeric and not categorical:
        raise ValueError("no feature has values on both sides, so input stability cannot be measured")
    result = detect_drift(
        reference[numeric + categorical], current[numeric + categorical], numeric=numeric, categorical=categorical,
        engine="profile", report=False,
    )
    return InputStability(result.drift_share < spec.drift.share_threshold, result.drift_share,
                          result.drifted_columns)


def check_accuracy(
    predictions: pd.DataFrame,
    labelled: pd.DataFrame,
    spec: ModelSpec,
    baselines: Mapping[str, Mapping[str, float]],
    calibrations: Mapping[str, Calibration | str],
    reference: pd.DataFrame | None,
) -> CheckResult:
    """Per version: measured accuracy against its validation baseline and the SLO, concept drift, and
    while labels are pending a label-free estimate from calibrated probabilities.

    ``labelled`` is ``join_labels`` of ``predictions`` with the labels received by the window's end;
    ``baselines`` the held-out metrics of each version; ``calibrations`` each version's calibration on
    its holdout (or why it could not be measured), for versions that need the estimate; ``reference``
    the prepared training sample that input stability is judged against.
    """
    area = Area.ACCURACY
    metric = spec.primary_metric
    metrics: dict[str, Metric] = {"metric": metric}
    issues: list[Issue] = []
    notes: list[str] = []
    answered = predictions[predictions["status"] == "ok"]
    labelled = labelled[labelled["status"] == "ok"]
    if answered.empty:
        notes.append("no answered predictions in the window")
    keys = pd.MultiIndex.from_frame(labelled[["request_id", "row"]]) if len(labelled) else None
    for version, rows in sorted(answered.groupby("version"), key=lambda item: _version_key(item[0])):
        v = f"v{version}"
        version_labelled = labelled[labelled["version"] == version]
        is_pending = (~pd.MultiIndex.from_frame(rows[["request_id", "row"]]).isin(keys)
                      if keys is not None else np.ones(len(rows), bool))
        pending = rows[is_pending]
        metrics.update({f"labelled[{v}]": len(version_labelled), f"pending[{v}]": len(pending)})
        baseline = baselines.get(str(version), {}).get(metric)
        if baseline is None:
            notes.append(f"{v} has no validation {metric} in the registry, so no baseline to compare with")
        if len(version_labelled) >= MIN_LABELLED:
            issues += _judge_labelled(spec, v, version_labelled, baseline, reference, metrics, notes)
        else:
            notes.append(f"{v}: {len(version_labelled)} labelled predictions, {MIN_LABELLED} needed to judge "
                         f"measured accuracy")
            if len(pending) and spec.task.is_classification:
                issues += _judge_estimate(spec, v, pending, baselines.get(str(version), {}),
                                          calibrations.get(str(version)), metrics, notes)
            elif len(pending):
                notes.append(f"{v}: labels pending and a regression model gives no label-free estimate")
    return CheckResult.judged(area, metrics, issues, notes)


def _judge_labelled(
    spec: ModelSpec, v: str, labelled: pd.DataFrame, baseline: float | None, reference: pd.DataFrame | None,
    metrics: dict[str, Metric], notes: list[str],
) -> list[Issue]:
    area, metric, limit = Area.ACCURACY, spec.primary_metric, spec.health.max_accuracy_drop
    issues: list[Issue] = []
    labelled = labelled.sort_values("time", kind="stable")
    o = outcomes(labelled, spec.task)
    whole = estimate_metric(metric, o)
    metrics[f"{metric}[{v}]"] = whole.value
    if baseline is not None:
        metrics[f"baseline_{metric}[{v}]"] = baseline
    if math.isnan(whole.value):
        notes.append(f"{v}: {metric} undefined on the labelled rows (one class only?)")
        return issues

    drop = _drop(metric, whole.value, baseline) if baseline is not None else None
    dropped = drop is not None and drop > limit and drop >= SIGNIFICANT_Z * whole.error
    if drop is not None:
        metrics[f"drop[{v}]"] = drop
    features = prepare_features(labelled, spec) if all(f in labelled for f in spec.feature_names) else None

    # Concept drift: accuracy fell while the inputs stayed where they were, against the training
    # data (with the baseline) or against the earlier half of the window (onset inside the window).
    half = len(labelled) // 2
    early, late = o.take(np.arange(half)), o.take(np.arange(half, len(o)))
    halves_drop = None
    if half >= MIN_LABELLED // 2:
        first, second = estimate_metric(metric, early, seed=1), estimate_metric(metric, late, seed=2)
        halves_drop = _drop(metric, second.value, first.value)
        metrics.update({f"{metric}_early[{v}]": first.value, f"{metric}_late[{v}]": second.value})
        halves_error = math.hypot(first.error, second.error)
        if not (halves_drop > limit and halves_drop >= SIGNIFICANT_Z * halves_error):
            halves_drop = None
    evidence = []
    explained = []
    if features is not None:
        if dropped and reference is not None:
            stability = input_stability(reference, features, spec)
            metrics[f"input_drift_share[{v}]"] = stability.drift_share
            (evidence if stability.stable else explained).append(
                f"{metric} {drop:.3f} below the baseline, {stability.describe('the training data')}")
        if halves_drop is not None:
            stability = input_stability(features.iloc[:half], features.iloc[half:], spec)
            (evidence if stability.stable else explained).append(
                f"{metric} {halves_drop:.3f} lower in the later half of the window, "
                f"{stability.describe('the earlier half')}")
    else:
        notes.append(f"{v}: the log lacks some spec features, so input stability was not measured")

    if dropped:
        severity = Severity.CRITICAL if drop > ACCURACY_CRITICAL_FACTOR * limit else Severity.WARNING
        issues.append(Issue(
            area, IssueCode.ACCURACY_DROP, severity, f"{metric} of {v} dropped against its validation baseline",
            f"{metric} {whole.value:.3f} on {whole.rows} labelled predictions (+/- {whole.error:.3f}) against "
            f"{baseline:.3f} at validation: a drop of {drop:.3f}, limit {limit:g}",
            "retrain or analyse drift", subject=v,
        ))
    if evidence:
        issues.append(Issue(
            area, IssueCode.CONCEPT_DRIFT, Severity.WARNING, f"concept drift on {v}",
            "; ".join(evidence), "investigate distribution changes and retrain on recent labelled data", subject=v,
        ))
    notes += [f"{v}: {text}: data drift explains the drop better than concept drift" for text in explained]

    target = spec.slo.min_accuracy
    if target is not None:
        shortfall = _drop(metric, whole.value, target)
        if shortfall > 0 and shortfall >= SIGNIFICANT_Z * whole.error:
            issues.append(Issue(
                area, IssueCode.ACCURACY_BELOW_SLO, Severity.CRITICAL, f"{metric} of {v} below the SLO",
                f"{metric} {whole.value:.3f} on {whole.rows} labelled predictions, SLO {target:g}",
                "roll back to the previous champion if it did better, and retrain", subject=v,
            ))
    return issues


def _judge_estimate(
    spec: ModelSpec, v: str, pending: pd.DataFrame, baseline: Mapping[str, float],
    calibration: Calibration | str | None, metrics: dict[str, Metric], notes: list[str],
) -> list[Issue]:
    confidence = expected_accuracy(pending["score"].to_numpy(dtype=float), spec.task)
    estimate = float(confidence.mean())
    error = float(confidence.std() / math.sqrt(len(confidence)))
    metrics[f"estimated_accuracy[{v}]"] = estimate
    if "accuracy" in baseline:
        metrics[f"baseline_accuracy[{v}]"] = baseline["accuracy"]
    if not isinstance(calibration, Calibration):
        notes.append(f"{v}: accuracy {estimate:.3f} is an estimate from probabilities on {len(pending)} unlabelled "
                     f"predictions; its calibration could not be checked ({calibration or 'not measured'}), "
                     "so it is not judged")
        return []
    metrics[f"holdout_calibration_error[{v}]"] = calibration.calibration_error
    if not calibration.calibrated:
        notes.append(f"{v}: accuracy {estimate:.3f} is an estimate, but the model is not calibrated on its holdout "
                     f"(calibration error {calibration.calibration_error:.3f} > {MAX_CALIBRATION_ERROR}), so it is "
                     "not judged; calibrate the model (e.g. CalibratedClassifierCV) to get label-free estimates")
        return []
    notes.append(f"{v}: accuracy {estimate:.3f} is an ESTIMATE from calibrated probabilities on {len(pending)} "
                 "unlabelled predictions (valid only while the model stays calibrated; it cannot see concept drift)")
    drop = calibration.expected_accuracy - estimate  # same estimator on the holdout: its bias cancels
    metrics[f"estimated_drop[{v}]"] = drop
    limit = spec.health.max_accuracy_drop
    if drop > limit and drop >= SIGNIFICANT_Z * error:
        return [Issue(
            Area.ACCURACY, IssueCode.ESTIMATED_ACCURACY_DROP, Severity.WARNING,
            f"estimated accuracy of {v} dropped (estimate, labels pending)",
            f"estimated accuracy {estimate:.3f} on {len(pending)} unlabelled predictions against "
            f"{calibration.expected_accuracy:.3f} on the holdout: an estimated drop of {drop:.3f}, limit {limit:g}",
            "check the drift report for the features behind the drop, and confirm once labels arrive",
            subject=v,
        )]
    return []


# ---------------------------------------------------------------------------------------------- infrastructure


@dataclass(frozen=True)
class ProcessUsage:
    pid: int
    command: str
    cpu_cores: float  # CPU seconds used per second over the sample
    rss_bytes: int
    memory_limit_bytes: int  # the process's cgroup limit, or the host's memory

    @property
    def cpu_share(self) -> float:
        return self.cpu_cores / GATEWAY_CORES

    @property
    def memory_share(self) -> float:
        return self.rss_bytes / self.memory_limit_bytes


@dataclass(frozen=True)
class InfrastructureSample:
    """CPU and memory of the gateway processes serving a model, from the process table of one host."""

    host: str
    measured_at: datetime
    seconds: float
    searched: str  # how the processes were found (a listening port, a command line)
    processes: tuple[ProcessUsage, ...]
    host_cpu_share: float
    host_memory_share: float


def check_infrastructure(
    sample: InfrastructureSample, spec: ModelSpec, window: HealthWindow, gateway: GatewayReading | None
) -> CheckResult:
    """Gateway processes against the CPU and memory limits; an unreachable gateway is critical."""
    area = Area.INFRASTRUCTURE
    limits = spec.health
    metrics: dict[str, Metric] = {"gateway_processes": len(sample.processes),
                                  "host_cpu_share": sample.host_cpu_share,
                                  "host_memory_share": sample.host_memory_share}
    issues: list[Issue] = []
    notes = [f"measured on {sample.host} at {sample.measured_at:%Y-%m-%d %H:%M:%S} UTC over {sample.seconds:g} s"]
    if sample.measured_at - window.end > timedelta(hours=1):
        notes.append("the window is in the past: CPU and memory are as measured now, not during the window")
    if gateway is not None and not gateway.reachable:
        issues.append(Issue(
            area, IssueCode.GATEWAY_DOWN, Severity.CRITICAL, "gateway not answering",
            f"{gateway.url}: {gateway.error}", "restart the gateway (`steward serve`) or correct the gateway URL",
            subject=gateway.url,
        ))
    if not sample.processes:
        issue = Issue(
            area, IssueCode.CHECK_FAILED, Severity.WARNING, "no gateway process found to measure",
            f"no process serving {spec.name} on {sample.host} ({sample.searched})",
            "run the health check on the gateway's host with --gateway-url, or read CPU and memory from "
            "the platform that runs the gateways",
        )
        return CheckResult.judged(area, metrics, [*issues, issue], notes, failed=True)

    notes.append(f"found {len(sample.processes)} gateway process(es): {sample.searched}")
    metrics["max_cpu_share"] = max(p.cpu_share for p in sample.processes)
    metrics["max_memory_share"] = max(p.memory_share for p in sample.processes)
    metrics["rss_mb"] = sum(p.rss_bytes for p in sample.processes) / 2**20
    for process in sample.processes:
        subject = f"pid {process.pid}"
        for code, share, limit, what, advice in (
            (IssueCode.CPU, process.cpu_share, limits.max_cpu_share, "CPU",
             "add a replica or batch requests; profile the model's predict if one replica should cope"),
            (IssueCode.MEMORY, process.memory_share, limits.max_memory_share, "memory",
             "raise the memory limit or serve fewer warm versions per gateway; look for a leak if it keeps rising"),
        ):
            if share <= limit:
                continue
            severity = Severity.CRITICAL if share >= max(SATURATION, limit) else Severity.WARNING
            capacity = ("of one core" if code is IssueCode.CPU
                        else f"of {process.memory_limit_bytes / 2**30:.1f} GiB")
            issues.append(Issue(
                area, code, severity, f"gateway {what} above the limit",
                f"{subject} ({process.command}) uses {share:.0%} {capacity}, limit {limit:.0%}",
                advice, subject=subject,
            ))
    return CheckResult.judged(area, metrics, issues, notes)


# ---------------------------------------------------------------------------------------------- cost


def check_cost(predictions: pd.DataFrame, window: HealthWindow, spec: ModelSpec) -> CheckResult:
    """Cost per request from the price per replica-hour and the observed volume; idle capacity at peak."""
    area = Area.COST
    cost = spec.cost
    requests = served_requests(predictions)
    n = len(requests)
    spent = cost.price_per_replica_hour * cost.replicas * window.hours
    capacity = cost.replicas * cost.replica_capacity_rps
    peak = peak_rps(requests["time"], window)
    idle = max(0.0, 1 - peak / capacity)
    per_1k = spent / n * 1000 if n else None
    metrics: dict[str, Metric] = {
        "requests": n, "cost": spent, "cost_per_1k_requests": per_1k,
        "mean_utilisation": n / window.seconds / capacity, "idle_share_at_peak": idle,
    }
    issues: list[Issue] = []
    limit = spec.health.max_cost_per_1k_requests
    if limit is not None and (per_1k is None or per_1k > limit):
        shown = f"{per_1k:.4g}" if per_1k is not None else "unbounded (no requests)"
        issues.append(Issue(
            area, IssueCode.COST_PER_REQUEST, Severity.WARNING, "cost per request above the limit",
            f"{shown} per 1000 requests ({spent:.4g} for {cost.replicas} replica(s) over {window.hours:g} h, "
            f"{n} requests), limit {limit:g}",
            "serve the model from fewer or smaller replicas, or share a gateway with other models",
        ))
    if idle > spec.health.max_idle_share:
        needed = max(1, math.ceil(peak / (cost.replica_capacity_rps * (1 - spec.health.max_idle_share))))
        advice = (f"run {needed} replica(s) instead of {cost.replicas}" if needed < cost.replicas
                  else "use a smaller replica, or serve other models from the same gateway")
        issues.append(Issue(
            area, IssueCode.IDLE_CAPACITY, Severity.WARNING, "capacity idle even at peak",
            f"{idle:.0%} of {capacity:g} requests/s idle in the busiest hour ({peak:.3g} requests/s), "
            f"limit {spec.health.max_idle_share:.0%}",
            advice,
        ))
    return CheckResult.judged(area, metrics, issues)


@dataclass(frozen=True)
class VersionsInWindow:
    """The versions that answered in a window, busiest first: the first one's training data is the reference."""

    versions: tuple[str, ...] = field(default=())

    @classmethod
    def of(cls, predictions: pd.DataFrame) -> VersionsInWindow:
        served = predictions[predictions["served"].astype(bool)] if len(predictions) else predictions
        counts = served["version"].value_counts() if len(served) else pd.Series(dtype=int)
        others = sorted(set(predictions["version"]) - set(counts.index), key=_version_key)
        return cls(tuple(str(v) for v in [*counts.index, *others]))

    @property
    def busiest(self) -> str | None:
        return self.versions[0] if self.versions else None


def versions_needing_estimate(predictions: pd.DataFrame, labelled: pd.DataFrame, task: Task) -> list[str]:
    """Versions whose accuracy must be estimated: too few labels yet, and a classifier's probabilities to use."""
    if not task.is_classification:
        return []
    answered = predictions[predictions["status"] == "ok"]
    counts = labelled[labelled["status"] == "ok"]["version"].value_counts()
    return sorted((str(v) for v in answered["version"].unique() if counts.get(v, 0) < MIN_LABELLED),
                  key=_version_key)

