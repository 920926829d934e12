"""Serving's one way into the prediction log: builds log records of scored rows and labels, submits them.

The gateway's event loop logs each batch's jobs (``record_jobs``: one record per version,
arm, status and day, so the log's cost is paid per model call rather than per request) and
each feedback call's labels; the shadow process logs the copies it scored, and the gateway
the copies the shadow process could not take (``record_copy``). Both open a ``PredictionLog``
from the same ``LogSettings``, so they write the same store in the same mode.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from steward.registry.traffic import Arm
from steward.serving.arms import LoadedArm, Scored
from steward.serving.inference import Job, joined_columns
from steward.serving.schema import DEFAULT_MAX_TEXT_LENGTH, InputSchema, Problem, RequestError, text_problem
from steward.store.reader import PredictionStore
from steward.store.records import (
    Batch,
    LabelBatch,
    PredictionBatch,
    label_text,
    prediction_batch,
    prediction_rows,
)
from steward.store.writer import LogMode, LogWriter, WriterStats

DAY_NS = 86_400 * 10**9
FLOAT64 = np.dtype(np.float64)


@dataclass(frozen=True)
class LogSettings:
    """How a serving process logs: the gateway's settings, which its shadow process gets too."""

    mode: LogMode
    flush_interval: float
    max_pending: int
    wal_dir: Path | None  # durable mode; None: the store's own ``_wal`` folder (local stores)


class LogContext(NamedTuple):
    """What the log needs of a job besides its rows and result (``Job.context``)."""

    request_id: str
    time_ns: int
    started: float  # time.perf_counter() at the request's arrival
    entities: list[str | None] | None  # of the whole request
    arm: str
    served: bool
    rows: list[int]  # the job's rows' positions in the request


