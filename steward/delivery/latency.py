"""Latency comparisons of a rollout that machine load cannot fool.

Two arms are compared only on requests they served in the same time slices: the champion's
requests are weighted so that their spread over the slices matches the challenger's, and the
bootstrap resamples within each slice. A CPU hog that starts halfway through a step then slows
both sides of the comparison alike, where a comparison of the whole windows would read it as a
slower challenger. When there is no concurrent champion traffic (a canary's 100% step, the
blue-green watch) the challenger is judged against the spec's latency SLO instead, never against
an earlier window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from steward.delivery.sequential import rate_above

MAX_SAMPLES = 5000  # per arm: bounds the bootstrap's memory on long, busy steps
RESAMPLES = 400


@dataclass(frozen=True)
class MatchedLatency:
    """The p95 of the challenger against the champion's p95 on the same time slices."""

    slices: int  # slices in which both arms served requests
    challenger_requests: int
    champion_requests: int
    p95_challenger_ms: float
    p95_champion_ms: float  # weighted to the challenger's spread over the slices
    ratio: float
    ci_low: float | None  # None: not bootstrapped, the p95s are closer than the floor asked for
    ci_high: float | None

    @property
    def increase_ms(self) -> float:
        return self.p95_challenger_ms - self.p95_champion_ms


@dataclass(frozen=True)
class SloLatency:
    """The challenger's p95 with a bootstrap interval, against an absolute target."""

    requests: int
    p95_ms: float
    ci_low: float
    ci_high: float
    slo_ms: float


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> np.ndarray:
    """Row-wise weighted quantile (the smallest value whose cumulative weight reaches ``q``) of 2-D arrays."""
    order = np.argsort(values, axis=-1, kind="stable")
    ordered = np.take_along_axis(values, order, axis=-1)
    cumulative = np.cumsum(np.take_along_axis(weights, order, axis=-1), axis=-1)
    target = q * cumulative[..., -1:]
    index = np.minimum((cumulative < target).sum(axis=-1, keepdims=True), values.shape[-1] - 1)
    return np.take_along_axis(ordered, index, axis=-1)[..., 0]


