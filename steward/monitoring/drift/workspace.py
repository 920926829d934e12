"""Every drift check also lands in a local Evidently workspace, so Evidently's UI shows it over time.

Layout: ``<home>/evidently`` is an Evidently 0.7 workspace (``evidently ui --workspace`` serves it).
One project per model, found by name; two snapshots per checked window, both timestamped with the
window's end (``as_of``, not the wall clock) and tagged with the serving version:

- ``drift``: the Evidently drift report the check already rendered (share of drifted features,
  every feature's drift score, the prediction's drift);
- ``data-quality``: missing share of every feature on the window and accuracy (or MAE for
  regression) on the window's labelled rows when there are any (each on a seeded sample of at
  most ``QUALITY_SAMPLE_ROWS``; the metadata says how many rows there were).

A snapshot's id is derived from (model, kind, version, as_of), so running the same window again
replaces its snapshots instead of adding duplicates. The dashboard has an "All versions" tab and
one tab per version, each holding the same panels; they are added once and kept.
Writing is best effort: :func:`record_window` never raises, it returns what happened.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from evidently.core.report import Snapshot
    from evidently.sdk.models import DashboardPanelPlot
    from evidently.ui.workspace import Workspace

_log = logging.getLogger(__name__)

WORKSPACE_DIR = "evidently"
ALL_VERSIONS_TAB = "All versions"
STEWARD_TAG = "steward"
_ID_NAMESPACE = uuid.UUID("5f3c2a4e-8a51-4f0c-9d0e-3b7e6c1d2a90")  # fixed: snapshot ids must be stable across runs
LabelMetric = Literal["accuracy", "mae"]


class SnapshotKind(StrEnum):
    DRIFT = "drift"
    DATA_QUALITY = "data-quality"


class WorkspaceStatus(StrEnum):
    WRITTEN = "written"
    FAILED = "failed"  # the check stands; ``error`` says why its snapshots are missing


@dataclass(frozen=True)
class WorkspaceOutcome:
    """What one window added to the workspace: the project, its snapshot ids by kind, or the error."""

    status: WorkspaceStatus
    path: str
    project_id: str | None = None
    snapshots: tuple[tuple[SnapshotKind, str], ...] = ()
    error: str | None = None


# Rows the data-quality report reads: a share's standard error on a uniform sample is at most
# 0.5/sqrt(rows), 0.22 points here, and a 1M-row window costs ~1 s instead of ~17 s (2 busy cores).
QUALITY_SAMPLE_ROWS = 50_000


@dataclass(frozen=True)
class WindowQuality:
    """The window's frame and what to measure on it (feature lists and, when labels joined, the label metric).

    Windows and labelled rows above ``sample_rows`` are measured on a seeded uniform sample of that size.
    """

    current: pd.DataFrame
    features: tuple[str, ...]
    labelled: pd.DataFrame | None = None  # rows with a ``label`` column next to ``prediction``
    label_metric: LabelMetric = "accuracy"
    sample_rows: int = QUALITY_SAMPLE_ROWS
    seed: int = 0


def workspace_path(home: Path) -> Path:
    """The Evidently workspace under the Steward home (what ``steward up`` serves)."""
    return home / WORKSPACE_DIR


def version_tag(version: str) -> str:
    return f"version:{version}"


def version_tab(version: str) -> str:
    return f"version {version}"


def snapshot_id(model: str, kind: SnapshotKind, version: str, as_of: datetime) -> uuid.UUID:
    """Stable per (model, kind, version, window end): a rerun of the window overwrites, never duplicates."""
    return uuid.uuid5(_ID_NAMESPACE, f"{model}|{kind}|{version}|{_utc(as_of).isoformat()}")


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"as_of must be timezone-aware (UTC), got naive {moment.isoformat()}")
    return moment.astimezone(UTC)


def open_workspace(path: Path) -> Workspace:
    from evidently.ui.workspace import Workspace

    path.mkdir(parents=True, exist_ok=True)
    return Workspace(str(path))


def ensure_project(workspace: Workspace, model: str) -> str:
    """The model's project id, creating the project on first use (matched by name)."""
    found = workspace.search_project(model)
    if len(found) > 1:
        raise ValueError(f"the Evidently workspace at {workspace.path} holds {len(found)} projects named {model!r}; "
                         "delete the extra ones in its UI so each model has one")
    if found:
        return str(found[0].id)
    project = workspace.create_project(model, description=f"Steward's drift and data-quality checks of {model}")
    return str(project.id)


