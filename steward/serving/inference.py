"""Micro-batching inference: requests that arrive together are scored in one model call.

A scikit-learn pipeline plus ``prepare_features`` costs about the same for one row as for a
few hundred (on the benchmark model ~9 ms either way), so jobs are grouped by model version
and each group is scored with one call.

The request path uses ``LoopBatcher``: scoring runs on the event loop itself. While a batch
is scored, new requests wait in the socket buffers; afterwards the loop reads all of them and
they form the next batch. One connection gets no added wait (a lone job is scored as soon as
the loop is idle). Scoring in a worker thread instead was measured slower: the loop and the
worker then fight for the GIL and batches come out smaller.

Shadow copies use ``InferenceWorker``, a thread that gathers jobs for ``collect_seconds`` and
hands each batch to a child process (``steward.serving.shadow``), so the challenger runs
rarely, on large batches, and off the GIL the request path needs.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from steward.serving.pool import LoadedArm, Scored

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Job:
    arm: LoadedArm
    columns: dict[str, list[Any]]
    rows: int
    done: Callable[[Scored | BaseException], None]


_STOP = object()


class InferenceWorker:
    """One thread scoring queued jobs in batches; ``max_rows`` bounds a batch."""

    def __init__(
        self, name: str, *, collect_seconds: float = 0.0, max_rows: int = 4096,
        scorer: Callable[[list[Job]], int] | None = None,
    ) -> None:
        self.name = name
        self.scorer = scorer or score_jobs
        self.collect_seconds = collect_seconds
        self.max_rows = max_rows
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.batches = 0
        self.jobs = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"steward-{self.name}", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> None:
        self._queue.put(job)

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def stop(self, timeout: float = 30.0) -> None:
        """Score every job already queued, then end the thread."""
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
            jobs = [first]
            rows = first.rows
            if self.collect_seconds:
                # Sleep through the window instead of waking for every job: each wake-up takes the
                # GIL from the event loop, and at 1000 jobs/s those hand-overs doubled the
                # champion's p99 in shadow mode.
                time.sleep(self.collect_seconds)
            while not stopping and rows < self.max_rows:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is _STOP:
                    stopping = True
                    break
                jobs.append(job)
                rows += job.rows
            self._score(jobs)
        while True:  # drain what arrived before the stop marker was read
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not _STOP:
                self._score([job])

    def _score(self, jobs: list[Job]) -> None:
        try:
            self.batches += self.scorer(jobs)
        except Exception as error:  # the worker outlives any scoring failure
            log.exception("%s worker failed to score a batch", self.name)
            for job in jobs:
                _deliver(job, error)
        self.jobs += len(jobs)


class LoopBatcher:
    """Scores jobs on the event loop in batches; see the module docstring for why."""

    SETTLE_ITERATIONS = 3  # loop turns without new jobs before a batch is closed

    def __init__(self, *, max_rows: int = 4096) -> None:
        self.max_rows = max_rows
        self._pending: list[Job] = []
        self._rows = 0
        self._flushing = False
        self.batches = 0
        self.jobs = 0

    @property
    def depth(self) -> int:
        return len(self._pending)

    async def score(self, arm: LoadedArm, columns: dict[str, list[Any]], rows: int) -> Scored | BaseException:
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending.append(Job(arm, columns, rows, lambda result: _set_if_pending(future, result)))
        self._rows += rows
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._pending:
                settled, seen = 0, len(self._pending)
                while settled < self.SETTLE_ITERATIONS and self._rows < self.max_rows:
                    await asyncio.sleep(0)  # one loop turn: readable sockets become jobs
                    settled = settled + 1 if len(self._pending) == seen else 0
                    seen = len(self._pending)
                jobs, self._pending, self._rows = self._pending, [], 0
                self.batches += score_jobs(jobs)
                self.jobs += len(jobs)
        finally:
            self._flushing = False


def score_jobs(jobs: list[Job]) -> int:
    """Score jobs grouped by model version, deliver each result; returns the number of model calls.

    Versions with the same feature schema (a champion and its retrained challenger, usually)
    share one ``prepare_features`` call: it costs as much as the model call itself.
    """
    by_arm: dict[int, list[Job]] = {}
    for job in jobs:
        by_arm.setdefault(id(job.arm), []).append(job)
    by_schema: dict[Any, list[list[Job]]] = {}
    for group in by_arm.values():
        by_schema.setdefault(group[0].arm.spec.features, []).append(group)
    for groups in by_schema.values():
        try:
            _score_groups(groups)
        except Exception:  # retried job by job so that one bad job fails alone
            for job in itertools.chain.from_iterable(groups):
                try:
                    _score_groups([[job]])
                except Exception as error:
                    log.exception("%s v%s failed to score a request", job.arm.model, job.arm.version,
                                  extra={"event": "model_error", "model": job.arm.model, "version": job.arm.version})
                    _deliver(job, error)
    return len(by_arm)


def _score_groups(groups: list[list[Job]]) -> None:
    """Prepare the rows of every group at once, then run each group's model on its slice."""
    ordered = [job for group in groups for job in group]
    if len(ordered) == 1:
        columns = ordered[0].columns
    else:
        names = ordered[0].columns.keys()
        columns = {name: list(itertools.chain.from_iterable(job.columns[name] for job in ordered)) for name in names}
    prepared = groups[0][0].arm.prepare(columns)
    results: list[tuple[Job, Scored]] = []
    offset = 0
    for group in groups:
        rows = sum(job.rows for job in group)
        part = prepared if len(groups) == 1 else prepared.iloc[offset:offset + rows]
        scored = group[0].arm.predict(part)
        start = 0
        for job in group:
            results.append((job, scored if len(ordered) == 1 else scored.slice(start, start + job.rows)))
            start += job.rows
        offset += rows
    for job, result in results:  # delivered only when every group scored, so a retry never delivers twice
        _deliver(job, result)


def _deliver(job: Job, result: Scored | BaseException) -> None:
    try:
        job.done(result)
    except Exception:  # a callback bug must not stop the worker that serves everyone
        log.exception("delivering a result for %s failed", job.arm.model)


def _set_if_pending(future: asyncio.Future, value: Any) -> None:
    if not future.done():  # a request cancelled by its client disconnecting no longer waits
        future.set_result(value)
