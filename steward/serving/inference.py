"""Micro-batching inference: requests that arrive together are scored in one model call.

A model call has a fixed cost whatever its rows (through scikit-learn most of it is input
checking; ``fastpath`` removes most of that), so jobs are grouped by model version and each
group is scored with one call. Versions with the same features share one ``ModelInput`` (the
rows prepared once, as numpy arrays and, when needed, as a frame), so a batch holding both arms
of a canary prepares its rows once.

The request path uses ``LoopBatcher``: scoring runs on the event loop itself. While a batch
is scored, new requests wait in the socket buffers; afterwards the loop reads all of them and
they form the next batch (about 16 requests at 16 connections). One connection gets no added
wait (a lone job is scored as soon as the loop is idle). Scoring in a worker thread instead is
slower: the loop and the worker then fight for the GIL and batches come out smaller.

Shadow copies of a cheap challenger are scored here too, after the answers of the batch that
made them are out (``LoopBatcher.copy``); those of a challenger too slow for the loop are
scored by the shadow process (``steward.serving.shadow``), which uses ``score_jobs`` on its
own batches.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from steward.serving.arms import LoadedArm, ModelInput, Scored

log = logging.getLogger(__name__)


@dataclass(slots=True, eq=False)
class Job:
    """Rows of one request for one version; ``context`` is the owner's (the gateway's log record)."""

    arm: LoadedArm
    columns: dict[str, list[Any]]
    rows: int
    done: Callable[[Scored | BaseException], None] | None = None
    context: Any = None
    result: Scored | BaseException | None = None  # set when the job is delivered
    logged: Any = None  # the owner's: e.g. a future that says whether the log holds it
    # Where the job's rows sit in its batch's prepared input (set when scored): a shadow copy
    # for a version taking the same features is scored on those arrays instead of anew.
    source: tuple[ModelInput, int] | None = None
    # Milliseconds inside its version's model call for the batch it was scored in (set when scored):
    # the arm's own compute, which the other arm's calls in the same event loop do not inflate.
    compute_ms: float | None = None


class LoopBatcher:
    """Scores jobs on the event loop in batches; see the module docstring for why.

    ``copy`` queues a job nobody waits for (a shadow copy): the copies gathered while a batch
    was scored are scored after that batch's answers are out, so no answer waits for a copy.
    ``scored(jobs)``, when given, sees every scored job with its result: the served jobs of a
    batch as soon as they are delivered, the copies once they are scored.
    """

    SETTLE_ITERATIONS = 3  # loop turns without new jobs before a batch is closed

    def __init__(self, *, max_rows: int = 4096, scored: Callable[[list[Job]], None] | None = None) -> None:
        self.max_rows = max_rows
        self.scored = scored
        self._pending: list[Job] = []
        self._copies: list[Job] = []
        self._rows = 0
        self._flushing = False
        self.batches = 0
        self.jobs = 0
        self.copies = 0

    @property
    def depth(self) -> int:
        return len(self._pending)

    @property
    def copies_queued(self) -> int:
        return len(self._copies)

    async def score(self, job: Job) -> Scored | BaseException:
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        job.done = lambda result: _set_if_pending(future, result)
        self._pending.append(job)
        self._rows += job.rows
        self._start()
        return await future

    def copy(self, job: Job) -> None:
        self._copies.append(job)
        self._start()

    async def idle(self, timeout: float = 30.0) -> bool:
        """Wait until every queued job and copy is scored and reported (at shutdown); False on time-out."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._flushing or self._pending or self._copies:
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    def _start(self) -> None:
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        try:
            while self._pending or self._copies:
                if self._pending:
                    settled, seen = 0, len(self._pending)
                    while settled < self.SETTLE_ITERATIONS and self._rows < self.max_rows:
                        await asyncio.sleep(0)  # one loop turn: readable sockets become jobs
                        settled = settled + 1 if len(self._pending) == seen else 0
                        seen = len(self._pending)
                    jobs, self._pending, self._rows = self._pending, [], 0
                    self.batches += score_jobs(jobs)
                    self.jobs += len(jobs)
                    self._report(jobs)
                    if self._copies:
                        await asyncio.sleep(0)  # the answers are written before any copy is scored
                if self._copies:
                    copies, self._copies = self._copies, []
                    score_copies(copies)
                    self.copies += len(copies)
                    self._report(copies)
        finally:
            self._flushing = False

    def _report(self, jobs: list[Job]) -> None:
        if self.scored is None:
            return
        try:
            self.scored(jobs)
        except Exception:  # a logging bug must not stop the batcher that serves everyone
            log.exception("reporting %d scored jobs failed", len(jobs))


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
        by_schema.setdefault(group[0].arm.feature_key, []).append(group)
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