def quality_report(quality: WindowQuality) -> Snapshot:
    """Evidently's missing-value count of every feature on the window, plus the label metric on its labelled rows."""
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.core.datasets import BinaryClassification, MulticlassClassification, Regression
    from evidently.metrics import MAE, Accuracy, MissingValueCount

    from steward.monitoring.drift.profile import sample_frame
    from steward.store.reader import typed_labels

    features = list(quality.features)
    absent = [c for c in features if c not in quality.current.columns]
    if absent:
        raise ValueError(f"the window lacks feature columns {absent}; it must hold every feature of the spec")
    frame = sample_frame(quality.current, features, quality.sample_rows, quality.seed)
    numeric = [c for c in features if pd.api.types.is_numeric_dtype(frame[c])]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=[c for c in features if c not in numeric])
    metrics: list[Any] = [*(MissingValueCount(column=c) for c in features)]
    snapshot = Report(metrics).run(Dataset.from_pandas(frame, data_definition=definition), None)
    labelled = quality.labelled
    if labelled is None or labelled.empty:
        return snapshot
    # the label metric is a report of its own (on the labelled rows), merged into this snapshot below
    pair = sample_frame(labelled.dropna(subset=["label", "prediction"]), ["label", "prediction"],
                        quality.sample_rows, quality.seed)
    if pair.empty:
        return snapshot
    both = typed_labels(pd.concat([pair["label"], pair["prediction"]], ignore_index=True),
                        classification=quality.label_metric == "accuracy")  # the log stores both as text
    pair = pd.DataFrame({"label": both.iloc[: len(pair)].to_numpy(), "prediction": both.iloc[len(pair):].to_numpy()})
    if quality.label_metric == "accuracy":
        classes = sorted(set(pair["label"]) | set(pair["prediction"]))
        task: Any = (
            BinaryClassification(target="label", prediction_labels="prediction", pos_label=classes[-1])
            if len(classes) <= 2
            else MulticlassClassification(target="label", prediction_labels="prediction")
        )
        label_definition = DataDefinition(categorical_columns=["label", "prediction"], classification=[task])
        label_metric: Any = Accuracy()
    else:
        pair = pair.astype(float)
        label_definition = DataDefinition(numerical_columns=["label", "prediction"],
                                          regression=[Regression(target="label", prediction="prediction")])
        label_metric = MAE()
    scored = Report([label_metric]).run(Dataset.from_pandas(pair, data_definition=label_definition), None)
    return merge_snapshots(snapshot, scored)


def merge_snapshots(first: Snapshot, second: Snapshot) -> Snapshot:
    """One snapshot holding both reports' metrics (same timestamp, tags and metadata as ``first``)."""
    from evidently.core.report import Snapshot as EvidentlySnapshot

    a, b = first.to_snapshot_model(), second.to_snapshot_model()
    merged = a.copy(update={
        "metric_results": {**a.metric_results, **b.metric_results},
        "top_level_metrics": [*a.top_level_metrics, *b.top_level_metrics],
        "widgets": [*a.widgets, *b.widgets],
    })
    return EvidentlySnapshot.load_model(merged)


def _restamped(snapshot: Snapshot, as_of: datetime, tags: Sequence[str], metadata: dict[str, str]) -> Any:
    """The snapshot's model with the window's end as its time and Steward's tags (the report ran at wall-clock time)."""
    model = snapshot.to_snapshot_model()
    return model.copy(update={
        "timestamp": _utc(as_of).replace(tzinfo=None),  # Evidently compares naive UTC timestamps
        "tags": sorted({*model.tags, *tags}),
        "metadata": {**model.metadata, **metadata},
    })


def write_snapshot(workspace: Workspace, project_id: str, snapshot_uuid: uuid.UUID, model: Any) -> str:
    """Write atomically (temp file + rename): the UI's file watcher must never read half a snapshot."""
    from evidently.legacy.utils import NumpyEncoder

    folder = Path(workspace.path) / project_id / "snapshots"
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=folder, suffix=".tmp", delete=False) as handle:
        json.dump(model.dict(), handle, cls=NumpyEncoder)
    os.replace(handle.name, folder / f"{snapshot_uuid}.json")
    return str(snapshot_uuid)


# --- the dashboard --------------------------------------------------------------------------------

def dashboard_panels(
    scope: str, tags: Sequence[str], features: Sequence[str], prediction_column: str | None,
    label_metric: LabelMetric,
) -> list[DashboardPanelPlot]:
    """The panels of one tab, each series filtered by ``tags`` (all versions, or one); titles end with ``scope``."""
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import line_plot_panel

    def metric(name: str, legend: str, kind: SnapshotKind, **labels: str) -> PanelMetric:
        return PanelMetric(legend=legend, metric=name, tags=[*tags, kind.value], metric_labels=labels)

    panels = [
        line_plot_panel(
            f"Share of drifted features ({scope})",
            [metric("DriftedColumnsCount", "share drifted", SnapshotKind.DRIFT, value_type="share")],
            description="Share of the input features whose drift test failed, per checked window.", size="half"),
        line_plot_panel(
            f"Missing share ({scope})",
            [metric("MissingValueCount", c, SnapshotKind.DATA_QUALITY, column=c, value_type="share") for c in features],
            description="Share of missing values of each feature in the window.", size="half"),
        line_plot_panel(
            f"Feature drift scores ({scope})",
            [metric("ValueDrift", c, SnapshotKind.DRIFT, column=c) for c in features],
            description="Each feature's drift statistic (p-value or distance, per its test).", size="full"),
    ]
    if prediction_column is not None:
        panels.append(line_plot_panel(
            f"Prediction drift ({scope})",
            [metric("ValueDrift", prediction_column, SnapshotKind.DRIFT, column=prediction_column)],
            description=f"Drift statistic of the model's output ({prediction_column}).", size="half"))
    label_series = (
        metric("Accuracy", "accuracy", SnapshotKind.DATA_QUALITY) if label_metric == "accuracy"
        else metric("MAE", "MAE", SnapshotKind.DATA_QUALITY, value_type="mean")  # MAE also reports its std
    )
    panels.append(line_plot_panel(
        f"{'Accuracy' if label_metric == 'accuracy' else 'MAE'} on labels ({scope})",
        [label_series],
        description="Measured on the window's predictions whose labels arrived (empty without labels).", size="half"))
    return panels


