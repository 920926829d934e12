"""Scheduled maintenance: what each check concludes, as pure functions over plain inputs.

The flows in ``flows/maintenance.py`` and ``flows/drift_report.py`` gather the inputs (prediction
log, registry, ledger, environment) and call these; everything here can be tested on small
objects without Prefect, MLflow or a store.  ``DriftHistory`` is the one adapter: the drift
decisions kept for hysteresis, as append-only JSON files beside the prediction log.

Sections: run summaries and findings; retention of log partitions and temporary files; drift
monitoring state; reading the log day by day (SLO days, data quality, requests, labels) on top
of ``steward.health`` and ``steward.slo``; trends and the accuracy assessment; security audit;
technology review.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import fsspec
import numpy as np
import pandas as pd

from steward.monitoring.drift import DriftResult, MaterialDriftDecision
from steward.monitoring.health import (
    MIN_LABELLED,
    CheckResult,
    IssueCode,
    OutlierFences,
    check_data_quality,
    metric_value,
    outcomes,
    served_requests,
)
from steward.monitoring.health import Issue as HealthIssue
from steward.monitoring.ledger import LedgerEntry, MaintenanceKind, Priority
from steward.monitoring.slo import SLODay, compute_slo_day
from steward.monitoring.trends import Trend, TrendVerdict, fit_trend
from steward.registry.adapter import VersionInfo
from steward.registry.history import CHALLENGER, CHAMPION, AuditEntry, select_for_archive
from steward.spec import ModelSpec
from steward.store.log import join_labels, wal_line_parts
from steward.training.evaluation import metric_change

# ============================================================================================
# Run summaries and findings


class Cadence(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"


class TaskStatus(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"


# When a finding is due, counted from when it is recorded: the ledger orders by priority, then due.
# The same schedule as the health check's issues, so entries from both order consistently.
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


@dataclass(frozen=True)
class TaskRecord:
    name: str
    status: TaskStatus
    detail: str


@dataclass(frozen=True)
class Issue:
    """A finding as it stands in the ledger after the run."""

    entry_id: str
    title: str
    detail: str
    kind: MaintenanceKind
    priority: Priority
    occurrences: int
    incident: bool
    state: Literal["new", "seen again", "open"]

    @classmethod
    def from_entry(cls, entry: LedgerEntry, state: Literal["new", "seen again", "open"] | None = None) -> Issue:
        if state is None:
            state = "new" if entry.occurrences == 1 else "seen again"
        return cls(entry.id, entry.title, entry.detail, entry.kind, entry.priority, entry.occurrences,
                   entry.incident, state)


@dataclass(frozen=True)
class MaintenanceRunSummary:
    """What one scheduled maintenance run did: tasks completed, issues found, actions taken."""

    model: str
    cadence: Cadence
    as_of: datetime
    tasks_completed: tuple[TaskRecord, ...]
    issues_found: tuple[Issue, ...]
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
    issues: list[Issue] = field(default_factory=list)
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

    def summary(self, recorded: Iterable[Issue], flow_run_id: str | None) -> MaintenanceRunSummary:
        """The run as recorded; an entry listed twice (a health finding that is also an open critical alert) once."""
        issues: dict[str, Issue] = {}
        for issue in [*self.issues, *recorded]:
            issues.setdefault(issue.entry_id, issue)
        return MaintenanceRunSummary(
            self.model, self.cadence, self.as_of, tuple(self.tasks), tuple(issues.values()), tuple(self.actions),
            flow_run_id,
        )


# ============================================================================================
# Retention: log partitions and temporary files


@dataclass(frozen=True)
class Partition:
    """One ``date=`` folder of the prediction log (``dataset`` is predictions or labels)."""

    dataset: str
    day: date
    path: str


_DATE_FOLDER = re.compile(r"date=(\d{4}-\d{2}-\d{2})/?$")


def partition_day(path: str) -> date | None:
    """The day of a ``.../date=YYYY-MM-DD`` folder, or None for anything else."""
    match = _DATE_FOLDER.search(path)
    return date.fromisoformat(match.group(1)) if match else None


def retention_cutoff(as_of: datetime, days: float) -> datetime:
    return as_of - timedelta(days=days)


def expired_partitions(partitions: Iterable[Partition], as_of: datetime, retention_days: int) -> list[Partition]:
    """Partitions whose every row is older than the retention: the day ended before ``as_of - days``.

    A partition that still holds one row within retention is kept whole (parts are never split).
    """
    cutoff = retention_cutoff(as_of, retention_days)
    return sorted(
        (p for p in partitions if datetime.combine(p.day + timedelta(days=1), datetime.min.time(), UTC) <= cutoff),
        key=lambda p: (p.dataset, p.day),
    )


class ScratchKind(StrEnum):
    SCRATCH = "scratch"  # <home>/tmp/<model>/...: Steward's own working files (reports, downloads)
    PARTIAL_PART = "partial part"  # .part-*.parquet.tmp in a log partition: a write that never finished
    WAL_SEGMENT = "replayed WAL segment"  # <store>/_wal/*.jsonl whose rows are all in Parquet already


@dataclass(frozen=True)
class ScratchEntry:
    path: str
    modified: datetime
    kind: ScratchKind
    size: int = 0


def expired_scratch(entries: Iterable[ScratchEntry], as_of: datetime, retention_days: int) -> list[ScratchEntry]:
    """Temporary files last modified before ``as_of - retention_days``."""
    cutoff = retention_cutoff(as_of, retention_days)
    return sorted((e for e in entries if e.modified < cutoff), key=lambda e: e.path)


def is_partial_part(leaf: str) -> bool:
    """The temporary name a log part has while it is written (``.part-<id>.parquet.tmp``)."""
    return leaf.startswith(".part-") and leaf.endswith(".tmp")


def wal_segment_parts(lines: Iterable[str]) -> set[tuple[str, str, str]]:
    """The (dataset, model, day) parts a WAL segment's complete lines write to.

    A torn last line (no newline) was never acknowledged and is not counted, as in replay.
    """
    parts: set[tuple[str, str, str]] = set()
    for line in lines:
        if line.endswith("\n"):
            parts |= wal_line_parts(line)
    return parts


def segment_written(stem: str, parts: Iterable[tuple[str, str, str]], listing: Mapping[tuple[str, str, str], Sequence[str]]) -> bool:
    """Whether every part a segment writes exists as ``part-<stem>.parquet`` (or ``-<i>``) in the log.

    Parts are renamed into place only when complete, so then the segment holds nothing the log
    lacks and may go; otherwise it must stay for the next durable writer to replay.
    """
    wanted = list(parts)
    return bool(wanted) and all(
        any(leaf == f"part-{stem}.parquet" or re.fullmatch(rf"part-{re.escape(stem)}-\d+\.parquet", leaf)
            for leaf in listing.get(key, ()))
        for key in wanted
    )


def cleanup_findings(unreplayed: Sequence[str], source: str) -> list[Finding]:
    if not unreplayed:
        return []
    return [
        Finding(
            f"{len(unreplayed)} write-ahead-log segment(s) hold rows that are not in the prediction log",
            f"Segments {', '.join(unreplayed[:5])}{' …' if len(unreplayed) > 5 else ''} were left by a gateway "
            "that stopped before writing them; they are kept. Start a gateway in durable mode on the same "
            "WAL folder (`steward serve --log-mode durable`), which replays them into Parquet.",
            MaintenanceKind.CORRECTIVE, Priority.HIGH, source, "cleanup:unreplayed-wal",
        )
    ]


# ============================================================================================
# Drift monitoring: windows, the persisted decision (hysteresis), when to announce


@dataclass(frozen=True)
class DriftWindow:
    """The current window of a drift check: a time range, or the last N rows before ``end``."""

    end: datetime
    start: datetime | None = None
    last_rows: int | None = None
    lookback_days: int | None = None

    def describe(self) -> str:
        if self.last_rows is not None:
            return f"last {self.last_rows} rows before {self.end:%Y-%m-%d %H:%M} UTC"
        assert self.start is not None
        return f"{self.start:%Y-%m-%d %H:%M} to {self.end:%Y-%m-%d %H:%M} UTC"


def choose_drift_window(
    *,
    as_of: datetime,
    window_hours: float | None,
    last_rows: int | None,
    default_days: int,
    lookback_days: int,
) -> DriftWindow:
    """The window to check: ``window_hours`` or ``last_rows`` (not both), else the spec's ``window_days``."""
    if as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=UTC)
    if window_hours is not None and last_rows is not None:
        raise ValueError("pass window_hours or last_rows, not both: one defines the current window")
    if window_hours is not None:
        if not window_hours > 0:
            raise ValueError(f"window_hours must be positive, got {window_hours}")
        return DriftWindow(end=as_of, start=as_of - timedelta(hours=window_hours))
    if last_rows is not None:
        if last_rows < 1:
            raise ValueError(f"last_rows must be at least 1, got {last_rows}")
        return DriftWindow(end=as_of, last_rows=last_rows, lookback_days=lookback_days)
    return DriftWindow(end=as_of, start=as_of - timedelta(days=default_days))


