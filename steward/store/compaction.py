"""Compaction: a day's small log parts merged into a few large files, while gateways write and checks read.

A gateway writes one part per flush (a 2 s interval is up to 43,200 parts a day per replica); a reader
pays for every file it opens. Compaction streams a finished day's parts, in time order, into files of
large row groups sorted by time (so a windowed read skips row groups by their statistics), verifies the
row count, and commits with one manifest (see ``steward.store.partition`` for why readers then see each
row exactly once at every moment). Replaced files are deleted only on a later run, after a grace period,
so a reader that listed them before the commit can still open them.

Idempotent: a day with fewer than two readable files is left alone; running again merges only what
arrived since (a late replayed part, say) with the earlier output. Memory is bounded by one row group and
the footers of ``FILES_PER_CHUNK`` parts.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from steward.store.partition import (
    COMPACTED_PREFIX,
    MANIFEST_FOLDER,
    Manifest,
    PartitionView,
    compaction_id,
    compaction_time,
)
from steward.store.reader import PredictionStore, dictionary_columns
from steward.store.records import LABELS, PREDICTIONS, StoreError
from steward.store.scan import FILES_PER_CHUNK, read_tables, union_schema

#: How long a replaced file stays after the commit: longer than any read that listed it may take.
DEFAULT_GRACE = timedelta(hours=1)
#: Rows per row group: large enough for Parquet's per-group cost to vanish, small enough to sort in memory.
ROW_GROUP_ROWS = 256 * 1024
#: Rows per compacted file: a day at 1,000 requests/s becomes about ten files.
FILE_ROWS = 8 * 1024 * 1024


class CompactionOutcome(StrEnum):
    COMPACTED = "compacted"
    ALREADY_COMPACT = "already_compact"  # fewer than two readable files: nothing to merge
    INCOMPATIBLE_TYPES = "incompatible_types"  # a column changed type between parts: left as it is


@dataclass(frozen=True)
class PartitionCompaction:
    """What one run did to one ``date=`` partition."""

    dataset: str
    model: str
    day: str
    outcome: CompactionOutcome
    files_before: int
    files_after: int
    rows: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    deleted: tuple[str, ...] = ()  # replaced or abandoned files removed after the grace period
    detail: str = ""


def compact_partition(
    store: PredictionStore,
    dataset: str,
    model: str,
    day: str,
    *,
    now: datetime | None = None,
    grace: timedelta = DEFAULT_GRACE,
    row_group_rows: int = ROW_GROUP_ROWS,
    file_rows: int = FILE_ROWS,
) -> PartitionCompaction:
    """Merge the readable files of one partition into time-sorted files; delete what earlier runs replaced."""
    now = now or datetime.now(UTC)
    folder = store.partition_path(dataset, model, day)
    try:
        view = store.partition_view(folder)
    except FileNotFoundError:  # no such day (yet, or any more)
        view = PartitionView((), (), (), ())
    deleted = _remove_replaced(store, folder, view, now - grace)
    result = dict(dataset=dataset, model=model, day=day, files_before=len(view.readable), deleted=deleted)
    if len(view.readable) < 2:
        return PartitionCompaction(outcome=CompactionOutcome.ALREADY_COMPACT, files_after=len(view.readable), **result)

    filesystem = store.arrow_filesystem()
    paths = [f"{folder}/{leaf}" for leaf in view.readable]
    try:
        schema = union_schema(paths, filesystem)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        return PartitionCompaction(outcome=CompactionOutcome.INCOMPATIBLE_TYPES, files_after=len(view.readable),
                                   detail=f"parts disagree on a column's type ({error}); left uncompacted", **result)
    # Parts in order of their first row's time: streamed in that order, each row group is nearly sorted already.
    ordered, expected = _parts_in_time_order(paths, filesystem)

    identity = compaction_id(now, secrets.token_hex(4))
    # read as the checks read (steward.store.scan): a chunk of footers and a group of rows at a time
    batches = (batch for table in read_tables(ordered, filesystem, schema, None, batch_rows=65_536)
               for batch in table.to_batches())
    outputs = _write_outputs(store, folder, identity, schema, batches, row_group_rows, file_rows)
    written = sum(_rows(store, f"{folder}/{leaf}") for leaf in outputs)
    if written != expected:  # never commit a merge that lost or invented rows
        for leaf in outputs:
            store.fs.rm(f"{folder}/{leaf}")
        raise StoreError(f"compaction of {dataset}/model={model}/date={day} wrote {written} rows for {expected}; "
                         "nothing was committed and the parts are unchanged")
    manifest = Manifest(id=identity, outputs=tuple(outputs), sources=view.readable, rows=written, created=now)
    _commit(store, folder, manifest)
    return PartitionCompaction(
        outcome=CompactionOutcome.COMPACTED, files_after=len(outputs), rows=written,
        bytes_before=sum(_size(store, path) for path in paths),
        bytes_after=sum(_size(store, f"{folder}/{leaf}") for leaf in outputs), **result,
    )


def compact_model(
    store: PredictionStore,
    model: str,
    *,
    before: date,
    now: datetime | None = None,
    grace: timedelta = DEFAULT_GRACE,
) -> CompactionReport:
    """Compact every day of ``model``'s predictions and labels before ``before`` (today's parts still grow)."""
    results = [
        compact_partition(store, dataset, model, day, now=now, grace=grace)
        for dataset in (PREDICTIONS, LABELS)
        for day in store.days(dataset, model)
        if day < before.isoformat()
    ]
    return CompactionReport(model, before, tuple(results))


def _parts_in_time_order(paths: list[str], filesystem: Any) -> tuple[list[str], int]:
    """The parts ordered by their first row's time, and the rows they hold, from their footers (a chunk of
    files at a time: a day's 43,200 footers held at once would take a gigabyte)."""
    keyed = []
    rows = 0
    for start in range(0, len(paths), FILES_PER_CHUNK):
        chunk = paths[start:start + FILES_PER_CHUNK]
        for fragment in ds.dataset(chunk, format="parquet", filesystem=filesystem).get_fragments():
            keyed.append((_first_time(fragment), fragment.path))
            rows += fragment.metadata.num_rows
    return [path for _, path in sorted(keyed)], rows


