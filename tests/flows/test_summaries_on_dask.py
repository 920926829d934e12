"""Per-day summaries on a local Dask cluster (two worker processes) driven by Prefect's DaskTaskRunner, against
a real Prefect server: the merged summary equals one scan in process, and the health check's verdict is the
same whichever executor the settings choose."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pandas as pd
import pytest
import yaml

from flows.summaries import partition_runner
from steward.config import MonitoringExecutor, Settings, get_settings, reset_settings
from steward.monitoring.health.report import Area, HealthWindow
from steward.monitoring.summaries.partitions import summarize_by_partition, window_partitions
from steward.monitoring.summaries.window import summarize_window
from steward.store.reader import PredictionStore
from tests.support.partitioned_log import FENCES, FIRST_DAY, SPEC, assert_same_summary, write_days
from tests.support.polling import wait_until

pytestmark = pytest.mark.slow

START = FIRST_DAY + timedelta(hours=10)
END = FIRST_DAY + timedelta(days=2, hours=14)


@pytest.fixture
def dask_settings(monkeypatch) -> Iterator[Settings]:
    """The dask executor with a local cluster of two worker processes, as ``STEWARD_*`` variables set it."""
    monkeypatch.setenv("STEWARD_MONITORING_EXECUTOR", "dask")
    monkeypatch.setenv("STEWARD_DASK_WORKERS", "2")
    monkeypatch.delenv("STEWARD_DASK_ADDRESS", raising=False)
    reset_settings()
    yield get_settings()
    monkeypatch.undo()
    reset_settings()


def test_partitions_summarised_on_dask_equal_one_scan(tmp_path, dask_settings):
    assert dask_settings.monitoring_executor is MonitoringExecutor.DASK
    log = PredictionStore(str(tmp_path / "store"))
    write_days(log)
    run = partition_runner(log, SPEC)
    assert run is not None
    options = {"fences": FENCES, "labels_window": (START, END)}

    merged = summarize_by_partition(log, SPEC, START, END, run=run, **options)

    assert_same_summary(merged, summarize_window(log, SPEC, START, END, **options), HealthWindow(START, END))
    days = {f"summarize-{p.day}" for p in window_partitions(log, "m", START, END)}
    assert len(days) == 3
    assert wait_until(lambda: days <= _completed_partition_tasks(), "the partition tasks recorded as completed")


def _completed_partition_tasks() -> set[str]:
    """Names of completed partition tasks of the last summarize-log-partitions run, from the Prefect server."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["summarize-log-partitions"])),
                                     sort=FlowRunSort.START_TIME_DESC, limit=1)
        if not runs:
            return set()
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[runs[0].id])))
        return {task.name for task in tasks if task.state is not None and task.state.is_completed()}


@pytest.fixture(scope="module")
def health_model(registry, example_frame, tmp_path_factory):
    """A registered champion and two days of its traffic replayed into the log (two partitions)."""
    from steward.simulation.examples import example_spec_text
    from steward.simulation.replay import ReplayArm, replay_to_store
    from steward.simulation.scenario import credit_default_scenario
    from steward.spec import load_spec
    from tasks.common import store
    from tests.support.models import register_champion, train_spec

    tmp = tmp_path_factory.mktemp("dask-health")
    document = yaml.safe_load(example_spec_text())
    document.update(name="dask-health-model", data={"kind": "file", "path": "train.parquet"})
    document["estimator"]["params"]["max_iter"] = 30
    example_frame.to_parquet(tmp / "train.parquet", index=False)
    spec_path = tmp / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(document, sort_keys=False))
    spec = load_spec(spec_path)
    trained = train_spec(spec, example_frame, str(spec_path))
    version = register_champion(registry, spec, trained, reason="dask health-check test").version
    start = pd.Timestamp("2026-11-02", tz="UTC")
    frame = credit_default_scenario(rows_per_day=800, start=start, label_delay=pd.Timedelta(hours=1)).generate(
        start, start + pd.Timedelta(days=2))
    replay_to_store(store(), spec, frame, [ReplayArm("champion", version, trained.estimator, error_rate=0.05)])
    return str(spec_path), (start + pd.Timedelta(days=2)).to_pydatetime()


def test_the_health_check_on_dask_gives_the_same_verdict(health_model, monkeypatch):
    from flows.health_check import health_check

    spec_path, as_of = health_model
    in_process = health_check(spec_path=spec_path, window_hours=48, as_of=as_of)
    monkeypatch.setenv("STEWARD_MONITORING_EXECUTOR", "dask")
    monkeypatch.setenv("STEWARD_DASK_WORKERS", "2")
    reset_settings()
    try:
        on_dask = health_check(spec_path=spec_path, window_hours=48, as_of=as_of)
    finally:
        monkeypatch.undo()
        reset_settings()

    assert on_dask.verdict == in_process.verdict
    assert [i.code for i in on_dask.issues if i.area is not Area.INFRASTRUCTURE] == [
        i.code for i in in_process.issues if i.area is not Area.INFRASTRUCTURE]
    assert any(i.area is Area.PERFORMANCE for i in in_process.issues)  # the planted 5% errors are found by both
    for area in (Area.PERFORMANCE, Area.DATA_QUALITY, Area.ACCURACY, Area.COST):
        ours, theirs = on_dask.check(area), in_process.check(area)
        assert (ours.status, ours.metrics) == (theirs.status, theirs.metrics), area
