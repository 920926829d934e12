"""The task that summarises one day of the log: what a Dask worker runs for the checks (see flows/summaries.py)."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from steward.monitoring.summaries.partitions import LogPartition, summarize_partition
from steward.monitoring.summaries.window import WindowSummary
from steward.spec import ModelSpec
from steward.store.reader import PredictionStore


@task(name="summarize-log-partition", retries=2, retry_delay_seconds=[2, 5], cache_policy=NO_CACHE,
      task_run_name="summarize-{partition.day}")
def summarize_log_partition(store: PredictionStore, spec: ModelSpec, partition: LogPartition,
                            options: dict[str, Any]) -> WindowSummary:
    """A worker opens the store from its URI (credentials from its own environment) and returns the summary."""
    return summarize_partition(store, spec, partition, **options)
