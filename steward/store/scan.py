"""Scanning a window of the prediction log in bounded batches, for summaries that never hold the window.

Arrow's datasets, not DuckDB: the log is already Arrow and fsspec throughout (the same code reads a
local folder and an object store), the time and version filters are pushed down to row-group
statistics (a compacted day skips what lies outside the window), and no dependency is added. The
files are the ones the reader reads (``PredictionStore`` and its partition view decide, compaction
included).

Memory is bounded by construction, whatever the window's size (``plan_reads`` is the plan, tested):

* files are opened ``FILES_PER_CHUNK`` at a time: a Parquet footer costs tens of kilobytes once read,
  and a dataset over a day's 43,200 parts keeps every footer it has read until it is dropped;
* rows are read a group of row groups at a time (about ``BATCH_ROWS`` rows: many small parts, or one
  row group of a compacted file), each group to its own table. Not ``Scanner.to_batches``: its
  producer runs ahead of a slow consumer until about 1 GiB is queued (Acero's sink backpressure), and
  a summary's consumer is slower than Parquet decoding, so the queue, not the summaries, made the
  peak grow with the window (docs/decisions/0032).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from steward.store.reader import PredictionStore, as_utc
from steward.store.records import FEATURE_PREFIX, LABELS, PREDICTIONS

BATCH_ROWS = 262_144
#: Files whose footers are held at once (a part's footer is ~30 KB in memory once read).
FILES_PER_CHUNK = 512
_FORMAT = ds.ParquetFileFormat()
_SCHEMAS: dict[tuple[str, ...], pa.Schema] = {}  # union schemas of recent file lists (parts never change)
_SCHEMAS_KEPT = 4


def window_filter(start: datetime, end: datetime, version: str | None = None,
                  served_only: bool = False) -> ds.Expression:
    kind = pa.timestamp("us", tz="UTC")
    expression = (pc.field("time") >= pa.scalar(as_utc(start, "start"), kind)) & (
        pc.field("time") < pa.scalar(as_utc(end, "end"), kind))
    if version is not None:
        expression &= pc.field("version") == str(version)
    if served_only:
        expression &= pc.field("served")
    return expression


@dataclass(frozen=True)
class ReadGroup:
    """Row groups read together into one table: their files and how many rows they hold before filtering."""

    fragments: tuple[Any, ...]  # ds.ParquetFileFragment, each of one row group
    rows: int

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(fragment.path for fragment in self.fragments))


def arrow_filesystem(filesystem: Any) -> pafs.FileSystem:
    """Arrow's own file system, or an fsspec one (an object store, ``memory://``) wrapped for Arrow."""
    if isinstance(filesystem, pafs.FileSystem):
        return filesystem
    return pafs.PyFileSystem(pafs.FSSpecHandler(filesystem))


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def union_schema(files: Sequence[str], filesystem: Any, *, files_per_chunk: int | None = None) -> pa.Schema:
    """The union of the files' schemas (files written before a feature was added lack its column: read with
    the union, it comes back as nulls). Read from the footers a chunk at a time; remembered for the same files."""
    key = tuple(files)
    known = _SCHEMAS.get(key)
    if known is not None:
        return known
    filesystem = arrow_filesystem(filesystem)
    schemas = [ds.FileSystemDatasetFactory(filesystem, list(chunk), _FORMAT).inspect(fragments=None)
               for chunk in _chunks(files, files_per_chunk or FILES_PER_CHUNK)]
    schema = pa.unify_schemas(schemas)
    if len(_SCHEMAS) >= _SCHEMAS_KEPT:
        _SCHEMAS.pop(next(iter(_SCHEMAS)))
    _SCHEMAS[key] = schema
    return schema


def plan_reads(files: Sequence[str], filesystem: Any, schema: pa.Schema | None, expression: ds.Expression | None,
               *, batch_rows: int = BATCH_ROWS, files_per_chunk: int | None = None) -> Iterator[ReadGroup]:
    """The groups a scan reads, in the files' order: row groups whose statistics may match ``expression``,
    gathered until they hold ``batch_rows`` rows (so a group holds fewer than ``batch_rows`` plus one row
    group). Lazy: the footers of at most ``files_per_chunk`` files (and of a group) are held at a time."""
    filesystem = arrow_filesystem(filesystem)
    pending: list[Any] = []
    rows = 0
    for chunk in _chunks(files, files_per_chunk or FILES_PER_CHUNK):
        dataset = ds.dataset(list(chunk), schema=schema, format=_FORMAT, filesystem=filesystem)
        for fragment in dataset.get_fragments():
            for piece in fragment.split_by_row_group(expression, schema=dataset.schema):
                pending.append(piece)
                rows += sum(group.num_rows for group in piece.row_groups)
                if rows >= batch_rows:
                    yield ReadGroup(tuple(pending), rows)
                    pending, rows = [], 0
        del dataset
    if pending:
        yield ReadGroup(tuple(pending), rows)