def ensure_dashboard(
    workspace: Workspace, project_id: str, version: str, features: Sequence[str], prediction_column: str | None,
    label_metric: LabelMetric,
) -> tuple[str, ...]:
    """Add the "All versions" tab and this version's tab when missing; returns the tabs added."""
    from evidently.sdk.models import DashboardTabModel

    dashboard = workspace.get_dashboard(uuid.UUID(project_id))
    titles = {tab.title for tab in dashboard.tabs}
    wanted = [(ALL_VERSIONS_TAB, [STEWARD_TAG]), (version_tab(version), [STEWARD_TAG, version_tag(version)])]
    added = []
    for title, tags in wanted:
        if title in titles:
            continue
        panels = dashboard_panels(title.lower(), tags, features, prediction_column, label_metric)
        dashboard.tabs.append(DashboardTabModel(title=title, panels=[p.id for p in panels]))
        dashboard.panels.extend(panels)
        added.append(title)
    if added:
        workspace.save_dashboard(uuid.UUID(project_id), dashboard)
    return tuple(added)


# --- the entry point ------------------------------------------------------------------------------

def record_window(
    path: Path,
    *,
    model: str,
    version: str,
    as_of: datetime,
    drift: Snapshot | None,
    quality: WindowQuality | None,
    prediction_column: str | None,
) -> WorkspaceOutcome:
    """Add the window's drift snapshot (when the report rendered) and its data-quality snapshot.

    Never raises: a failure is logged and returned (the drift verdict does not depend on it).
    """
    try:
        as_of = _utc(as_of)
        workspace = open_workspace(path)
        project_id = ensure_project(workspace, model)
        label_metric: LabelMetric = quality.label_metric if quality is not None else "accuracy"
        features = quality.features if quality is not None else ()
        if not features and drift is not None:
            features = tuple(_drift_columns(drift, exclude=prediction_column))
        ensure_dashboard(workspace, project_id, version, features, prediction_column, label_metric)
        tags = [STEWARD_TAG, version_tag(version)]
        written = []
        for kind, snapshot in (
            (SnapshotKind.DRIFT, drift),
            (SnapshotKind.DATA_QUALITY,
             quality_report(quality) if quality is not None else None),
        ):
            if snapshot is None:
                continue
            metadata = {"model": model, "version": version, "kind": kind.value, "as_of": as_of.isoformat()}
            if kind is SnapshotKind.DATA_QUALITY and quality is not None:
                metadata |= _quality_metadata(quality)
            model_json = _restamped(snapshot, as_of, [*tags, kind.value], metadata)
            written.append((kind, write_snapshot(workspace, project_id, snapshot_id(model, kind, version, as_of),
                                                 model_json)))
        return WorkspaceOutcome(WorkspaceStatus.WRITTEN, str(path), project_id, tuple(written))
    except Exception as error:  # best effort: the check's verdict must not depend on the UI's copy
        message = f"{type(error).__name__}: {error}"
        _log.warning("the drift check stands, but adding it to the Evidently workspace %s failed: %s", path, message)
        return WorkspaceOutcome(WorkspaceStatus.FAILED, str(path), error=message)


def _quality_metadata(quality: WindowQuality) -> dict[str, str]:
    """How many rows the window and its labels held, and how many the report read."""
    labelled = 0 if quality.labelled is None else len(quality.labelled)
    return {
        "window_rows": str(len(quality.current)), "labelled_rows": str(labelled),
        "sample_rows": str(quality.sample_rows), "sample_seed": str(quality.seed),
    }


def _drift_columns(snapshot: Snapshot, exclude: str | None) -> list[str]:
    """The columns of the drift report's ValueDrift metrics (its features when no quality frame was given)."""
    columns = []
    for result in snapshot.to_snapshot_model().metric_results.values():
        params = result.metric_value_location.metric.params if result.metric_value_location else {}
        if params.get("type") == "evidently:metric_v2:ValueDrift" and params.get("column") != exclude:
            columns.append(str(params["column"]))
    return sorted(set(columns))
