"""Trends of daily values, fitted with their significance and read in plain words.

The weekly and monthly maintenance ask "is it degrading?".  That is answered on one value per
day (p95 latency and the primary metric from the daily SLO records, the drift share from the
drift checks): a Theil-Sen slope (robust to a bad day) with its 95% interval, and the
Mann-Kendall test (Kendall's tau between day and value) for significance.  A trend is called degrading only when it is significant,
points the wrong way, and moves the value by more than ``min_change`` over the span.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

import numpy as np
import pandas as pd

from steward.findings import Finding, MaintenanceKind, Priority
from steward.monitoring.slo import SLODay
from steward.spec import ModelSpec

__all__ = ["Trend", "TrendVerdict", "fit_trend", "performance_trends"]

MIN_TREND_POINTS = 5


class TrendVerdict(StrEnum):
    DEGRADING = "degrading"
    IMPROVING = "improving"
    STABLE = "stable"
    INSUFFICIENT_DATA = "insufficient data"


@dataclass(frozen=True)
class Trend:
    """A fitted trend of one daily series; ``reading`` says what it means in a sentence."""

    metric: str
    unit: str
    points: int
    verdict: TrendVerdict
    reading: str
    significant: bool = False
    first_day: date | None = None
    last_day: date | None = None
    slope_per_day: float | None = None
    slope_low: float | None = None
    slope_high: float | None = None
    p_value: float | None = None
    start_value: float | None = None
    end_value: float | None = None
    higher_is_better: bool | None = None

    @property
    def change(self) -> float | None:
        """Fitted change over the whole span, in the metric's unit."""
        if self.start_value is None or self.end_value is None:
            return None
        return self.end_value - self.start_value


def _fmt(value: float, unit: str = "") -> str:
    text = f"{value:.4g}"
    return f"{text} {unit}" if unit else text


