"""The write-ahead log of durable mode: each record as one JSON line, fsynced before the answer.

A durable writer appends to its own segment, ``<wal dir>/<flush id>.jsonl``, locked while the
writer lives. Once the segment's records are in Parquet (parts named after the segment) it is
deleted; segments left by a writer that died are replayed into Parquet by the next durable
writer to start, and since the parts take the segment's name a second replay replaces them
instead of duplicating rows.

Every line carries its format's version in ``"v"``, and ``decode_line`` dispatches on it. Lines
without one were written before the field existed: version 1, in one of the layouts that
``_decode_v1`` tells apart.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from steward.store.records import (
    LABELS,
    PREDICTIONS,
    Batch,
    LabelBatch,
    PartKey,
    PredictionBatch,
    StoreError,
    prediction_batch,
    prediction_rows,
    utc_day,
)

if TYPE_CHECKING:
    from steward.store.reader import PredictionStore

log = logging.getLogger(__name__)

WAL_FOLDER = "_wal"
WAL_VERSION = 2


def encode_line(batch: Batch) -> str:
    """The record as one write-ahead-log line (without its newline)."""
    if isinstance(batch, LabelBatch):
        return json.dumps({"v": WAL_VERSION, "kind": LABELS, **batch._asdict()}, separators=(",", ":"))
    document = batch._asdict()
    document["numeric_values"] = batch.numeric_values.tolist()  # NaN is written as NaN, which json reads back
    return json.dumps({"v": WAL_VERSION, "kind": PREDICTIONS, **document}, separators=(",", ":"))


def decode_line(line: str) -> Batch:
    """The record on one write-ahead-log line, whichever version wrote it."""
    document = json.loads(line)
    return _DECODERS[_version(document)](document)


def wal_line_parts(line: str) -> set[PartKey]:
    """The (dataset, model, day) parts that the record on one write-ahead-log line writes to.

    Reads only what the day needs, without decoding the record: in every version and layout a
    record has one time (``time_ns``: labels, per-request predictions) or one per row (``times_ns``).
    """
    document = json.loads(line)
    _version(document)
    times = document["times_ns"] if "times_ns" in document else [document["time_ns"]]
    return {(document["kind"], document["model"], utc_day(time_ns)) for time_ns in set(times)}


def _version(document: dict[str, Any]) -> int:
    """The line's format version, taken out of the document; StoreError for one this Steward cannot read."""
    version = document.pop("v", 1)
    if version not in _DECODERS:
        raise StoreError(f"a write-ahead log line has format version {version!r}; this Steward reads versions "
                         f"1 to {WAL_VERSION}: replay the segment with the Steward that wrote it")
    return version


def _decode_v2(document: dict[str, Any]) -> Batch:
    """A record's fields as ``encode_line`` writes them; the numeric block as a list of rows."""
    if document.pop("kind") == LABELS:
        return LabelBatch(document["model"], document["time_ns"], tuple(document["request_ids"]),
                          tuple(document["rows"]), tuple(document["labels"]))
    size, width = len(document["rows"]), len(document["numeric_names"])
    block = np.array(document.pop("numeric_values"), dtype=np.float64).reshape(size, width)
    return PredictionBatch(numeric_values=block, **{name: tuple(value) if isinstance(value, list) else value
                                                    for name, value in document.items()})


def _decode_v1(document: dict[str, Any]) -> Batch:
    """A line from before the version field, in the layout of its time (newest first):

    - the numeric block (``numeric_names``, ``numeric_values``), and every labels line: the
      fields version 2 kept;
    - one record per model call (``request_ids``, ``times_ns``) with every feature's values in
      one flat ``feature_values``, row by row;
    - one record per request (``request_id``, ``time_ns``, ``latency_ms``) with
      ``feature_values`` feature by feature;
    - one record per request with ``features`` as [name, values] pairs.
    """
    if document["kind"] == LABELS or "numeric_values" in document:
        return _decode_v2(document)
    del document["kind"]
    if "request_id" in document:
        if "features" in document:
            features = {name: values for name, values in document.pop("features")}
        else:
            names, values, size = document.pop("feature_names"), document.pop("feature_values"), len(document["rows"])
            features = {name: values[i * size:(i + 1) * size] for i, name in enumerate(names)}
        return prediction_batch(**{**document, "features": features})
    names, values = document.pop("feature_names"), document.pop("feature_values")
    width = len(names)
    features = {name: values[i::width] for i, name in enumerate(names)}
    return prediction_rows(**{**document, "features": features})


_DECODERS: dict[int, Callable[[dict[str, Any]], Batch]] = {1: _decode_v1, 2: _decode_v2}


@dataclass
class _Segment:
    path: Path
    handle: Any
    stem: str


class WriteAheadLog:
    """One durable writer's segments in ``folder``, and the replay of segments dead writers left."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._segment: _Segment | None = None

    @property
    def segment_id(self) -> str | None:
        """The open segment's name (its records' parts are named after it); None when none is open."""
        return self._segment.stem if self._segment is not None else None

    def append(self, batches: Iterable[Batch], new_segment_id: Callable[[], str]) -> None:
        """Append the records to the open segment (opening one named ``new_segment_id()``) and fsync."""
        if self._segment is None:
            self._segment = self._open(new_segment_id())
        handle = self._segment.handle
        handle.write("".join(encode_line(batch) + "\n" for batch in batches))
        handle.flush()
        os.fsync(handle.fileno())

    def release(self, *, delete: bool) -> None:
        """Close the open segment: deleted when its records are in Parquet, else kept for a replay."""
        segment, self._segment = self._segment, None
        if segment is None:
            return
        segment.handle.close()
        if delete:
            segment.path.unlink(missing_ok=True)

    def _open(self, stem: str) -> _Segment:
        path = self.folder / f"{stem}.jsonl"
        handle = path.open("a", encoding="utf-8")
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # replay skips segments a live writer holds
        return _Segment(path, handle, stem)

    def replay(self, store: PredictionStore) -> tuple[int, int]:
        """Write segments left by writers that died into Parquet, then delete them; (segments, rows)."""
        segments = rows = 0
        for path in sorted(self.folder.glob("*.jsonl")):
            with path.open("r", encoding="utf-8") as handle:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live writer's segment
                batches = [decode_line(line) for line in handle if line.endswith("\n")]  # a torn last line was never acknowledged
                if batches:
                    store.write_batches(batches, path.stem, sync=True)
                    rows += sum(batch.size for batch in batches)
            path.unlink()
            segments += 1
            log.info("replayed write-ahead log segment %s (%d batches)", path.name, len(batches))
        return segments, rows
