"""The scans behind a day's checks, shared: one scan of the window serves health, the SLO days and drift.

At volume the scan is the cost (a day at 1,000 requests a second is ~86M rows), so the checks read
each row once: the health scan's summary already holds the window's traffic per day, its labelled
rows and each version's sample of answered rows. The SLO days add only the part of their first day
before the window; the label look-back reads only the stretch of older predictions that today's
late labels point to (``steward.store.request_ids``), and nothing when every label matched the window.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from steward.monitoring.slo import day_bounds, days_between
from steward.monitoring.summaries.labels import UnmatchedLabels
from steward.monitoring.summaries.partitions import PartitionRunner, summarize_by_partition
from steward.monitoring.summaries.window import WindowSummary, summarize_window
from steward.spec import ModelSpec
from steward.store.reader import PredictionStore, as_utc
from steward.store.records import PREDICTIONS
from steward.store.request_ids import late_label_range


def summarize_log(log: PredictionStore, spec: ModelSpec, start: datetime, end: datetime,
                  run: PartitionRunner | None, **options: Any) -> WindowSummary:
    """One scan here, or (with a runner) a summary per day on the runner's engine, merged: the same summary."""
    if run is None:
        return summarize_window(log, spec, start, end, **options)
    return summarize_by_partition(log, spec, start, end, run=run, **options)


def read_late_labelled(log: PredictionStore, spec: ModelSpec, start: datetime, end: datetime,
                       run: PartitionRunner | None = None, *, version: str | None = None,
                       unmatched: UnmatchedLabels | None = None) -> pd.DataFrame | None:
    """Served predictions of the ``health.label_lookback_days`` before ``start`` whose labels arrived in
    ``[start, end)`` (late feedback), joined as the window's own labelled rows are; None when there are none
    to look for (a look-back of 0, or ``unmatched``, the window scan's ``unmatched_labels``, empty).

    Only the label join is kept: the traffic, quality and samples of the look-back are not the window's.
    With ``unmatched`` the scan covers only the time their request ids carry; without it, the whole look-back.
    """
    days = spec.health.label_lookback_days
    if days <= 0:
        return None
    stretch = late_label_range(unmatched.times_ms if unmatched is not None else None,
                               start - timedelta(days=days), start)
    if stretch is None:
        return None
    summary = summarize_log(log, spec, *stretch, run, quality=False, samples=False, all_rows=False,
                            served_only=True, version=version, labels_window=(start, end))
    return summary.labelled


def slo_days_summary(log: PredictionStore, spec: ModelSpec, start: datetime, end: datetime,
                     run: PartitionRunner | None = None, window: WindowSummary | None = None) -> WindowSummary:
    """The summary of every UTC day ``[start, end)`` touches, from its first midnight to ``end``, with the labels
    received over that time. ``window``, the health scan of ``[start, end)``, is reused: only the first day's
    part before ``start`` is then scanned (nothing when ``start`` is a midnight)."""
    first = day_bounds(days_between(start, end)[0])[0]
    options: dict[str, Any] = dict(served_only=True, quality=False, samples=False, all_rows=False,
                                   labels_window=(first, end))
    if window is None:
        return summarize_log(log, spec, first, end, run, **options)
    if first >= start:
        return window
    summary = summarize_log(log, spec, first, start, run, **options)
    summary.merge(window)
    return summary


@dataclass(frozen=True)
class _Scan:
    store: str
    model: str
    start: datetime
    end: datetime
    files: tuple[str, ...]  # parts never change once written: the same list is the same rows
    summary: WindowSummary


class RecentScan:
    """The last full scan of a window (health's), for a check of the same window in the same process (the
    daily maintenance's drift report): the summary is reused only while the window's files are the same."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scan: _Scan | None = None

    def __reduce__(self) -> str:
        # By name: a task that uses it is pickled with its globals when a subflow ships its context to Dask.
        return "recent_scan"

    def remember(self, log: PredictionStore, model: str, start: datetime, end: datetime,
                 summary: WindowSummary) -> None:
        start, end = as_utc(start, "start"), as_utc(end, "end")
        scan = _Scan(log.uri, model, start, end, tuple(log._files(PREDICTIONS, model, start, end)), summary)
        with self._lock:
            self._scan = scan

    def recall(self, log: PredictionStore, model: str, start: datetime, end: datetime) -> WindowSummary | None:
        """The remembered summary of exactly this window of this log, if its files have not changed since."""
        start, end = as_utc(start, "start"), as_utc(end, "end")
        with self._lock:
            scan = self._scan
        if scan is None or (scan.store, scan.model, scan.start, scan.end) != (log.uri, model, start, end):
            return None
        return scan.summary if tuple(log._files(PREDICTIONS, model, start, end)) == scan.files else None


#: One per process: the health check remembers its window's scan, the drift report of the same window recalls it.
recent_scan = RecentScan()