def _bounded(rng: np.random.Generator, latencies: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(latencies) <= MAX_SAMPLES:
        return latencies, times
    keep = rng.choice(len(latencies), MAX_SAMPLES, replace=False)
    return latencies[keep], times[keep]


def _within_slice_draws(rng: np.random.Generator, slice_ids: np.ndarray, resamples: int) -> np.ndarray:
    """Indices of a stratified bootstrap: each position draws again from its own slice's members."""
    order = np.argsort(slice_ids, kind="stable")
    _, starts, counts = np.unique(slice_ids[order], return_index=True, return_counts=True)
    offsets = np.repeat(starts, counts)
    sizes = np.repeat(counts, counts)
    draws = offsets + (rng.random((resamples, len(order))) * sizes).astype(np.int64)
    return order[draws]


@dataclass(frozen=True)
class _Matched:
    """Both arms' measurements restricted to the slices both served, the champion's weighted to the challenger's spread."""

    slices: int
    challenger_ms: np.ndarray
    challenger_slice: np.ndarray
    champion_ms: np.ndarray
    champion_slice: np.ndarray
    champion_weights: np.ndarray


def _match(
    rng: np.random.Generator, challenger_ms: np.ndarray, challenger_times: np.ndarray, champion_ms: np.ndarray,
    champion_times: np.ndarray, slice_seconds: float,
) -> _Matched:
    ch_ms, ch_t = _bounded(rng, np.asarray(challenger_ms, float), np.asarray(challenger_times, float))
    cp_ms, cp_t = _bounded(rng, np.asarray(champion_ms, float), np.asarray(champion_times, float))
    ch_slice = np.floor(ch_t / slice_seconds).astype(np.int64)
    cp_slice = np.floor(cp_t / slice_seconds).astype(np.int64)
    shared = np.intersect1d(ch_slice, cp_slice)
    ch_keep, cp_keep = np.isin(ch_slice, shared), np.isin(cp_slice, shared)
    ch_ms, ch_slice, cp_ms, cp_slice = ch_ms[ch_keep], ch_slice[ch_keep], cp_ms[cp_keep], cp_slice[cp_keep]
    # Each champion request weighs (challenger requests / champion requests) of its slice.
    ch_count = dict(zip(*np.unique(ch_slice, return_counts=True), strict=True))
    cp_count = dict(zip(*np.unique(cp_slice, return_counts=True), strict=True))
    weights = np.array([ch_count[s] / cp_count[s] for s in cp_slice], float)
    return _Matched(len(shared), ch_ms, ch_slice, cp_ms, cp_slice, weights)


def matched_p95_ratio(
    challenger_ms: np.ndarray, challenger_times: np.ndarray, champion_ms: np.ndarray, champion_times: np.ndarray,
    *, slice_seconds: float, alpha: float, min_requests: int, min_increase_ms: float = 0.0, seed: int = 0,
) -> MatchedLatency | None:
    """Challenger p95 over the champion's p95 on matched time slices, with a stratified bootstrap interval.

    None when either arm has fewer than ``min_requests`` requests in slices the other also served.
    The interval is left out when the challenger's p95 is less than ``min_increase_ms`` above the
    champion's: no breach is possible then, and the bootstrap costs CPU the gateway shares.
    """
    rng = np.random.default_rng(seed)
    m = _match(rng, challenger_ms, challenger_times, champion_ms, champion_times, slice_seconds)
    if min(len(m.challenger_ms), len(m.champion_ms)) < min_requests:
        return None
    p95_ch = float(weighted_quantile(m.challenger_ms[None, :], np.ones((1, len(m.challenger_ms))), 0.95)[0])
    p95_cp = float(weighted_quantile(m.champion_ms[None, :], m.champion_weights[None, :], 0.95)[0])
    ratio = p95_ch / max(p95_cp, 1e-9)
    if p95_ch - p95_cp < min_increase_ms:
        return MatchedLatency(m.slices, len(m.challenger_ms), len(m.champion_ms), p95_ch, p95_cp, ratio, None, None)
    ch_draws = _within_slice_draws(rng, m.challenger_slice, RESAMPLES)
    cp_draws = _within_slice_draws(rng, m.champion_slice, RESAMPLES)
    boot_ch = weighted_quantile(m.challenger_ms[ch_draws], np.ones(ch_draws.shape), 0.95)
    boot_cp = weighted_quantile(m.champion_ms[cp_draws], m.champion_weights[cp_draws], 0.95)
    ratios = boot_ch / np.maximum(boot_cp, 1e-9)
    low, high = np.quantile(ratios, [alpha / 2, 1 - alpha / 2])
    return MatchedLatency(m.slices, len(m.challenger_ms), len(m.champion_ms), p95_ch, p95_cp, ratio, float(low),
                          float(high))


TAIL_SHARE = 0.05  # a p95 above a limit means more than this share of the calls above it


@dataclass(frozen=True)
class MatchedExceedance:
    """How many of the challenger's calls were slower than the limit drawn from the champion's p95 on the same
    slices, and whether that share is provably above 5 % (then the challenger's p95 is above the limit)."""

    slices: int
    challenger_requests: int
    champion_requests: int
    champion_p95_ms: float  # weighted to the challenger's spread over the slices
    limit_ms: float
    above: int  # challenger calls slower than limit_ms
    share_low: float  # always-valid lower bound of the share of challenger calls above limit_ms
    breach: bool

    def describe(self, what: str) -> str:
        return (f"{what}: {self.above} of {self.challenger_requests} challenger calls above {self.limit_ms:.2f} ms "
                f"({self.limit_ms / self.champion_p95_ms:.2f}x the champion's p95 of {self.champion_p95_ms:.2f} ms on "
                f"{self.slices} matched slices; always-valid lower bound of that share {self.share_low:.1%}, "
                f"a breach above {TAIL_SHARE:.0%})")


def matched_exceedance(
    challenger_ms: np.ndarray, challenger_times: np.ndarray, champion_ms: np.ndarray, champion_times: np.ndarray,
    *, slice_seconds: float, factor: float, alpha: float, min_challenger: int, min_champion: int,
    min_increase_ms: float = 0.0, seed: int = 0,
) -> MatchedExceedance | None:
    """Is the challenger's p95 above ``factor`` times the champion's, from few challenger calls?

    The p95 of a dozen calls cannot be estimated, but "more than 5 % of the calls are slower than
    the limit" can be tested on them: the limit is ``factor`` times the champion's p95 on the same
    slices (the champion serves most of a step's traffic; the factor's margin covers that estimate's
    error: a call of an equal challenger exceeds it about 1 % of the time), and the share of
    challenger calls above it gets the always-valid mixture test of the error rate. A slow candidate
    at a 10 % step is stopped after about ten calls however loaded the machine, since both arms'
    calls in a slice wait alike. None when fewer than
    ``min_challenger`` / ``min_champion`` calls fall in slices both arms served.
    """
    rng = np.random.default_rng(seed)
    m = _match(rng, challenger_ms, challenger_times, champion_ms, champion_times, slice_seconds)
    if len(m.challenger_ms) < min_challenger or len(m.champion_ms) < min_champion:
        return None
    p95 = float(weighted_quantile(m.champion_ms[None, :], m.champion_weights[None, :], 0.95)[0])
    limit = max(factor * p95, p95 + min_increase_ms)
    above = int((m.challenger_ms > limit).sum())
    low, breach = rate_above(above, len(m.challenger_ms), TAIL_SHARE, alpha=alpha)
    return MatchedExceedance(m.slices, len(m.challenger_ms), len(m.champion_ms), p95, limit, above, low, breach)


def p95_against_slo(latencies_ms: np.ndarray, slo_ms: float, *, alpha: float, seed: int = 0) -> SloLatency:
    """The p95 with a bootstrap percentile interval, for a comparison with the SLO."""
    rng = np.random.default_rng(seed)
    values, _ = _bounded(rng, np.asarray(latencies_ms, float), np.zeros(len(latencies_ms)))
    draws = rng.integers(0, len(values), (RESAMPLES, len(values)))
    boot = np.quantile(values[draws], 0.95, axis=1)
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return SloLatency(len(values), float(np.quantile(values, 0.95)), float(low), float(high), slo_ms)
