"""Per-day summaries merged in the log's order equal one scan of the window: counts, versions, rows, verdicts."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from flows.summaries import dask_task_runner, partition_runner
from steward.config import Settings
from steward.monitoring.health.report import HealthWindow
from steward.monitoring.summaries.latency import RELATIVE_ACCURACY
from steward.monitoring.summaries.partitions import (
    merge_summaries,
    summarize_by_partition,
    summarize_partition,
    window_partitions,
)
from steward.monitoring.summaries.window import summarize_window
from steward.store.compaction import compact_partition
from steward.store.reader import PredictionStore
from tests.support.partitioned_log import FENCES, FIRST_DAY, SPEC, assert_same_summary, write_days

START = FIRST_DAY + timedelta(hours=10)  # mid first day to mid last day: partitions clipped at both ends
END = FIRST_DAY + timedelta(days=2, hours=14)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> PredictionStore:
    log = PredictionStore(str(tmp_path_factory.mktemp("log") / "store"))
    write_days(log)
    return log


def test_a_window_is_cut_into_its_days_clipped_to_the_window(store):
    partitions = window_partitions(store, "m", START, END)
    assert [p.day.isoformat() for p in partitions] == ["2026-03-01", "2026-03-02", "2026-03-03"]
    assert partitions[0].start == START and partitions[-1].end == END
    assert all(a.end == b.start for a, b in zip(partitions, partitions[1:], strict=False))
    assert window_partitions(store, "m", END + timedelta(days=5), END + timedelta(days=6)) == []
    with pytest.raises(ValueError, match="must end after it starts"):
        window_partitions(store, "m", END, START)


@pytest.mark.parametrize("options", [
    {"fences": FENCES, "labels_window": (START, END)},  # the health check's scan
    {"served_only": True, "quality": False, "samples": False, "all_rows": False, "labels_window": (START, END)},  # SLO
    {"version": "1", "served_only": True, "quality": False, "all_rows": False},  # the drift report's
])
def test_merged_partitions_equal_one_scan(store, options):
    single = summarize_window(store, SPEC, START, END, **options)
    merged = summarize_by_partition(store, SPEC, START, END, **options)
    assert_same_summary(merged, single, HealthWindow(START, END))
    assert merged.versions.busiest == "1" and len(window_partitions(store, "m", START, END)) == 3


def test_a_compacted_day_merges_with_parts_of_the_others(tmp_path):
    log = PredictionStore(str(tmp_path / "store"))
    write_days(log)
    compact_partition(log, "predictions", "m", "2026-03-02", grace=timedelta(0))
    options = {"fences": FENCES, "labels_window": (START, END)}
    assert_same_summary(summarize_by_partition(log, SPEC, START, END, **options),
                        summarize_window(log, SPEC, START, END, **options), HealthWindow(START, END))


def test_a_window_without_predictions_still_reads_its_labels(store):
    later = END + timedelta(days=4)
    summary = summarize_by_partition(store, SPEC, later, later + timedelta(days=1), labels_window=(later, later))
    assert summary.rows == 0 and summary.labelled is not None and summary.labelled.empty


def test_beyond_the_samples_the_merge_is_a_uniform_sample_and_quantiles_stay_within_the_sketch(store):
    """Samples of 20 rows (the window holds hundreds): the merged sample draws 20 rows across all days, and
    the latency quantiles (exact here) equal one scan's; counts stay exact."""
    options = {"labels_window": (START, END), "sample_rows": 20}
    partitions = window_partitions(store, "m", START, END)
    summaries = [summarize_partition(store, SPEC, p, **options) for p in partitions]
    merged = merge_summaries(summaries, "m", START, END)
    single = summarize_window(store, SPEC, START, END, **options)
    assert not merged.exact and merged.rows == single.rows == sum(s.rows for s in summaries)
    rows = merged.predictions_frame()
    days = rows["time"].dt.date
    assert len(rows) == 20 and days.is_monotonic_increasing  # the log's order kept: day after day
    assert days.nunique() > 1  # drawn across partitions, not from one
    assert merged.traffic.requests == single.traffic.requests and merged.traffic.errors == single.traffic.errors
    ours, theirs = merged.traffic.latency(), single.traffic.latency()
    for q, expected in zip([50, 95, 99], theirs.percentiles([50, 95, 99]), strict=True):
        assert ours.percentiles([q])[0] == pytest.approx(expected, rel=2 * RELATIVE_ACCURACY)


def test_partition_seeds_differ_so_samples_are_independent(store):
    partitions = window_partitions(store, "m", START, END)
    first, second = (summarize_partition(store, SPEC, p, sample_rows=5) for p in partitions[1:3])
    assert not np.array_equal(first.rows_sample._keys, second.rows_sample._keys)


def test_summaries_of_two_models_do_not_merge(store):
    summary = summarize_window(store, SPEC, START, END)
    other = summarize_window(store, SPEC, START, END)
    other.model = "another"
    with pytest.raises(ValueError, match="cannot merge a summary of 'another'"):
        summary.merge(other)


def test_the_default_is_one_scan_in_process():
    settings = Settings(monitoring_executor="local")
    assert dask_task_runner(settings) is None
    assert partition_runner(PredictionStore("/tmp/unused"), SPEC, settings) is None
    remote = dask_task_runner(Settings(monitoring_executor="dask", dask_address="tcp://10.0.0.5:8786"))
    assert remote is not None and remote.address == "tcp://10.0.0.5:8786"
