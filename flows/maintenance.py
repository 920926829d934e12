"""Scheduled maintenance: one flow per cadence, each a list of checks that record what they found.

Every check runs even when another fails: a failed check is a failed task in the summary and a
ledger entry, never a silent pass.  Each run returns a ``MaintenanceRunSummary`` (tasks
completed, issues found, actions taken) and publishes it as a Prefect artifact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow, get_run_logger

from flows.drift_report import drift_report
from flows.health_check import health_check
from steward.findings import CheckStatus, Finding, MaintenanceKind, Priority
from steward.monitoring.drift.monitor import drift_fingerprint
from steward.monitoring.health.report import IssueCode
from steward.monitoring.maintenance.retention import cleanup_findings
from steward.monitoring.maintenance.scans import findings_from_issues, right_sizing
from steward.monitoring.maintenance.security import STALE_CHALLENGER_DAYS
from steward.monitoring.maintenance.summaries import Cadence, MaintenanceRunSummary, RunLog, markdown_table
from steward.monitoring.maintenance.technology import TechStatus, technology_findings
from steward.monitoring.model_card import ModelCard, build_model_card, evaluation_findings
from steward.registry.history import ever_champions
from steward.spec import ModelSpec
from tasks.common import current_flow_run_id, registry
from tasks.data import load_model_spec
from tasks.drift import resolve_serving_version
from tasks.maintenance import (
    accuracy_assessment,
    analyse_load,
    analyse_trends,
    archive_past_retention,
    assess_quality,
    audit_security,
    clean_log_partitions,
    clean_temporary_files,
    holdout_slices,
    load_fences,
    open_critical,
    open_issues,
    production_evaluation,
    publish_summary,
    read_drift_history,
    record_findings,
    review_stack,
    rollback_incidents,
    scan_log_days,
    store_model_card,
)
from tasks.training import revalidate_pending

TREND_DAYS = 28
QUALITY_DAYS = 7
MONTH_DAYS = 30
QUARTER_DAYS = 90
SIZING_ISSUES = frozenset({IssueCode.OVER_CAPACITY, IssueCode.IDLE_CAPACITY, IssueCode.LATENCY})


def _as_of(as_of: datetime | None) -> datetime:
    if as_of is None:
        return datetime.now(UTC)
    return as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC)


def _attempt(log: RunLog, name: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a task or subflow; on failure record it as a failed task (and a finding) and return None."""
    state = call(*args, return_state=True, **kwargs)
    if state.is_completed():
        return state.result()
    error = state.result(raise_on_failure=False)
    reason = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else (state.message or state.name)
    get_run_logger().error("maintenance task %r failed: %s", name, reason)
    log.failed(name, reason)
    return None


def _finish(log: RunLog, spec: ModelSpec, sections: list[str]) -> MaintenanceRunSummary:
    recorded = record_findings(spec, log.findings)
    summary = log.summary(recorded, current_flow_run_id())
    publish_summary(summary, sections)
    get_run_logger().info(
        "%s maintenance of %s: %d tasks (%d failed), %d issues, %d actions", log.cadence.value, spec.name,
        len(summary.tasks_completed), len(summary.failed_tasks), len(summary.issues_found), len(summary.actions_taken),
    )
    return summary


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


@flow(name="maintenance-daily", description="Health check, drift report, clean-up past retention, critical alerts.")
def daily_maintenance(spec_path: str, as_of: datetime | None = None) -> MaintenanceRunSummary:
    spec = load_model_spec(spec_path)
    as_of = _as_of(as_of)
    log = RunLog(spec.name, Cadence.DAILY, as_of)

    report = _attempt(log, "health check", health_check, spec_path=spec_path, as_of=as_of)
    if report is not None:
        log.completed("health check", report.summary())
        log.issues.extend(open_issues(spec, [i.fingerprint for i in report.issues]))

    drift = _attempt(log, "drift report", drift_report, spec_path=spec_path, as_of=as_of)
    if drift is not None:
        read = "; the health check's scan of the window reused" if drift.from_health_scan else ""
        log.completed("drift report", f"{drift.reason} ({'event emitted' if drift.announced else 'no event'}{read})")
        if drift.ledger_entry_id:
            log.issues.extend(open_issues(spec, [drift_fingerprint(spec.name)]))
        if drift.announced:
            log.actions.append(f"emitted steward.model.drift-detected for v{drift.version}: {', '.join(drift.columns)}")

    revalidated = _attempt(log, "pending candidates", revalidate_pending, spec, as_of)
    if revalidated is not None:
        log.completed("pending candidates", "; ".join(r.reason for r in revalidated))
        log.actions.extend(f"revalidated v{r.version}: {r.report.summary()}" for r in revalidated if r.report)

    partitions = _attempt(log, "log retention", clean_log_partitions, spec, as_of)
    if partitions is not None:
        days = spec.monitoring.log_retention_days
        log.completed("log retention", f"{len(partitions.removed)} partition(s) past {days} days removed")
        if partitions.removed:
            log.actions.append(
                f"removed {len(partitions.removed)} log partition(s) older than {days} days "
                f"({', '.join(partitions.removed[:6])}{' …' if len(partitions.removed) > 6 else ''}), "
                f"{_mb(partitions.bytes_freed)}"
            )
    temporary = _attempt(log, "temporary files", clean_temporary_files, spec, as_of)
    if temporary is not None:
        days = spec.monitoring.temp_retention_days
        log.completed(
            "temporary files", f"{len(temporary.removed)} removed (older than {days} days); "
            f"{len(temporary.kept_unreplayed)} unreplayed WAL segment(s) kept",
            cleanup_findings(temporary.kept_unreplayed, "temporary-files"),
        )
        if temporary.removed:
            log.actions.append(f"removed {len(temporary.removed)} temporary file(s), {_mb(temporary.bytes_freed)}")

    incidents = _attempt(log, "incident review", rollback_incidents, spec, as_of - timedelta(days=1), as_of)
    if incidents is not None:
        log.completed("incident review", f"{len(incidents)} rollback(s) in the last 24 hours", incidents)
    critical = _attempt(log, "critical alerts", open_critical, spec)
    if critical is not None:
        log.completed("critical alerts", f"{len(critical)} critical ledger entr{'y' if len(critical) == 1 else 'ies'} open")
        log.issues.extend(critical)
    return _finish(log, spec, [])


