"""The per-day summaries of a check's window, run on the task runner the settings choose.

By default (``monitoring_executor: local``) there is no runner: the checks scan the window in their own
process, as before. With ``dask``, ``partition_runner`` gives the checks a runner that calls the
``summarize-log-partitions`` subflow with prefect-dask's ``DaskTaskRunner`` (the scheduler at
``dask_address``, or a local cluster of ``dask_workers`` processes started for the run): one task per
day, the summaries merged in the log's order by ``steward.monitoring.summaries.partitions``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prefect import flow
from prefect.task_runners import TaskRunner

from steward.config import MonitoringExecutor, Settings, get_settings
from steward.monitoring.summaries.partitions import LogPartition, PartitionRunner
from steward.monitoring.summaries.window import WindowSummary
from steward.spec import ModelSpec
from steward.store.reader import PredictionStore
from tasks.summaries import summarize_log_partition


@flow(name="summarize-log-partitions", validate_parameters=False, log_prints=False,
      description="One day of a check's window per task, on the configured task runner.")
def summarize_partitions(store: PredictionStore, spec: ModelSpec, partitions: list[LogPartition],
                         options: dict[str, Any]) -> list[WindowSummary]:
    futures = [summarize_log_partition.submit(store, spec, partition, options) for partition in partitions]
    return [future.result() for future in futures]


def dask_task_runner(settings: Settings) -> TaskRunner | None:
    """prefect-dask's runner for the settings, or None when the checks run in process."""
    if settings.monitoring_executor is not MonitoringExecutor.DASK:
        return None
    from prefect_dask import DaskTaskRunner

    if settings.dask_address:
        return DaskTaskRunner(address=settings.dask_address)
    # Processes, one thread each: a summary's work is numpy and Arrow under the GIL in places.
    return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                          cluster_kwargs={"n_workers": settings.dask_workers, "threads_per_worker": 1,
                                          "processes": True, "dashboard_address": None,
                                          # the scheduler's HTTP routes bind 8787 even without a dashboard:
                                          # any free port, so two checks' clusters can run at once
                                          "scheduler_kwargs": {"dashboard": False, "dashboard_address": ":0"}})


def partition_runner(store: PredictionStore, spec: ModelSpec,
                     settings: Settings | None = None) -> PartitionRunner | None:
    """What the checks pass to ``summarize_by_partition``; None keeps the one in-process scan."""
    task_runner = dask_task_runner(settings or get_settings())
    if task_runner is None:
        return None
    subflow = summarize_partitions.with_options(task_runner=task_runner)

    def run(partitions: Sequence[LogPartition], options: dict[str, Any]) -> list[WindowSummary]:
        return subflow(store, spec, list(partitions), options)

    return run
