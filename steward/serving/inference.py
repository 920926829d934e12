"""Micro-batching inference: requests that arrive together are scored in one model call.

A model call has a fixed cost whatever its rows, so jobs are grouped by model version and each
group is scored with one call. Through scikit-learn that cost was ~6.7 ms on the benchmark's
20-feature logistic regression (3.4 ms ``prepare_features``, 3.3 ms ``Pipeline.predict_proba``),
for one row or three hundred; with the version's pipeline compiled (``fastpath``) it is
~0.15-0.2 ms for 1-16 rows, and a batch holding both arms of a canary costs ~0.08 ms more than
a batch for one (it was ~5 ms: a second model call). Versions with the same features share
one ``ModelInput`` (the rows prepared once, as numpy arrays and, when needed, as a frame).

The request path uses ``LoopBatcher``: scoring runs on the event loop itself. While a batch
is scored, new requests wait in the socket buffers; afterwards the loop reads all of them and
they form the next batch (about 16 requests at 16 connections). One connection gets no added
wait (a lone job is scored as soon as the loop is idle). Scoring in a worker thread instead was
measured slower: the loop and the worker then fight for the GIL and batches come out smaller.

Shadow copies are not scored here but in the shadow process (``steward.serving.shadow``),
which uses ``score_jobs`` on its own batches.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
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
        part = prepared.rows(offset, offset + rows)
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
