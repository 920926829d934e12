"""Log records and their Arrow form: what the prediction log holds about each scored row and label.

A ``PredictionBatch`` is the rows one version's arm scored (for the gateway, one model call's
rows); a ``LabelBatch`` the labels of one feedback call. ``to_tables`` turns records into one
Arrow table per dataset, model and UTC day, the unit a Parquet part holds (docs/store.md).
Feature values go into ``f_<feature>`` columns (float64 for numeric features, text otherwise),
so a new feature only adds a column.
"""

from __future__ import annotations

import collections
import functools
import itertools
import operator
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

PREDICTIONS = "predictions"
LABELS = "labels"
FEATURE_PREFIX = "f_"


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
    collector, so a queue of thousands of records adds nothing to a full collection (a queue
    of dicts and lists made every full collection scan it). The numeric features are one
    float64 block, rows by features, which the gateway slices from the block its batch was
    scored on: no Python object per value to keep alive or to convert, and numpy arrays are
    not tracked either. The other features' values (text) are one flat tuple, row by row. Build a record with
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
    # Per row: milliseconds inside the version's model call that scored it (None: not measured).
    compute_ms: tuple[float | None, ...] | None = None

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
    compute_ms: Sequence[float | None] | None = None,
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
    lengths.update(len(given) for given in (predictions, scores, entities, compute_ms) if given is not None)
    block_fits = numeric_values is None or numeric_values.shape == (size, len(numeric_names))
    if lengths != {size} or not block_fits:  # the message is built only when it is needed: this runs per model call
        per_row = {"request_ids": request_ids, "times_ns": times_ns, "latencies_ms": latencies_ms,
                   "predictions": predictions, "scores": scores, "entities": entities, "compute_ms": compute_ms,
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
        tuple(entities) if entities is not None else None, tuple(compute_ms) if compute_ms is not None else None,
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


def utc_day(time_ns: int) -> str:
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
        "compute_ms": optional("compute_ms", pa.float64()),
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


def to_tables(batches: Iterable[Batch]) -> dict[PartKey, pa.Table]:
    """Arrow tables of the batches, one per dataset, model and day."""
    groups: dict[PartKey, list[Batch]] = collections.defaultdict(list)
    for batch in batches:
        if isinstance(batch, LabelBatch):
            groups[(LABELS, batch.model, utc_day(batch.time_ns))].append(batch)
            continue
        first, last = utc_day(min(batch.times_ns)), utc_day(max(batch.times_ns))
        if first == last:
            groups[(PREDICTIONS, batch.model, first)].append(batch)
        else:  # rows on both sides of midnight (or replayed from several days): one part per day
            for day, part in _split_by_day(batch).items():
                groups[(PREDICTIONS, batch.model, day)].append(part)
    return {
        key: _predictions_table(members) if key[0] == PREDICTIONS else _labels_table(members)
        for key, members in groups.items()
    }


def _split_by_day(batch: PredictionBatch) -> dict[str, PredictionBatch]:
    positions: dict[str, list[int]] = collections.defaultdict(list)
    for position, time_ns in enumerate(batch.times_ns):
        positions[utc_day(time_ns)].append(position)
    return {day: select_positions(batch, taken) for day, taken in positions.items()}


def select_positions(batch: PredictionBatch, positions: list[int]) -> PredictionBatch:
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
