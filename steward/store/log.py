"""The prediction log and label feedback: append-only Parquet, partitioned by model and date.

Layout (see docs/store.md)::

    <store_uri>/predictions/model=<name>/date=<YYYY-MM-DD>/part-<flush id>.parquet
    <store_uri>/labels/model=<name>/date=<YYYY-MM-DD>/part-<flush id>.parquet

One row per scored input row. Feature values are stored in ``f_<feature>`` columns (float64
for numeric features, string otherwise) so that a new feature only adds a column; readers
give them back under their real names. Everything goes through fsspec, so the same code
writes a local folder or an object store.

``LogWriter`` keeps writes off the request path: records are queued, and a background
thread writes one Parquet part per model and date at each flush. In durable mode each record
is first appended to a local write-ahead log and fsynced before the request is answered; the
WAL segment is deleted once its records are in Parquet, and segments left by a crash are
replayed into Parquet when the next writer starts.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import functools
import itertools
import json
import logging
import operator
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from steward.training.data import DataError

if TYPE_CHECKING:
    from steward.config import Settings
    from steward.spec import ModelSpec

log = logging.getLogger(__name__)

PREDICTIONS = "predictions"
LABELS = "labels"
FEATURE_PREFIX = "f_"
WAL_FOLDER = "_wal"
CONVERT_SECONDS = 0.1
STAGE_ROWS = 512  # batched mode: rows the submitting thread converts to Arrow at once (~0.6 ms)

Ack = Callable[[BaseException | None], None]


class LogMode(StrEnum):
    BATCHED = "batched"  # queued in memory, written every flush interval: a crash loses the queue
    DURABLE = "durable"  # fsynced to a local write-ahead log before the answer: a crash loses nothing answered
    OFF = "off"  # nothing is written


class StoreError(RuntimeError):
    """The prediction log cannot be written or read; the message says what to fix."""


class PredictionBatch(NamedTuple):
    """Rows scored by one version's arm: what the log records about them.

    One record may hold the rows of many requests: the gateway writes one record for each
    group of requests that one model call scored (about 16 at 16 connections), so the log's
    cost on the request path is paid per model call rather than per request. Per-row fields
    (request id, position in the request, time, latency, outputs, entity) are tuples of
    ``size`` values; the rest is shared by every row.

    A tuple of plain values on purpose: CPython stops tracking such tuples in the garbage
    collector, so a queue of thousands of records adds nothing to a full collection. Built
    from dicts and lists, the queue made every full collection scan it: 10-30 ms pauses twice
    a second at 1200 requests/s. The numeric features are one float64 block, rows by
    features, which the gateway slices from the block its batch was scored on: no Python
    object per value to keep alive or to convert, and numpy arrays are not tracked either.
    The other features' values (text) are one flat tuple, row by row. Build a record with
    :func:`prediction_rows` or, for the rows of one request, :func:`prediction_batch`.
    """

    model: str
    version: str
    arm: str
    served: bool  # False for a shadow copy: the client never saw this prediction
    status: str  # "ok", or "error" when the model raised
    request_ids: tuple[str, ...]
    rows: tuple[int, ...]  # each row's position in its request
    times_ns: tuple[int, ...]
    latencies_ms: tuple[float, ...]  # from the request's arrival to its scored result
    numeric_names: tuple[str, ...]  # the numeric features, in ``numeric_values``' column order
    numeric_values: np.ndarray  # float64, one row per row and one column per numeric feature; NaN: missing
    text_names: tuple[str, ...]  # the other features and logged fields (stored as text)
    text_values: tuple[Any, ...]  # their validated values (str/None), row by row in ``text_names`` order
    predictions: tuple[str, ...] | None
    scores: tuple[float, ...] | None
    entities: tuple[str | None, ...] | None = None

    @property
    def size(self) -> int:
        return len(self.rows)


def prediction_rows(
    model: str,
    version: str,
    arm: str,
    *,
    served: bool,
    status: str,
    request_ids: Sequence[str],
    rows: Sequence[int],
    times_ns: Sequence[int],
    latencies_ms: Sequence[float],
    features: Mapping[str, Sequence[Any]],
    numeric: Iterable[str],
    predictions: Sequence[str] | None,
    scores: Sequence[float] | None,
    entities: Sequence[str | None] | None = None,
    numeric_values: np.ndarray | None = None,
) -> PredictionBatch:
    """A record of rows from one or more requests; every per-row sequence has one value per row.

    ``features`` maps each feature (or other logged field) to its values; those named in
    ``numeric`` become the float64 block. A caller holding that block already (the gateway:
    its batch's prepared input) passes it as ``numeric_values``, its columns in ``numeric``'s
    order, and only the other features in ``features``.
    """
    size = len(rows)
    if numeric_values is None:
        numeric_set = set(numeric)
        numeric_names = tuple(name for name in features if name in numeric_set)
        text = {name: values for name, values in features.items() if name not in numeric_set}
    else:
        numeric_names, text = tuple(numeric), features
    lengths = {len(request_ids), len(times_ns), len(latencies_ms), *map(len, features.values())}
    lengths.update(len(given) for given in (predictions, scores, entities) if given is not None)
    block_fits = numeric_values is None or numeric_values.shape == (size, len(numeric_names))
    if lengths != {size} or not block_fits:  # the message is built only when it is needed: this runs per model call
        per_row = {"request_ids": request_ids, "times_ns": times_ns, "latencies_ms": latencies_ms,
                   "predictions": predictions, "scores": scores, "entities": entities,
                   **{f"feature {name}": given for name, given in features.items()}}
        wrong = {name: len(given) for name, given in per_row.items() if given is not None and len(given) != size}
        if not block_fits:
            wrong["numeric_values (rows, features)"] = numeric_values.shape
        raise ValueError(f"every per-row field and feature needs one value per row ({size}): {wrong}")
    if numeric_values is None:
        numeric_values = _float_block([features[name] for name in numeric_names], size)
    values = tuple(itertools.chain.from_iterable(zip(*text.values(), strict=True))) if text else ()
    return PredictionBatch(
        model, version, arm, served, status, tuple(request_ids), tuple(rows), tuple(times_ns), tuple(latencies_ms),
        numeric_names, numeric_values, tuple(text), values,
        tuple(predictions) if predictions is not None else None, tuple(scores) if scores is not None else None,
        tuple(entities) if entities is not None else None,
    )


def _float_block(columns: list[Sequence[Any]], size: int) -> np.ndarray:
    """Columns of numbers (None: missing), one value per row each, as one rows x columns float64 block."""
    try:  # row by row, flat: quicker for a record of a few rows than a list of columns
        return np.array(list(itertools.chain.from_iterable(zip(*columns, strict=True))), dtype=np.float64).reshape(size, len(columns))
    except (TypeError, ValueError) as error:
        raise ValueError(f"numeric features must hold numbers or None: {error}") from None


def prediction_batch(
    request_id: str,
    time_ns: int,
    model: str,
    version: str,
    arm: str,
    *,
    served: bool,
    status: str,
    rows: Iterable[int],
    features: Mapping[str, Sequence[Any]],
    numeric: Iterable[str],
    predictions: Iterable[str] | None,
    scores: Iterable[float] | None,
    latency_ms: float,
    entities: Iterable[str | None] | None = None,
) -> PredictionBatch:
    """A record of the rows of one request (one id, one time, one latency)."""
    rows = tuple(rows)
    size = len(rows)
    return prediction_rows(
        model, version, arm, served=served, status=status, request_ids=(request_id,) * size, rows=rows,
        times_ns=(time_ns,) * size, latencies_ms=(latency_ms,) * size, features=features, numeric=numeric,
        predictions=tuple(predictions) if predictions is not None else None,
        scores=tuple(scores) if scores is not None else None,
        entities=tuple(entities) if entities is not None else None,
    )


class LabelBatch(NamedTuple):
    """Labels received in one feedback call."""

    model: str
    time_ns: int
    request_ids: tuple[str, ...]
    rows: tuple[int, ...]
    labels: tuple[str, ...]

    @property
    def size(self) -> int:
        return len(self.rows)


Batch = PredictionBatch | LabelBatch


@functools.lru_cache(maxsize=64)
def _day_of(day_number: int) -> str:
    return datetime.fromtimestamp(day_number * 86_400, tz=UTC).strftime("%Y-%m-%d")


def _day(time_ns: int) -> str:
    return _day_of(time_ns // 86_400_000_000_000)  # UTC days are 86 400 s long: no leap seconds in POSIX time


def label_text(value: Any) -> str:
    """Labels and predictions are stored as text so one column fits every task; booleans become 0/1."""
    if isinstance(value, bool | np.bool_):
        return str(int(value))
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, np.integer):
        return str(int(value))
    return str(value)


def _predictions_table(batches: Sequence[PredictionBatch]) -> pa.Table:
    """One Arrow table of the batches' rows (columns in the log's order, features last).

    Built column by column: the per-record values once per record, repeated by Arrow; the
    per-row values chained in C; the numeric features from the records' float64 blocks, with
    no Python object per value. This is the log's main cost per prediction, paid on the event
    loop while the gateway serves, so it avoids a Python step per value where it can.
    """
    sizes = [len(batch.rows) for batch in batches]
    repeat = None if all(size == 1 for size in sizes) else pa.array(np.repeat(np.arange(len(batches)), sizes))
    chain = itertools.chain.from_iterable

    def per_record(field: str, kind: pa.DataType) -> pa.Array:
        array = pa.array(list(map(operator.attrgetter(field), batches)), kind)
        return array if repeat is None else array.take(repeat)

    def per_row(field: str, kind: pa.DataType) -> pa.Array:
        return pa.array(list(chain(map(operator.attrgetter(field), batches))), kind)

    def optional(field: str, kind: pa.DataType) -> pa.Array:
        given = map(operator.attrgetter(field), batches)
        return pa.array(list(chain(value if value is not None else (None,) * size
                                   for value, size in zip(given, sizes, strict=True))), kind)

    columns = {
        "request_id": per_row("request_ids", pa.string()),
        "row": per_row("rows", pa.int32()),
        "time": per_row("times_ns", pa.int64()).cast(pa.timestamp("ns", tz="UTC")).cast(
            pa.timestamp("us", tz="UTC"), safe=False),
        "version": per_record("version", pa.string()),
        "arm": per_record("arm", pa.string()),
        "served": per_record("served", pa.bool_()),
        "status": per_record("status", pa.string()),
        "prediction": optional("predictions", pa.string()),
        "score": optional("scores", pa.float64()),
        "latency_ms": per_row("latencies_ms", pa.float64()),
        "entity": optional("entities", pa.string()),
    }
    layouts = dict.fromkeys((batch.numeric_names, batch.text_names) for batch in batches)  # in order of appearance
    if len(layouts) > 1:  # features changed between versions: one table per layout, missing values null
        tables = [_predictions_table([b for b in batches if (b.numeric_names, b.text_names) == layout])
                  for layout in layouts]
        table = pa.concat_tables(tables, promote_options="default")
        order = {name: i for i, name in enumerate(columns)}
        return table.select(sorted(table.column_names, key=lambda n: order.get(n, len(order))))
    numeric_names, text_names = next(iter(layouts))
    if numeric_names:
        block = np.concatenate([batch.numeric_values for batch in batches]) if len(batches) > 1 else batches[0].numeric_values
        by_feature = np.ascontiguousarray(block.T)
        for i, name in enumerate(numeric_names):
            columns[FEATURE_PREFIX + name] = pa.array(by_feature[i], pa.float64(), from_pandas=True)  # NaN: null
    flat = list(chain(map(operator.attrgetter("text_values"), batches)))
    width = len(text_names)
    for i, name in enumerate(text_names):
        columns[FEATURE_PREFIX + name] = pa.array(flat[i::width], pa.string())
    return pa.table(columns)


def _labels_table(batches: Sequence[LabelBatch]) -> pa.Table:
    request_ids, rows, labels, times = [], [], [], []
    for batch in batches:
        request_ids += batch.request_ids
        rows += batch.rows
        labels += batch.labels
        times += [batch.time_ns] * batch.size
    return pa.table(
        {
            "request_id": pa.array(request_ids, pa.string()),
            "row": pa.array(rows, pa.int32()),
            "label": pa.array(labels, pa.string()),
            "time": pa.array(times, pa.int64()).cast(pa.timestamp("ns", tz="UTC")).cast(
                pa.timestamp("us", tz="UTC"), safe=False
            ),
        }
    )


PartKey = tuple[str, str, str]  # dataset, model, day


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """The columns worth dictionary-encoding: text with few distinct values (version, arm, classes,
    categories), not request ids or floats.

    Parquet's default encodes every column with a dictionary first and falls back to plain
    encoding once it grows too large: for request ids, times and float features that is hashing
    every value for nothing. Limited to text, and with parts no longer sorted, the writer
    thread's CPU per row fell by 40 % and the parts by 14 % (``benchmarks/log_writer.py``).
    """
    return [field.name for field in schema if pa.types.is_string(field.type) and field.name != "request_id"]


def to_tables(batches: Iterable[Batch]) -> dict[PartKey, pa.Table]:
    """Arrow tables of the batches, one per dataset, model and day."""
    groups: dict[PartKey, list[Batch]] = collections.defaultdict(list)
    for batch in batches:
        if isinstance(batch, LabelBatch):
            groups[(LABELS, batch.model, _day(batch.time_ns))].append(batch)
            continue
        first, last = _day(min(batch.times_ns)), _day(max(batch.times_ns))
        if first == last:
            groups[(PREDICTIONS, batch.model, first)].append(batch)
        else:  # rows on both sides of midnight (or replayed from several days): one part per day
            for day, part in _split_by_day(batch).items():
                groups[(PREDICTIONS, batch.model, day)].append(part)
    return {
        key: _predictions_table(members) if key[0] == PREDICTIONS else _labels_table(members)
        for key, members in groups.items()
    }


def _batch_to_json(batch: Batch) -> str:
    if isinstance(batch, LabelBatch):
        return json.dumps({"kind": LABELS, **batch._asdict()}, separators=(",", ":"))
    document = batch._asdict()
    document["numeric_values"] = batch.numeric_values.tolist()  # NaN is written as NaN, which json reads back
    return json.dumps({"kind": PREDICTIONS, **document}, separators=(",", ":"))


def wal_line_parts(line: str) -> set[PartKey]:
    """The (dataset, model, day) parts that the record on one write-ahead-log line writes to.

    Reads only what the day needs, from either record shape: one time per record (labels, and
    predictions as older gateways wrote them) or one per row.
    """
    document = json.loads(line)
    times = document["times_ns"] if "times_ns" in document else [document["time_ns"]]
    return {(document["kind"], document["model"], _day(time_ns)) for time_ns in set(times)}


def _split_by_day(batch: PredictionBatch) -> dict[str, PredictionBatch]:
    positions: dict[str, list[int]] = collections.defaultdict(list)
    for position, time_ns in enumerate(batch.times_ns):
        positions[_day(time_ns)].append(position)
    return {day: _select(batch, taken) for day, taken in positions.items()}


def _select(batch: PredictionBatch, positions: list[int]) -> PredictionBatch:
    """The record's rows at ``positions``."""

    def pick(values: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
        return None if values is None else tuple(values[i] for i in positions)

    width = len(batch.text_names)
    values = tuple(itertools.chain.from_iterable(batch.text_values[i * width:(i + 1) * width] for i in positions))
    return batch._replace(
        request_ids=pick(batch.request_ids), rows=pick(batch.rows), times_ns=pick(batch.times_ns),
        latencies_ms=pick(batch.latencies_ms), numeric_values=batch.numeric_values[positions], text_values=values,
        predictions=pick(batch.predictions), scores=pick(batch.scores), entities=pick(batch.entities),
    )


def _batch_from_json(line: str) -> Batch:
    document = json.loads(line)
    if document.pop("kind") == LABELS:
        return LabelBatch(document["model"], document["time_ns"], tuple(document["request_ids"]),
                          tuple(document["rows"]), tuple(document["labels"]))
    if "request_id" in document:  # written by a gateway that logged one record per request
        if "features" in document:  # and before feature values were one flat tuple
            features = {name: values for name, values in document.pop("features")}
        else:
            names, values, size = document.pop("feature_names"), document.pop("feature_values"), len(document["rows"])
            features = {name: values[i * size:(i + 1) * size] for i, name in enumerate(names)}
        return prediction_batch(**{**document, "features": features})
    if "feature_values" in document:  # every feature's values in one flat tuple, row by row
        names, values = document.pop("feature_names"), document.pop("feature_values")
        width = len(names)
        features = {name: values[i::width] for i, name in enumerate(names)}
        return prediction_rows(**{**document, "features": features})
    size, width = len(document["rows"]), len(document["numeric_names"])
    block = np.array(document.pop("numeric_values"), dtype=np.float64).reshape(size, width)
    return PredictionBatch(numeric_values=block, **{name: tuple(value) if isinstance(value, list) else value
                                                    for name, value in document.items()})


class PredictionStore:
    """Reads and writes the prediction log under one fsspec URL."""

    def __init__(self, uri: str) -> None:
        self.uri = uri.rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.uri)
        self.root = self.root.rstrip("/")
        self.local = isinstance(self.fs, LocalFileSystem)

    @classmethod
    def from_settings(cls, settings: Settings) -> PredictionStore:
        return cls(settings.resolved_store_uri)

    def __repr__(self) -> str:
        return f"PredictionStore({self.uri!r})"

    # ------------------------------------------------------------------ writing
    def partition_path(self, dataset: str, model: str, day: str) -> str:
        return f"{self.root}/{dataset}/model={model}/date={day}"

    def write_batches(self, batches: Iterable[Batch], flush_id: str, *, sync: bool = False) -> int:
        """Write one Parquet part per dataset, model and day; returns the rows written.

        Part names derive from ``flush_id``, so writing the same batches again (a WAL replay)
        replaces the parts instead of duplicating rows.
        """
        return self.write_tables({key: [table] for key, table in to_tables(batches).items()}, flush_id, sync=sync)

    def write_tables(self, tables: dict[PartKey, list[pa.Table]], flush_id: str, *, sync: bool = False) -> int:
        """Write converted batches: one part per (dataset, model, day), rows in the order logged.

        Not sorted: a part is one Parquet row group (a flush's rows, far under pyarrow's 1M-row
        groups), so sorting by version could never let a reader skip a group: it only cost the
        writer CPU (``benchmarks/log_writer.py`` measures the writer with and without it).
        """
        written = 0
        for (kind, model, day), parts in sorted(tables.items()):
            try:
                merged = [pa.concat_tables(parts, promote_options="default")]
            except pa.ArrowInvalid:  # a feature changed type between versions: keep the tables apart
                merged = parts
            for index, table in enumerate(merged):
                name = f"part-{flush_id}.parquet" if len(merged) == 1 else f"part-{flush_id}-{index}.parquet"
                self._write_part(self.partition_path(kind, model, day), name, table, sync)
                written += table.num_rows
        return written

    def _write_part(self, folder: str, name: str, table: pa.Table, sync: bool) -> None:
        final = f"{folder}/{name}"
        options = {"compression": "zstd", "use_dictionary": _dictionary_columns(table.schema)}
        if not self.local:  # an object store PUT is atomic: readers never see half a file
            with self.fs.open(final, "wb") as handle:
                pq.write_table(table, handle, **options)
            return
        self.fs.makedirs(folder, exist_ok=True)
        partial = f"{folder}/.{name}.tmp"  # dot-prefixed: readers skip it until the rename
        # Arrow's own file, not a Python one: through a Python file object every page the
        # writer emits takes the GIL back from the event loop and is copied into a bytes object.
        with pa.OSFile(partial, "wb") as sink:
            pq.write_table(table, sink, **options)
        if sync:
            descriptor = os.open(partial, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        os.replace(partial, final)

    def writer(self, mode: LogMode = LogMode.BATCHED, **options: Any) -> LogWriter:
        return LogWriter(self, mode, **options)

    # ------------------------------------------------------------------ reading
    def _files(self, dataset: str, model: str, start: datetime | None, end: datetime | None) -> list[str]:
        """Part files of the days that overlap [start, end): partition pruning by listing."""
        base = f"{self.root}/{dataset}/model={model}"
        try:
            folders = self.fs.ls(base, detail=False)
        except FileNotFoundError:
            return []
        first = start.date().isoformat() if start else None
        last = (end - timedelta(microseconds=1)).date().isoformat() if end else None
        files = []
        for folder in sorted(folders):
            day = folder.rstrip("/").rsplit("/", 1)[-1].removeprefix("date=")
            if (first and day < first) or (last and day > last):
                continue
            for path in sorted(self.fs.ls(folder, detail=False)):
                leaf = path.rsplit("/", 1)[-1]
                if leaf.endswith(".parquet") and not leaf.startswith((".", "_")):
                    files.append(path)
        return files

    def _arrow_filesystem(self) -> Any:
        if self.local:
            import pyarrow.fs

            return pyarrow.fs.LocalFileSystem()
        return self.fs

    def _read(self, files: list[str], expression: ds.Expression | None) -> pa.Table:
        filesystem = self._arrow_filesystem()
        # Files written before a feature was added lack its column: read with the union schema
        # so the column comes back as nulls instead of failing the read.
        schemas = [fragment.physical_schema for fragment in ds.dataset(files, filesystem=filesystem).get_fragments()]
        dataset = ds.dataset(files, schema=pa.unify_schemas(schemas), format="parquet", filesystem=filesystem)
        return dataset.to_table(filter=expression)

    def read_predictions(
        self,
        model: str,
        start: datetime,
        end: datetime,
        version: str | None = None,
        *,
        served_only: bool = False,
    ) -> pd.DataFrame:
        """Logged predictions with ``start <= time < end``, features under their real names.

        Only the day partitions that overlap the window are opened; the filters are applied by
        Arrow as it reads.
        """
        start, end = _utc(start, "start"), _utc(end, "end")
        files = self._files(PREDICTIONS, model, start, end)
        if not files:
            return _empty_predictions(model)
        expression = (pc.field("time") >= pa.scalar(start, pa.timestamp("us", tz="UTC"))) & (
            pc.field("time") < pa.scalar(end, pa.timestamp("us", tz="UTC"))
        )
        if version is not None:
            expression &= pc.field("version") == str(version)
        if served_only:
            expression &= pc.field("served")
        frame = self._read(files, expression).to_pandas()
        frame.insert(0, "model", model)
        return frame.rename(columns=_feature_names(frame.columns))

    def read_labels(self, model: str, start: datetime | None = None, end: datetime | None = None) -> pd.DataFrame:
        """Labels received with ``start <= time < end`` (either bound may be open)."""
        start = _utc(start, "start") if start is not None else None
        end = _utc(end, "end") if end is not None else None
        files = self._files(LABELS, model, start, end)
        if not files:
            return pd.DataFrame(
                {
                    "request_id": pd.Series(dtype=object),
                    "row": pd.Series(dtype="int32"),
                    "label": pd.Series(dtype=object),
                    "time": pd.Series(dtype="datetime64[us, UTC]"),
                }
            )
        expression = None
        if start is not None:
            expression = pc.field("time") >= pa.scalar(start, pa.timestamp("us", tz="UTC"))
        if end is not None:
            upper = pc.field("time") < pa.scalar(end, pa.timestamp("us", tz="UTC"))
            expression = upper if expression is None else expression & upper
        return self._read(files, expression).to_pandas()


def _utc(value: datetime | str | pd.Timestamp, what: str) -> datetime:
    stamp = pd.Timestamp(value)
    if stamp is pd.NaT:
        raise StoreError(f"{what}: got NaT; give a real time")
    stamp = stamp.tz_localize("UTC") if stamp.tz is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()


def _feature_names(columns: Iterable[str]) -> dict[str, str]:
    return {c: c[len(FEATURE_PREFIX):] for c in columns if c.startswith(FEATURE_PREFIX)}


def _empty_predictions(model: str) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "request_id": pd.Series(dtype=object),
            "row": pd.Series(dtype="int32"),
            "time": pd.Series(dtype="datetime64[us, UTC]"),
            "version": pd.Series(dtype=object),
            "arm": pd.Series(dtype=object),
            "served": pd.Series(dtype=bool),
            "status": pd.Series(dtype=object),
            "prediction": pd.Series(dtype=object),
            "score": pd.Series(dtype="float64"),
            "latency_ms": pd.Series(dtype="float64"),
            "entity": pd.Series(dtype=object),
        }
    )
    frame.insert(0, "model", pd.Series(dtype=object))
    return frame


