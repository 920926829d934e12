"""Reading the log day by day for the weekly, monthly and quarterly reviews, and what the reviews conclude from it.

Data quality over the week, right-sizing from the period's load, and the accuracy assessment
(production metric against the held-out baseline, with the period's drift), on top of the health
checks and the SLO records.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd

from steward.findings import Finding, MaintenanceKind, Priority
from steward.monitoring.drift.history import DriftRecord
from steward.monitoring.health.accuracy import MIN_LABELLED
from steward.monitoring.health.cost import capacity_declared, check_cost
from steward.monitoring.health.data_quality import OutlierFences, check_data_quality
from steward.monitoring.health.outcomes import metric_value, outcomes
from steward.monitoring.health.performance import check_performance
from steward.monitoring.health.report import CheckResult, HealthWindow, Issue, IssueCode, served_requests
from steward.monitoring.model_card import LoggedEvaluation, evaluate_production
from steward.monitoring.slo import SLODay, SLOStore, compute_slo_day, day_bounds
from steward.monitoring.trends import Trend, fit_trend
from steward.registry.adapter import VersionInfo
from steward.spec import ModelSpec
from steward.store.reader import join_labels
from steward.training.evaluation import metric_change

# Labelled rows kept per day for the accuracy assessment and the per-slice evaluation: a seeded
# sample beyond this, so 90 days of a busy model stay in memory.
MAX_LABELLED_PER_DAY = 20_000
REQUEST_COLUMNS = ("request_id", "time", "served", "status", "version", "latency_ms")


@dataclass(frozen=True)
class DayScan:
    """What the scheduled reviews keep of one UTC day of the log (read once, used by every check)."""

    day: date
    slo: SLODay
    versions: tuple[str, ...]  # every version with a row that day, shadow copies included
    quality: CheckResult | None  # the health data-quality check on the day, when asked for
    requests: pd.DataFrame  # served requests, one row each, only REQUEST_COLUMNS
    labelled: pd.DataFrame  # served, answered, labelled rows (sampled beyond MAX_LABELLED_PER_DAY)
    labelled_total: int


def scan_day(
    spec: ModelSpec,
    day: date,
    predictions: pd.DataFrame,
    labels: pd.DataFrame,
    *,
    as_of: datetime,
    fences: OutlierFences | None,
    quality: bool,
    labelled_columns: Sequence[str] = (),
    seed: int = 0,
) -> DayScan:
    """Reduce one day of the log: its SLO record (labels known at ``as_of``), data quality, requests, labels."""
    labelled = join_labels(predictions, labels)
    record = compute_slo_day(spec, day, predictions, labelled, as_of=as_of)
    answered = labelled[labelled["served"].astype(bool) & (labelled["status"] == "ok")] if len(labelled) else labelled
    keep = [c for c in dict.fromkeys(["version", "label", "prediction", "score", *labelled_columns]) if c in answered.columns]
    sample = answered if len(answered) <= MAX_LABELLED_PER_DAY else answered.sample(
        n=MAX_LABELLED_PER_DAY, random_state=seed
    )
    requests = served_requests(predictions)[list(REQUEST_COLUMNS)] if len(predictions) else predictions.reindex(
        columns=list(REQUEST_COLUMNS)
    )
    return DayScan(
        day=day,
        slo=record,
        versions=tuple(sorted(predictions["version"].astype(str).unique())) if len(predictions) else (),
        quality=check_data_quality(predictions, spec, fences, None) if quality and len(predictions) else None,
        requests=requests.reset_index(drop=True),
        labelled=sample[keep].reset_index(drop=True),
        labelled_total=len(answered),
    )


def findings_from_issues(issues: Iterable[Issue], source: str) -> list[Finding]:
    """Health issues found by a scheduled review, under the health check's fingerprints.

    The same problem seen by the daily health check and the weekly review is one ledger entry,
    counted again, not two.
    """
    return [issue.to_finding(source, with_advice=True) for issue in issues]


def summarize_quality(checks: Sequence[tuple[date, CheckResult]], source: str) -> tuple[list[dict[str, Any]], list[Finding]]:
    """The week's data quality: one table row per day, and each issue once with the days it was seen."""
    rows: list[dict[str, Any]] = []
    seen: dict[str, list[tuple[date, Issue]]] = {}
    for day, check in checks:
        m = check.metrics
        rows.append({
            "day": day.isoformat(),
            "status": check.status.value,
            "rows": m.get("rows"),
            "missing_share": _round(m.get("missing_share")),
            "max_feature_missing_share": _round(m.get("max_feature_missing_share")),
            "outlier_share": _round(m.get("outlier_share")),
            "schema_violation_share": _round(m.get("schema_violation_share")),
            "issues": " | ".join(i.title for i in check.issues) or "none",
        })
        for issue in check.issues:
            seen.setdefault(issue.fingerprint, []).append((day, issue))
    findings = []
    for occurrences in seen.values():
        worst_day, worst = max(occurrences, key=lambda o: (o[1].critical, o[0]))
        days = ", ".join(d.isoformat() for d, _ in occurrences)
        summary = f"on {len(occurrences)} of {len(checks)} days ({days})"
        (finding,) = findings_from_issues([worst], source)
        findings.append(replace(finding, detail=f"{summary}; worst {worst_day}: {finding.detail}"))
    return rows, findings