def prediction_drift_column(spec: ModelSpec) -> tuple[str, Literal["numeric", "categorical"]]:
    """Which logged output is watched for drift: the score for binary and regression, the class otherwise."""
    from steward.spec import Task

    if spec.task is Task.MULTICLASS_CLASSIFICATION:
        return "prediction", "categorical"
    return "score", "numeric"


# Fewer current rows than this and the check is skipped: the statistics would mostly measure noise.
MIN_DRIFT_ROWS = 100
PROFILE_ARTIFACT = "drift/reference_profile.parquet"
IMPORTANCE_ARTIFACT = "drift/feature_importance.json"
REPORTS_ARTIFACT_DIR = "drift/reports"
SCRATCH_FOLDER = "tmp"


def scratch_folder(home: Path, model: str) -> Path:
    """Steward's working files for ``model`` (drift HTML, model cards) before they go to MLflow.

    Files normally live here for the seconds of an upload; the daily cleanup removes anything
    older than ``monitoring.temp_retention_days`` (left by a crashed run).
    """
    return home / SCRATCH_FOLDER / model


def reference_outputs(estimator: Any, features: pd.DataFrame, spec: ModelSpec) -> pd.Series:
    """The model's output on reference rows, as the gateway logs it (``score`` or ``prediction``).

    Binary: P(second class); regression: the value; multiclass: the predicted class as text.
    """
    from steward.spec import Task
    from steward.store.log import label_text

    column, _ = prediction_drift_column(spec)
    if spec.task is Task.REGRESSION:
        values = np.asarray(estimator.predict(features), dtype="float64")
    else:
        probabilities = np.asarray(estimator.predict_proba(features), dtype="float64")
        if spec.task is Task.BINARY_CLASSIFICATION:
            values = probabilities[:, 1]
        else:
            classes = list(estimator.classes_)
            values = np.asarray([label_text(classes[i]) for i in probabilities.argmax(axis=1)], dtype=object)
    return pd.Series(values, index=features.index, name=column)


