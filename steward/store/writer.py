"""The log writer: keeps the prediction log's writes off the request path.

``LogWriter.submit`` queues records; a background thread writes one Parquet part per model and
day at each flush. In durable mode each record is first appended to the write-ahead log
(``steward.store.wal``) and fsynced before the request is answered; the segment is deleted
once its records are in Parquet, and segments left by a crash are replayed when the next
durable writer starts.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from steward.store.records import (
    Batch,
    LabelBatch,
    PartKey,
    PredictionBatch,
    StoreError,
    select_positions,
    to_tables,
)
from steward.store.wal import WAL_FOLDER, WriteAheadLog

if TYPE_CHECKING:
    from steward.store.reader import PredictionStore

log = logging.getLogger(__name__)

CONVERT_SECONDS = 0.1
STAGE_ROWS = 512  # batched mode: rows the submitting thread converts to Arrow at once

Ack = Callable[[BaseException | None], None]


class LogMode(StrEnum):
    BATCHED = "batched"  # queued in memory, written every flush interval: a crash loses the queue
    DURABLE = "durable"  # fsynced to a local write-ahead log before the answer: a crash loses nothing answered
    OFF = "off"  # nothing is written


def _by_request(batch: Batch) -> list[Batch]:
    """A prediction record of several requests as one record per request; any other record as it is."""
    if not isinstance(batch, PredictionBatch) or len(set(batch.request_ids)) < 2:
        return [batch]
    positions: dict[str, list[int]] = collections.defaultdict(list)
    for position, request_id in enumerate(batch.request_ids):
        positions[request_id].append(position)
    return [select_positions(batch, taken) for taken in positions.values()]


def use_writer_memory_pool() -> str:
    """Give Arrow's buffers jemalloc, the allocator the log writer runs best on; returns the pool used.

    A process-wide choice, so the gateway's processes make it at start, not this module on
    import; ``ARROW_DEFAULT_MEMORY_POOL`` still wins. With pyarrow's default (mimalloc) the
    buffers freed after each flush went back to the OS and were faulted in again for the next
    (``benchmarks/log_writer.py`` compares the two).
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
        self.wal_dir: Path | None = None
        self._wal: WriteAheadLog | None = None
        if self.mode is LogMode.DURABLE:
            if wal_dir is None and not store.local:
                raise StoreError(
                    f"durable logging to {store.uri} needs a local write-ahead log folder: pass wal_dir "
                    "(`steward serve --wal-dir PATH`)"
                )
            self.wal_dir = Path(wal_dir) if wal_dir is not None else Path(store.root) / WAL_FOLDER
            self._wal = WriteAheadLog(self.wal_dir)

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
        # Arrow itself and hands the tables to the writer thread, which then only concatenates
        # and writes them (C++ that releases the GIL): converting in the writer thread made the
        # two threads contend for the GIL on every request.
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
        if self._wal is not None:
            self._wal.folder.mkdir(parents=True, exist_ok=True)
            segments, rows = self._wal.replay(self.store)
            self._counters.replayed_segments += segments
            self._counters.written_rows += rows
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
                self._release_segment(delete=True)
                return

    def _convert(self, taken: list[_Pending]) -> dict[PartKey, pa.Table]:
        return self._convert_batches([p.batch for p in taken])

    def _convert_batches(self, batches: list[Batch]) -> dict[PartKey, pa.Table]:
        try:
            return to_tables(batches)
        except Exception:  # a record the log cannot hold must not stop the writer, nor cost the others
            return self._convert_isolating(batches)

    def _convert_isolating(self, batches: list[Batch]) -> dict[PartKey, pa.Table]:
        """Convert what converts: each record alone, a failing one request by request; drop and count the rest.

        A prediction record holds the rows of every request one model call scored, so one
        caller's unstorable value would otherwise cost the other callers' rows.
        """
        converted: dict[PartKey, list[pa.Table]] = collections.defaultdict(list)
        for batch in batches:
            try:
                tables = to_tables([batch])
            except Exception:
                tables = self._convert_requests(batch)
            for key, table in tables.items():
                converted[key].append(table)
        return {key: pa.concat_tables(tables, promote_options="default") for key, tables in converted.items()}

    def _convert_requests(self, batch: Batch) -> dict[PartKey, pa.Table]:
        """A failing record's requests converted one by one; those that fail are dropped and counted."""
        converted: dict[PartKey, list[pa.Table]] = collections.defaultdict(list)
        for part in _by_request(batch):
            try:
                tables = to_tables([part])
            except Exception as error:
                self._counters.dropped += part.size
                self._counters.last_error = f"conversion: {type(error).__name__}: {error}"
                log.error("a prediction log record of %d rows could not be converted and was dropped: %s",
                          part.size, error, extra={"event": "log_record_dropped", "rows": part.size})
                continue
            for key, table in tables.items():
                converted[key].append(table)
        return {key: pa.concat_tables(tables, promote_options="default") for key, tables in converted.items()}

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
        segment_id = self._wal.segment_id if self._wal is not None else None
        flush_id = segment_id if segment_id is not None else self._next_flush_id()
        try:
            written = self.store.write_tables(tables, flush_id, sync=self.mode is LogMode.DURABLE)
        except Exception as error:  # the request path must not die with the store: count and report
            self._counters.last_error = f"{type(error).__name__}: {error}"
            log.error("prediction log write to %s failed: %s", self.store.uri, error)
            if self.mode is LogMode.DURABLE:
                self._release_segment(delete=False)  # the records stay in the WAL; the next start replays them
            else:
                self._counters.dropped += rows
            return
        c = self._counters
        c.written_rows += written
        c.flushes += 1
        c.parts_written += len(tables)
        c.last_flush = datetime.now(UTC)
        if self.mode is LogMode.DURABLE:
            self._release_segment(delete=True)

    def _next_flush_id(self) -> str:
        self._sequence += 1
        return f"{self.writer_id}-{self._sequence:06d}"

    # ------------------------------------------------------------------ write-ahead log
    def _append_wal(self, taken: list[_Pending]) -> None:
        assert self._wal is not None
        error: BaseException | None = None
        try:
            self._wal.append((pending.batch for pending in taken), self._next_flush_id)
        except Exception as exc:  # answer the waiting requests with the error instead of hanging them
            error = exc
            self._counters.last_error = f"write-ahead log: {type(exc).__name__}: {exc}"
            log.error("write-ahead log append failed: %s", exc)
        for pending in taken:
            if pending.ack is not None:
                pending.ack(error)

    def _release_segment(self, *, delete: bool) -> None:
        if self._wal is not None:
            self._wal.release(delete=delete)
