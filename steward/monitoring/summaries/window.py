"""One pass over a window of the log into everything the daily checks judge, in bounded memory.

``summarize_window`` scans the window batch by batch (``steward.store.scan``) into:

* the answered requests, per version and per UTC day (``TrafficSummary``: exact counts, latency
  quantiles exact up to 50,000 requests and within 0.5% beyond);
* the data-quality counts of the served rows (``QualityTally``, exact);
* the rows labelled in the label window, joined by request id and row (exact; these are as many as
  the labels received, which the scan holds: the labels are read first);
* per version, a uniform sample of its served, answered rows for the drift statistics, and a uniform
  sample of all rows for the label-free accuracy estimate (``RowSample``: the whole window while it
  holds at most the sample's size, so small windows give today's results exactly).

Summaries of two windows (two days, two partitions) merge into the summary of both.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from steward.monitoring.health.data_quality import OutlierFences, QualityTally
from steward.monitoring.health.report import VersionsInWindow
from steward.monitoring.summaries.labels import LabelIndex, UnmatchedLabels
from steward.monitoring.summaries.sample import SAMPLE_ROWS, RowSample
from steward.monitoring.summaries.traffic import TrafficSummary
from steward.spec import ModelSpec
from steward.store.reader import PredictionStore, join_labels
from steward.store.reader import _empty_predictions as empty_predictions
from steward.store.scan import BATCH_ROWS, read_label_table, scan_predictions

_US_PER_DAY = 86_400_000_000
LABELLED_ROWS = 200_000  # labelled rows kept; beyond, a uniform sample (accuracy within about 0.2%)


@dataclass
class WindowSummary:
    """What the daily checks need of a window's log, gathered without holding the window."""

    model: str
    start: datetime
    end: datetime
    rows: int = 0
    served_by_version: Counter[str] = field(default_factory=Counter)  # served rows (not requests) per version
    first_seen: dict[str, int] = field(default_factory=dict)  # version -> order of first appearance
    traffic: TrafficSummary | None = None
    days: dict[date, TrafficSummary] = field(default_factory=dict)
    quality: QualityTally | None = None
    answered: dict[str, RowSample] = field(default_factory=dict)  # served, ok rows per version
    rows_sample: RowSample | None = None
    labelled: pd.DataFrame | None = None  # rows with a label, as ``join_labels`` gives them (sampled at volume)
    answered_rows: Counter[str] = field(default_factory=Counter)  # served ok rows per version
    labelled_rows: int = 0  # rows with a label (``labelled`` holds a sample of them beyond LABELLED_ROWS)
    answered_labelled_by_day: Counter[date] = field(default_factory=Counter)  # served ok labelled rows per day
    labelled_sample: RowSample | None = None  # what ``labelled`` is read from: kept so that summaries merge
    # The labels received in the label window that matched no row here (their predictions came earlier: late
    # labels); None without a label window.
    unmatched_labels: UnmatchedLabels | None = None

    @property
    def versions(self) -> VersionsInWindow:
        """As ``VersionsInWindow.of`` on the window's rows: busiest (served rows) first."""
        return VersionsInWindow.of_counts({v: self.served_by_version.get(v, 0) for v in self.first_seen})

    def answered_frame(self, version: str) -> pd.DataFrame:
        """Served, answered rows of ``version``: all of them while few, else a uniform sample."""
        sample = self.answered.get(version)
        if sample is None:
            return self.predictions_frame().iloc[0:0]
        return _frame(sample.table(), self.model)

    def predictions_frame(self) -> pd.DataFrame:
        """The window's rows: all of them while few, else a uniform sample (see ``exact``)."""
        if self.rows_sample is None or not self.rows_sample.seen:
            return empty_predictions(self.model)
        return _frame(self.rows_sample.table(), self.model)

    def merge(self, other: WindowSummary) -> None:
        """Fold in the summary of the rows that follow this one's in the log (the next day, the next partition).

        Counts add up, samples merge into a uniform sample of both (each row of both once while they fit),
        versions keep their order of first appearance: merged in the log's order, partitions give what one
        scan of their union gives. ``other`` is not changed.
        """
        if other.model != self.model:
            raise ValueError(f"cannot merge a summary of {other.model!r} into one of {self.model!r}")
        self.start, self.end = min(self.start, other.start), max(self.end, other.end)
        self.rows += other.rows
        self.served_by_version.update(other.served_by_version)
        for version in sorted(other.first_seen, key=other.first_seen.__getitem__):
            self.first_seen.setdefault(version, len(self.first_seen))
        if other.traffic is not None:
            self.traffic = _merged_traffic(self.traffic, other.traffic)
        for day, traffic in other.days.items():
            self.days[day] = _merged_traffic(self.days.get(day), traffic)
        if other.quality is not None:
            if self.quality is None:
                self.quality = QualityTally()
            self.quality.merge(other.quality)
        for version, sample in other.answered.items():
            self.answered[version] = _merged_sample(self.answered.get(version), sample)
        if other.rows_sample is not None:
            self.rows_sample = _merged_sample(self.rows_sample, other.rows_sample)
        self.answered_rows.update(other.answered_rows)
        self.labelled_rows += other.labelled_rows
        self.answered_labelled_by_day.update(other.answered_labelled_by_day)
        if other.labelled_sample is not None:
            self.labelled_sample = _merged_sample(self.labelled_sample, other.labelled_sample)
            self.labelled = _labelled_frame(self)
        if other.unmatched_labels is not None:  # partitions of one window: unmatched by every partition
            mine = self.unmatched_labels
            self.unmatched_labels = other.unmatched_labels if mine is None else mine.also_unmatched_in(
                other.unmatched_labels)

    @property
    def exact(self) -> bool:
        """True when every frame this summary gives holds all the window's rows (no sampling happened)."""
        samples = [*self.answered.values(), *([self.rows_sample] if self.rows_sample is not None else [])]
        return all(sample.complete for sample in samples)


