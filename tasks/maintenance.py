"""Tasks of the scheduled maintenance: read the log once per day, clean up, audit, evaluate, record."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from steward.config import get_settings
from steward.findings import Finding, Priority
from steward.monitoring.drift.history import DriftRecord
from steward.monitoring.health.data_quality import OutlierFences
from steward.monitoring.health.report import CheckResult, HealthWindow
from steward.monitoring.ledger import EntryStatus
from steward.monitoring.maintenance.retention import (
    Cleanup,
    remove_expired_partitions,
    remove_expired_scratch,
    scratch_folder,
)
from steward.monitoring.maintenance.scans import (
    AccuracyAssessment,
    DayScan,
    assess_period_accuracy,
    evaluate_period,
    period_load,
    scan_log,
    summarize_quality,
)
from steward.monitoring.maintenance.security import (
    TOKEN_ISSUED_ENV,
    AuditCheck,
    audit_admin_token,
    audit_digests,
    audit_retention,
    find_stale_aliases,
    rollback_findings,
    verify_digests,
)
from steward.monitoring.maintenance.summaries import FindingState, MaintenanceRunSummary, RecordedFinding
from steward.monitoring.maintenance.technology import (
    TechCheck,
    project_root,
    review_checkout,
)
from steward.monitoring.model_card import CARD_ARTIFACT_PATH, CARD_FILE, LoggedEvaluation
from steward.monitoring.trends import Trend, performance_trends
from steward.registry.adapter import VersionInfo
from steward.registry.errors import RegistryError
from steward.spec import ModelSpec
from steward.training.data import prepare_features
from steward.training.evaluation import SliceMetric, evaluate_slices
from tasks.common import current_flow_run_id, ledger, publish_markdown, registry, services, store

# ------------------------------------------------------------------------------------------ ledger


@task(name="record-findings", retries=2, retry_delay_seconds=[2, 5])
def record_findings(spec: ModelSpec, findings: Sequence[Finding]) -> tuple[RecordedFinding, ...]:
    """Each finding becomes a ledger entry; a repeat of an open one counts as another occurrence."""
    book, run_id = ledger(), current_flow_run_id()
    return tuple(RecordedFinding.from_entry(book.record_finding(spec.name, f, flow_run_id=run_id)) for f in findings)


@task(name="look-up-ledger-entries", retries=2, retry_delay_seconds=[2, 5])
def open_issues(spec: ModelSpec, fingerprints: Sequence[str]) -> tuple[RecordedFinding, ...]:
    """The open entries another flow recorded for these findings (the health check's, the drift report's)."""
    wanted = set(fingerprints)
    return tuple(
        RecordedFinding.from_entry(e) for e in ledger().entries(spec.name, status=EntryStatus.OPEN)
        if e.fingerprint in wanted
    )


@task(name="review-critical-alerts", retries=2, retry_delay_seconds=[2, 5])
def open_critical(spec: ModelSpec) -> tuple[RecordedFinding, ...]:
    return tuple(
        RecordedFinding.from_entry(e, FindingState.OPEN)
        for e in ledger().entries(spec.name, status=EntryStatus.OPEN)
        if e.priority is Priority.CRITICAL
    )


@task(name="review-incidents", retries=2, retry_delay_seconds=[2, 5])
def rollback_incidents(spec: ModelSpec, since: datetime, until: datetime) -> list[Finding]:
    """Every rollback recorded in the registry's history in the period is an incident."""
    if not registry().model_exists(spec.name):
        return []
    return rollback_findings(registry().history(spec.name), since, until)


# ------------------------------------------------------------------------------------------ clean-up


@task(name="remove-expired-log-partitions", retries=2, retry_delay_seconds=[2, 5])
def clean_log_partitions(spec: ModelSpec, as_of: datetime) -> Cleanup:
    """Day partitions of this model's predictions and labels whose every row is past log retention."""
    return remove_expired_partitions(store(), spec.name, as_of, spec.monitoring.log_retention_days)


@task(name="remove-temporary-files", retries=2, retry_delay_seconds=[2, 5])
def clean_temporary_files(spec: ModelSpec, as_of: datetime) -> Cleanup:
    """Steward's scratch files, unfinished log parts and replayed WAL segments past ``temp_retention_days``."""
    scratch = scratch_folder(get_settings().home, spec.name)
    return remove_expired_scratch(store(), spec.name, scratch, as_of, spec.monitoring.temp_retention_days)


# ------------------------------------------------------------------------------------------ reading the log


@task(name="load-outlier-fences", retries=2, retry_delay_seconds=[2, 5], cache_policy=NO_CACHE)
def load_fences(spec: ModelSpec, version: str) -> OutlierFences:
    """The health check's outlier fences, from the serving version's training sample."""
    reference = prepare_features(registry().load_dataset(spec.name, version, "reference"), spec)
    return OutlierFences.from_reference(reference, spec, version)


@task(name="scan-log-days", retries=2, retry_delay_seconds=[2, 5], cache_policy=NO_CACHE)
def scan_log_days(
    spec: ModelSpec,
    days: int,
    as_of: datetime,
    *,
    fences: OutlierFences | None = None,
    quality_days: int = 0,
    labelled_columns: Sequence[str] = (),
) -> list[DayScan]:
    """The last ``days`` UTC days before ``as_of``, each read once; their SLO records refreshed."""
    log = store()
    return scan_log(log, services().slo, spec, days, as_of, fences=fences, quality_days=quality_days,
                    labelled_columns=labelled_columns)