def _first_time(fragment: Any) -> Any:
    """The smallest ``time`` in a part, from its footer statistics (no data read)."""
    metadata = fragment.metadata
    index = metadata.schema.to_arrow_schema().get_field_index("time")
    smallest = None
    for group in range(metadata.num_row_groups):
        statistics = metadata.row_group(group).column(index).statistics if index >= 0 else None
        if statistics is not None and statistics.has_min_max:
            smallest = statistics.min if smallest is None else min(smallest, statistics.min)
    return (smallest is None, smallest or 0)


def _write_outputs(
    store: PredictionStore,
    folder: str,
    identity: str,
    schema: pa.Schema,
    batches: Iterator[pa.RecordBatch],
    row_group_rows: int,
    file_rows: int,
) -> list[str]:
    """Stream batches into files of time-sorted row groups; returns their leaf names.

    Written under their final names: until the manifest commits, no reader reads them (see partition.py).
    """
    outputs: list[str] = []
    writer: pq.ParquetWriter | None = None
    sink: Any = None
    in_file = 0
    pending: list[pa.RecordBatch] = []
    pending_rows = 0

    def close() -> None:
        nonlocal writer, sink
        if writer is not None:
            writer.close()
            if store.local:
                _fsync(f"{folder}/{outputs[-1]}")
            else:
                sink.close()
        writer, sink = None, None

    def flush_group() -> None:
        nonlocal writer, sink, in_file, pending, pending_rows
        if not pending_rows:
            return
        table = pa.Table.from_batches(pending, schema=schema)
        if "time" in schema.names:
            table = table.sort_by("time")
        if writer is None or in_file >= file_rows:
            close()
            leaf = f"{COMPACTED_PREFIX}{identity}-{len(outputs)}.parquet"
            outputs.append(leaf)
            path = f"{folder}/{leaf}"
            sink = path if store.local else store.fs.open(path, "wb")
            writer = pq.ParquetWriter(sink, schema, compression="zstd", use_dictionary=dictionary_columns(schema),
                                      write_statistics=True)
            in_file = 0
        writer.write_table(table, row_group_size=table.num_rows)
        in_file += table.num_rows
        pending, pending_rows = [], 0

    try:
        for batch in batches:
            pending.append(batch)
            pending_rows += batch.num_rows
            if pending_rows >= row_group_rows:
                flush_group()
        flush_group()
        close()
    except BaseException:
        close()
        for leaf in outputs:
            store.fs.rm(f"{folder}/{leaf}")
        raise
    return outputs


