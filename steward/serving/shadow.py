"""Shadow copies of a challenger too slow for the event loop, scored and logged in a child process.

Where copies go is ``shadow_placement``'s decision: a challenger whose model call on a batch
(measured when it loads) fits within ``shadow_inline_max_ms`` scores its copies on the event
loop, after the answers of the batch that made them (``LoopBatcher.copy``); this module is
for the others, whose calls would hold the loop for milliseconds.

The request path only queues each copy as it arrived: the request's raw body, id, time and
entities. A gateway thread (``ShadowWorker``) gathers copies for ``collect_seconds`` and sends
them, one batch per challenger version, to the child (``python -m steward.serving.shadow``,
over a socket pair; the challenger itself is sent once per version, pickled). The child runs
on CPU time the gateway leaves (``SCHED_IDLE`` on Linux) and does everything else: parses and validates each copy against the
challenger's schema, scores the batch with one model call, and writes the copies to the
prediction log through its own ``PredictionLog`` (``served=false``, the gateway's store and
log settings). It answers with a summary (rows, scores, refused and failed copies, its log
counters) from which the gateway updates its metrics.

Each step of this design removed a cause of the champion's p99 rising under a 100 % shadow
(``benchmarks/gateway_load.py --only shadow+log`` measures it): scoring copies in a gateway thread held the GIL;
validating, logging and converting copies in the gateway process took the event loop's time;
and the child's CPU at normal priority took the cores the gateway needed. A copy still costs
the child more than a quick challenger's copy costs on the loop: hence those stay on the loop.

If the child dies, the batch in hand is logged by the gateway with status ``error`` and counted
as failed, and copies are skipped (and counted) for ``RETRY_SECONDS`` before a new child starts.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from multiprocessing.connection import Connection
from typing import Any, NamedTuple

from steward.serving.arms import LoadedArm, Scored
from steward.serving.inference import Job, score_jobs
from steward.serving.prediction_log import LogSettings, PredictionLog
from steward.serving.schema import Payload, RequestError, parse_payload
from steward.store.reader import PredictionStore
from steward.store.writer import LogMode, use_writer_memory_pool

log = logging.getLogger(__name__)

KEPT_ARMS = 4  # versions the child keeps loaded
RETRY_SECONDS = 30.0  # after a failure, shadow copies are skipped this long before a restart
CHILD_NICENESS = 19  # where SCHED_IDLE is not available: the copies are optional, requests are not
MAX_BATCH_COPIES = 5_000  # copies the worker takes from the queue at once
# Copies pickled into one message: pickling holds the GIL, and a second's worth of copies at
# once (a few MB) stalled the event loop.
SEND_COPIES = 256
STOP_SECONDS = 60.0  # how long the gateway waits for the child to flush its log and end


class ShadowCopy(NamedTuple):
    """One request to score again with the challenger, as it arrived.

    A tuple of plain values, like the log's records: when the shadow process falls behind,
    thousands of copies wait in the queue, and the garbage collector stops tracking such
    tuples instead of scanning them on every collection (which showed in the champion's p99).
    """

    request_id: str
    time_ns: int
    body: bytes
    allowed: tuple[str, ...]  # fields besides the features the request may carry
    entities: tuple[str | None, ...] | None
    submitted: float  # time.monotonic() on arrival (CLOCK_MONOTONIC: the same clock in the child)


@dataclass(frozen=True)
class ShadowSummary:
    """What the child did with one batch of one version's copies."""

    rows: int  # rows scored and logged with status ok
    scores: list[float] | None  # their scores, for the score histogram
    refused: int  # copies the challenger's schema refused (not logged)
    failed: int  # copies the model failed on (logged with status error)
    log_written: int  # the child's log writer: rows written so far
    log_dropped: int  # and rows dropped so far
    log_pending: int


@dataclass(frozen=True)
class ShadowLogSettings:
    """Where and how the child logs the copies: the gateway's own store and log settings."""

    store_uri: str
    log: LogSettings
    max_rows: int  # rows a request may carry (the gateway's limit)


class PlacementReason(StrEnum):
    WITHIN_LIMIT = "within_limit"  # the measured model call fits the inline limit: the event loop
    OVER_LIMIT = "over_limit"  # it does not: the shadow process
    NOT_MEASURED = "not_measured"  # no measurement to go by: the shadow process


@dataclass(frozen=True)
class ShadowPlacement:
    """Where a challenger's shadow copies are scored, why (``code``), and the sentence for people."""

    inline: bool  # on the gateway's event loop, after the answers; else in the shadow process
    reason: str
    code: PlacementReason


def fits_inline(challenger: LoadedArm, inline_max_ms: float) -> bool:
    """Whether the challenger's copies are scored on the event loop (see ``shadow_placement``)."""
    return challenger.call_seconds is not None and challenger.call_seconds * 1000 <= inline_max_ms


def shadow_placement(challenger: LoadedArm, inline_max_ms: float) -> ShadowPlacement:
    """Copies go on the event loop when the challenger's measured model call is within ``inline_max_ms``.

    On the loop a copy costs what the challenger's share of one model call costs (rows already
    validated, one call per batch of copies) and nothing crosses a process boundary; but every
    millisecond it takes delays the next batch of real requests. The shadow process keeps a slow
    challenger off the loop, at the price of parsing, validating and scoring each copy again.
    """
    if challenger.call_seconds is None:
        return ShadowPlacement(False, f"v{challenger.version}'s model call was not measured",
                               PlacementReason.NOT_MEASURED)
    ms = challenger.call_seconds * 1000
    if fits_inline(challenger, inline_max_ms):
        return ShadowPlacement(True, f"v{challenger.version} scores 16 rows in {ms:.2f} ms "
                                     f"(inline limit {inline_max_ms:g} ms)", PlacementReason.WITHIN_LIMIT)
    return ShadowPlacement(False, f"v{challenger.version} scores 16 rows in {ms:.2f} ms, over the inline "
                                  f"limit of {inline_max_ms:g} ms", PlacementReason.OVER_LIMIT)


def _key(arm: LoadedArm) -> tuple[str, str, str]:
    return (arm.model, arm.version, arm.digest)


class ShadowProcess:
    """The child process and the protocol to it; used by the shadow worker thread only.

    The child is ``python -m steward.serving.shadow`` talking over a socket pair, not a
    ``multiprocessing`` process: that would re-import the embedding program's main module,
    which breaks any program without a ``__main__`` guard. It runs in its own session, so a
    Ctrl-C meant for the gateway does not kill it before the gateway tells it to flush.
    """

    def __init__(self, settings: ShadowLogSettings | None = None) -> None:
        self.settings = settings  # set by the gateway when it starts and knows its store
        self._process: subprocess.Popen | None = None
        self._conn: Connection | None = None
        self._sent: collections.OrderedDict[tuple[str, str, str], None] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._failed_at = -RETRY_SECONDS
        self.starts = 0
        self.log_written = 0  # the current child's counters, and those of children that ended
        self.log_dropped = 0
        self.log_pending = 0
        self._ended_written = 0
        self._ended_dropped = 0

    def score(self, arm: LoadedArm, copies: list[ShadowCopy]) -> ShadowSummary:
        """Have the child score and log one version's copies; OSError & co. when it cannot."""
        with self._lock:
            try:
                conn = self._ensure(arm)
                conn.send(("copies", _key(arm), copies))
                status, payload = conn.recv()
            except Exception:  # a dead, hung-up or garbled child: end it, skip copies for a while
                self._stop_child()
                self._failed_at = time.monotonic()
                raise
        if status != "ok":
            raise RuntimeError(payload)
        self._count(payload)
        return payload

    def flush(self) -> None:
        """Have a running child write every copy it scored to the log now (no child: nothing to write)."""
        with self._lock:
            if self._conn is None or self._process is None or self._process.poll() is not None:
                return
            try:
                self._conn.send(("flush",))
                status, payload = self._conn.recv()
            except Exception:  # a dead or garbled child: as in score
                self._stop_child()
                self._failed_at = time.monotonic()
                raise
        if status != "flushed":
            raise RuntimeError(payload)
        self._count(payload)

    def _count(self, summary: ShadowSummary) -> None:
        self.log_written = self._ended_written + summary.log_written
        self.log_dropped = self._ended_dropped + summary.log_dropped
        self.log_pending = summary.log_pending

    def _ensure(self, arm: LoadedArm) -> Connection:
        if self._process is None or self._process.poll() is not None:
            self._stop_child()
            if time.monotonic() - self._failed_at < RETRY_SECONDS:
                raise OSError("the shadow process failed recently; copies are skipped until it can restart")
            if self.settings is None:
                raise OSError("the shadow process has no log settings: the gateway has not started")
            parent, child = socket.socketpair()
            with child:
                self._process = subprocess.Popen(
                    [sys.executable, "-m", "steward.serving.shadow", str(child.fileno())],
                    pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL, start_new_session=True,
                )
            self._conn = Connection(parent.detach())
            self._conn.send(("config", self.settings))
            self.starts += 1
        key = _key(arm)
        if key not in self._sent:
            self._conn.send(("arm", key, arm))
            self._sent[key] = None
            while len(self._sent) > KEPT_ARMS:
                self._sent.popitem(last=False)
        else:
            self._sent.move_to_end(key)
        return self._conn

    def _stop_child(self) -> None:
        """Tell the child to flush its log and end; wait for it (it answers with its last counters)."""
        conn, process = self._conn, self._process
        self._conn, self._process = None, None
        self._sent.clear()
        if conn is not None:
            with contextlib.suppress(Exception):  # the child may be gone already, or garbled
                conn.send(("stop",))
                if conn.poll(STOP_SECONDS):
                    status, payload = conn.recv()
                    if status == "closed":
                        self._count(payload)
            conn.close()
        self._ended_written, self._ended_dropped = self.log_written, self.log_dropped
        self.log_pending = 0
        if process is not None:
            try:
                process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def close(self) -> None:
        with self._lock:
            self._stop_child()


_STOP = object()


@dataclass(frozen=True)
class _Flush:
    """Queued behind the copies it must follow: set once they are scored and the child wrote them."""

    done: threading.Event


class ShadowWorker:
    """A thread that gathers copies for ``collect_seconds`` and has the child score each batch.

    ``report(arm, summary)`` is called with each batch's summary; ``failed(arm, copies, error)``
    with the copies of a batch the child could not take.
    """

    def __init__(
        self, process: ShadowProcess, *, collect_seconds: float,
        report: Callable[[LoadedArm, ShadowSummary], None],
        failed: Callable[[LoadedArm, list[ShadowCopy], BaseException], None],
    ) -> None:
        self.process = process
        self.collect_seconds = collect_seconds
        self.report = report
        self.failed = failed
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()  # (arm key, ShadowCopy): plain tuples
        self._arms: collections.OrderedDict[tuple[str, str, str], LoadedArm] = collections.OrderedDict()
        self._thread: threading.Thread | None = None
        self.batches = 0
        self.copies = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="steward-shadow", daemon=True)
        self._thread.start()

    def submit(self, arm: LoadedArm, copy: ShadowCopy) -> None:
        key = _key(arm)
        if self._arms.get(key) is not arm:
            self._arms[key] = arm
            while len(self._arms) > KEPT_ARMS:
                self._arms.popitem(last=False)
        self._queue.put((key, copy))

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def flush(self, timeout: float) -> bool:
        """Score every copy queued now and have the child write them; False if that took longer than ``timeout``."""
        if self._thread is None:
            return True
        marker = _Flush(threading.Event())
        self._queue.put(marker)
        return marker.done.wait(timeout)

    def stop(self, timeout: float = 60.0) -> None:
        """Score every copy already queued, then end the thread."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                return
            if isinstance(first, _Flush):
                self._flush(first)
                continue
            if self.collect_seconds:
                # Sleep through the window instead of waking for every copy: each wake-up takes
                # the GIL from the event loop.
                time.sleep(self.collect_seconds)
            copies = [first]
            while len(copies) < MAX_BATCH_COPIES:
                try:
                    copy = self._queue.get_nowait()
                except queue.Empty:
                    break
                if copy is _STOP:
                    stopping = True
                    break
                if isinstance(copy, _Flush):  # after the copies gathered before it
                    self._send(copies)
                    copies = []
                    self._flush(copy)
                    continue
                copies.append(copy)
            self._send(copies)
        while True:  # what arrived before the stop marker was read
            try:
                copy = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(copy, _Flush):
                self._flush(copy)
            elif copy is not _STOP:
                self._send([copy])

    def _flush(self, marker: _Flush) -> None:
        try:
            self.process.flush()
        except Exception as error:  # the copies stay counted as they were; the caller sees the time it took
            log.error("the shadow process could not flush its log: %s", error, extra={"event": "shadow_flush_failed"})
        finally:
            marker.done.set()

    def _send(self, copies: list[tuple[tuple[str, str, str], ShadowCopy]]) -> None:
        by_arm: dict[tuple[str, str, str], list[ShadowCopy]] = {}
        for key, copy in copies:
            by_arm.setdefault(key, []).append(copy)
        for key, group in by_arm.items():
            arm = self._arms.get(key)
            if arm is None:  # KEPT_ARMS newer versions came since: too old to be worth scoring
                continue
            for start in range(0, len(group), SEND_COPIES):
                chunk = group[start:start + SEND_COPIES]
                try:
                    summary = self.process.score(arm, chunk)
                except Exception as error:  # the worker outlives the child
                    if "failed recently" not in str(error):
                        log.error("the shadow process failed (%s); retrying in %.0f s", error, RETRY_SECONDS,
                                  extra={"event": "shadow_process_failed"})
                    self._call(self.failed, arm, chunk, error)
                else:
                    self._call(self.report, arm, summary)
                self.batches += 1
                self.copies += len(chunk)

    @staticmethod
    def _call(callback: Callable[..., None], *args: Any) -> None:
        try:
            callback(*args)
        except Exception:  # a callback bug must not stop the worker
            log.exception("a shadow callback failed")


# ---------------------------------------------------------------------- the child
def _validated(arm: LoadedArm, copies: list[ShadowCopy], max_rows: int) -> tuple[list[tuple], int]:
    """Each copy's columns, validated against the challenger's schema; and how many it refused.

    Copies with the same columns are validated as one payload (validation normalises value by
    value, so the result is the same, at a fraction of the per-call cost); if that payload has
    a problem, they are validated one by one so that only the bad copies are refused.
    """
    refused = 0
    groups: dict[tuple[tuple[str, ...], tuple[str, ...]], list[tuple[ShadowCopy, Payload]]] = {}
    for copy in copies:
        try:
            payload = parse_payload(json.loads(copy.body), max_rows=max_rows)
        except (RequestError, ValueError, RecursionError):
            refused += 1
            continue
        groups.setdefault((tuple(payload.columns), copy.allowed), []).append((copy, payload))
    valid = []
    for (names, allowed), members in groups.items():
        extra = frozenset(allowed)
        merged = Payload({name: list(itertools.chain.from_iterable(p.columns[name] for _, p in members))
                          for name in names}, sum(p.rows for _, p in members))
        try:
            columns = arm.schema.validate(merged, allowed_extra=extra)
        except RequestError:
            for copy, payload in members:
                try:
                    valid.append((*copy[:2], arm.schema.validate(payload, allowed_extra=extra), payload.rows,
                                  *copy[4:]))
                except RequestError:
                    refused += 1
            continue
        start = 0
        for copy, payload in members:
            stop = start + payload.rows
            valid.append((*copy[:2], {name: values[start:stop] for name, values in columns.items()}, payload.rows,
                          *copy[4:]))
            start = stop
    return valid, refused


def _score_copies(
    arm: LoadedArm, copies: list[tuple], prediction_log: PredictionLog | None, max_rows: int
) -> tuple[int, list[float], int, int]:
    """Parse, validate, score (one model call) and log one batch of copies; (rows, scores, refused, failed)."""
    valid, refused = _validated(arm, copies, max_rows)
    results: list[Scored | BaseException] = [RuntimeError("not scored")] * len(valid)

    def keep(position: int) -> Callable[[Scored | BaseException], None]:
        return lambda result: results.__setitem__(position, result)

    score_jobs([Job(arm, columns, rows, keep(i)) for i, (_, _, columns, rows, _, _) in enumerate(valid)])
    scored_rows, scores, failed = 0, [], 0
    for (request_id, time_ns, columns, rows, entities, submitted), result in zip(valid, results, strict=True):
        ok = not isinstance(result, BaseException)
        if ok:
            scored_rows += rows
            if result.scores is not None:
                scores.extend(result.scores)
        else:
            failed += 1
        if prediction_log is not None:
            prediction_log.record_copy(arm, request_id, time_ns, columns, rows, entities, submitted,
                                       result if ok else None)
    return scored_rows, scores, refused, failed


def _lower_priority() -> None:
    """Run on CPU time the gateway and its clients leave (Linux SCHED_IDLE), else at the lowest niceness.

    A niceness still lets the child take a core's share from the gateway or its clients, which
    showed in the champion's p99 under a 100 % shadow; with SCHED_IDLE it did not.
    """
    if hasattr(os, "SCHED_IDLE"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return
    with contextlib.suppress(OSError):
        os.nice(CHILD_NICENESS)


def _child_main(conn: Connection) -> None:
    # The gateway ends the child: by "stop" (after its last batch), or by closing the socket.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _lower_priority()
    use_writer_memory_pool()
    arms: collections.OrderedDict[Any, LoadedArm] = collections.OrderedDict()
    prediction_log: PredictionLog | None = None  # None: the gateway logs nothing
    max_rows = 1_000_000

    def counters() -> dict[str, int]:
        stats = prediction_log.stats() if prediction_log is not None else None
        return {"log_written": stats.written_rows if stats else 0, "log_dropped": stats.dropped if stats else 0,
                "log_pending": stats.pending if stats else 0}

    try:
        while True:
            try:
                message = conn.recv()
            except EOFError:
                return
            kind = message[0]
            if kind == "stop":
                if prediction_log is not None:
                    prediction_log.close()
                conn.send(("closed", ShadowSummary(0, None, 0, 0, **counters())))
                prediction_log = None
                return
            if kind == "flush":  # everything sent before is scored: write it now
                if prediction_log is not None:
                    prediction_log.flush()
                conn.send(("flushed", ShadowSummary(0, None, 0, 0, **counters())))
                continue
            if kind == "config":
                settings: ShadowLogSettings = message[1]
                max_rows = settings.max_rows
                if settings.log.mode is not LogMode.OFF:
                    prediction_log = PredictionLog(PredictionStore(settings.store_uri), settings.log).start()
                continue
            if kind == "arm":
                _, key, arm = message
                arms[key] = arm
                while len(arms) > KEPT_ARMS:
                    arms.popitem(last=False)
                continue
            _, key, copies = message
            try:
                rows, scores, refused, failed = _score_copies(arms[key], copies, prediction_log, max_rows)
            except Exception as error:
                conn.send(("error", f"{type(error).__name__}: {error}"))
                continue
            conn.send(("ok", ShadowSummary(rows, scores, refused, failed, **counters())))
    finally:
        if prediction_log is not None:  # the gateway went away without "stop": still write what is queued
            prediction_log.close()


if __name__ == "__main__":
    # Run the importable module's copy, so that what the child pickles (ShadowSummary) names
    # steward.serving.shadow, which the gateway can unpickle, rather than __main__.
    from steward.serving import shadow

    shadow._child_main(Connection(int(sys.argv[1])))