@flow(name="maintenance-weekly", description="Performance trends, data quality assessment, cost analysis.")
def weekly_maintenance(spec_path: str, as_of: datetime | None = None) -> MaintenanceRunSummary:
    spec = load_model_spec(spec_path)
    as_of = _as_of(as_of)
    log = RunLog(spec.name, Cadence.WEEKLY, as_of)
    sections: list[str] = []

    serving = _attempt(log, "serving version", resolve_serving_version, spec)
    fences = _attempt(log, "outlier reference", load_fences, spec, serving.champion.version) if serving else None
    scans = _attempt(log, "read the prediction log", scan_log_days, spec, TREND_DAYS, as_of, fences=fences,
                     quality_days=QUALITY_DAYS)
    if scans:
        trends = _attempt(log, "performance trends", analyse_trends, spec, scans)
        if trends is not None:
            fitted, found = trends
            log.completed("performance trends", " ".join(t.reading for t in fitted), found)
            sections.append("## Performance trends\n\n" + "\n\n".join(f"- {t.reading}" for t in fitted))
        quality = _attempt(log, "data quality assessment", assess_quality, scans[-QUALITY_DAYS:])
        if quality is not None:
            rows, found = quality
            log.completed("data quality assessment", f"{len(rows)} days checked, {len(found)} issue(s)", found)
            sections.append("## Data quality, last 7 days\n\n" + markdown_table(rows))
        load = _attempt(log, "cost analysis", analyse_load, spec, scans[-QUALITY_DAYS:])
        if load is not None:
            performance, cost, _window = load
            reading = right_sizing(performance, cost, spec, QUALITY_DAYS)
            per_1k = cost.metrics.get("cost_per_1k_requests")
            detail = (f"cost {cost.metrics.get('cost', 0):.2f} for {cost.metrics.get('requests')} requests"
                      + (f" ({per_1k:.4f} per 1k)" if isinstance(per_1k, float) else "") + f". {reading}")
            log.completed("cost analysis", detail, findings_from_issues(cost.issues, "cost-analysis"))
            sections.append("## Cost\n\n" + detail)
    elif scans is not None:
        log.skipped("performance trends", "no days to read")
    return _finish(log, spec, sections)


