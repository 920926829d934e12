"""The task that summarises one day of the log: what a Dask worker runs for the checks (see flows/summaries.py)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from steward.monitoring.summaries.partitions import (
    LogPartition,
    PartitionRunner,
    summarize_by_partition,
    summarize_partition,
)
from steward.monitoring.summaries.window import WindowSummary, summarize_window
from steward.spec import ModelSpec
from steward.store.reader import PredictionStore


@task(name="summarize-log-partition", retries=2, retry_delay_seconds=[2, 5], cache_policy=NO_CACHE,
      task_run_name="summarize-{partition.day}")
def summarize_log_partition(store: PredictionStore, spec: ModelSpec, partition: LogPartition,
                            options: dict[str, Any]) -> WindowSummary:
    """A worker opens the store from its URI (credentials from its own environment) and returns the summary."""
    return summarize_partition(store, spec, partition, **options)


def summarize_log(log: PredictionStore, spec: ModelSpec, start: datetime, end: datetime,
                  run: PartitionRunner | None, **options: Any) -> WindowSummary:
    """One scan here, or (with a runner) a summary per day on the runner's engine, merged: the same summary."""
    if run is None:
        return summarize_window(log, spec, start, end, **options)
    return summarize_by_partition(log, spec, start, end, run=run, **options)


def read_late_labelled(log: PredictionStore, spec: ModelSpec, start: datetime, end: datetime,
                       run: PartitionRunner | None = None, *, version: str | None = None) -> pd.DataFrame | None:
    """Served predictions of the ``health.label_lookback_days`` before ``start`` whose labels arrived in
    ``[start, end)`` (late feedback), joined as the window's own labelled rows are; None when the look-back is 0.

    Only the label join is kept: the traffic, quality and samples of the look-back are not the window's.
    """
    days = spec.health.label_lookback_days
    if days <= 0:
        return None
    summary = summarize_log(log, spec, start - timedelta(days=days), start, run, quality=False, samples=False,
                            all_rows=False, served_only=True, version=version, labels_window=(start, end))
    return summary.labelled
