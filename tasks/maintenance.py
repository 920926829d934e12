"""Tasks of the scheduled maintenance: read the log once per day, clean up, audit, evaluate, record."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

import steward
from steward.config import get_settings
from steward.monitoring.health import CheckResult, HealthWindow, OutlierFences, check_cost, check_performance
from steward.monitoring.ledger import EntryStatus, MaintenanceKind, Priority
from steward.monitoring.maintenance import (
    DUE_AFTER,
    KEY_PACKAGES,
    TOKEN_ISSUED_ENV,
    AccuracyAssessment,
    AuditCheck,
    DayScan,
    DriftHistory,
    DriftRecord,
    Finding,
    Issue,
    MaintenanceRunSummary,
    Partition,
    ScratchEntry,
    ScratchKind,
    TechCheck,
    assess_accuracy,
    audit_admin_token,
    audit_digests,
    audit_retention,
    declared_requirements,
    expired_partitions,
    expired_scratch,
    find_stale_aliases,
    is_partial_part,
    locked_versions,
    normalize,
    partition_day,
    performance_trends,
    production_metric,
    review_technology,
    scan_day,
    scratch_folder,
    segment_written,
    summarize_quality,
    wal_segment_parts,
)
from steward.monitoring.model_card import CARD_ARTIFACT_PATH, CARD_FILE, LoggedEvaluation, evaluate_production
from steward.monitoring.slo import SLOStore, day_bounds
from steward.monitoring.trends import Trend
from steward.registry.adapter import VersionInfo
from steward.registry.errors import RegistryError
from steward.registry.history import CHALLENGER, CHAMPION, ChangeKind
from steward.spec import ModelSpec
from steward.store.log import LABELS, PREDICTIONS, WAL_FOLDER
from steward.training.data import prepare_features
from steward.training.evaluation import SliceMetric, evaluate_slices
from tasks.common import current_flow_run_id, ledger, publish_markdown, registry, store

# ------------------------------------------------------------------------------------------ ledger


@task(name="record-findings", retries=2, retry_delay_seconds=[2, 5])
def record_findings(spec: ModelSpec, findings: Sequence[Finding]) -> tuple[Issue, ...]:
    """Each finding becomes a ledger entry; a repeat of an open one counts as another occurrence."""
    book, run_id, now = ledger(), current_flow_run_id(), datetime.now(UTC)
    return tuple(
        Issue.from_entry(book.record(
            spec.name, f.title, detail=f.detail, kind=f.kind, priority=f.priority, source=f.source,
            fingerprint=f.fingerprint, due=now + DUE_AFTER[f.priority], flow_run_id=run_id, incident=f.incident,
        ))
        for f in findings
    )


@task(name="look-up-ledger-entries", retries=2, retry_delay_seconds=[2, 5])
def open_issues(spec: ModelSpec, fingerprints: Sequence[str]) -> tuple[Issue, ...]:
    """The open entries another flow recorded for these findings (the health check's, the drift report's)."""
    wanted = set(fingerprints)
    return tuple(
        Issue.from_entry(e) for e in ledger().entries(spec.name, status=EntryStatus.OPEN) if e.fingerprint in wanted
    )


@task(name="review-critical-alerts", retries=2, retry_delay_seconds=[2, 5])
def open_critical(spec: ModelSpec) -> tuple[Issue, ...]:
    return tuple(
        Issue.from_entry(e, "open")
        for e in ledger().entries(spec.name, status=EntryStatus.OPEN)
        if e.priority is Priority.CRITICAL
    )


@task(name="review-incidents", retries=2, retry_delay_seconds=[2, 5])
def rollback_incidents(spec: ModelSpec, since: datetime, until: datetime) -> list[Finding]:
    """Every rollback recorded in the registry's history in the period is an incident."""
    if not registry().model_exists(spec.name):
        return []
    return [
        Finding(
            f"rollback from v{e.from_version} to v{e.to_version}",
            f"{e.time:%Y-%m-%d %H:%M} UTC by {e.actor}: {e.reason}. Find the cause before promoting "
            f"v{e.from_version} (or a fix) again.",
            MaintenanceKind.CORRECTIVE, Priority.HIGH, "incident-review", f"incident:rollback:{e.sequence}",
            incident=True,
        )
        for e in registry().history(spec.name)
        if e.kind is ChangeKind.ROLLBACK and since <= e.time < until
    ]


# ------------------------------------------------------------------------------------------ clean-up