def permutation_importances(
    estimator: Any, holdout: pd.DataFrame, spec: ModelSpec, *, max_rows: int = 5000, repeats: int = 3, seed: int = 0
) -> dict[str, float]:
    """Each feature's drop in the primary metric when shuffled, on held-out rows (negative clipped to 0).

    Model-agnostic (a HistGradientBoosting model has no ``feature_importances_``) and measured on
    data the model did not train on, so noise features come out near 0.
    """
    from sklearn.inspection import permutation_importance

    from steward.training.evaluation import evaluate, higher_is_better

    rows = holdout if len(holdout) <= max_rows else holdout.sample(n=max_rows, random_state=seed)
    metric, sign = spec.primary_metric, (1.0 if higher_is_better(spec.primary_metric) else -1.0)

    def scorer(model: Any, x: pd.DataFrame, y: Any) -> float:
        frame = x.copy()
        frame[spec.target] = np.asarray(y)
        return sign * evaluate(model, frame, spec)[metric]

    result = permutation_importance(
        estimator, rows[spec.feature_names], rows[spec.target], scoring=scorer, n_repeats=repeats,
        random_state=seed, n_jobs=1,
    )
    return {name: max(0.0, float(value)) for name, value in zip(spec.feature_names, result.importances_mean, strict=True)}


def focus_result(
    result: DriftResult, importances: Mapping[str, float] | None, top_n: int
) -> tuple[DriftResult, tuple[str, ...]]:
    """The result restricted to the ``top_n`` most important input columns, for the policy.

    Every column is measured and reported; the material-drift decision counts the most
    influential ones (the spec's ``monitoring.top_features``).  Returns the result to decide on
    and the columns left out of the decision.  Without importances nothing is left out.
    """
    if not importances or len(result.columns) <= top_n:
        return result, ()
    ranked = sorted(result.columns, key=lambda c: (-abs(importances.get(c.column, 0.0)), c.column))
    kept = {c.column for c in ranked[:top_n]}
    left_out = tuple(c.column for c in result.columns if c.column not in kept)
    return replace(result, columns=tuple(c for c in result.columns if c.column in kept)), left_out


