"""The statistics behind canary analysis and A/B tests.

Fixed-sample tests come from statsmodels and scipy. The sequential rule is a mixture
sequential probability ratio test (mSPRT, Johari et al., "Always Valid Inference",
2017): its p-values and confidence sequences stay valid however often a flow peeks,
which is what a canary or an A/B flow that re-analyses every few minutes needs.
No maintained library ships it, so it lives here, with its error rate checked by
simulation in the tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_effectsize,
    test_proportions_2indep,
)


@dataclass(frozen=True)
class Comparison:
    """Treatment minus control, with a confidence interval and a p-value."""

    metric: str
    control: float
    treatment: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    n_control: int
    n_treatment: int
    method: str

    def describe(self, unit: str = "") -> str:
        return (
            f"{self.metric}: {self.treatment:.4g}{unit} vs {self.control:.4g}{unit} "
            f"(diff {self.difference:+.4g}, 95% CI [{self.ci_low:+.4g}, {self.ci_high:+.4g}], "
            f"p={self.p_value:.3g}, n={self.n_treatment}/{self.n_control})"
        )


def proportion_increase_test(
    treatment_hits: int, treatment_n: int, control_hits: int, control_n: int, *, margin: float = 0.0,
    alpha: float = 0.05, metric: str = "rate",
) -> Comparison:
    """One-sided: is the treatment's rate above the control's by more than ``margin``?

    Used for "is the challenger's error rate worse than the champion's beyond what we accept".
    """
    result = test_proportions_2indep(
        treatment_hits, treatment_n, control_hits, control_n, value=margin, compare="diff",
        alternative="larger", method="wald",
    )
    low, high = confint_proportions_2indep(
        treatment_hits, treatment_n, control_hits, control_n, compare="diff", alpha=alpha, method="newcomb"
    )
    p_treatment, p_control = treatment_hits / treatment_n, control_hits / control_n
    return Comparison(
        metric, p_control, p_treatment, p_treatment - p_control, float(low), float(high), float(result.pvalue),
        control_n, treatment_n, f"two-proportion z-test (one-sided, margin {margin:g})",
    )


def proportion_difference(
    treatment_hits: int, treatment_n: int, control_hits: int, control_n: int, *, alpha: float = 0.05,
    metric: str = "rate",
) -> Comparison:
    """Two-sided two-proportion test with a Newcombe interval for the difference."""
    result = test_proportions_2indep(
        treatment_hits, treatment_n, control_hits, control_n, compare="diff", alternative="two-sided", method="wald"
    )
    low, high = confint_proportions_2indep(
        treatment_hits, treatment_n, control_hits, control_n, compare="diff", alpha=alpha, method="newcomb"
    )
    p_treatment, p_control = treatment_hits / treatment_n, control_hits / control_n
    return Comparison(
        metric, p_control, p_treatment, p_treatment - p_control, float(low), float(high), float(result.pvalue),
        control_n, treatment_n, "two-proportion z-test (two-sided)",
    )


def welch_difference(
    treatment: Sequence[float], control: Sequence[float], *, alpha: float = 0.05, metric: str = "mean"
) -> Comparison:
    """Welch's t-test for continuous outcomes (unequal variances), with its interval."""
    treatment, control = np.asarray(treatment, float), np.asarray(control, float)
    result = sps.ttest_ind(treatment, control, equal_var=False)
    interval = result.confidence_interval(confidence_level=1 - alpha)
    return Comparison(
        metric, float(control.mean()), float(treatment.mean()), float(treatment.mean() - control.mean()),
        float(interval.low), float(interval.high), float(result.pvalue), len(control), len(treatment), "Welch t-test",
    )


@dataclass(frozen=True)
class RatioEstimate:
    ratio: float
    ci_low: float
    ci_high: float
    n_control: int
    n_treatment: int