def joined_columns(jobs: list[Job]) -> dict[str, list[Any]]:
    """The jobs' columns end to end, one list per feature (a single job's own columns as they are)."""
    if len(jobs) == 1:
        return jobs[0].columns
    return {name: list(itertools.chain.from_iterable(job.columns[name] for job in jobs)) for name in jobs[0].columns}


def _score_groups(groups: list[list[Job]]) -> None:
    """Prepare the rows of every group at once, then run each group's model on its slice."""
    ordered = [job for group in groups for job in group]
    prepared = groups[0][0].arm.prepare(joined_columns(ordered))
    results: list[tuple[Job, Scored]] = []
    offset = 0
    for group in groups:
        rows = sum(job.rows for job in group)
        part = prepared.rows(offset, offset + rows)
        started = time.perf_counter()
        scored = group[0].arm.predict(part)
        compute_ms = (time.perf_counter() - started) * 1000
        start = 0
        for job in group:
            results.append((job, scored if len(ordered) == 1 else scored.slice(start, start + job.rows)))
            job.source = (prepared, offset + start)
            job.compute_ms = compute_ms
            start += job.rows
        offset += rows
    for job, result in results:  # delivered only when every group scored, so a retry never delivers twice
        _deliver(job, result)


def score_copies(copies: list[Job]) -> None:
    """Score shadow copies, reusing the arrays their served batch prepared where they can.

    A copy that carries its served job's ``source`` needs no preparing again: copies of
    consecutive jobs of one batch form a run, scored with one model call on that batch's
    prepared input, a fraction of what scoring them as new jobs costs.
    The others (a challenger taking other features) are scored like any jobs.
    """
    fresh = [copy for copy in copies if copy.source is None]
    if fresh:
        score_jobs(fresh)
    by_batch: dict[tuple[int, int], list[Job]] = {}
    for copy in copies:
        if copy.source is not None:
            by_batch.setdefault((id(copy.arm), id(copy.source[0])), []).append(copy)
    for members in by_batch.values():
        members.sort(key=lambda copy: copy.source[1])
        run = [members[0]]
        for copy in members[1:]:
            if copy.source[1] == run[-1].source[1] + run[-1].rows:
                run.append(copy)
            else:
                _score_run(run)
                run = [copy]
        _score_run(run)


def _score_run(run: list[Job]) -> None:
    prepared, start = run[0].source
    try:
        scored = run[0].arm.predict(prepared.rows(start, run[-1].source[1] + run[-1].rows))
    except Exception as error:
        if len(run) > 1:  # one copy at a time, so that only the bad ones fail
            for job in run:
                _score_run([job])
            return
        job = run[0]
        log.warning("%s v%s failed to score a shadow copy: %s", job.arm.model, job.arm.version, error,
                    extra={"event": "model_error", "model": job.arm.model, "version": job.arm.version})
        _deliver(job, error)
        return
    offset = 0
    for job in run:
        _deliver(job, scored if len(run) == 1 else scored.slice(offset, offset + job.rows))
        offset += job.rows


def _deliver(job: Job, result: Scored | BaseException) -> None:
    job.result = result
    if job.done is None:
        return
    try:
        job.done(result)
    except Exception:  # a callback bug must not stop the worker that serves everyone
        log.exception("delivering a result for %s failed", job.arm.model)


def _set_if_pending(future: asyncio.Future, value: Any) -> None:
    if not future.done():  # a request cancelled by its client disconnecting no longer waits
        future.set_result(value)