def _commit(store: PredictionStore, folder: str, manifest: Manifest) -> None:
    """Write the manifest in one step: before it, readers read the sources; after it, the outputs."""
    manifests = f"{folder}/{MANIFEST_FOLDER}"
    final = f"{manifests}/{manifest.id}.json"
    if not store.local:  # an object-store PUT is atomic
        with store.fs.open(final, "w", encoding="utf-8") as handle:
            handle.write(manifest.to_json())
        return
    os.makedirs(manifests, exist_ok=True)
    partial = f"{manifests}/.{manifest.id}.json.tmp"
    with open(partial, "w", encoding="utf-8") as handle:
        handle.write(manifest.to_json())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, final)


def _remove_replaced(store: PredictionStore, folder: str, view: PartitionView, cutoff: datetime) -> tuple[str, ...]:
    """Delete files replaced by a commit older than ``cutoff``, and outputs of compactions that never committed."""
    doomed = [leaf for leaf, manifest in view.superseded_by().items()
              if manifest.created < cutoff and leaf in view.superseded]
    doomed += [leaf for leaf in view.orphans if (started := compaction_time(leaf)) is not None and started < cutoff]
    removed = []
    for leaf in sorted(doomed):
        try:
            store.fs.rm(f"{folder}/{leaf}")
        except FileNotFoundError:
            continue
        removed.append(leaf)
    return tuple(removed)


def _rows(store: PredictionStore, path: str) -> int:
    with store.fs.open(path, "rb") as handle:
        return pq.ParquetFile(handle).metadata.num_rows


def _size(store: PredictionStore, path: str) -> int:
    try:
        return int(store.fs.size(path))
    except FileNotFoundError:
        return 0


def _fsync(path: str) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@dataclass(frozen=True)
class CompactionReport:
    """One compaction run over a model's log."""

    model: str
    before: date
    partitions: tuple[PartitionCompaction, ...]

    @property
    def compacted(self) -> tuple[PartitionCompaction, ...]:
        return tuple(p for p in self.partitions if p.outcome is CompactionOutcome.COMPACTED)

    @property
    def left_alone(self) -> tuple[PartitionCompaction, ...]:
        return tuple(p for p in self.partitions if p.outcome is CompactionOutcome.INCOMPATIBLE_TYPES)

    def describe(self) -> str:
        merged = self.compacted
        files = sum(p.files_before for p in merged)
        deleted = sum(len(p.deleted) for p in self.partitions)
        text = (f"{self.model}: {len(merged)} of {len(self.partitions)} partition(s) before {self.before} compacted, "
                f"{files} file(s) into {sum(p.files_after for p in merged)} ({sum(p.rows for p in merged):,} rows); "
                f"{deleted} replaced file(s) removed after the grace period")
        if self.left_alone:
            text += f"; {len(self.left_alone)} left uncompacted (a column changed type)"
        return text

    def to_markdown(self) -> str:
        lines = [f"# Log compaction of {self.model}", "", self.describe(), "",
                 "| dataset | day | outcome | files before | files after | rows | MB before | MB after | removed |",
                 "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for p in self.partitions:
            if p.outcome is CompactionOutcome.ALREADY_COMPACT and not p.deleted:
                continue
            lines.append(f"| {p.dataset} | {p.day} | {p.outcome.value} | {p.files_before} | {p.files_after} | "
                         f"{p.rows:,} | {p.bytes_before / 1e6:.2f} | {p.bytes_after / 1e6:.2f} | {len(p.deleted)} |")
        return "\n".join(lines) + "\n"
