"""The scan of a window holds a bounded part of it, whatever the window's size: asserted on the scan's plan
(files opened together, rows read together), not on RSS, so machine load cannot change the verdict."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.dataset as real_ds
import pytest

import steward.store.scan as scan
from steward.store.compaction import compact_partition
from steward.store.reader import PredictionStore
from steward.store.records import LABELS, PREDICTIONS
from tests.unit.test_streaming_summaries import END, START, write_log


class RecordingDatasets:
    """``pyarrow.dataset`` as the scan module sees it, recording every dataset it builds and refusing the
    streaming scanner (whose queue ran ~1 GiB ahead of a slow consumer)."""

    def __init__(self) -> None:
        self.listed: list[int] = []  # files per ds.dataset call
        self.read: list[int] = []  # rows (before filtering) per FileSystemDataset read

    def __getattr__(self, name: str):
        return getattr(real_ds, name)

    def dataset(self, files, **options):
        self.listed.append(len(files))
        return Guarded(real_ds.dataset(files, **options))

    def FileSystemDataset(self, fragments, *args):  # noqa: N802 (pyarrow's name)
        self.read.append(sum(group.num_rows for fragment in fragments for group in fragment.row_groups))
        return Guarded(real_ds.FileSystemDataset(fragments, *args))


class Guarded:
    def __init__(self, dataset) -> None:
        self._dataset = dataset

    def __getattr__(self, name: str):
        if name in {"to_batches", "scanner"}:
            raise AssertionError(f"the scan called Dataset.{name}: its readahead is not bounded by the consumer")
        return getattr(self._dataset, name)


@pytest.fixture
def recorded(monkeypatch) -> RecordingDatasets:
    recording = RecordingDatasets()
    monkeypatch.setattr(scan, "ds", recording)
    monkeypatch.setattr(scan, "_SCHEMAS", {})
    return recording


def test_a_scan_opens_a_chunk_of_files_and_reads_a_group_of_rows_at_a_time(tmp_path, recorded, monkeypatch):
    store = PredictionStore(str(tmp_path / "store"))
    write_log(store, flushes=40)  # 40 parts of 25 to 80 rows
    monkeypatch.setattr(scan, "FILES_PER_CHUNK", 7)
    parts = store._files(PREDICTIONS, "m", START, END)
    largest = max(real_ds.dataset(path).count_rows() for path in parts)

    tables = list(scan.scan_predictions(store, "m", START, END, batch_rows=150))

    assert sum(table.num_rows for table in tables) == store.read_predictions("m", START, END).shape[0]
    assert len(tables) > 5 and all(table.num_rows <= 150 + largest for table in tables)
    assert recorded.listed and max(recorded.listed) <= 7  # never a dataset over the whole window's files
    assert recorded.read and max(recorded.read) < 150 + largest  # never more than a group read at once

    recorded.listed.clear()
    scan.read_label_table(store, "m", START, END)
    scan.served_rows_by_version(store, "m", START, END)
    assert max(recorded.listed) <= 7


def test_a_compacted_day_is_read_a_row_group_at_a_time(tmp_path, recorded):
    store = PredictionStore(str(tmp_path / "store"))
    write_log(store, flushes=40)
    for dataset in (PREDICTIONS, LABELS):
        compact_partition(store, dataset, "m", START.date().isoformat(), grace=timedelta(0), row_group_rows=200)
    files = store._files(PREDICTIONS, "m", START, END)
    assert len(files) == 1
    recorded.read.clear()  # compaction reads through the same plan

    tables = list(scan.scan_predictions(store, "m", START, END, batch_rows=100))

    assert len(tables) > 5 and max(recorded.read) <= 200 + 100  # one row group of ~200 rows (a flush over) at most
    assert all(table.num_rows <= 300 for table in tables)


def test_row_groups_outside_the_window_are_not_read(tmp_path, recorded):
    store = PredictionStore(str(tmp_path / "store"))
    write_log(store, flushes=40)
    compact_partition(store, PREDICTIONS, "m", START.date().isoformat(), grace=timedelta(0), row_group_rows=200)
    everything = real_ds.dataset(store._files(PREDICTIONS, "m", START, END)).count_rows()
    recorded.read.clear()  # compaction reads through the same plan
    hour = START + timedelta(hours=3)
    rows = sum(t.num_rows for t in scan.scan_predictions(store, "m", hour, hour + timedelta(hours=1), batch_rows=100))
    assert rows > 0 and sum(recorded.read) < everything / 4  # time-sorted row groups skipped by their statistics


def test_a_feature_added_in_a_later_part_comes_back_as_nulls_in_every_batch(tmp_path, monkeypatch):
    monkeypatch.setattr(scan, "FILES_PER_CHUNK", 3)
    store = PredictionStore(str(tmp_path / "store"))
    write_log(store, flushes=8)
    later = datetime(2026, 3, 1, 23, tzinfo=UTC)
    table = next(iter(scan.scan_predictions(store, "m", START, END))).slice(0, 2)
    extra = pa.table({name: table[name] for name in table.column_names}).append_column("f_w", pa.array([1.5, 2.5]))
    extra = extra.set_column(extra.schema.get_field_index("time"), "time",
                             pa.array([later, later], pa.timestamp("us", tz="UTC")))
    extra = extra.rename_columns([f"f_{n}" if n in {"x", "z", "colour"} else n for n in extra.column_names])
    store.write_tables({(PREDICTIONS, "m", START.date().isoformat()): [extra]}, "replica1-9999")

    tables = list(scan.scan_predictions(store, "m", START, END, batch_rows=40))

    assert len(tables) > 3 and all("w" in t.column_names for t in tables)
    assert sum(t["w"].null_count for t in tables) == sum(t.num_rows for t in tables) - 2


def test_a_store_on_an_fsspec_filesystem_is_scanned_the_same_way(monkeypatch):
    monkeypatch.setattr(scan, "FILES_PER_CHUNK", 4)
    store = PredictionStore("memory://steward-bounded-scan")
    write_log(store, flushes=9)
    try:
        rows = sum(table.num_rows for table in scan.scan_predictions(store, "m", START, END, batch_rows=60))
        assert rows == len(store.read_predictions("m", START, END))
        assert scan.read_label_table(store, "m", START, END).num_rows == len(store.read_labels("m", START, END))
        assert sum(scan.served_rows_by_version(store, "m", START, END).values()) > 0
    finally:
        store.fs.rm(store.root, recursive=True)