def join_labels(predictions: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Predictions that have a label, with ``label`` and ``label_time`` columns added.

    A row labelled twice keeps its latest label. Shadow rows share their request id with the
    served row, so each gets the same label and metrics can be computed per version.
    """
    if labels.empty or predictions.empty:
        return predictions.iloc[0:0].assign(label=pd.Series(dtype=object), label_time=pd.Series(dtype="datetime64[us, UTC]"))
    latest = (
        labels.sort_values("time", kind="stable")
        .drop_duplicates(["request_id", "row"], keep="last")
        .rename(columns={"time": "label_time"})
    )
    return predictions.merge(latest, on=["request_id", "row"], how="inner", validate="many_to_one")


def typed_labels(labels: pd.Series, *, classification: bool) -> pd.Series:
    """Stored label text back to numbers when every label is numeric (integers for classes)."""
    numbers = pd.to_numeric(labels, errors="coerce")
    if numbers.isna().any():
        return labels.astype(object)
    if classification and (numbers % 1 == 0).all():
        return numbers.astype("int64")
    return numbers.astype("float64")


def production_training_frame(
    spec: ModelSpec, *, store: PredictionStore | None = None, now: datetime | None = None
) -> tuple[pd.DataFrame, str]:
    """Labelled production rows of the last ``spec.data.window_days``, shaped like a training file.

    Every served prediction counts, whichever arm answered: the label belongs to the input,
    not to the model that scored it. Shadow copies are left out because they repeat a served
    row. Returns the frame (features, target, timestamp and entity columns) and a description
    of the source for lineage.
    """
    if not spec.data.window_days:
        raise DataError("data.kind is 'production': set data.window_days to the number of days to train on")
    if store is None:
        from steward.config import get_settings

        store = PredictionStore.from_settings(get_settings())
    end = _utc(now or datetime.now(UTC), "now")
    start = end - timedelta(days=spec.data.window_days)
    window = f"{start:%Y-%m-%dT%H:%M}Z..{end:%Y-%m-%dT%H:%M}Z"
    predictions = store.read_predictions(spec.name, start, end, served_only=True)
    predictions = predictions[predictions["status"] == "ok"]
    if predictions.empty:
        raise DataError(
            f"no served predictions of {spec.name!r} in {store.uri} over {window}: serve the model with "
            "`steward serve` and send labels to its feedback endpoint, or train from a file (data.kind: file)"
        )
    joined = join_labels(predictions, store.read_labels(spec.name, start=start))
    if joined.empty:
        raise DataError(
            f"{len(predictions)} predictions of {spec.name!r} were served over {window} but none has a label yet: "
            f"send labels to POST /v1/models/{spec.name}/feedback, or widen data.window_days"
        )
    absent = [name for name in spec.feature_names if name not in joined.columns]
    if absent:
        raise DataError(
            f"the prediction log of {spec.name!r} has no values for features {absent} over {window}: "
            "the spec added them after these predictions were served; train from a file until the log has them"
        )
    frame = joined[spec.feature_names].copy()
    frame[spec.target] = typed_labels(joined["label"], classification=spec.task.is_classification).to_numpy()
    frame[spec.timestamp_column] = joined["time"].to_numpy()
    if spec.entity_column:
        frame[spec.entity_column] = joined["entity"].to_numpy()
    frame = frame.sort_values(spec.timestamp_column, kind="stable").reset_index(drop=True)
    source = (
        f"production log {store.uri} model={spec.name} {window}: "
        f"{len(frame)} labelled of {len(predictions)} served predictions (all arms)"
    )
    return frame, source


# ---------------------------------------------------------------------- writer
def use_writer_memory_pool() -> str:
    """Give Arrow's buffers jemalloc, the allocator the log writer runs best on; returns the pool used.

    A process-wide choice, so the gateway's processes make it at start, not this module on
    import; ``ARROW_DEFAULT_MEMORY_POOL`` still wins. With pyarrow's default (mimalloc) buffers
    freed after each flush went back to the OS and were faulted in again for the next: the
    writer thread used about 25 % more CPU, more of it in the kernel (``benchmarks/log_writer.py``).
    """
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return pa.default_memory_pool().backend_name
    with contextlib.suppress(NotImplementedError):  # a pyarrow built without jemalloc keeps its default
        pa.set_memory_pool(pa.jemalloc_memory_pool())
    return pa.default_memory_pool().backend_name


@dataclass
class WriterStats:
    mode: LogMode
    pending: int
    dropped: int
    written_rows: int
    parts_written: int
    flushes: int
    replayed_segments: int
    last_error: str | None
    last_flush: datetime | None
    cpu_seconds: float = 0.0  # CPU time of the writer thread, as of its last pass (at most 0.1 s ago)


@dataclass(slots=True)
class _Pending:
    batch: Batch
    ack: Ack | None


@dataclass
class _Segment:
    path: Path
    handle: Any
    stem: str


@dataclass
class _Counters:
    dropped: int = 0
    written_rows: int = 0
    parts_written: int = 0
    flushes: int = 0
    replayed_segments: int = 0
    last_error: str | None = None
    last_flush: datetime | None = None
    cpu_seconds: float = 0.0


class LogWriter:
    """Appends batches to the store from a background thread.

    ``submit`` never blocks and never raises on the request path. In batched mode a full
    queue drops the record and counts it; in durable mode ``submit`` refuses it (returns
    False) so the caller can answer 503 instead of acknowledging an unlogged prediction.
    """

    def __init__(
        self,
        store: PredictionStore,
        mode: LogMode = LogMode.BATCHED,
        *,
        flush_interval: float = 2.0,
        flush_rows: int = 50_000,
        max_pending: int = 200_000,
        wal_dir: str | Path | None = None,
    ) -> None:
        if flush_interval <= 0:
            raise StoreError(f"flush_interval must be positive, got {flush_interval}")
        self.store = store
        self.mode = LogMode(mode)
        self.flush_interval = flush_interval
        self.flush_rows = flush_rows
        self.max_pending = max_pending
        self.writer_id = f"{time.time_ns():x}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        # Queued as exact tuples of plain values (see PredictionBatch): untracked by the collector.
        self._queue: collections.deque[tuple[bool, tuple[Any, ...], Ack | None]] = collections.deque()
        # Batched mode: records staged by the submitting thread, and the tables it converted them to.
        self._stage_lock = threading.Lock()
        self._staged: list[Batch] = []
        self._staged_rows = 0
        self._queued_rows = 0  # durable mode: rows in ``_queue``
        self._tables: collections.deque[tuple[dict[PartKey, pa.Table], int]] = collections.deque()
        self._tables_rows = 0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._flush_now = threading.Event()
        self._flushed = threading.Condition()
        self._flush_generation = 0
        self._thread: threading.Thread | None = None
        self._sequence = 0
        self._counters = _Counters()
        self._segment: _Segment | None = None
        self.wal_dir: Path | None = None
        if self.mode is LogMode.DURABLE:
            if wal_dir is None and not store.local:
                raise StoreError(
                    f"durable logging to {store.uri} needs a local write-ahead log folder: pass wal_dir "
                    "(`steward serve --wal-dir PATH`)"
                )
            self.wal_dir = Path(wal_dir) if wal_dir is not None else Path(store.root) / WAL_FOLDER

    # ------------------------------------------------------------------ request path
    def submit(self, batch: Batch, ack: Ack | None = None) -> bool:
        """Queue a batch. In durable mode ``ack`` is called once the batch is on disk."""
        if self.mode is not LogMode.DURABLE and ack is not None:
            ack(None)  # nothing to wait for: batched records are only promised to the queue
            ack = None
        if self.mode is LogMode.OFF:
            return True
        size = batch.size
        if self._queued_rows + self._staged_rows + self._tables_rows >= self.max_pending:  # self.pending, inlined
            self._counters.dropped += size
            return False
        if self.mode is LogMode.DURABLE:
            with self._stage_lock:
                self._queue.append((isinstance(batch, PredictionBatch), tuple(batch), ack))
                self._queued_rows += size
            self._wake.set()
            return True
        # Batched: the submitting thread (the event loop) converts every STAGE_ROWS rows to
        # Arrow itself, ~0.6 ms at a time, and hands the tables to the writer thread, which
        # then only concatenates and writes them (C++ that releases the GIL). Converting in the
        # writer thread made the two threads contend for the GIL on every request: it cost 9 %
        # of the gateway's throughput at 4 000 requests/s, against 1-2 % for the conversion itself.
        with self._stage_lock:
            self._staged.append(batch)
            self._staged_rows += size
            if self._staged_rows < STAGE_ROWS:
                return True
            staged, self._staged, self._staged_rows = self._staged, [], 0
        self._hand_over(staged)
        return True

    def _hand_over(self, staged: list[Batch]) -> None:
        tables = self._convert_batches(staged)
        rows = sum(table.num_rows for table in tables.values())
        with self._stage_lock:
            self._tables.append((tables, rows))
            self._tables_rows += rows

    @property
    def pending(self) -> int:
        """Rows accepted and not yet written."""
        return self._queued_rows + self._staged_rows + self._tables_rows

    def stats(self) -> WriterStats:
        c = self._counters
        return WriterStats(
            self.mode, self.pending, c.dropped, c.written_rows, c.parts_written, c.flushes,
            c.replayed_segments, c.last_error, c.last_flush, c.cpu_seconds,
        )

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> LogWriter:
        if self.mode is LogMode.OFF or self._thread is not None:
            return self
        if self.wal_dir is not None:
            self.wal_dir.mkdir(parents=True, exist_ok=True)
            self._replay_wal()
        self._thread = threading.Thread(target=self._run, name="steward-log-writer", daemon=True)
        self._thread.start()
        return self

    def flush(self, timeout: float = 30.0) -> None:
        """Write everything queued so far to Parquet and wait for it."""
        if self._thread is None:
            return
        with self._flushed:
            target = self._flush_generation + 1
            self._flush_now.set()
            self._wake.set()
            if not self._flushed.wait_for(lambda: self._flush_generation >= target, timeout):
                raise StoreError(f"the prediction log did not flush within {timeout:.0f}s; see the gateway logs")

    def close(self, timeout: float = 60.0) -> None:
        """Write everything queued and stop the thread (the gateway calls this on shutdown)."""
        if self._thread is None:
            return
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise StoreError(f"the prediction log writer did not stop within {timeout:.0f}s; records may be lost")
        self._thread = None

    # ------------------------------------------------------------------ thread
    def _run(self) -> None:
        # Durable mode: queued records are appended to the WAL and turned into Arrow tables
        # every CONVERT_SECONDS (at most 0.05 s), in small slices: the conversion holds the
        # GIL, and one large conversion per flush stalled the event loop long enough to show in
        # p99. Batched mode: the submitters convert (see submit); this thread takes their tables
        # and converts only what is left staged at a flush. Both write one part per flush.
        buffered: dict[PartKey, list[pa.Table]] = collections.defaultdict(list)
        buffered_rows = 0
        deadline = time.monotonic() + self.flush_interval
        while True:
            timeout = max(0.0, min(deadline - time.monotonic(), CONVERT_SECONDS))
            if self.mode is LogMode.DURABLE:
                timeout = min(timeout, 0.05)
            if not self._stopping.is_set():
                self._wake.wait(timeout)
            self._wake.clear()
            stopping = self._stopping.is_set()  # read after the wait: close() sets it and then wakes us
            taken = self._take()
            if taken:
                if self.mode is LogMode.DURABLE:
                    self._append_wal(taken)
                for key, table in self._convert(taken).items():
                    buffered[key].append(table)
                    buffered_rows += table.num_rows
            flush_requested = self._flush_now.is_set()
            due = time.monotonic() >= deadline or buffered_rows + self._tables_rows >= self.flush_rows
            if due or flush_requested or stopping:  # what the submitters staged but did not convert yet
                with self._stage_lock:
                    staged, self._staged, self._staged_rows = self._staged, [], 0
                if staged:
                    self._hand_over(staged)
            while self._tables:
                with self._stage_lock:
                    tables, rows = self._tables.popleft()
                    self._tables_rows -= rows
                for key, table in tables.items():
                    buffered[key].append(table)
                buffered_rows += rows
            if buffered and (due or flush_requested or stopping):
                self._write(buffered, buffered_rows)
                buffered, buffered_rows = collections.defaultdict(list), 0
            if due or flush_requested or stopping:
                deadline = time.monotonic() + self.flush_interval
            if flush_requested:
                self._flush_now.clear()
                with self._flushed:
                    self._flush_generation += 1
                    self._flushed.notify_all()
            self._counters.cpu_seconds = time.thread_time()
            if stopping and not self._queue and not self._staged and not self._tables:
                self._close_segment(delete=True)
                return

    def _convert(self, taken: list[_Pending]) -> dict[PartKey, pa.Table]:
        return self._convert_batches([p.batch for p in taken])

    def _convert_batches(self, batches: list[Batch]) -> dict[PartKey, pa.Table]:
        try:
            return to_tables(batches)
        except Exception as error:  # a record the log cannot hold must not stop the writer
            self._counters.dropped += sum(batch.size for batch in batches)
            self._counters.last_error = f"conversion: {type(error).__name__}: {error}"
            log.error("prediction log records could not be converted: %s", error)
            return {}

    def _take(self) -> list[_Pending]:
        taken = []
        queue = self._queue
        with self._stage_lock:
            while queue:
                is_prediction, fields, ack = queue.popleft()
                taken.append(_Pending(PredictionBatch._make(fields) if is_prediction else LabelBatch._make(fields), ack))
            self._queued_rows = 0
        return taken

    def _write(self, tables: dict[PartKey, list[pa.Table]], rows: int) -> None:
        flush_id = self._segment.stem if self._segment is not None else self._next_flush_id()
        try:
            written = self.store.write_tables(tables, flush_id, sync=self.mode is LogMode.DURABLE)
        except Exception as error:  # the request path must not die with the store: count and report
            self._counters.last_error = f"{type(error).__name__}: {error}"
            log.error("prediction log write to %s failed: %s", self.store.uri, error)
            if self.mode is LogMode.DURABLE:
                self._close_segment(delete=False)  # the records stay in the WAL; the next start replays them
            else:
                self._counters.dropped += rows
            return
        c = self._counters
        c.written_rows += written
        c.flushes += 1
        c.parts_written += len(tables)
        c.last_flush = datetime.now(UTC)
        if self.mode is LogMode.DURABLE:
            self._close_segment(delete=True)

    def _next_flush_id(self) -> str:
        self._sequence += 1
        return f"{self.writer_id}-{self._sequence:06d}"

    # ------------------------------------------------------------------ write-ahead log
    def _append_wal(self, taken: list[_Pending]) -> None:
        error: BaseException | None = None
        try:
            if self._segment is None:
                self._segment = self._open_segment()
            handle = self._segment.handle
            handle.write("".join(_batch_to_json(p.batch) + "\n" for p in taken))
            handle.flush()
            os.fsync(handle.fileno())
        except Exception as exc:  # answer the waiting requests with the error instead of hanging them
            error = exc
            self._counters.last_error = f"write-ahead log: {type(exc).__name__}: {exc}"
            log.error("write-ahead log append failed: %s", exc)
        for pending in taken:
            if pending.ack is not None:
                pending.ack(error)

    def _open_segment(self) -> _Segment:
        assert self.wal_dir is not None
        stem = self._next_flush_id()
        path = self.wal_dir / f"{stem}.jsonl"
        handle = path.open("a", encoding="utf-8")
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # replay skips segments a live writer holds
        return _Segment(path, handle, stem)

    def _close_segment(self, *, delete: bool) -> None:
        segment, self._segment = self._segment, None
        if segment is None:
            return
        segment.handle.close()
        if delete:
            segment.path.unlink(missing_ok=True)

    def _replay_wal(self) -> None:
        """Write segments left by a writer that died into Parquet, then delete them."""
        assert self.wal_dir is not None
        for path in sorted(self.wal_dir.glob("*.jsonl")):
            with path.open("r", encoding="utf-8") as handle:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live writer's segment
                batches = []
                for line in handle:
                    if line.endswith("\n"):  # a torn last line was never acknowledged
                        batches.append(_batch_from_json(line))
                if batches:
                    self.store.write_batches(batches, path.stem, sync=True)
                    self._counters.written_rows += sum(b.size for b in batches)
            path.unlink()
            self._counters.replayed_segments += 1
            log.info("replayed write-ahead log segment %s (%d batches)", path.name, len(batches))