@dataclass(frozen=True)
class DriftRecord:
    """One drift check as persisted for the next one: its result carrying the policy's state."""

    model: str
    version: str
    window_start: datetime | None
    window_end: datetime
    current_rows: int
    material: bool
    announced: bool
    reason: str
    columns: tuple[str, ...]
    result: DriftResult
    material_since: datetime | None = None
    report_uri: str | None = None
    flow_run_id: str | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "model": self.model,
                "version": self.version,
                "window_start": self.window_start.isoformat() if self.window_start else None,
                "window_end": self.window_end.isoformat(),
                "current_rows": self.current_rows,
                "material": self.material,
                "announced": self.announced,
                "reason": self.reason,
                "columns": list(self.columns),
                "material_since": self.material_since.isoformat() if self.material_since else None,
                "report_uri": self.report_uri,
                "flow_run_id": self.flow_run_id,
                "result": self.result.to_dict(),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> DriftRecord:
        d = json.loads(text)
        when = (lambda v: datetime.fromisoformat(v) if v else None)  # noqa: E731
        return cls(
            model=d["model"], version=d["version"], window_start=when(d["window_start"]),
            window_end=datetime.fromisoformat(d["window_end"]), current_rows=int(d["current_rows"]),
            material=bool(d["material"]), announced=bool(d["announced"]), reason=d["reason"],
            columns=tuple(d["columns"]), result=DriftResult.from_dict(d["result"]),
            material_since=when(d.get("material_since")), report_uri=d.get("report_uri"),
            flow_run_id=d.get("flow_run_id"),
        )


class DriftHistory:
    """Drift checks kept as append-only JSON under ``<store>/drift/model=<name>/`` through fsspec.

    One file per check, named by the window's end, so the previous decision (hysteresis) and
    the month's drift trend are a listing away; nothing is rewritten, so concurrent runs are safe.
    """

    def __init__(self, store_uri: str) -> None:
        self.root = store_uri.rstrip("/") + "/drift"
        self._fs, self._path = fsspec.core.url_to_fs(self.root)

    def _folder(self, model: str) -> str:
        return f"{self._path}/model={model}"

    def append(self, record: DriftRecord) -> str:
        folder = self._folder(record.model)
        self._fs.makedirs(folder, exist_ok=True)
        name = f"{folder}/{record.window_end.astimezone(UTC):%Y%m%dT%H%M%S%f}Z-{uuid.uuid4().hex[:8]}.json"
        with self._fs.open(name, "w") as handle:
            handle.write(record.to_json())
        return name

    def _names(self, model: str) -> list[str]:
        try:
            return sorted(self._fs.ls(self._folder(model), detail=False), key=lambda p: p.rsplit("/", 1)[-1])
        except FileNotFoundError:
            return []

    @staticmethod
    def _end_of(path: str) -> datetime:
        stamp = path.rsplit("/", 1)[-1].split("Z-", 1)[0]
        return datetime.strptime(stamp, "%Y%m%dT%H%M%S%f").replace(tzinfo=UTC)

    def _read(self, path: str) -> DriftRecord:
        with self._fs.open(path, "r") as handle:
            return DriftRecord.from_json(handle.read())

    def previous(self, model: str, before: datetime) -> DriftRecord | None:
        """The latest check whose window ended strictly before ``before`` (a rerun of a day is not its own past)."""
        earlier = [p for p in self._names(model) if self._end_of(p) < before]
        return self._read(earlier[-1]) if earlier else None

    def records(self, model: str, start: datetime | None = None, end: datetime | None = None) -> list[DriftRecord]:
        """Checks whose window ended in ``(start, end]`` (the period up to and including ``end``), oldest first."""
        return [
            self._read(p)
            for p in self._names(model)
            if (start is None or self._end_of(p) > start) and (end is None or self._end_of(p) <= end)
        ]


@dataclass(frozen=True)
class Announcement:
    announce: bool
    why: str
    material_since: datetime | None


def decide_announcement(
    decision: MaterialDriftDecision, previous: DriftRecord | None, version: str, window_end: datetime
) -> Announcement:
    """Announce (emit the event) when material drift starts or spreads, not every day it persists.

    Starts: not material at the previous check of the same version (or no previous check).
    Spreads: columns entered the drifted state that were not in it.  A persisting drift keeps its
    open ledger entry (counted again each day) instead of re-alarming.
    """
    if not decision.material:
        return Announcement(False, "no material drift", None)
    same = previous is not None and previous.version == version and previous.material
    if not same:
        return Announcement(True, "material drift started", window_end)
    assert previous is not None
    since = previous.material_since or previous.window_end
    spread = tuple(c for c in decision.columns if c not in previous.columns)
    if spread:
        return Announcement(True, f"material drift spread to {', '.join(spread)}", since)
    return Announcement(
        False, f"material drift persists since {since:%Y-%m-%d %H:%M} UTC (announced then; no new columns)", since
    )