def read_tables(files: Sequence[str], filesystem: Any, schema: pa.Schema | None, expression: ds.Expression | None,
                *, columns: list[str] | None = None, batch_rows: int = BATCH_ROWS,
                files_per_chunk: int | None = None) -> Iterator[pa.Table]:
    """The rows of ``files`` matching ``expression``, a planned group at a time (``plan_reads``), each group
    read with Arrow's threads into one table; empty groups are skipped."""
    filesystem = arrow_filesystem(filesystem)
    for group in plan_reads(files, filesystem, schema, expression, batch_rows=batch_rows,
                            files_per_chunk=files_per_chunk):
        group_schema = schema if schema is not None else group.fragments[0].physical_schema
        table = ds.FileSystemDataset(list(group.fragments), group_schema, _FORMAT, filesystem).to_table(
            columns=columns, filter=expression)
        if table.num_rows:
            yield table


def scan_predictions(
    store: PredictionStore,
    model: str,
    start: datetime,
    end: datetime,
    *,
    version: str | None = None,
    served_only: bool = False,
    batch_rows: int = BATCH_ROWS,
) -> Iterator[pa.Table]:
    """The logged predictions with ``start <= time < end`` as tables of about ``batch_rows`` rows, in the
    reader's order, features under their real names (the columns ``read_predictions`` gives, but ``model``)."""
    files = store._files(PREDICTIONS, model, as_utc(start, "start"), as_utc(end, "end"))
    if not files:
        return
    filesystem = store.arrow_filesystem()
    schema = union_schema(files, filesystem)
    names = [name[len(FEATURE_PREFIX):] if name.startswith(FEATURE_PREFIX) else name for name in schema.names]
    pending: list[pa.Table] = []
    rows = 0
    for table in read_tables(files, filesystem, schema, window_filter(start, end, version, served_only),
                             batch_rows=batch_rows):
        if pending and rows + table.num_rows > batch_rows:  # groups the filter thinned are gathered again
            yield _joined(pending).rename_columns(names)
            pending, rows = [], 0
        pending.append(table)
        rows += table.num_rows
    if pending:
        yield _joined(pending).rename_columns(names)


def _joined(tables: list[pa.Table]) -> pa.Table:
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


def read_label_table(store: PredictionStore, model: str, start: datetime | None, end: datetime | None) -> pa.Table:
    """Labels received with ``start <= time < end`` (either bound open) as one Arrow table, not a frame:
    a scan holds them while the predictions stream past (see ``LabelIndex``). Read as the predictions are
    (a chunk of files, a group of row groups at a time), so only the labels themselves are held."""
    start = as_utc(start, "start") if start is not None else None
    end = as_utc(end, "end") if end is not None else None
    files = store._files(LABELS, model, start, end)
    empty = pa.table({"request_id": pa.array([], pa.string()), "row": pa.array([], pa.int32()),
                      "label": pa.array([], pa.string()), "time": pa.array([], pa.timestamp("us", tz="UTC"))})
    if not files:
        return empty
    kind = pa.timestamp("us", tz="UTC")
    expression = None
    if start is not None:
        expression = pc.field("time") >= pa.scalar(start, kind)
    if end is not None:
        upper = pc.field("time") < pa.scalar(end, kind)
        expression = upper if expression is None else expression & upper
    filesystem = store.arrow_filesystem()
    schema = union_schema(files, filesystem)
    tables = list(read_tables(files, filesystem, schema, expression))
    return pa.concat_tables(tables) if tables else schema.empty_table()


def served_rows_by_version(store: PredictionStore, model: str, start: datetime, end: datetime) -> dict[str, int]:
    """Served rows per version in the window, from a scan of two columns (versions never served: 0),
    in order of first appearance: what a check needs to know before its full scan (whose reference to use)."""
    files = store._files(PREDICTIONS, model, as_utc(start, "start"), as_utc(end, "end"))
    if not files:
        return {}
    counts: dict[str, int] = {}
    for table in read_tables(files, store.arrow_filesystem(), None, window_filter(start, end),
                             columns=["version", "served"]):
        _count_served(counts, table)
    return counts


def _count_served(counts: dict[str, int], table: pa.Table) -> None:
    for version in pc.unique(table["version"]).to_pylist():
        counts.setdefault(str(version), 0)
    served = table.filter(table["served"])
    if served.num_rows:
        for entry in served.group_by("version", use_threads=False).aggregate([("served", "count")]).to_pylist():
            counts[str(entry["version"])] += entry["served_count"]

