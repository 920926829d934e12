"""A window of the log summarised partition by partition, so that the partitions can be spread over workers.

The log is partitioned by UTC day (``date=`` folders): a window is cut at midnights into the days it
overlaps that hold predictions, each day is summarised on its own (``summarize_partition``, a pure
function of the store, the spec and the day: nothing shared, so any worker of any engine can run it),
and the summaries merge, in the log's order, into the summary one scan of the window gives
(``merge_summaries``): the same counts, versions, labelled rows and, while the window fits the samples,
the same rows; beyond that the samples are uniform samples of the window (other rows than one scan
draws, with the same sampling error) and latency quantiles stay within the sketch's 0.5%.

The engine is the caller's: ``summarize_by_partition`` takes a ``run`` that maps the partitions to their
summaries (in process by default; the flows pass one that submits them to Dask through Prefect).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from steward.monitoring.summaries.window import WindowSummary, summarize_window
from steward.spec import ModelSpec
from steward.store.reader import PredictionStore, as_utc
from steward.store.records import PREDICTIONS

#: Seeds of partition ``i``'s samples start at ``seed + i * SEED_STRIDE``: independent draws that never
#: collide with the per-version seeds a summary derives from its own.
SEED_STRIDE = 1 << 20


@dataclass(frozen=True)
class LogPartition:
    """The part of a window inside one day's partition: ``start <= time < end``, both within ``day``."""

    index: int  # position in the window, in the log's order
    day: date
    start: datetime
    end: datetime


#: Maps summarize_partition over the partitions, returning the summaries in the partitions' order.
PartitionRunner = Callable[[Sequence[LogPartition], dict[str, Any]], list[WindowSummary]]


def window_partitions(store: PredictionStore, model: str, start: datetime, end: datetime) -> list[LogPartition]:
    """The days of ``[start, end)`` that hold a predictions partition, each clipped to the window."""
    start, end = as_utc(start, "start"), as_utc(end, "end")
    if end <= start:
        raise ValueError(f"the window must end after it starts: start {start.isoformat()}, end {end.isoformat()}")
    first, last = start.date(), (end - timedelta(microseconds=1)).date()
    partitions = []
    for text in store.days(PREDICTIONS, model):
        day = date.fromisoformat(text)
        if first <= day <= last:
            midnight = datetime.combine(day, time(), UTC)
            partitions.append(LogPartition(len(partitions), day, max(start, midnight),
                                           min(end, midnight + timedelta(days=1))))
    return partitions


def summarize_partition(store: PredictionStore, spec: ModelSpec, partition: LogPartition, *, seed: int = 0,
                        **options: Any) -> WindowSummary:
    """One partition's summary: ``summarize_window`` over its share of the window, with its own seeds."""
    return summarize_window(store, spec, partition.start, partition.end,
                            seed=seed + partition.index * SEED_STRIDE, **options)


def merge_summaries(summaries: Sequence[WindowSummary], model: str, start: datetime, end: datetime) -> WindowSummary:
    """The summary of ``[start, end)`` from its partitions' summaries, given in the log's order."""
    merged = WindowSummary(model, as_utc(start, "start"), as_utc(end, "end"))
    for summary in summaries:
        merged.merge(summary)
    merged.start, merged.end = as_utc(start, "start"), as_utc(end, "end")
    return merged


def in_process(store: PredictionStore, spec: ModelSpec) -> PartitionRunner:
    """A runner that summarises the partitions one after the other, here."""

    def run(partitions: Sequence[LogPartition], options: dict[str, Any]) -> list[WindowSummary]:
        return [summarize_partition(store, spec, partition, **options) for partition in partitions]

    return run


def summarize_by_partition(store: PredictionStore, spec: ModelSpec, start: datetime, end: datetime, *,
                           run: PartitionRunner | None = None, **options: Any) -> WindowSummary:
    """``summarize_window``'s result, computed a day at a time by ``run`` and merged.

    ``options`` are ``summarize_window``'s. A window without any predictions partition is summarised
    here (nothing to spread: it still reads the window's labels, as one scan would).
    """
    partitions = window_partitions(store, spec.name, start, end)
    if not partitions:
        return summarize_window(store, spec, start, end, **options)
    summaries = (run or in_process(store, spec))(partitions, options)
    if len(summaries) != len(partitions):
        raise RuntimeError(f"the partition runner returned {len(summaries)} summaries for {len(partitions)} "
                           "partitions; it must return one per partition, in order")
    return merge_summaries(summaries, spec.name, start, end)
