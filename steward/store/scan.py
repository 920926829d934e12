"""Scanning a window of the prediction log in bounded batches, for summaries that never hold the window.

Arrow's dataset scanner, not DuckDB: the log is already Arrow and fsspec throughout (the same code
reads a local folder and an object store), the time and version filters are pushed down to row-group
statistics (a compacted day skips what lies outside the window), and no dependency is added. The
files are the ones the reader reads (``PredictionStore`` and its partition view decide, compaction
included); small parts' row groups are gathered into batches of about ``BATCH_ROWS`` rows, so the
work per batch is vectorised while memory stays a few batches whatever the window's size.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from steward.store.reader import PredictionStore, as_utc
from steward.store.records import FEATURE_PREFIX, LABELS, PREDICTIONS

BATCH_ROWS = 262_144


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
    # the union schema, as the reader: files written before a feature was added give it as nulls
    schemas = [fragment.physical_schema for fragment in ds.dataset(files, filesystem=filesystem).get_fragments()]
    dataset = ds.dataset(files, schema=pa.unify_schemas(schemas), format="parquet", filesystem=filesystem)
    scanner = dataset.scanner(filter=window_filter(start, end, version, served_only), batch_size=batch_rows,
                              batch_readahead=1, fragment_readahead=2)
    names = [name[len(FEATURE_PREFIX):] if name.startswith(FEATURE_PREFIX) else name
             for name in dataset.schema.names]
    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in scanner.to_batches():
        if not batch.num_rows:
            continue
        pending.append(batch)
        rows += batch.num_rows
        if rows >= batch_rows:
            yield pa.Table.from_batches(pending).rename_columns(names)
            pending, rows = [], 0
    if pending:
        yield pa.Table.from_batches(pending).rename_columns(names)


def read_label_table(store: PredictionStore, model: str, start: datetime | None, end: datetime | None) -> pa.Table:
    """Labels received with ``start <= time < end`` (either bound open) as one Arrow table, not a frame:
    a scan holds them while the predictions stream past (see ``LabelIndex``)."""
    start = as_utc(start, "start") if start is not None else None
    end = as_utc(end, "end") if end is not None else None
    files = store._files(LABELS, model, start, end)
    if not files:
        return pa.table({"request_id": pa.array([], pa.string()), "row": pa.array([], pa.int32()),
                         "label": pa.array([], pa.string()), "time": pa.array([], pa.timestamp("us", tz="UTC"))})
    kind = pa.timestamp("us", tz="UTC")
    expression = None
    if start is not None:
        expression = pc.field("time") >= pa.scalar(start, kind)
    if end is not None:
        upper = pc.field("time") < pa.scalar(end, kind)
        expression = upper if expression is None else expression & upper
    return store._read(files, expression)


def served_rows_by_version(store: PredictionStore, model: str, start: datetime, end: datetime) -> dict[str, int]:
    """Served rows per version in the window, from a scan of two columns (versions never served: 0),
    in order of first appearance: what a check needs to know before its full scan (whose reference to use)."""
    files = store._files(PREDICTIONS, model, as_utc(start, "start"), as_utc(end, "end"))
    if not files:
        return {}
    dataset = ds.dataset(files, format="parquet", filesystem=store.arrow_filesystem())
    counts: dict[str, int] = {}
    for batch in dataset.to_batches(columns=["version", "served"], filter=window_filter(start, end),
                                    batch_size=BATCH_ROWS):
        table = pa.table(batch)
        for version in pc.unique(table["version"]).to_pylist():
            counts.setdefault(str(version), 0)
        served = table.filter(table["served"])
        if served.num_rows:
            for entry in served.group_by("version", use_threads=False).aggregate([("served", "count")]).to_pylist():
                counts[str(entry["version"])] += entry["served_count"]
    return counts