def summarize_window(
    store: PredictionStore,
    spec: ModelSpec,
    start: datetime,
    end: datetime,
    *,
    fences: OutlierFences | None = None,
    quality: bool = True,
    labels_window: tuple[datetime | None, datetime | None] | None = None,
    version: str | None = None,
    served_only: bool = False,
    samples: bool = True,
    all_rows: bool = True,
    sample_rows: int = SAMPLE_ROWS,
    batch_rows: int = BATCH_ROWS,
    seed: int = 0,
) -> WindowSummary:
    """Scan ``[start, end)`` of ``spec``'s log once into a ``WindowSummary``.

    ``labels_window`` (start, end) joins the labels received in it; None skips labels. ``version`` and
    ``served_only`` narrow the scan (pushed down to the files). ``quality`` False skips the data-quality
    counts (the drift check does not need them), ``samples`` False the per-version samples of answered rows, ``all_rows`` False the sample of every row
    (the SLO days need neither, the drift check only the first).
    """
    summary = WindowSummary(spec.name, start, end, traffic=TrafficSummary.for_spec(spec),
                            quality=QualityTally() if quality else None,
                            rows_sample=RowSample(sample_rows, seed) if all_rows else None)
    labels = LabelIndex(read_label_table(store, spec.name, *labels_window)) if labels_window is not None else None
    labelled = RowSample(LABELLED_ROWS, seed + 1_000)
    for table in scan_predictions(store, spec.name, start, end, version=version, served_only=served_only,
                                  batch_rows=batch_rows):
        _add_table(summary, table, spec, fences, sample_rows if samples else 0, sample_rows if all_rows else 0, seed)
        if labels is not None and len(labels):
            rows, positions = labels.match(table)
            if rows.size:
                matched = labels.joined(_take(table.combine_chunks(), rows), positions)
                _count_labelled(summary, matched)
                labelled.add(matched)
    if labels is not None:
        summary.labelled_sample = labelled
        summary.labelled = _labelled_frame(summary)
        summary.unmatched_labels = labels.unmatched()
    return summary


def _labelled_frame(summary: WindowSummary) -> pd.DataFrame:
    labelled = summary.labelled_sample
    if labelled is not None and labelled.seen:
        return _frame(labelled.table(), summary.model)
    return join_labels(summary.predictions_frame().iloc[0:0], pd.DataFrame())


