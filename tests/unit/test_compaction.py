"""Compaction of the prediction log: same rows before and after, at every moment, beside writers and readers."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

import pyarrow.parquet as pq
import pytest

from steward.monitoring.maintenance.retention import remove_expired_partitions, segment_written
from steward.store.compaction import CompactionOutcome, compact_model, compact_partition
from steward.store.partition import Manifest, partition_view
from steward.store.reader import PredictionStore
from steward.store.records import LabelBatch, PredictionBatch, prediction_batch

DAY = datetime(2026, 3, 10, tzinfo=UTC)
DAY_TEXT = "2026-03-10"


def ns(moment: datetime) -> int:
    return int(moment.timestamp() * 1e9)


def batch(request_id: str, at: datetime, *, rows: int = 3, region: str = "north") -> PredictionBatch:
    return prediction_batch(
        request_id, ns(at), "m", "1", "champion", served=True, status="ok", rows=range(rows),
        features={"age": [30.0 + i for i in range(rows)], "region": [region] * rows}, numeric=("age",),
        predictions=["1"] * rows, scores=[0.5] * rows, latency_ms=2.0, entities=None,
    )


@pytest.fixture
def store(tmp_path) -> PredictionStore:
    return PredictionStore(str(tmp_path / "log"))


def write_parts(store: PredictionStore, count: int, *, start: datetime = DAY, prefix: str = "f") -> None:
    """``count`` flushes, written out of time order (as several replicas would), one part each."""
    for index in reversed(range(count)):
        store.write_batches([batch(f"{prefix}{index}", start + timedelta(minutes=index))], f"{prefix}{index}")


def day_rows(store: PredictionStore) -> list[tuple[str, int]]:
    frame = store.read_predictions("m", DAY, DAY + timedelta(days=1))
    return sorted(zip(frame["request_id"], frame["row"], strict=True))


def folder(store: PredictionStore) -> str:
    return store.partition_path("predictions", "m", DAY_TEXT)


def test_a_day_of_parts_becomes_one_time_sorted_file_with_the_same_rows(store):
    write_parts(store, 40)
    before = day_rows(store)
    result = compact_partition(store, "predictions", "m", DAY_TEXT, now=DAY + timedelta(days=1))
    assert result.outcome is CompactionOutcome.COMPACTED
    assert (result.files_before, result.files_after, result.rows) == (40, 1, 120)
    assert day_rows(store) == before
    readable = store.partition_view(folder(store)).readable
    assert len(readable) == 1 and readable[0].startswith("compacted-")
    table = pq.read_table(f"{folder(store)}/{readable[0]}")
    times = table.column("time").to_pylist()
    assert times == sorted(times)
    statistics = pq.ParquetFile(f"{folder(store)}/{readable[0]}").metadata.row_group(0).column(
        table.schema.get_field_index("time")).statistics
    assert statistics.has_min_max  # what lets a windowed read skip row groups

    again = compact_partition(store, "predictions", "m", DAY_TEXT, now=DAY + timedelta(days=1))
    assert again.outcome is CompactionOutcome.ALREADY_COMPACT and day_rows(store) == before


def test_files_are_split_by_rows_and_row_groups_bounded(store):
    write_parts(store, 10)
    result = compact_partition(store, "predictions", "m", DAY_TEXT, now=DAY + timedelta(days=1),
                               row_group_rows=6, file_rows=12)
    assert result.files_after == 3 and result.rows == 30
    assert len(day_rows(store)) == 30


@pytest.mark.parametrize("stage", ["outputs written", "committed", "sources deleted", "replayed part"])
def test_every_stage_of_a_compaction_reads_each_row_once(stage):
    parts = [f"part-f{i}.parquet" for i in range(3)]
    manifest = Manifest("1a-x", ("compacted-1a-x-0.parquet",), tuple(parts), 9, DAY)
    listing = {
        "outputs written": [*parts, "compacted-1a-x-0.parquet"],  # the manifest not yet written
        "committed": [*parts, "compacted-1a-x-0.parquet", "_compaction"],
        "sources deleted": ["compacted-1a-x-0.parquet", "_compaction"],
        "replayed part": ["part-f1.parquet", "compacted-1a-x-0.parquet", "_compaction"],  # a WAL replay rewrote it
    }[stage]
    manifests = [] if stage == "outputs written" else [manifest]
    view = partition_view(listing, manifests)
    expected = tuple(parts) if stage == "outputs written" else ("compacted-1a-x-0.parquet",)
    assert view.readable == expected


def test_a_chain_of_compactions_and_a_race_between_two_read_each_row_once():
    first = Manifest("10-a", ("compacted-10-a-0.parquet",), ("part-1.parquet", "part-2.parquet"), 6, DAY)
    second = Manifest("20-b", ("compacted-20-b-0.parquet",), ("compacted-10-a-0.parquet", "part-3.parquet"), 9, DAY)
    # the first output already deleted, and part-1 replayed again: the chain still supersedes it
    view = partition_view(["part-1.parquet", "compacted-20-b-0.parquet", "_compaction"], [second, first])
    assert view.readable == ("compacted-20-b-0.parquet",)
    assert set(view.superseded_by()) == {"part-1.parquet", "part-2.parquet", "part-3.parquet",
                                         "compacted-10-a-0.parquet"}

    rival = Manifest("11-c", ("compacted-11-c-0.parquet",), ("part-1.parquet", "part-2.parquet"), 6, DAY)
    view = partition_view(["compacted-10-a-0.parquet", "compacted-11-c-0.parquet", "_compaction"], [rival, first])
    assert view.readable == ("compacted-10-a-0.parquet",) and view.orphans == ("compacted-11-c-0.parquet",)


def test_replaced_files_stay_for_the_grace_period_then_go(store):
    write_parts(store, 5)
    compacted_at = DAY + timedelta(days=1)
    compact_partition(store, "predictions", "m", DAY_TEXT, now=compacted_at)
    write_parts(store, 2, prefix="late")  # arrives after the first compaction
    second = compact_partition(store, "predictions", "m", DAY_TEXT, now=compacted_at + timedelta(minutes=10))
    assert second.outcome is CompactionOutcome.COMPACTED and second.files_before == 3  # output + 2 late parts
    assert second.deleted == ()  # within the grace period: a reader may still have them listed
    assert len(day_rows(store)) == 21
    third = compact_partition(store, "predictions", "m", DAY_TEXT, now=compacted_at + timedelta(hours=2))
    assert third.outcome is CompactionOutcome.ALREADY_COMPACT
    assert len(third.deleted) == 8  # the 7 parts and the first output
    leaves = {path.rsplit("/", 1)[-1] for path in store.fs.ls(folder(store), detail=False)}
    assert {leaf for leaf in leaves if leaf.endswith(".parquet")} == set(store.partition_view(folder(store)).readable)
    assert len(day_rows(store)) == 21


def test_a_part_replayed_after_its_compaction_is_not_counted_twice(store):
    write_parts(store, 4)
    compact_partition(store, "predictions", "m", DAY_TEXT, now=DAY + timedelta(days=1))
    compact_partition(store, "predictions", "m", DAY_TEXT, now=DAY + timedelta(days=2))  # sources deleted
    store.write_batches([batch("f2", DAY + timedelta(minutes=2))], "f2")  # a WAL segment replayed again
    assert len(day_rows(store)) == 12
    listing = {("predictions", "m", DAY_TEXT): [p for p in store.partition_view(folder(store)).superseded_by()]}
    assert segment_written("f3", [("predictions", "m", DAY_TEXT)], listing)  # its segment may go


def test_a_day_whose_parts_disagree_on_a_type_is_left_as_it_is(store):
    store.write_batches([batch("a", DAY)], "f1")
    store.write_batches([prediction_batch("b", ns(DAY), "m", "1", "champion", served=True, status="ok", rows=range(1),
                                          features={"age": ["old"], "region": ["x"]}, numeric=(),
                                          predictions=["1"], scores=[0.5], latency_ms=2.0, entities=None)], "f2")
    result = compact_partition(store, "predictions", "m", DAY_TEXT, now=DAY + timedelta(days=1))
    assert result.outcome is CompactionOutcome.INCOMPATIBLE_TYPES and "type" in result.detail
    assert len(store.partition_view(folder(store)).readable) == 2


def test_compact_model_leaves_today_and_compacts_labels_too(store):
    write_parts(store, 3)
    write_parts(store, 3, start=DAY + timedelta(days=1), prefix="today")
    store.write_batches([LabelBatch("m", ns(DAY), ["f0"], [0], ["1"])], "l1")
    store.write_batches([LabelBatch("m", ns(DAY), ["f1"], [0], ["0"])], "l2")
    report = compact_model(store, "m", before=date(2026, 3, 11), now=DAY + timedelta(days=1, hours=1))
    assert {(r.dataset, r.day, r.outcome) for r in report.partitions} == {
        ("predictions", DAY_TEXT, CompactionOutcome.COMPACTED), ("labels", DAY_TEXT, CompactionOutcome.COMPACTED)}
    assert len(store.read_labels("m")) == 2
    assert len(report.compacted) == 2 and "2 of 2 partition(s)" in report.describe()


def test_retention_removes_a_compacted_day_whole(store):
    write_parts(store, 3)
    compact_partition(store, "predictions", "m", DAY_TEXT, now=DAY + timedelta(days=1))
    cleanup = remove_expired_partitions(store, "m", DAY + timedelta(days=40), retention_days=30)
    assert cleanup.removed == (f"predictions/date={DAY_TEXT}",)
    assert store.read_predictions("m", DAY, DAY + timedelta(days=1)).empty


def test_readers_see_every_written_row_once_while_writers_and_compactions_run(store):
    """A writer adding parts, compactions with no grace (replaced files deleted at once) and readers, at the
    same time: a reader never sees a row twice, never fewer rows than were written before it started."""
    written, stop, problems, compactions, reads = [0], threading.Event(), [], [], [0]
    lock = threading.Lock()

    def writer() -> None:
        for index in range(150):
            store.write_batches([batch(f"w{index}", DAY + timedelta(seconds=index))], f"w{index:04d}")
            with lock:
                written[0] += 3
        stop.set()

    def compactor() -> None:
        while not stop.is_set():
            result = compact_partition(store, "predictions", "m", DAY_TEXT, grace=timedelta(0))
            compactions.append(result.outcome)

    def reader() -> None:
        while not stop.is_set():
            with lock:
                floor = written[0]
            try:
                rows = day_rows(store)
            except FileNotFoundError:  # listed, then deleted (grace 0 here, not in production): read again
                continue
            reads[0] += 1
            if len(rows) != len(set(rows)) or len(rows) < floor:
                problems.append((len(rows), len(set(rows)), floor))

    threads = [threading.Thread(target=target) for target in (writer, compactor, reader)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    compact_partition(store, "predictions", "m", DAY_TEXT, grace=timedelta(0))
    assert problems == []
    assert compactions.count(CompactionOutcome.COMPACTED) >= 2 and reads[0] >= 2
    assert len(day_rows(store)) == 450