@dataclass(frozen=True)
class Cleanup:
    removed: tuple[str, ...]
    bytes_freed: int
    kept_unreplayed: tuple[str, ...] = ()


def _size(fs, path: str) -> int:
    try:
        return int(fs.du(path))
    except (FileNotFoundError, OSError):
        return 0


@task(name="remove-expired-log-partitions", retries=2, retry_delay_seconds=[2, 5])
def clean_log_partitions(spec: ModelSpec, as_of: datetime) -> Cleanup:
    """Day partitions of this model's predictions and labels whose every row is past log retention."""
    log = store()
    partitions = []
    for dataset in (PREDICTIONS, LABELS):
        base = f"{log.root}/{dataset}/model={spec.name}"
        try:
            folders = log.fs.ls(base, detail=False)
        except FileNotFoundError:
            continue
        for folder in folders:
            day = partition_day(folder)
            if day is not None:
                partitions.append(Partition(dataset, day, folder))
    removed, freed = [], 0
    for partition in expired_partitions(partitions, as_of, spec.monitoring.log_retention_days):
        freed += _size(log.fs, partition.path)
        log.fs.rm(partition.path, recursive=True)
        removed.append(f"{partition.dataset}/date={partition.day}")
    return Cleanup(tuple(removed), freed)


def _local_entries(root: Path, kind: ScratchKind) -> list[ScratchEntry]:
    if not root.is_dir():
        return []
    return [
        ScratchEntry(str(p), datetime.fromtimestamp(p.stat().st_mtime, UTC), kind,
                     sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size)
        for p in root.iterdir()
    ]


@task(name="remove-temporary-files", retries=2, retry_delay_seconds=[2, 5])
def clean_temporary_files(spec: ModelSpec, as_of: datetime) -> Cleanup:
    """Steward's scratch files, unfinished log parts and replayed WAL segments past ``temp_retention_days``.

    A WAL segment whose rows are not all in Parquet, or that a live writer holds, is never removed.
    """
    log = store()
    retention = spec.monitoring.temp_retention_days
    entries = _local_entries(scratch_folder(get_settings().home, spec.name), ScratchKind.SCRATCH)
    for dataset in (PREDICTIONS, LABELS):
        for path in log.fs.glob(f"{log.root}/{dataset}/model={spec.name}/date=*/.part-*"):
            if is_partial_part(path.rsplit("/", 1)[-1]):
                info = log.fs.info(path)
                modified = info.get("mtime") or info.get("LastModified") or info.get("created")
                when = modified if isinstance(modified, datetime) else datetime.fromtimestamp(float(modified), UTC)
                entries.append(ScratchEntry(path, when.astimezone(UTC), ScratchKind.PARTIAL_PART, int(info.get("size", 0))))
    unreplayed = []
    wal = Path(log.root) / WAL_FOLDER
    if log.local and wal.is_dir():
        for segment in sorted(wal.glob("*.jsonl")):
            with segment.open("r", encoding="utf-8") as handle:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live writer's segment
                parts = wal_segment_parts(handle)
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            listing = {
                key: [p.rsplit("/", 1)[-1] for p in log.fs.glob(f"{log.partition_path(*key)}/part-{segment.stem}*")]
                for key in parts
            }
            if segment_written(segment.stem, parts, listing) or not parts:
                stat = segment.stat()
                entries.append(ScratchEntry(str(segment), datetime.fromtimestamp(stat.st_mtime, UTC),
                                            ScratchKind.WAL_SEGMENT, stat.st_size))
            else:
                unreplayed.append(segment.name)
    removed, freed = [], 0
    for entry in expired_scratch(entries, as_of, retention):
        if entry.kind is ScratchKind.PARTIAL_PART:
            log.fs.rm(entry.path)
        elif Path(entry.path).is_dir():
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            Path(entry.path).unlink(missing_ok=True)
        removed.append(f"{entry.kind.value}: {entry.path}")
        freed += entry.size
    return Cleanup(tuple(removed), freed, tuple(unreplayed))


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
    """The last ``days`` UTC days before ``as_of``, each read once, with labels known at ``as_of``.

    Each day's SLO record is written again when this view is newer than the stored one (labels
    arrive late), so the trends read complete days.
    """
    log = store()
    last = (as_of - timedelta(microseconds=1)).date()
    first = last - timedelta(days=days - 1)
    labels = log.read_labels(spec.name, start=day_bounds(first)[0], end=as_of)
    slo = SLOStore(log.uri)
    stored = {record.day: record for record in slo.read(spec.name, first, last)}
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
            slo.write(scan.slo)
        scans.append(scan)
    return scans