def _merged_traffic(mine: TrafficSummary | None, other: TrafficSummary) -> TrafficSummary:
    merged = mine if mine is not None else TrafficSummary(other.latency_limit_ms, exact=other.exact)
    merged.merge(other)
    return merged


def _merged_sample(mine: RowSample | None, other: RowSample) -> RowSample:
    merged = mine if mine is not None else RowSample(other.capacity)
    merged.merge(other)
    return merged


def _count_labelled(summary: WindowSummary, matched: pa.Table) -> None:
    summary.labelled_rows += matched.num_rows
    answered = pc.and_(matched["served"], pc.equal(matched["status"], "ok"))
    days = pc.cast(matched["time"].filter(answered), pa.int64()).to_numpy(zero_copy_only=False) // _US_PER_DAY
    for day_number, count in zip(*np.unique(days, return_counts=True), strict=True):
        day = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=int(day_number))).date()
        summary.answered_labelled_by_day[day] += int(count)


def _with_model(frame: pd.DataFrame, model: str) -> pd.DataFrame:
    if "model" not in frame.columns:
        frame.insert(0, "model", model)
    return frame


def _add_table(summary: WindowSummary, table: pa.Table, spec: ModelSpec, fences: OutlierFences | None,
               sample_rows: int, all_rows: int, seed: int) -> None:
    table = table.combine_chunks()  # one chunk: takes and conversions below stay vectorised
    summary.rows += table.num_rows
    served = table["served"].to_numpy(zero_copy_only=False).astype(bool)
    ok = pc.equal(table["status"], "ok").to_numpy(zero_copy_only=False)
    row = table["row"].to_numpy(zero_copy_only=False)
    latency = table["latency_ms"].to_numpy(zero_copy_only=False).astype(np.float64)
    time_us = pc.cast(table["time"], pa.int64()).to_numpy(zero_copy_only=False)
    encoded = pc.dictionary_encode(table["version"]).combine_chunks()
    names = [str(v) for v in encoded.dictionary.to_pylist()]
    codes = encoded.indices.to_numpy(zero_copy_only=False)

    day_numbers = time_us // _US_PER_DAY
    request = served & (row == 0)  # one answered row per request: the gateway logs each request's rows 0..n-1
    for code, name in enumerate(names):
        mine = codes == code
        if name not in summary.first_seen:
            summary.first_seen[name] = len(summary.first_seen)
        served_here = int(np.count_nonzero(mine & served))
        if served_here:
            summary.served_by_version[name] += served_here
        answered = mine & request
        assert summary.traffic is not None
        summary.traffic.add_version(name, ok[answered], latency[answered], time_us[answered])
        for day_number in np.unique(day_numbers[answered]).tolist():
            in_day = answered & (day_numbers == day_number)
            day = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=day_number)).date()
            traffic = summary.days.setdefault(day, TrafficSummary.for_spec(spec))
            traffic.add_version(name, ok[in_day], latency[in_day], time_us[in_day])
        good = np.flatnonzero(mine & served & ok)
        summary.answered_rows[name] += int(good.size)
        if good.size and sample_rows:
            sample = summary.answered.setdefault(name, RowSample(sample_rows, seed + 1 + len(summary.answered)))
            keys, chosen = sample.keys_for(good.size)
            sample.add_chosen(keys, chosen, _take(table, good[chosen]))

    if all_rows and summary.rows_sample is not None:
        keys, chosen = summary.rows_sample.keys_for(table.num_rows)
        summary.rows_sample.add_chosen(keys, chosen, _take(table, chosen))

    if summary.quality is not None:
        rows = table.filter(pa.array(served)) if not served.all() else table
        summary.quality.merge(QualityTally.of_table(rows, spec, fences))


def _take(table: pa.Table, positions: np.ndarray) -> pa.Table:
    if positions.size == table.num_rows:  # every row, in order
        return table
    return table.take(pa.array(positions, pa.int64()))


def _frame(table: pa.Table, model: str) -> pd.DataFrame:
    """Rows as ``read_predictions`` gives them (a ``model`` column first)."""
    return _with_model(table.to_pandas(), model)