def _round(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value


def right_sizing(performance: CheckResult, cost: CheckResult, spec: ModelSpec, days: int) -> str:
    """Right-sizing advice in one sentence from the load the period's checks observed."""
    peak, capacity = performance.metrics.get("peak_hour_rps"), performance.metrics.get("capacity_rps")
    if not isinstance(peak, float | int) or not isinstance(capacity, float | int):
        return f"No served requests in {days} days, so there is no load to size {spec.cost.replicas} replica(s) for."
    head = (
        f"Busiest hour of {days} days: {peak:.3g} requests/s against {capacity:g} requests/s of capacity "
        f"({spec.cost.replicas} replica(s) x {spec.cost.replica_capacity_rps:g}), {peak / capacity:.0%} used"
    )
    advice = {i.code: i.recommendation for i in (*performance.issues, *cost.issues)}
    if IssueCode.OVER_CAPACITY in advice:
        return f"{head}: under-provisioned; {advice[IssueCode.OVER_CAPACITY]}."
    if IssueCode.IDLE_CAPACITY in advice:
        return f"{head}: over-provisioned; {advice[IssueCode.IDLE_CAPACITY]}."
    if not capacity_declared(spec) and 1 - peak / capacity > spec.health.max_idle_share:
        return (f"{head} of the default capacity: declare cost.replica_capacity_rps (what one replica serves at "
                "its SLO) to have the size judged.")
    return f"{head}: the current size fits the observed load."



@dataclass(frozen=True)
class AccuracyAssessment:
    metric: str
    production_value: float | None
    labelled_rows: int
    baseline_value: float | None
    change: float | None
    drift_checks: int
    material_days: int
    frequent_columns: tuple[tuple[str, int], ...]
    drift_trend: Trend
    retrain_recommended: bool
    reading: str


def production_metric(labelled: pd.DataFrame, spec: ModelSpec) -> float | None:
    """The primary metric on labelled log rows, or None below the health check's ``MIN_LABELLED``."""
    if len(labelled) < MIN_LABELLED:
        return None
    value = metric_value(spec.primary_metric, outcomes(labelled, spec.task, spec.positive_label))
    return None if math.isnan(value) else value


def assess_accuracy(
    *,
    spec: ModelSpec,
    version: str,
    production_value: float | None,
    labelled_rows: int,
    baseline_value: float | None,
    drift_records: Sequence[DriftRecord],
) -> tuple[AccuracyAssessment, list[Finding]]:
    """Production metric against the version's held-out baseline, plus the period's drift trend.

    Retraining is recommended when the metric dropped by more than ``health.max_accuracy_drop``,
    fell under ``slo.min_accuracy``, or material drift was seen.
    """
    metric, source, found = spec.primary_metric, "accuracy-assessment", []
    change = (
        metric_change(metric, production_value, baseline_value)
        if production_value is not None and baseline_value is not None
        else None
    )
    material = [r for r in drift_records if r.material]
    material_days = len({r.window_end.date() for r in material})
    counts = Counter(c for r in material for c in r.columns)
    trend = fit_trend(
        [r.window_end for r in drift_records], [r.result.drift_share for r in drift_records],
        metric="drift share", higher_is_better=False,
    )
    parts = []
    if production_value is None:
        parts.append(
            f"{metric} of v{version} on production traffic is unknown: {labelled_rows} labelled predictions "
            f"(at least {MIN_LABELLED} needed)."
        )
        found.append(Finding(
            "not enough labels to assess accuracy",
            parts[-1] + " Send labels to the feedback endpoint so accuracy can be tracked.",
            MaintenanceKind.PREVENTIVE, Priority.MEDIUM, source, "accuracy:no-labels",
        ))
    else:
        base = f"{baseline_value:.4f}" if baseline_value is not None else "unknown"
        parts.append(
            f"{metric} of v{version} on {labelled_rows} labelled production predictions is {production_value:.4f} "
            f"(held-out at registration: {base})."
        )
    dropped = change is not None and change < -spec.health.max_accuracy_drop
    if dropped:
        found.append(Finding(
            f"{metric} dropped {-change:.3f} below the held-out baseline",
            parts[-1] + f" The drop exceeds {spec.health.max_accuracy_drop:g}: retrain or analyse drift.",
            MaintenanceKind.ADAPTIVE, Priority.HIGH, source, "accuracy:drop",
        ))
    floor = spec.slo.min_accuracy
    below = production_value is not None and floor is not None and metric_change(metric, production_value, floor) < 0
    if below:
        found.append(Finding(
            f"{metric} below the SLO of {floor:g}",
            parts[-1] + " The accuracy SLO is breached: retrain, or roll back if a recent version caused it.",
            MaintenanceKind.CORRECTIVE, Priority.CRITICAL, source, "accuracy:slo",
        ))
    if drift_records:
        top = ", ".join(f"{c} ({n}x)" for c, n in counts.most_common(5))
        parts.append(
            f"Drift: material on {material_days} of {len({r.window_end.date() for r in drift_records})} checked days"
            + (f", most often in {top}" if top else "") + f". {trend.reading}"
        )
    else:
        parts.append("No drift checks were recorded in the period: run the drift report (daily maintenance does).")
    recommend = dropped or below or bool(material)
    if material and not dropped and not below:
        found.append(Finding(
            "retraining recommended: material drift this period",
            parts[-1] + " Retrain on recent data and validate it against the champion.",
            MaintenanceKind.ADAPTIVE, Priority.MEDIUM, source, "accuracy:drift",
        ))
    reading = " ".join(parts) + (" Retraining is recommended." if recommend else " No retraining needed.")
    return AccuracyAssessment(
        metric, production_value, labelled_rows, baseline_value, change, len(drift_records), material_days,
        tuple(counts.most_common(10)), trend, recommend, reading,
    ), found


def scan_log(
    log: Any,
    slo_store: SLOStore,
    spec: ModelSpec,
    days: int,
    as_of: datetime,
    *,
    fences: OutlierFences | None = None,
    quality_days: int = 0,
    labelled_columns: Sequence[str] = (),
) -> list[DayScan]:
    """The last ``days`` UTC days before ``as_of`` of ``log`` (a ``PredictionStore``), each read once.

    Labels count as known at ``as_of``.  Each day's SLO record is written again when this view is
    newer than the stored one (labels arrive late), so the trends read complete days.
    """
    last = (as_of - timedelta(microseconds=1)).date()
    first = last - timedelta(days=days - 1)
    labels = log.read_labels(spec.name, start=day_bounds(first)[0], end=as_of)
    stored = {record.day: record for record in slo_store.read(spec.name, first, last)}
    scans = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        start, end = day_bounds(day)
        predictions = log.read_predictions(spec.name, start, min(end, as_of))
        scan = scan_day(
            spec, day, predictions, labels, as_of=as_of, fences=fences, quality=offset >= days - quality_days,
            labelled_columns=labelled_columns, seed=offset,
        )
        previous = stored.get(day)
        if previous is None or previous.as_of < as_of:
            slo_store.write(scan.slo)
        scans.append(scan)
    return scans


def period_load(spec: ModelSpec, scans: Sequence[DayScan]) -> tuple[CheckResult, CheckResult, HealthWindow]:
    """The health check's performance and cost checks over the scanned days (served requests only)."""
    window = HealthWindow(day_bounds(scans[0].day)[0], day_bounds(scans[-1].day)[1])
    requests = pd.concat([s.requests for s in scans], ignore_index=True)
    return check_performance(requests, window, spec), check_cost(requests, window, spec), window


def _labelled(scans: Sequence[DayScan], version: str) -> pd.DataFrame:
    labelled = pd.concat([s.labelled for s in scans], ignore_index=True)
    return labelled[labelled["version"] == version] if len(labelled) else labelled


def assess_period_accuracy(
    spec: ModelSpec, champion: VersionInfo, scans: Sequence[DayScan], drift: Sequence[DriftRecord]
) -> tuple[AccuracyAssessment, list[Finding]]:
    """``assess_accuracy`` of the champion on the scanned days' labelled traffic."""
    labelled = _labelled(scans, champion.version)
    return assess_accuracy(
        spec=spec, version=champion.version, production_value=production_metric(labelled, spec),
        labelled_rows=len(labelled), baseline_value=champion.metrics.get(spec.primary_metric), drift_records=drift,
    )


def evaluate_period(spec: ModelSpec, champion: VersionInfo, scans: Sequence[DayScan]) -> LoggedEvaluation:
    """The champion on the scanned days' labelled traffic, overall (every metric it was registered with) and per slice."""
    labelled = pd.concat([s.labelled for s in scans], ignore_index=True)
    mine = _labelled(scans, champion.version)
    served = sum(int((s.requests["version"] == champion.version).sum()) for s in scans)
    total = sum(s.labelled_total for s in scans)
    covered = [s.day for s in scans if s.labelled_total] or [scans[0].day, scans[-1].day]
    return evaluate_production(
        mine, spec, metrics=sorted(champion.metrics), start=day_bounds(covered[0])[0],
        end=day_bounds(covered[-1])[1], served_rows=served,
        sampled_from=total if total > len(labelled) else None,
    )