@task(name="analyse-load", cache_policy=NO_CACHE)
def analyse_load(spec: ModelSpec, scans: Sequence[DayScan]) -> tuple[CheckResult, CheckResult, HealthWindow]:
    """The health check's performance and cost checks over the whole period (served requests only)."""
    return period_load(spec, scans)


@task(name="analyse-performance-trends", cache_policy=NO_CACHE)
def analyse_trends(spec: ModelSpec, scans: Sequence[DayScan]) -> tuple[list[Trend], list[Finding]]:
    return performance_trends([s.slo for s in scans], spec)


@task(name="assess-data-quality", cache_policy=NO_CACHE)
def assess_quality(scans: Sequence[DayScan]) -> tuple[list[dict], list[Finding]]:
    return summarize_quality([(s.day, s.quality) for s in scans if s.quality is not None], "data-quality-assessment")


@task(name="assess-accuracy", cache_policy=NO_CACHE)
def accuracy_assessment(
    spec: ModelSpec, champion: VersionInfo, scans: Sequence[DayScan], drift: Sequence[DriftRecord]
) -> tuple[AccuracyAssessment, list[Finding]]:
    """The champion's primary metric on the period's labelled traffic against its held-out value, and drift."""
    return assess_period_accuracy(spec, champion, scans, drift)


@task(name="evaluate-production", cache_policy=NO_CACHE)
def production_evaluation(spec: ModelSpec, champion: VersionInfo, scans: Sequence[DayScan]) -> LoggedEvaluation:
    """The champion on the period's labelled traffic, overall (every metric it was registered with) and per slice."""
    return evaluate_period(spec, champion, scans)


@task(name="read-drift-history", retries=2, retry_delay_seconds=[2, 5])
def read_drift_history(spec: ModelSpec, start: datetime, end: datetime) -> list[DriftRecord]:
    return services().drift_history.records(spec.name, start, end)


# ------------------------------------------------------------------------------------------ audit


@task(name="audit-security", retries=2, retry_delay_seconds=[2, 5])
def audit_security(spec: ModelSpec, as_of: datetime, active_versions: Sequence[str]) -> list[AuditCheck]:
    """Admin token, artifact digests of every version a rollback or promotion could reach, aliases, retention."""
    reg = registry()
    settings = get_settings()
    token = settings.admin_token.get_secret_value() if settings.admin_token is not None else None
    checks = audit_admin_token(token, os.environ.get(TOKEN_ISSUED_ENV), as_of)
    if not reg.model_exists(spec.name):
        raise RegistryError(f"no model named {spec.name!r} in the registry; train one with `steward train`")
    versions, history = reg.list_versions(spec.name), reg.history(spec.name)
    return [
        *checks,
        *audit_digests(spec.name, verify_digests(reg, spec.name)),
        find_stale_aliases(versions, history, active_versions, as_of),
        audit_retention(versions, history),
    ]


@task(name="archive-versions-past-retention", retries=2, retry_delay_seconds=[2, 5])
def archive_past_retention(spec: ModelSpec) -> tuple[str, ...]:
    return registry().apply_retention(spec.name).archive


@task(name="review-technology")
def review_stack(spec: ModelSpec, champion: str | None) -> list[TechCheck]:
    """Installed key packages against uv.lock and pyproject, and the champion's training environment."""
    trained = {}
    if champion is not None:
        trained = json.loads(registry().get_version(spec.name, champion).tags.get("steward.packages", "{}") or "{}")
    return review_checkout(project_root(), trained)


# ------------------------------------------------------------------------------------------ evaluation and card


@task(name="evaluate-holdout-slices", retries=1, retry_delay_seconds=[5], cache_policy=NO_CACHE)
def holdout_slices(spec: ModelSpec, version: str) -> list[SliceMetric]:
    """The version's primary metric per slice on its own held-out rows (the model is digest-verified)."""
    model = registry().load_model(spec.name, version).model
    raw = registry().load_dataset(spec.name, version, "holdout")
    holdout = prepare_features(raw, spec)
    holdout[spec.target] = raw[spec.target].to_numpy()
    return evaluate_slices(model, holdout, spec)


@task(name="store-model-card", retries=2, retry_delay_seconds=[2, 5])
def store_model_card(spec: ModelSpec, version: str, markdown: str) -> str:
    """The card as Markdown with the version in MLflow (replacing the previous card) and as a Prefect artifact."""
    home = scratch_folder(get_settings().home, spec.name)
    home.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=home) as scratch:
        path = Path(scratch) / CARD_FILE
        path.write_text(markdown)
        uri = registry().log_version_artifact(spec.name, version, path, CARD_ARTIFACT_PATH)
    publish_markdown(markdown, "model-card", spec.name, description=f"model card of {spec.name} v{version}")
    return uri


@task(name="publish-maintenance-summary")
def publish_summary(summary: MaintenanceRunSummary, sections: Sequence[str] = ()) -> None:
    markdown = summary.to_markdown() + "".join(f"\n\n{s}" for s in sections)
    publish_markdown(
        markdown, "maintenance", summary.cadence.value, summary.model,
        description=f"{len(summary.issues_found)} issues, {len(summary.failed_tasks)} failed tasks",
    )

