"""Latency distributions that stay exact while small and become a log-bucket sketch at volume.

Up to ``EXACT_VALUES`` values are kept as they are, so quantiles equal ``np.percentile`` (what the
checks computed on whole frames). Beyond that the values go into logarithmic buckets (DDSketch's
scheme): bucket ``i`` holds values in ``(g**(i-1), g**i]`` with ``g = (1 + a) / (1 - a)``, and a
quantile is read as the bucket's centre ``2 g**i / (g + 1)``, within a relative error ``a`` of the
order statistic at that rank. With ``a = 0.5%`` the whole range from 1 microsecond to 3 hours takes
2,300 counters, whatever the number of requests. Counts above a limit are never read from the
sketch: the summaries count them exactly against limits known before the scan.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

EXACT_VALUES = 50_000
RELATIVE_ACCURACY = 0.005
_GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(_GAMMA)
MIN_MS = 1e-3  # values at or below 1 microsecond share the first bucket
MAX_MS = 1e7  # and above ~2.8 hours the last
_OFFSET = math.ceil(math.log(MIN_MS) / _LOG_GAMMA)
_BUCKETS = math.ceil(math.log(MAX_MS) / _LOG_GAMMA) - _OFFSET + 1


def bucket_of(values: np.ndarray) -> np.ndarray:
    clipped = np.clip(values, MIN_MS, MAX_MS)
    return np.clip(np.ceil(np.log(clipped) / _LOG_GAMMA).astype(np.int64) - _OFFSET, 0, _BUCKETS - 1)


def bucket_value(index: np.ndarray | int) -> np.ndarray | float:
    return 2 * _GAMMA ** (np.asarray(index) + _OFFSET) / (_GAMMA + 1)


class LatencyDistribution:
    """Latencies (ms) of a set of requests: added batch by batch, merged with others, read as quantiles."""

    def __init__(self, exact_values: int | None = EXACT_VALUES) -> None:
        self.exact_values = exact_values  # None: never a sketch
        self._values: list[np.ndarray] = []
        self._exact_count = 0
        self._buckets: np.ndarray | None = None
        self.count = 0

    @property
    def exact(self) -> bool:
        """True while every value is kept: quantiles then equal ``np.percentile`` of the values."""
        return self._buckets is None

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64)
        values = values[~np.isnan(values)]
        if not values.size:
            return
        self.count += int(values.size)
        if self._buckets is None:
            self._values.append(values)
            self._exact_count += int(values.size)
            if self.exact_values is not None and self._exact_count > self.exact_values:
                self._to_sketch()
            return
        self._buckets += np.bincount(bucket_of(values), minlength=_BUCKETS)

    def merge(self, other: LatencyDistribution) -> None:
        """Add ``other``'s values to this distribution (``other`` is unchanged)."""
        if other._buckets is None:
            for values in other._values:
                self.add(values)
            return
        if self._buckets is None:
            self._to_sketch()
        assert self._buckets is not None
        self._buckets += other._buckets
        self.count += other.count

    def _to_sketch(self) -> None:
        buckets = np.zeros(_BUCKETS, dtype=np.int64)
        for values in self._values:
            buckets += np.bincount(bucket_of(values), minlength=_BUCKETS)
        self._buckets, self._values, self._exact_count = buckets, [], 0

    def percentiles(self, qs: Sequence[float]) -> list[float]:
        """``np.percentile``'s (linear) percentiles while exact; within ``RELATIVE_ACCURACY`` once a sketch."""
        if not self.count:  # as np.percentile of no (or only NaN) latencies
            return [float("nan")] * len(qs)
        if self._buckets is None:
            return [float(v) for v in np.percentile(np.concatenate(self._values), list(qs))]
        cumulative = np.cumsum(self._buckets)
        found = []
        for q in qs:
            rank = math.floor(q / 100 * (self.count - 1))  # the order statistic np.percentile starts from
            found.append(float(bucket_value(int(np.searchsorted(cumulative, rank, side="right")))))
        return found