def drift_event_payload(
    *,
    spec: ModelSpec,
    version: str,
    champion_version: str | None,
    challenger_version: str | None,
    result: DriftResult,
    decision: MaterialDriftDecision,
    window: DriftWindow,
    why: str,
    report_uri: str | None,
) -> dict[str, Any]:
    """The ``steward.model.drift-detected`` payload: columns with their scores, versions, reason."""
    def col(name: str) -> dict[str, Any]:
        c = result.column(name)
        return {
            "column": c.column, "kind": c.kind, "method": c.method, "score": _finite(c.score),
            "threshold": c.threshold, "drifted": c.drifted,
            **({"importance": _finite(c.importance)} if c.importance is not None else {}),
        }

    prediction = result.prediction
    return {
        "version": version,
        "reference_version": version,
        "champion_version": champion_version,
        "challenger_version": challenger_version,
        "reason": decision.reason,
        "announced_because": why,
        "columns": [col(c) for c in decision.columns],
        "newly_drifted": list(decision.newly_drifted),
        "held": list(decision.held),
        "drift_share": result.drift_share,
        "dataset_drift": result.dataset_drift,
        "prediction_drifted": bool(prediction is not None and prediction.column in decision.columns),
        "window_start": window.start.isoformat() if window.start else None,
        "window_end": window.end.isoformat(),
        "current_rows": result.current_rows,
        "reference_rows": result.reference_rows,
        "policy": spec.drift.method,
        "report_uri": report_uri,
    }


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def drift_fingerprint(model: str) -> str:
    """One open drift entry per model: a persisting drift counts again on it; its end resolves it."""
    return f"drift:{model}"


def drift_finding(model: str, version: str, decision: MaterialDriftDecision, why: str) -> Finding:
    return Finding(
        f"material drift on v{version}: {', '.join(decision.columns[:6])}{' …' if len(decision.columns) > 6 else ''}",
        f"{decision.reason} ({why}). Investigate the distribution changes (the Evidently report is stored "
        "with the version) and retrain if they are real.",
        MaintenanceKind.ADAPTIVE, Priority.HIGH, "drift-report", drift_fingerprint(model),
    )


# ============================================================================================
# Reading the log day by day (weekly, monthly, quarterly)

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


def findings_from_issues(issues: Iterable[HealthIssue], source: str) -> list[Finding]:
    """Health issues found by a scheduled review, under the health check's fingerprints.

    The same problem seen by the daily health check and the weekly review is one ledger entry,
    counted again, not two.
    """
    return [
        Finding(i.title, f"{i.detail}. {i.recommendation[0].upper()}{i.recommendation[1:]}.", i.kind, i.priority,
                source, i.fingerprint, incident=i.critical)
        for i in issues
    ]


def summarize_quality(checks: Sequence[tuple[date, CheckResult]], source: str) -> tuple[list[dict[str, Any]], list[Finding]]:
    """The week's data quality: one table row per day, and each issue once with the days it was seen."""
    rows: list[dict[str, Any]] = []
    seen: dict[str, list[tuple[date, HealthIssue]]] = {}
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
    return f"{head}: the current size fits the observed load."


# ============================================================================================
# Trends: performance (weekly), accuracy and drift (monthly)


def performance_trends(days: Sequence[SLODay], spec: ModelSpec) -> tuple[list[Trend], list[Finding]]:
    """p95 latency and the primary metric per day from the SLO records, fitted; findings when degrading."""
    from steward.training.evaluation import higher_is_better

    metric = spec.primary_metric
    latency = fit_trend(
        [d.day for d in days], [d.p95_ms for d in days], metric="p95 latency", unit="ms",
        higher_is_better=False, min_change=0.1 * spec.slo.p95_latency_ms,
    )
    judged = [d for d in days if d.accuracy is not None]
    accuracy = fit_trend(
        [d.day for d in judged], [d.accuracy for d in judged], metric=metric,
        higher_is_better=higher_is_better(metric), min_change=spec.gates.tolerance,
    )
    found = []
    if latency.verdict is TrendVerdict.DEGRADING:
        over = latency.end_value is not None and latency.end_value > spec.slo.p95_latency_ms
        found.append(Finding(
            "p95 latency is rising",
            latency.reading + (f" It is now above the {spec.slo.p95_latency_ms:g} ms SLO." if over else "")
            + " Consider optimisation or caching; compare versions if a release started it.",
            MaintenanceKind.PERFECTIVE, Priority.HIGH if over else Priority.MEDIUM, "performance-trends",
            "trend:latency",
        ))
    if accuracy.verdict is TrendVerdict.DEGRADING:
        found.append(Finding(
            f"{metric} is falling",
            accuracy.reading + " Retrain or analyse drift.",
            MaintenanceKind.ADAPTIVE, Priority.HIGH, "performance-trends", "trend:accuracy",
        ))
    return [latency, accuracy], found


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
    value = metric_value(spec.primary_metric, outcomes(labelled, spec.task))
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


# ============================================================================================
# Security audit (monthly)

TOKEN_ISSUED_ENV = "STEWARD_ADMIN_TOKEN_ISSUED_AT"
MAX_TOKEN_AGE_DAYS = 90
MIN_TOKEN_CHARS = 32
STALE_CHALLENGER_DAYS = 14