@flow(name="maintenance-monthly", description="Accuracy and drift trend, infrastructure review, security audit.")
def monthly_maintenance(spec_path: str, as_of: datetime | None = None) -> MaintenanceRunSummary:
    spec = load_model_spec(spec_path)
    as_of = _as_of(as_of)
    log = RunLog(spec.name, Cadence.MONTHLY, as_of)
    sections: list[str] = []

    serving = _attempt(log, "serving version", resolve_serving_version, spec)
    scans = _attempt(log, "read the prediction log", scan_log_days, spec, MONTH_DAYS, as_of)
    drift = _attempt(log, "drift history", read_drift_history, spec, as_of - timedelta(days=MONTH_DAYS), as_of)
    if serving and scans is not None and drift is not None:
        assessed = _attempt(log, "accuracy assessment", accuracy_assessment, spec, serving.champion, scans, drift)
        if assessed is not None:
            assessment, found = assessed
            log.completed("accuracy assessment", assessment.reading, found)
            sections.append("## Accuracy and drift\n\n" + assessment.reading)
    if scans:
        load = _attempt(log, "infrastructure review", analyse_load, spec, scans)
        if load is not None:
            performance, cost, _window = load
            reading = right_sizing(performance, cost, spec, MONTH_DAYS)
            sizing = [i for i in (*performance.issues, *cost.issues) if i.code in SIZING_ISSUES]
            log.completed("infrastructure review", reading, findings_from_issues(sizing, "infrastructure-review"))
            sections.append("## Infrastructure\n\n" + reading)

    recent = {v for s in (scans or [])[-STALE_CHALLENGER_DAYS:] for v in s.versions}
    checks = _attempt(log, "security audit", audit_security, spec, as_of, sorted(recent))
    if checks is not None:
        failed = [c for c in checks if c.status is CheckStatus.FAILED]
        log.completed(
            "security audit", f"{len(checks)} checks, {len(failed)} failed: " + (", ".join(c.name for c in failed) or "none"),
            [f for c in checks for f in c.findings],
        )
        sections.append("## Security audit\n\n" + markdown_table(
            [{"check": c.name, "status": c.status.value, "detail": c.detail} for c in checks]
        ))
        if any(c.name == "versions past retention" and c.status is CheckStatus.FAILED for c in checks):
            archived = _attempt(log, "archive versions past retention", archive_past_retention, spec)
            if archived:
                log.completed("archive versions past retention", ", ".join(f"v{v}" for v in archived))
                log.actions.append(f"archived {', '.join(f'v{v}' for v in archived)} (past retention; tags only)")
    return _finish(log, spec, sections)


@dataclass(frozen=True)
class ModelCardOutcome:
    card: ModelCard
    uri: str
    findings: tuple[Finding, ...]


@flow(name="model-card", description="Evaluate the champion overall and per slice and regenerate its model card.")
def model_card(spec_path: str, as_of: datetime | None = None) -> ModelCardOutcome:
    """The champion on its held-out rows and on the last 90 days of labelled traffic, as a card in MLflow."""
    spec = load_model_spec(spec_path)
    as_of = _as_of(as_of)
    champion = resolve_serving_version(spec).champion
    scans = scan_log_days(spec, QUARTER_DAYS, as_of, labelled_columns=spec.gates.slice_features)
    production = production_evaluation(spec, champion, scans)
    slices = holdout_slices(spec, champion.version)
    drift = read_drift_history(spec, as_of - timedelta(days=QUARTER_DAYS), as_of)
    former = [v for v in ever_champions(registry().history(spec.name)) if v != champion.version]
    card = build_model_card(
        spec, champion, holdout_slices=slices, production=production if production.labelled_rows else None,
        drift_records=drift, former_champions=former, generated_at=as_of,
    )
    uri = store_model_card(spec, champion.version, card.to_markdown())
    return ModelCardOutcome(card, uri, tuple(evaluation_findings(spec, card)))


def _business_review(spec: ModelSpec, as_of: datetime) -> Finding:
    quarter = f"{as_of.year}-Q{(as_of.month - 1) // 3 + 1}"
    return Finding(
        f"business alignment review {quarter}",
        f"A person checks that {spec.name} still serves its purpose ({spec.description or 'no description in the spec'}), "
        f"that {spec.primary_metric} and the SLOs still measure what matters, and closes this entry with the outcome.",
        MaintenanceKind.PREVENTIVE, Priority.LOW, "quarterly-review", f"business-review:{quarter}",
    )


@flow(name="maintenance-quarterly", description="Comprehensive evaluation and model card, technology review.")
def quarterly_maintenance(spec_path: str, as_of: datetime | None = None) -> MaintenanceRunSummary:
    spec = load_model_spec(spec_path)
    as_of = _as_of(as_of)
    log = RunLog(spec.name, Cadence.QUARTERLY, as_of)
    sections: list[str] = []

    outcome = _attempt(log, "comprehensive evaluation and model card", model_card, spec_path=spec_path, as_of=as_of)
    if outcome is not None:
        card = outcome.card
        log.completed(
            "comprehensive evaluation and model card",
            f"v{card.version}: {len(card.slices)} slices evaluated, {len(card.limitations)} known limitations; "
            f"card stored at {outcome.uri}",
            outcome.findings,
        )
        log.actions.append(f"regenerated the model card of v{card.version} ({outcome.uri})")
    serving = outcome.card.version if outcome is not None else None
    checks = _attempt(log, "technology review", review_stack, spec, serving)
    if checks is not None:
        off = [c for c in checks if c.status is not TechStatus.OK]
        log.completed("technology review", f"{len(checks)} packages, {len(off)} differ from the lock",
                      technology_findings(checks))
        sections.append("## Technology review\n\n" + markdown_table([
            {"package": c.package, "installed": c.installed, "locked": ", ".join(c.locked), "declared": c.declared,
             "trained with": c.trained_with, "status": c.status.value} for c in checks
        ]))
    log.completed("business alignment review", "opened for a person to do", [_business_review(spec, as_of)])
    return _finish(log, spec, sections)