def quantile_ratio(
    treatment: Sequence[float], control: Sequence[float], *, q: float = 0.95, alpha: float = 0.05,
    resamples: int = 2000, seed: int = 0,
) -> RatioEstimate:
    """Ratio of a quantile (p95 latency) between arms, with a bootstrap percentile interval."""
    treatment, control = np.asarray(treatment, float), np.asarray(control, float)

    def statistic(t: np.ndarray, c: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.quantile(t, q, axis=axis) / np.quantile(c, q, axis=axis)

    result = sps.bootstrap(
        (treatment, control), statistic, n_resamples=resamples, confidence_level=1 - alpha, method="percentile",
        vectorized=True, rng=np.random.default_rng(seed),
    )
    return RatioEstimate(
        float(statistic(treatment, control)), float(result.confidence_interval.low),
        float(result.confidence_interval.high), len(control), len(treatment),
    )


@dataclass(frozen=True)
class DistributionShift:
    statistic: float
    p_value: float


def distribution_shift(treatment: Sequence[float], control: Sequence[float]) -> DistributionShift:
    """Two-sample Kolmogorov-Smirnov on prediction scores: same traffic, do the arms answer alike?"""
    result = sps.ks_2samp(np.asarray(treatment, float), np.asarray(control, float))
    return DistributionShift(float(result.statistic), float(result.pvalue))


@dataclass(frozen=True)
class SampleRatioCheck:
    observed: tuple[int, ...]
    expected_shares: tuple[float, ...]
    statistic: float
    p_value: float
    mismatch: bool

    def describe(self) -> str:
        total = sum(self.observed)
        observed = ", ".join(f"{o / total:.1%}" for o in self.observed) if total else "none"
        expected = ", ".join(f"{e:.1%}" for e in self.expected_shares)
        verdict = "MISMATCH" if self.mismatch else "ok"
        return f"sample ratio {verdict}: observed {observed} vs planned {expected} (chi-square p={self.p_value:.3g})"


def sample_ratio_mismatch(
    observed: Sequence[int], expected_shares: Sequence[float], *, alpha: float = 0.001
) -> SampleRatioCheck:
    """Chi-square goodness of fit of arm counts against the planned split.

    A mismatch means assignment or logging is broken, and no conclusion from the
    experiment can be trusted. The strict default alpha is the usual choice for SRM.
    """
    counts = np.asarray(observed, float)
    shares = np.asarray(expected_shares, float) / np.sum(expected_shares)
    if counts.sum() == 0:
        return SampleRatioCheck(tuple(map(int, observed)), tuple(shares), 0.0, 1.0, False)
    result = sps.chisquare(counts, counts.sum() * shares)
    return SampleRatioCheck(
        tuple(map(int, observed)), tuple(float(s) for s in shares), float(result.statistic), float(result.pvalue),
        bool(result.pvalue < alpha),
    )


@dataclass(frozen=True)
class SequentialResult:
    """Always-valid inference on a difference of means (or proportions)."""

    difference: float
    p_value: float  # always-valid: may be read at every look
    ci_low: float  # confidence sequence at the look
    ci_high: float
    significant: bool


def msprt(
    difference: float, variance_of_difference: float, *, minimum_effect: float, alpha: float = 0.05,
    previous_p_value: float = 1.0,
) -> SequentialResult:
    """One look of a normal-mixture SPRT for H0: difference = 0.

    ``variance_of_difference`` is Var(treatment mean - control mean) at this look (for
    proportions p(1-p)/n per arm, summed). The mixture variance is ``minimum_effect``
    squared: the test is tuned to effects of about that size, and it must stay the same
    at every look of one experiment. Pass the previous look's p-value to keep it monotone.
    """
    if minimum_effect == 0:
        raise ValueError("minimum_effect must be non-zero: it is the effect size the test is tuned to detect")
    v = max(variance_of_difference, 1e-18)
    tau2 = minimum_effect**2
    log_likelihood_ratio = 0.5 * math.log(v / (v + tau2)) + (tau2 * difference**2) / (2 * v * (v + tau2))
    p_value = min(previous_p_value, 1.0, math.exp(-log_likelihood_ratio))
    half_width = math.sqrt((2 * v * (v + tau2) / tau2) * (math.log(1 / alpha) + 0.5 * math.log((v + tau2) / v)))
    return SequentialResult(difference, p_value, difference - half_width, difference + half_width, p_value < alpha)


def sequential_proportions(
    treatment_hits: int, treatment_n: int, control_hits: int, control_n: int, *, minimum_effect: float,
    alpha: float = 0.05, previous_p_value: float = 1.0,
) -> SequentialResult:
    p_t, p_c = treatment_hits / treatment_n, control_hits / control_n
    pooled = (treatment_hits + control_hits) / (treatment_n + control_n)
    variance = pooled * (1 - pooled) * (1 / treatment_n + 1 / control_n)
    return msprt(p_t - p_c, variance, minimum_effect=minimum_effect, alpha=alpha, previous_p_value=previous_p_value)


def sequential_means(
    treatment: Sequence[float], control: Sequence[float], *, minimum_effect: float, alpha: float = 0.05,
    previous_p_value: float = 1.0,
) -> SequentialResult:
    treatment, control = np.asarray(treatment, float), np.asarray(control, float)
    variance = treatment.var(ddof=1) / len(treatment) + control.var(ddof=1) / len(control)
    return msprt(float(treatment.mean() - control.mean()), variance, minimum_effect=minimum_effect, alpha=alpha,
                 previous_p_value=previous_p_value)


def samples_needed_for_proportions(
    control_rate: float, minimum_effect: float, *, alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0
) -> int:
    """Per-arm sample size (control arm) to detect ``minimum_effect`` on a rate with the given power."""
    if minimum_effect == 0:
        raise ValueError("minimum_effect must be non-zero: no sample size detects a zero effect")
    treated = min(max(control_rate + minimum_effect, 1e-6), 1 - 1e-6)
    effect = abs(proportion_effectsize(treated, min(max(control_rate, 1e-6), 1 - 1e-6)))
    n = NormalIndPower().solve_power(effect_size=effect, alpha=alpha, power=power, ratio=ratio)
    return int(math.ceil(n))


def samples_needed_for_means(
    standard_deviation: float, minimum_effect: float, *, alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0
) -> int:
    if minimum_effect == 0 or standard_deviation <= 0:
        raise ValueError("minimum_effect and standard_deviation must be positive to size a test")
    effect = abs(minimum_effect) / standard_deviation
    return int(math.ceil(NormalIndPower().solve_power(effect_size=effect, alpha=alpha, power=power, ratio=ratio)))
