"""One scan of a window serves the day's checks: time-carrying request ids bound the late-label look-back, the SLO
days reuse the health scan, and a drift report of the same window recalls it while the log is unchanged."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from steward.monitoring.summaries.checks import RecentScan, read_late_labelled, slo_days_summary
from steward.monitoring.summaries.window import summarize_window
from steward.spec import parse_spec
from steward.store.reader import PredictionStore
from steward.store.records import LabelBatch, prediction_rows
from steward.store.request_ids import late_label_range, new_request_id, new_request_ids, request_times_ms

DAY1 = datetime(2026, 3, 1, tzinfo=UTC)
DAY2, DAY3 = DAY1 + timedelta(days=1), DAY1 + timedelta(days=2)
SPEC = parse_spec({
    "name": "m", "task": "binary_classification", "target": "y", "data": {"path": "x.parquet"},
    "features": [{"name": "x", "type": "numeric"}], "gates": {"primary_metric": "roc_auc"},
    "slo": {"p95_latency_ms": 25, "availability": 0.999, "min_accuracy": 0.7},
})


def test_request_ids_are_version_7_uuids_that_carry_their_time():
    at = int(DAY2.timestamp() * 1e9) + 123_456_789
    one = new_request_id(at)
    many = new_request_ids(np.array([at, at + 2_000_000]), np.random.default_rng(1))
    assert len(one) == 32 and uuid.UUID(one).version == 7 and all(uuid.UUID(i).version == 7 for i in many)
    assert len({one, *many}) == 3
    times = request_times_ms(pa.array([one, *many, uuid.uuid4().hex, "client-7", None]))
    assert times.tolist() == [at // 1_000_000, at // 1_000_000, at // 1_000_000 + 2, -1, -1, -1]


def test_late_label_range_reads_only_what_the_ids_point_to():
    first, end = DAY1 - timedelta(days=14), DAY2
    noon = DAY1 + timedelta(hours=12)
    ids = pa.array([new_request_id(int(noon.timestamp() * 1e9)), new_request_id(int((noon.timestamp() + 60) * 1e9))])
    times = request_times_ms(ids)
    assert late_label_range(times, first, end) == (noon, noon + timedelta(seconds=60, milliseconds=1))
    assert late_label_range(times[:0], first, end) is None  # every label matched the window
    assert late_label_range(None, first, end) == (first, end)  # unknown: the whole look-back
    assert late_label_range(request_times_ms(pa.array([ids[0].as_py(), "legacy-id"])), first, end) == (first, end)
    assert late_label_range(times, DAY2, DAY3) is None  # outside the look-back


def _write_day(store: PredictionStore, day: datetime, requests: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    times = (int(day.timestamp() * 1e9) + np.sort(rng.integers(0, 86_400 * 10**9, requests))).tolist()
    ids = [new_request_id(t) for t in times]
    store.write_batches([prediction_rows(
        "m", "1", "champion", served=True, status="ok", request_ids=ids, rows=[0] * requests, times_ns=times,
        latencies_ms=rng.lognormal(2, 0.5, requests).tolist(), features={}, numeric=["x"],
        numeric_values=rng.normal(size=(requests, 1)), predictions=rng.choice(["0", "1"], requests).tolist(),
        scores=rng.uniform(size=requests).tolist())], f"flush-{seed}")
    return ids


@pytest.fixture
def store(tmp_path):
    store = PredictionStore(str(tmp_path / "log"))
    _write_day(store, DAY1 - timedelta(days=3), 50, seed=1)  # older: no label points here
    day1 = _write_day(store, DAY1, 200, seed=2)
    day2 = _write_day(store, DAY2, 200, seed=3)
    at = int((DAY2 + timedelta(hours=23)).timestamp() * 1e9)
    late, own = day1[150:170], day2[:80]  # day 1's late labels and day 2's own, all received on day 2
    store.write_batches([LabelBatch("m", at, tuple(late + own), (0,) * 100, ("1",) * 100)], "labels")
    return store


def test_the_window_scan_finds_its_late_labels_and_the_look_back_reads_only_their_stretch(store):
    summary = summarize_window(store, SPEC, DAY2, DAY3, labels_window=(DAY2, DAY3))
    assert len(summary.labelled) == 80
    unmatched = summary.unmatched_labels
    assert unmatched is not None and len(unmatched) == 20

    stretch = late_label_range(unmatched.times_ms, DAY2 - timedelta(days=14), DAY2)
    assert stretch is not None and DAY1 < stretch[0] < stretch[1] < DAY2  # neither day 1's edges nor day -2
    bounded = read_late_labelled(store, SPEC, DAY2, DAY3, unmatched=unmatched)
    whole = read_late_labelled(store, SPEC, DAY2, DAY3)
    assert sorted(bounded["request_id"]) == sorted(whole["request_id"]) and len(whole) == 20

    own_only = summarize_window(store, SPEC, DAY1, DAY2, labels_window=(DAY1, DAY2))
    assert len(own_only.unmatched_labels) == 0  # no label arrived on day 1
    assert read_late_labelled(store, SPEC, DAY1, DAY2, unmatched=own_only.unmatched_labels) is None


def test_the_slo_days_reuse_the_window_scan(store):
    start = DAY2 + timedelta(hours=6)  # the window starts after midnight: the day's first hours are scanned too
    health = summarize_window(store, SPEC, start, DAY3, labels_window=(start, DAY3))
    reused = slo_days_summary(store, SPEC, start, DAY3, window=health)
    scanned = slo_days_summary(store, SPEC, start, DAY3)
    day = DAY2.date()
    assert reused.days[day].requests == scanned.days[day].requests == 200
    assert reused.answered_labelled_by_day[day] == scanned.answered_labelled_by_day[day] == 80
    assert sorted(reused.labelled["request_id"]) == sorted(scanned.labelled["request_id"])
    assert slo_days_summary(store, SPEC, DAY2, DAY3, window=health) is health  # a midnight start: nothing more


def test_a_remembered_scan_is_recalled_only_for_the_same_unchanged_window(store):
    recent = RecentScan()
    summary = summarize_window(store, SPEC, DAY2, DAY3)
    recent.remember(store, "m", DAY2, DAY3, summary)
    assert recent.recall(store, "m", DAY2, DAY3) is summary
    assert recent.recall(store, "m", DAY1, DAY3) is None
    _write_day(store, DAY2, 5, seed=9)  # a late flush into the window
    assert recent.recall(store, "m", DAY2, DAY3) is None


def test_partitions_of_a_window_merge_their_late_labels_as_one_scan_finds_them(store):
    from steward.monitoring.summaries.partitions import summarize_by_partition

    whole = summarize_window(store, SPEC, DAY1, DAY3, labels_window=(DAY2, DAY3))
    by_day = summarize_by_partition(store, SPEC, DAY1, DAY3, labels_window=(DAY2, DAY3))
    assert len(whole.unmatched_labels) == len(by_day.unmatched_labels) == 0  # day 1 held the late labels' rows
    assert len(by_day.labelled) == len(whole.labelled) == 100


def test_a_label_of_row_1_does_not_match_row_10_of_the_same_request():
    from steward.monitoring.summaries.labels import LabelIndex

    labels = pa.table({"request_id": ["r"], "row": pa.array([1], pa.int32()), "label": ["1"],
                       "time": pa.array([0], pa.timestamp("us", tz="UTC"))})
    index = LabelIndex(labels)
    rows, positions = index.match(pa.table({"request_id": ["r", "r", "s"], "row": pa.array([10, 1, 1], pa.int32())}))
    assert rows.tolist() == [1] and positions.tolist() == [0]
    assert len(index.unmatched()) == 0


def test_the_tasks_that_may_summarise_on_dask_can_be_shipped_with_their_globals():
    """A subflow run inside a task sends that task, pickled by value with the globals it uses, to the Dask workers."""
    import cloudpickle

    from steward.monitoring.summaries.checks import recent_scan
    from tasks.drift import read_drift_window
    from tasks.health import read_window, record_slo_days

    for task in (read_window, record_slo_days, read_drift_window):
        assert cloudpickle.loads(cloudpickle.dumps(task)).name == task.name
    assert cloudpickle.loads(cloudpickle.dumps(recent_scan)) is recent_scan
