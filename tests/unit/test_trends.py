"""steward.trends: Theil-Sen slope, Mann-Kendall significance, and the reading in plain words."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from steward.monitoring.trends import TrendVerdict, fit_trend

DAYS = [date(2026, 2, 1) + timedelta(days=i) for i in range(28)]


def noisy(slope: float, level: float, noise: float, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    return [level + slope * i + rng.normal(0, noise) for i in range(len(DAYS))]


def test_rising_latency_is_degrading_with_its_slope_and_a_reading():
    trend = fit_trend(DAYS, noisy(0.5, 12.0, 0.4), metric="p95 latency", unit="ms", higher_is_better=False)
    assert trend.verdict is TrendVerdict.DEGRADING and trend.significant
    assert trend.slope_low < 0.5 < trend.slope_high and trend.slope_per_day == pytest.approx(0.5, abs=0.05)
    assert trend.p_value < 0.001 and trend.points == 28
    assert trend.change == pytest.approx(0.5 * 27, rel=0.1)
    assert trend.reading.startswith("p95 latency is rising by +0.")
    assert "ms/day" in trend.reading and "significant and degrading" in trend.reading
    assert "2026-02-01 to 2026-02-28" in trend.reading


@pytest.mark.parametrize(("slope", "verdict", "word"), [(-0.004, TrendVerdict.DEGRADING, "falling"),
                                                        (0.004, TrendVerdict.IMPROVING, "rising")])
def test_direction_of_a_metric_where_higher_is_better(slope, verdict, word):
    trend = fit_trend(DAYS, noisy(slope, 0.8, 0.005), metric="roc_auc", higher_is_better=True)
    assert trend.verdict is verdict and word in trend.reading


def test_noise_without_a_trend_is_stable():
    trend = fit_trend(DAYS, noisy(0.0, 0.8, 0.02, seed=3), metric="roc_auc", higher_is_better=True)
    assert trend.verdict is TrendVerdict.STABLE and not trend.significant
    assert trend.p_value > 0.05 and trend.reading.startswith("No significant trend in roc_auc over 28 days")


def test_one_bad_day_does_not_make_a_trend():
    values = [10.0 + 0.01 * (i % 3) for i in range(len(DAYS))]
    values[-1] = 500.0  # an incident, not a trend: Theil-Sen and Kendall's tau are rank-based
    trend = fit_trend(DAYS, values, metric="p95 latency", unit="ms", higher_is_better=False)
    assert trend.verdict is TrendVerdict.STABLE and abs(trend.slope_per_day) < 0.01


def test_significant_but_smaller_than_what_matters_is_stable():
    trend = fit_trend(DAYS, noisy(0.01, 12.0, 0.01), metric="p95 latency", unit="ms", higher_is_better=False,
                      min_change=2.5)
    assert trend.verdict is TrendVerdict.STABLE and trend.significant
    assert "smaller than the 2.5 ms that would matter" in trend.reading


def test_missing_days_are_left_out_and_too_few_points_say_so():
    values = [None, float("nan"), 1.0, 2.0, None, 3.0]
    trend = fit_trend(DAYS[:6], values, metric="roc_auc", higher_is_better=True)
    assert trend.verdict is TrendVerdict.INSUFFICIENT_DATA and trend.points == 3
    assert trend.reading == "Not enough data for a trend in roc_auc: 3 day(s) with a value, at least 5 needed."
    assert fit_trend([], [], metric="drift share").verdict is TrendVerdict.INSUFFICIENT_DATA


def test_no_direction_given_reads_rising_or_falling_only():
    trend = fit_trend(DAYS, noisy(0.01, 0.1, 0.002), metric="drift share")
    assert trend.significant and trend.verdict is TrendVerdict.STABLE
    assert "drift share is rising" in trend.reading and trend.reading.endswith(": significant.")


def test_constant_series_and_bad_input():
    assert fit_trend(DAYS[:5], [3.0] * 5, metric="x").reading == "x was constant at 3 over 5 days (2026-02-01 to 2026-02-05)."
    with pytest.raises(ValueError, match="5 days but 4 values"):
        fit_trend(DAYS[:5], [1.0] * 4, metric="x")
