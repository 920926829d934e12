"""Task: the checked window also goes to the Evidently workspace under the Steward home (Evidently's UI)."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from steward.config import get_settings
from steward.monitoring.drift.monitor import prediction_drift_column
from steward.monitoring.drift.result import DriftResult
from steward.monitoring.drift.workspace import (
    WindowQuality,
    WorkspaceOutcome,
    WorkspaceStatus,
    record_window,
    workspace_path,
)
from steward.spec import ModelSpec
from steward.store.reader import join_labels
from tasks.common import store


@task(name="add-to-evidently-workspace", cache_policy=NO_CACHE)
def add_to_evidently_workspace(
    spec: ModelSpec, version: str, result: DriftResult, current: pd.DataFrame, window_start: datetime,
    window_end: datetime,
) -> WorkspaceOutcome:
    """The drift report and the window's data quality as snapshots at ``window_end``; never fails the check."""
    logger = get_run_logger()
    path = workspace_path(get_settings().home)
    labelled = None
    try:
        labelled = join_labels(current, store().read_labels(spec.name, start=window_start, end=window_end))
    except Exception as error:  # the snapshots go without accuracy; say why
        logger.warning("labels of the window unreadable, the data-quality snapshot has no accuracy: %s", error)
    quality = WindowQuality(
        current=current, features=(*spec.numeric_features, *spec.categorical_features), labelled=labelled,
        label_metric="accuracy" if spec.task.is_classification else "mae",
    )
    outcome = record_window(
        path, model=spec.name, version=version, as_of=window_end, drift=result.snapshot, quality=quality,
        prediction_column=prediction_drift_column(spec)[0],
    )
    if outcome.status is WorkspaceStatus.FAILED:
        logger.error("the Evidently workspace %s was not updated: %s", path, outcome.error)
    return outcome