def _requests(scans: Sequence[DayScan]) -> pd.DataFrame:
    return pd.concat([s.requests for s in scans], ignore_index=True)


@task(name="analyse-load", cache_policy=NO_CACHE)
def analyse_load(spec: ModelSpec, scans: Sequence[DayScan]) -> tuple[CheckResult, CheckResult, HealthWindow]:
    """The health check's performance and cost checks over the whole period (served requests only)."""
    window = HealthWindow(day_bounds(scans[0].day)[0], day_bounds(scans[-1].day)[1])
    requests = _requests(scans)
    return check_performance(requests, window, spec), check_cost(requests, window, spec), window


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
    labelled = pd.concat([s.labelled for s in scans], ignore_index=True)
    labelled = labelled[labelled["version"] == champion.version] if len(labelled) else labelled
    return assess_accuracy(
        spec=spec, version=champion.version, production_value=production_metric(labelled, spec),
        labelled_rows=len(labelled), baseline_value=champion.metrics.get(spec.primary_metric), drift_records=drift,
    )


@task(name="evaluate-production", cache_policy=NO_CACHE)
def production_evaluation(spec: ModelSpec, champion: VersionInfo, scans: Sequence[DayScan]) -> LoggedEvaluation:
    """The champion on the period's labelled traffic, overall (every metric it was registered with) and per slice."""
    labelled = pd.concat([s.labelled for s in scans], ignore_index=True)
    mine = labelled[labelled["version"] == champion.version] if len(labelled) else labelled
    served = sum(int((s.requests["version"] == champion.version).sum()) for s in scans)
    total = sum(s.labelled_total for s in scans)
    covered = [s.day for s in scans if s.labelled_total] or [scans[0].day, scans[-1].day]
    return evaluate_production(
        mine, spec, metrics=sorted(champion.metrics), start=day_bounds(covered[0])[0],
        end=day_bounds(covered[-1])[1], served_rows=served,
        sampled_from=total if total > len(labelled) else None,
    )


@task(name="read-drift-history", retries=2, retry_delay_seconds=[2, 5])
def read_drift_history(spec: ModelSpec, start: datetime, end: datetime) -> list[DriftRecord]:
    return DriftHistory(store().uri).records(spec.name, start, end)


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
    roles = {
        CHAMPION: reg.alias_version(spec.name, CHAMPION),
        CHALLENGER: reg.alias_version(spec.name, CHALLENGER),
        "rollback target": reg.rollback_target(spec.name),
    }
    digests: dict[str, tuple[str, str | None]] = {}
    for role, version in roles.items():
        if version is None or any(v == version for v, _ in digests.values()):
            continue
        try:
            reg.verify_version(spec.name, version)
            digests[role] = (version, None)
        except RegistryError as error:
            digests[role] = (version, str(error))
    versions, history = reg.list_versions(spec.name), reg.history(spec.name)
    return [
        *checks,
        *audit_digests(spec.name, digests),
        find_stale_aliases(versions, history, active_versions, as_of),
        audit_retention(versions, history),
    ]


@task(name="archive-versions-past-retention", retries=2, retry_delay_seconds=[2, 5])
def archive_past_retention(spec: ModelSpec) -> tuple[str, ...]:
    return registry().apply_retention(spec.name).archive


def project_root() -> Path:
    """Where pyproject.toml and uv.lock sit for this checkout of Steward."""
    return Path(steward.__file__).resolve().parent.parent


@task(name="review-technology")
def review_stack(spec: ModelSpec, champion: str | None) -> list[TechCheck]:
    """Installed key packages against uv.lock and pyproject, and the champion's training environment."""
    root = project_root()
    lock, pyproject = root / "uv.lock", root / "pyproject.toml"
    if not lock.is_file():
        raise FileNotFoundError(
            f"no uv.lock at {lock}: the technology review compares installed versions with the lock file; "
            "run it from a checkout of Steward (where `uv lock` writes it)"
        )
    installed = {}
    for name in KEY_PACKAGES:
        try:
            installed[normalize(name)] = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed[normalize(name)] = None
    trained = {}
    if champion is not None:
        trained = json.loads(registry().get_version(spec.name, champion).tags.get("steward.packages", "{}") or "{}")
    declared = declared_requirements(pyproject.read_text()) if pyproject.is_file() else {}
    return review_technology(KEY_PACKAGES, installed, locked_versions(lock.read_text()), declared, trained)


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