def fit_trend(
    days: Sequence[date | datetime | pd.Timestamp],
    values: Sequence[float | None],
    *,
    metric: str,
    unit: str = "",
    higher_is_better: bool | None = None,
    alpha: float = 0.05,
    min_points: int = MIN_TREND_POINTS,
    min_change: float = 0.0,
) -> Trend:
    """Theil-Sen slope per day with its 95% interval, Mann-Kendall significance, and a reading.

    Missing values (None/NaN) are left out.  ``higher_is_better`` says which direction is
    degrading (None: neither, e.g. a drift share is only read as rising or falling).
    ``min_change``: a significant trend that moves the value by less than this over the span is
    reported as stable (significant but too small to matter).
    """
    from scipy.stats import kendalltau, theilslopes

    if len(days) != len(values):
        raise ValueError(f"fit_trend: {len(days)} days but {len(values)} values; pass one value per day")
    pairs = sorted(
        (pd.Timestamp(d).date(), float(v))
        for d, v in zip(days, values, strict=True)
        if v is not None and math.isfinite(float(v))
    )
    n = len(pairs)
    base = {"metric": metric, "unit": unit, "points": n, "higher_is_better": higher_is_better}
    if n < min_points:
        return Trend(
            **base,
            verdict=TrendVerdict.INSUFFICIENT_DATA,
            reading=f"Not enough data for a trend in {metric}: {n} day(s) with a value, at least "
            f"{min_points} needed.",
            first_day=pairs[0][0] if pairs else None,
            last_day=pairs[-1][0] if pairs else None,
        )
    first, last = pairs[0][0], pairs[-1][0]
    x = np.array([(d - first).days for d, _ in pairs], dtype=float)
    y = np.array([v for _, v in pairs])
    span = f"{n} days ({first} to {last})"
    base.update(first_day=first, last_day=last)
    if np.all(y == y[0]):
        return Trend(
            **base, verdict=TrendVerdict.STABLE, reading=f"{metric} was constant at {_fmt(y[0], unit)} over {span}.",
            slope_per_day=0.0, slope_low=0.0, slope_high=0.0, p_value=1.0, start_value=float(y[0]),
            end_value=float(y[0]),
        )
    slope, intercept, low, high = (float(v) for v in theilslopes(y, x, alpha=0.95))
    tau = kendalltau(x, y)
    p_value = float(tau.pvalue) if math.isfinite(tau.pvalue) else 1.0
    start, end = intercept, intercept + slope * x[-1]
    base.update(slope_per_day=slope, slope_low=low, slope_high=high, p_value=p_value, start_value=start,
                end_value=end)
    rate = f"{slope:+.3g} {unit}/day" if unit else f"{slope:+.3g}/day"
    p_text = "p<0.001" if p_value < 0.001 else f"p={p_value:.3f}"
    interval = f"95% CI {low:+.3g} to {high:+.3g}"
    if p_value >= alpha or slope == 0:
        reading = (
            f"No significant trend in {metric} over {span}: slope {rate} ({interval}, Mann-Kendall "
            f"p={p_value:.2f}); it stayed around {_fmt(float(np.median(y)), unit)}."
        )
        return Trend(**base, verdict=TrendVerdict.STABLE, reading=reading)
    direction = "rising" if slope > 0 else "falling"
    moved = f"from about {_fmt(start, unit)} to {_fmt(end, unit)}"
    evidence = f"{interval}, Mann-Kendall {p_text}"
    if abs(end - start) < min_change:
        reading = (
            f"{metric} is {direction} by {rate} over {span} ({moved}; {evidence}): significant but "
            f"smaller than the {_fmt(min_change, unit)} that would matter."
        )
        return Trend(**base, verdict=TrendVerdict.STABLE, reading=reading, significant=True)
    if higher_is_better is None:
        reading = f"{metric} is {direction} by {rate} over {span}, {moved} ({evidence}): significant."
        return Trend(**base, verdict=TrendVerdict.STABLE, reading=reading, significant=True)
    worse = (slope < 0) if higher_is_better else (slope > 0)
    verdict = TrendVerdict.DEGRADING if worse else TrendVerdict.IMPROVING
    reading = f"{metric} is {direction} by {rate} over {span}, {moved} ({evidence}): significant and {verdict.value}."
    return Trend(**base, verdict=verdict, reading=reading, significant=True)


def performance_trends(days: Sequence[SLODay], spec: ModelSpec) -> tuple[list[Trend], list[Finding]]:
    """p95 latency and the primary metric per day from the SLO records, fitted; findings when degrading."""
    from steward.training.evaluation import higher_is_better

    metric = spec.primary_metric
    latency = fit_trend(
        [d.day for d in days], [d.p95_ms for d in days], metric="p95 latency", unit="ms",
        higher_is_better=False, min_change=0.1 * spec.slo.p95_latency_ms,
    )
    judged = [d for d in days if d.accuracy is not None]
    accuracy = fit_trend(
        [d.day for d in judged], [d.accuracy for d in judged], metric=metric,
        higher_is_better=higher_is_better(metric), min_change=spec.gates.tolerance,
    )
    found = []
    if latency.verdict is TrendVerdict.DEGRADING:
        over = latency.end_value is not None and latency.end_value > spec.slo.p95_latency_ms
        found.append(Finding(
            "p95 latency is rising",
            latency.reading + (f" It is now above the {spec.slo.p95_latency_ms:g} ms SLO." if over else "")
            + " Consider optimisation or caching; compare versions if a release started it.",
            MaintenanceKind.PERFECTIVE, Priority.HIGH if over else Priority.MEDIUM, "performance-trends",
            "trend:latency",
        ))
    if accuracy.verdict is TrendVerdict.DEGRADING:
        found.append(Finding(
            f"{metric} is falling",
            accuracy.reading + " Retrain or analyse drift.",
            MaintenanceKind.ADAPTIVE, Priority.HIGH, "performance-trends", "trend:accuracy",
        ))
    return [latency, accuracy], found