class CheckStatus(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    NOT_MEASURABLE = "not measurable"


@dataclass(frozen=True)
class AuditCheck:
    name: str
    status: CheckStatus
    detail: str
    findings: tuple[Finding, ...] = ()


def audit_admin_token(token: str | None, issued_at: str | None, now: datetime) -> list[AuditCheck]:
    """Admin authentication configured and strong enough, and the token's age if it is recorded."""
    source = "security-audit"
    if token is None:
        return [
            AuditCheck("admin authentication", CheckStatus.FAILED, "no admin token is configured", (Finding(
                "no admin token configured",
                "STEWARD_ADMIN_TOKEN is not set, so the gateway refuses every admin call: traffic plans, "
                "refreshes and forced arms cannot be used by the canary and rollback procedures. Set it from a "
                "secrets manager (never in the spec or an image).",
                MaintenanceKind.CORRECTIVE, Priority.MEDIUM, source, "security:admin-token",
            ),)),
            AuditCheck("admin token age", CheckStatus.NOT_MEASURABLE, "no token"),
        ]
    checks = []
    if len(token) < MIN_TOKEN_CHARS:
        checks.append(AuditCheck("admin authentication", CheckStatus.FAILED, f"token has {len(token)} characters", (
            Finding(
                "admin token is short",
                f"The admin token has {len(token)} characters (at least {MIN_TOKEN_CHARS} expected). Replace it "
                "with a random one, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`.",
                MaintenanceKind.CORRECTIVE, Priority.HIGH, source, "security:admin-token-strength",
            ),
        )))
    else:
        checks.append(AuditCheck("admin authentication", CheckStatus.PASSED, f"token set ({len(token)} characters)"))
    if not issued_at:
        checks.append(AuditCheck(
            "admin token age", CheckStatus.NOT_MEASURABLE,
            f"when the token was issued is not recorded: set {TOKEN_ISSUED_ENV} (ISO date) beside the token",
        ))
        return checks
    try:
        issued = datetime.fromisoformat(issued_at)
    except ValueError:
        checks.append(AuditCheck("admin token age", CheckStatus.FAILED, f"{TOKEN_ISSUED_ENV}={issued_at!r}", (Finding(
            f"{TOKEN_ISSUED_ENV} is not a date",
            f"{TOKEN_ISSUED_ENV}={issued_at!r} is not an ISO date (2026-01-31 or 2026-01-31T12:00:00+00:00).",
            MaintenanceKind.CORRECTIVE, Priority.LOW, source, "security:token-date",
        ),)))
        return checks
    issued = issued if issued.tzinfo else issued.replace(tzinfo=UTC)
    age = (now - issued).days
    if age > MAX_TOKEN_AGE_DAYS:
        checks.append(AuditCheck("admin token age", CheckStatus.FAILED, f"{age} days", (Finding(
            f"admin token is {age} days old",
            f"Issued {issued:%Y-%m-%d}; rotate it every {MAX_TOKEN_AGE_DAYS} days: set a new STEWARD_ADMIN_TOKEN "
            f"and {TOKEN_ISSUED_ENV}, then restart the gateways.",
            MaintenanceKind.PREVENTIVE, Priority.HIGH, source, "security:token-age",
        ),)))
    else:
        checks.append(AuditCheck("admin token age", CheckStatus.PASSED, f"{age} days (limit {MAX_TOKEN_AGE_DAYS})"))
    return checks


def audit_digests(model: str, results: Mapping[str, tuple[str, str | None]]) -> list[AuditCheck]:
    """``results``: role (champion, challenger, rollback target) -> (version, error or None)."""
    checks = []
    for role, (version, error) in results.items():
        if error is None:
            checks.append(AuditCheck(f"artifact digest of {role} v{version}", CheckStatus.PASSED, "matches"))
            continue
        critical = role == CHAMPION
        checks.append(AuditCheck(f"artifact digest of {role} v{version}", CheckStatus.FAILED, error, (Finding(
            f"{role} v{version} failed its artifact digest check",
            f"{error} The stored model files of {model} v{version} no longer match what was registered: "
            + ("roll back (`steward rollback`) and investigate who changed the artifact store."
               if critical else "do not promote or roll back to it; re-register it from its run."),
            MaintenanceKind.CORRECTIVE, Priority.CRITICAL if critical else Priority.HIGH, "security-audit",
            f"security:digest:{version}", incident=critical,
        ),)))
    return checks


def find_stale_aliases(
    versions: Sequence[VersionInfo],
    history: Sequence[AuditEntry],
    active_versions: Iterable[str],
    now: datetime,
) -> AuditCheck:
    """Aliases that point somewhere they should not.

    Stale: an alias on an archived, rejected or rolled-back version; or a challenger assigned more
    than ``STALE_CHALLENGER_DAYS`` ago that took no traffic (served or shadow) in that time
    (``active_versions``: versions seen in the log over those days).
    """
    active = set(active_versions)
    problems: list[Finding] = []
    notes = []
    for info in versions:
        for alias in info.aliases:
            bad = "archived" if info.archived else info.stage if info.stage in ("rejected", "rolled_back") else None
            if bad:
                problems.append(Finding(
                    f"alias {alias} points at {bad} v{info.version}",
                    f"{info.model} v{info.version} is {bad} but still holds '{alias}'. Promote or assign a "
                    "current version, or clear the alias.",
                    MaintenanceKind.CORRECTIVE, Priority.HIGH, "security-audit", f"stale-alias:{alias}:{info.version}",
                ))
            notes.append(f"{alias} -> v{info.version}")
            if alias == CHALLENGER and not bad:
                moves = [e for e in history if e.alias == CHALLENGER and e.to_version == info.version]
                since = max((e.time for e in moves), default=info.created)
                idle = (now - since) > timedelta(days=STALE_CHALLENGER_DAYS)
                if idle and info.version not in active:
                    problems.append(Finding(
                        f"challenger v{info.version} is idle",
                        f"v{info.version} has been challenger since {since:%Y-%m-%d} and took no traffic in the "
                        f"last {STALE_CHALLENGER_DAYS} days. Start a canary or shadow run, or clear the alias.",
                        MaintenanceKind.PREVENTIVE, Priority.MEDIUM, "security-audit",
                        f"stale-alias:challenger:{info.version}",
                    ))
    detail = ", ".join(notes) or "no aliases"
    status = CheckStatus.FAILED if problems else CheckStatus.PASSED
    return AuditCheck("stale aliases", status, detail, tuple(problems))


def audit_retention(
    versions: Sequence[VersionInfo], history: Sequence[AuditEntry], *, keep_champions: int = 3, keep_recent: int = 3
) -> AuditCheck:
    """Versions that the retention policy would archive but are not archived yet."""
    live = [v for v in versions if not v.archived]
    decision = select_for_archive(
        [v.version for v in live], history, {v.version for v in live if v.aliases},
        keep_champions=keep_champions, keep_recent=keep_recent,
    )
    if not decision.archive:
        return AuditCheck("versions past retention", CheckStatus.PASSED, f"{len(live)} live versions, none past retention")
    listed = ", ".join(f"v{v}" for v in decision.archive)
    return AuditCheck("versions past retention", CheckStatus.FAILED, f"not archived: {listed}", (Finding(
        f"{len(decision.archive)} version(s) past retention not archived",
        f"{listed}: {decision.reasons[decision.archive[0]]}. Archived versions cannot take an alias by mistake.",
        MaintenanceKind.PREVENTIVE, Priority.LOW, "security-audit", "security:retention",
    ),))


# ============================================================================================
# Technology review (quarterly)

KEY_PACKAGES = (
    "prefect", "mlflow", "evidently", "scikit-learn", "pandas", "numpy", "scipy", "pyarrow", "fastapi",
    "pydantic", "skops", "fsspec", "uvicorn",
)


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(lock_text: str) -> dict[str, tuple[str, ...]]:
    """Package -> versions pinned in a ``uv.lock`` (several when markers split the resolution)."""
    document = tomllib.loads(lock_text)
    pins: dict[str, list[str]] = {}
    for package in document.get("package", []):
        if "version" in package:
            pins.setdefault(normalize(package["name"]), []).append(str(package["version"]))
    return {name: tuple(sorted(set(vs))) for name, vs in pins.items()}


def declared_requirements(pyproject_text: str) -> dict[str, str]:
    """Package -> version specifier from ``[project].dependencies`` of a pyproject.toml."""
    from packaging.requirements import Requirement

    document = tomllib.loads(pyproject_text)
    out = {}
    for line in document.get("project", {}).get("dependencies", []):
        requirement = Requirement(line)
        out[normalize(requirement.name)] = str(requirement.specifier)
    return out


class TechStatus(StrEnum):
    OK = "ok"
    LOCK_NEWER = "lock pins a newer version"
    ENV_NEWER = "installed is newer than the lock"
    NOT_LOCKED = "not in the lock"
    NOT_INSTALLED = "not installed"
    OUTSIDE_DECLARED = "outside the declared range"


@dataclass(frozen=True)
class TechCheck:
    package: str
    installed: str | None
    locked: tuple[str, ...]
    declared: str | None
    trained_with: str | None
    status: TechStatus
    detail: str


def review_technology(
    packages: Iterable[str],
    installed: Mapping[str, str | None],
    locked: Mapping[str, tuple[str, ...]],
    declared: Mapping[str, str],
    trained_with: Mapping[str, str] | None = None,
) -> list[TechCheck]:
    """Installed versions against the lock's pins and pyproject's ranges, and the champion's training set."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    trained = {normalize(k): v for k, v in (trained_with or {}).items()}
    checks = []
    for raw in packages:
        name = normalize(raw)
        have, pins, spec, was = installed.get(name), tuple(locked.get(name, ())), declared.get(name), trained.get(name)
        notes = []
        if was and have and was != have:
            notes.append(f"the champion was trained with {was}")
        if have is None:
            status, detail = TechStatus.NOT_INSTALLED, "not installed in this environment"
        elif not pins:
            status, detail = TechStatus.NOT_LOCKED, f"{have} installed; the lock file does not pin it"
        elif spec and not SpecifierSet(spec).contains(have, prereleases=True):
            status, detail = TechStatus.OUTSIDE_DECLARED, f"{have} installed; pyproject requires {spec}"
        elif have in pins:
            status, detail = TechStatus.OK, f"{have} as locked"
        else:
            try:
                newest = max(pins, key=Version)
                newer = Version(newest) > Version(have)
            except InvalidVersion:
                newest, newer = pins[-1], False
            status = TechStatus.LOCK_NEWER if newer else TechStatus.ENV_NEWER
            detail = (
                f"{have} installed, the lock pins {newest}: run `uv sync --locked`"
                if newer
                else f"{have} installed, newer than the locked {', '.join(pins)}: the environment drifted from the "
                "lock; run `uv sync --locked`, or `uv lock` if the newer version was checked"
            )
        if notes:
            detail += "; " + "; ".join(notes)
        checks.append(TechCheck(name, have, pins, spec, was, status, detail))
    return checks


def technology_findings(checks: Sequence[TechCheck]) -> list[Finding]:
    source, found = "technology-review", []
    for c in checks:
        if c.status is TechStatus.OK and not (c.trained_with and c.installed and c.trained_with != c.installed):
            continue
        if c.status is TechStatus.OK:
            title = f"{c.package}: champion trained with {c.trained_with}, environment has {c.installed}"
            detail = c.detail + ". Retrain or validate the champion under the installed version before relying on it."
            priority = Priority.MEDIUM
        else:
            title = f"{c.package}: {c.status.value}"
            detail = c.detail
            priority = Priority.HIGH if c.status in (TechStatus.OUTSIDE_DECLARED, TechStatus.NOT_INSTALLED) else Priority.MEDIUM
        found.append(Finding(title, detail, MaintenanceKind.ADAPTIVE, priority, source, f"technology:{c.package}"))
    return found


def drift_markdown(
    *,
    model: str,
    version: str,
    window: str,
    result: DriftResult,
    decision: MaterialDriftDecision,
    why: str,
    left_out: Sequence[str],
    report_uri: str | None,
    report_error: str | None,
) -> str:
    """The Prefect artifact: verdict, link to the Evidently HTML, and the drifted columns first."""
    state = {c: "newly drifted" for c in decision.newly_drifted} | {c: "held (hysteresis)" for c in decision.held}
    lines = [
        f"# Drift of {model} v{version}: {'MATERIAL' if decision.material else 'not material'}",
        "",
        f"Window: {window}, {result.current_rows} rows against {result.reference_rows} reference rows "
        f"(the training sample of v{version}).",
        "",
        f"{decision.reason}",
        "",
        f"Event: {why}.",
        "",
    ]
    if report_uri:
        lines += [f"Evidently report (MLflow artifact of v{version}): [{report_uri.rsplit('/', 1)[-1]}]({report_uri})", ""]
    else:
        lines += [f"No Evidently report stored{': ' + report_error if report_error else ''}.", ""]
    if left_out:
        lines += [f"Measured but not counted by the policy (outside the top features): {', '.join(left_out)}.", ""]
    drifted = [result.column(c) for c in decision.columns]
    if drifted:
        lines += [
            "## Drifted columns",
            "",
            "| column | kind | method | score | threshold | state | importance |",
            "|---|---|---|---:|---:|---|---:|",
        ]
        for c in drifted:
            importance = "" if c.importance is None else f"{c.importance:.3g}"
            lines.append(
                f"| {c.column} | {c.kind} | {c.method} | {c.score:.4g} | {c.threshold:.3g} | "
                f"{state.get(c.column, 'drifted')} | {importance} |"
            )
        lines.append("")
    lines += ["## All columns", "", result.to_markdown_table()]
    return "\n".join(lines)
