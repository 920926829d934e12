"""Served traffic of a window as mergeable counts: requests, errors and latency per version, load per hour.

What the performance and cost checks and the SLO days judge. A request is counted once, by the row
that answered it: a served row (shadow copies are not served). Counts above the latency limits are
exact (the limits are known before the scan); quantiles come from ``LatencyDistribution``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from steward.monitoring.summaries.latency import LatencyDistribution
from steward.spec import ModelSpec

LATENCY_CRITICAL_FACTOR = 2.0  # p95 latency at twice the SLO is critical
_US_PER_HOUR = 3_600_000_000


@dataclass
class VersionTraffic:
    requests: int = 0
    errors: int = 0  # answered with a failure (status other than ok)
    slow: int = 0  # slower than the latency limit
    slow_critical: int = 0  # slower than the critical limit
    latency: LatencyDistribution = field(default_factory=LatencyDistribution)

    @classmethod
    def exact(cls) -> VersionTraffic:
        return cls(latency=LatencyDistribution(exact_values=None))

    def merge(self, other: VersionTraffic) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.slow += other.slow
        self.slow_critical += other.slow_critical
        self.latency.merge(other.latency)


class TrafficSummary:
    """Answered requests per version against one latency limit, and requests per UTC hour."""

    def __init__(self, latency_limit_ms: float, *, exact: bool = False) -> None:
        self.latency_limit_ms = latency_limit_ms
        self.exact = exact
        self._new = VersionTraffic.exact if exact else VersionTraffic
        self.critical_limit_ms = LATENCY_CRITICAL_FACTOR * latency_limit_ms
        self.versions: dict[str, VersionTraffic] = {}
        self.hours: Counter[int] = Counter()  # hours since the epoch -> requests

    @classmethod
    def for_spec(cls, spec: ModelSpec, *, exact: bool = False) -> TrafficSummary:
        """Against the spec's latency target; ``exact`` keeps every latency (for a frame already in memory)."""
        return cls(spec.slo.p95_latency_ms, exact=exact)

    @classmethod
    def of_requests(cls, requests: pd.DataFrame, spec: ModelSpec) -> TrafficSummary:
        """The summary of a frame of answered requests (``served_requests`` of the log), exact."""
        summary = cls.for_spec(spec, exact=True)
        if len(requests):
            times = pd.to_datetime(requests["time"], utc=True).dt.floor("h")
            hours = (times - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(hours=1)
            summary.add(requests["version"].astype(str).to_numpy(), (requests["status"] == "ok").to_numpy(),
                        requests["latency_ms"].to_numpy(dtype=float), hours.to_numpy(dtype=np.int64) * _US_PER_HOUR)
        return summary

    def add(self, versions: np.ndarray, ok: np.ndarray, latency_ms: np.ndarray, time_us: np.ndarray) -> None:
        """One answered request per position: its version (text), success, latency and time (epoch us)."""
        names, codes = np.unique(versions, return_inverse=True)
        for code, name in enumerate(names.tolist()):
            mine = codes == code
            self.add_version(str(name), ok[mine], latency_ms[mine], time_us[mine])

    def add_version(self, version: str, ok: np.ndarray, latency_ms: np.ndarray, time_us: np.ndarray) -> None:
        """Requests answered by one version: success, latency and time (epoch microseconds) of each."""
        if not len(ok):
            return
        hours, counts = np.unique(time_us // _US_PER_HOUR, return_counts=True)
        self.hours.update(dict(zip(hours.tolist(), counts.tolist(), strict=True)))
        traffic = self.versions.get(version) or self.versions.setdefault(version, self._new())
        traffic.requests += int(ok.size)
        traffic.errors += int(ok.size - np.count_nonzero(ok))
        traffic.slow += int(np.count_nonzero(latency_ms > self.latency_limit_ms))
        traffic.slow_critical += int(np.count_nonzero(latency_ms > self.critical_limit_ms))
        traffic.latency.add(latency_ms)

    def merge(self, other: TrafficSummary) -> None:
        if other.latency_limit_ms != self.latency_limit_ms:
            raise ValueError(f"cannot merge traffic judged against {other.latency_limit_ms} ms into one against "
                             f"{self.latency_limit_ms} ms; summarise both with the same spec")
        for name, traffic in other.versions.items():
            self.versions.setdefault(name, self._new()).merge(traffic)
        self.hours.update(other.hours)

    @property
    def requests(self) -> int:
        return sum(t.requests for t in self.versions.values())

    @property
    def errors(self) -> int:
        return sum(t.errors for t in self.versions.values())

    @property
    def slow(self) -> int:
        return sum(t.slow for t in self.versions.values())

    def latency(self) -> LatencyDistribution:
        """Every version's latencies together."""
        merged = LatencyDistribution(exact_values=None) if self.exact else LatencyDistribution()
        for traffic in self.versions.values():
            merged.merge(traffic.latency)
        return merged

    def peak_rps(self, window_seconds: float) -> float:
        """Requests per second in the busiest hour of the window (the whole window if shorter)."""
        if not self.hours:
            return 0.0
        return float(max(self.hours.values())) / min(3600.0, window_seconds)