class PredictionLog:
    """A serving process's log writer, and the records it is given."""

    def __init__(self, store: PredictionStore, settings: LogSettings) -> None:
        self.store = store
        self.mode = settings.mode
        self.writer: LogWriter = store.writer(
            settings.mode, flush_interval=settings.flush_interval, max_pending=settings.max_pending,
            wal_dir=settings.wal_dir,
        )
        self.settings = replace(settings, wal_dir=self.writer.wal_dir)  # as resolved: for the shadow process

    def start(self) -> PredictionLog:
        self.writer.start()
        return self

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()

    def stats(self) -> WriterStats:
        return self.writer.stats()

    def record_jobs(self, jobs: list[Job]) -> None:
        """Log a batch's scored jobs (on the event loop): one record per version, arm, status and day.

        In durable mode each job's ``logged`` becomes an awaitable that says whether its record
        reached the write-ahead log.
        """
        if self.mode is LogMode.OFF:
            return
        now = time.perf_counter()
        groups: dict[tuple[int, str, bool, bool, int], list[Job]] = {}
        for job in jobs:
            context: LogContext = job.context
            groups.setdefault((id(job.arm), context.arm, context.served, not isinstance(job.result, BaseException),
                               context.time_ns // DAY_NS), []).append(job)
        durable = self.mode is LogMode.DURABLE
        loop = asyncio.get_running_loop() if durable else None
        for (_, arm_name, served, ok, _), members in groups.items():
            arm = members[0].arm
            acknowledged = self.submit(_record_of(arm, arm_name, served, ok, members, now), loop)
            if durable:
                for job in members:
                    job.logged = acknowledged

    def record_copy(
        self, arm: LoadedArm, request_id: str, time_ns: int, columns: dict[str, list[Any]], rows: int,
        entities: tuple[str | None, ...] | None, submitted: float, result: Scored | None,
    ) -> None:
        """Log one shadow copy scored off the event loop (``result``), or failed (None).

        ``submitted`` is the copy's ``time.monotonic()`` on arrival, a clock the shadow process shares.
        """
        if self.mode is LogMode.OFF:
            return
        ok = result is not None
        self.writer.submit(prediction_batch(
            request_id, time_ns, arm.model, arm.version, Arm.CHALLENGER.value, served=False,
            status="ok" if ok else "error", rows=range(rows), features=columns, numeric=arm.schema.numeric_names,
            predictions=result.labels if ok else None, scores=result.scores if ok else None,
            latency_ms=(time.monotonic() - submitted) * 1000, entities=entities,
        ))

    def submit(self, record: Batch, loop: asyncio.AbstractEventLoop | None) -> Any:
        """Queue a record; in durable mode, given the loop, return an awaitable that says whether it reached disk."""
        if self.mode is not LogMode.DURABLE or loop is None:
            self.writer.submit(record)
            return None
        future = loop.create_future()

        def ack(error: BaseException | None) -> None:
            loop.call_soon_threadsafe(_set_if_pending, future, error is None)

        if not self.writer.submit(record, ack):
            future.set_result(False)
        return future


def labels_record(
    name: str, document: Any, time_ns: int, max_labels: int, max_text_length: int = DEFAULT_MAX_TEXT_LENGTH
) -> LabelBatch:
    """The labels of one feedback call's body as a log record; RequestError (422) names each bad label."""
    items = document.get("labels") if isinstance(document, dict) else None
    if not isinstance(items, list) or not items:
        raise RequestError(400, 'send {"labels": [{"request_id": "...", "row": 0, "label": 1}, ...]}')
    if len(items) > max_labels:
        raise RequestError(413, f"{len(items)} labels in one call; the limit is {max_labels}")
    problems: list[Problem] = []
    ids, rows, labels = [], [], []
    for i, item in enumerate(items):
        where = f"labels[{i}]"
        if not isinstance(item, dict):
            problems.append(Problem(where, "expected an object with request_id, row and label"))
            continue
        unknown = sorted(set(item) - {"request_id", "row", "label"})
        request_id, row, label = item.get("request_id"), item.get("row", 0), item.get("label")
        if unknown:
            problems.append(Problem(where, f"unknown fields {unknown}"))
        if not isinstance(request_id, str) or not request_id:
            problems.append(Problem(f"{where}.request_id", "expected the request_id a predict call returned"))
        elif (why := text_problem(request_id, max_text_length)) is not None:
            problems.append(Problem(f"{where}.request_id", f"text {why}"))
        if type(row) is not int or row < 0:
            problems.append(Problem(f"{where}.row", "expected the row's position in its request (an integer >= 0)"))
        if label is None or not isinstance(label, str | int | float | bool) or (
            isinstance(label, float) and not math.isfinite(label)
        ):
            problems.append(Problem(f"{where}.label", "expected a label (a number, string or boolean)"))
        elif isinstance(label, str) and (why := text_problem(label, max_text_length)) is not None:
            problems.append(Problem(f"{where}.label", f"text {why}"))
        ids.append(request_id)
        rows.append(row)
        labels.append(label_text(label))
    if problems:
        raise RequestError(422, "invalid labels: " + "; ".join(p.describe() for p in problems[:20]), problems)
    return LabelBatch(name, time_ns, tuple(ids), tuple(rows), tuple(labels))


def _set_if_pending(future: asyncio.Future, value: Any) -> None:
    if not future.done():
        future.set_result(value)


def features_of(jobs: list[Job], schema: InputSchema) -> tuple[dict[str, Sequence[Any]], np.ndarray | None]:
    """The jobs' feature columns for their log record, and their numeric features' float64 block
    when the batch they were scored in has it (None: the record builds it from the columns).

    Scoring prepared the columns of the whole batch as arrays (``Job.source`` points into them);
    jobs that sit side by side there, as one arm's jobs do, take a slice of that batch's block
    of numeric features, one numpy view, and of its other columns: no Python object per value
    to stage and convert, and much cheaper than chaining the jobs' own columns again.
    """
    if jobs[0].source is not None:
        prepared, start = jobs[0].source
        stop = start
        for job in jobs:
            if job.source is None or job.source[0] is not prepared or job.source[1] != stop:
                break
            stop += job.rows
        else:
            numeric = schema.numeric_names
            block = prepared.block(numeric, FLOAT64)[start:stop]
            text = {name: column[start:stop] for name, column in prepared.columns.items()
                    if name not in schema.numeric_set}
            return text, block
    return joined_columns(jobs), None


def _record_of(arm: LoadedArm, arm_name: str, served: bool, ok: bool, jobs: list[Job], now: float) -> PredictionBatch:
    """One log record of jobs scored by one version in one model call."""
    request_ids: list[str] = []
    times: list[int] = []
    latencies: list[float] = []
    computes: list[float | None] = []
    positions: list[int] = []
    entities: list[str | None] | None = None
    for job in jobs:
        context: LogContext = job.context
        size = job.rows
        request_ids += (context.request_id,) * size
        times += (context.time_ns,) * size
        latencies += ((now - context.started) * 1000,) * size
        computes += (job.compute_ms,) * size
        positions += context.rows
        if context.entities is not None:
            if entities is None:
                entities = [None] * (len(positions) - size)
            entities += [context.entities[i] for i in context.rows]
        elif entities is not None:
            entities += (None,) * size
    features, numeric_values = features_of(jobs, arm.schema) if ok else (joined_columns(jobs), None)
    predictions = scores = None
    if ok:
        predictions = list(itertools.chain.from_iterable(job.result.labels for job in jobs))
        if jobs[0].result.scores is not None:
            scores = list(itertools.chain.from_iterable(job.result.scores for job in jobs))
    return prediction_rows(
        arm.model, arm.version, arm_name, served=served, status="ok" if ok else "error", request_ids=request_ids,
        rows=positions, times_ns=times, latencies_ms=latencies, features=features,
        numeric=arm.schema.numeric_names, predictions=predictions, scores=scores, entities=entities,
        numeric_values=numeric_values, compute_ms=computes if ok else None,
    )
