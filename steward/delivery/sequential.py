"""The canary's error and accuracy tests, valid however often a flow reads them.

A canary re-reads its step's window at every poll (every few seconds), so a fixed-sample test
read at each look rolls back a good candidate far more often than its alpha says (a good retrain
was rolled back at 50 % on 42 against 49 labels, p=0.037). Both tests here are always valid
(Ville's inequality on a nonnegative supermartingale):

- **Errors**: a healthy model almost never fails, so the challenger's error count is tested on
  its own against a ceiling: the champion's rate (its Clopper-Pearson upper bound) plus the
  tolerated increase. The likelihood ratio of a uniform mixture over rates above that ceiling
  against the ceiling itself is a supermartingale while the challenger's rate stays below it, and
  it grows fast when it does not: a candidate failing a quarter of its requests is stopped after
  a couple of dozen of them.
- **Accuracy**: both arms err often, so the difference of their loss means is tested with the
  normal-mixture SPRT of ``steward.stats.msprt``; its confidence sequence's lower bound must lie
  above the tolerated drop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

from steward.stats import msprt

# The normal mixture's scale for a difference of misclassification rates: tuned to effects of about
# ten points, which is what a canary's step (tens to hundreds of labels per arm) can see at all.
MISCLASSIFICATION_MIXTURE = 0.1
# The error test's mixing density over the challenger's error rate is Beta(1, 5), cut at the ceiling:
# its mean is about a sixth, like a fault on one category or one kind of request.
ERROR_MIXTURE_SHAPE = 5


@dataclass(frozen=True)
class ErrorRateBound:
    """The challenger's error rate against the champion's ceiling, at one look."""

    challenger_errors: int
    challenger_requests: int
    champion_errors: int
    champion_requests: int
    ceiling: float  # the champion's upper bound plus the tolerated increase
    challenger_low: float  # always-valid lower bound of the challenger's error rate
    breach: bool

    def describe(self) -> str:
        rate = self.challenger_errors / self.challenger_requests
        return (f"error rate: challenger {self.challenger_errors}/{self.challenger_requests} ({rate:.1%}, always-valid "
                f"lower bound {self.challenger_low:.1%}) against a ceiling of {self.ceiling:.1%} (champion "
                f"{self.champion_errors}/{self.champion_requests}, its upper bound plus the tolerated increase)")


def _log_mixture_ratio(errors: int, requests: int, ceiling: float) -> float:
    """log of: the mixture over rates in (ceiling, 1] of the binomial likelihood, over the likelihood at ceiling.

    The mixing density is Beta(1, ERROR_MIXTURE_SHAPE) cut at the ceiling: most of its weight on
    rates of a few to a few tens of percent, where a broken candidate's errors are.
    """
    k = ERROR_MIXTURE_SHAPE
    a, b = errors + 1, requests - errors + k
    tail = special.betaincc(a, b, ceiling)
    if tail <= 0:
        return -math.inf
    log_prior_mass = k * math.log1p(-ceiling) - math.log(k)  # of (1 - p)^(k - 1) over (ceiling, 1]
    return (special.betaln(a, b) + math.log(tail) - log_prior_mass
            - errors * math.log(ceiling) - (requests - errors) * math.log1p(-ceiling))


def _always_valid_lower(errors: int, requests: int, alpha: float) -> float:
    """The smallest error rate the mixture test cannot reject at ``alpha`` (0 when it rejects none)."""
    threshold = math.log(1 / alpha)
    observed = errors / requests

    def excess(rate: float) -> float:
        return _log_mixture_ratio(errors, requests, rate) - threshold

    low = 1e-9
    if observed <= low or excess(low) < 0:
        return 0.0
    return float(optimize.brentq(excess, low, observed, xtol=1e-6))


def rate_above(hits: int, trials: int, ceiling: float, *, alpha: float) -> tuple[float, bool]:
    """(always-valid lower bound of a rate, whether it lies above ``ceiling``) from ``hits`` of ``trials``.

    The same Beta(1, 5) mixture test as the error rate's, for any share that should stay under a ceiling
    (e.g. calls slower than a limit).
    """
    if trials <= 0:
        raise ValueError("a rate needs at least one trial")
    low = _always_valid_lower(hits, trials, alpha) if hits else 0.0
    return low, hits > 0 and _log_mixture_ratio(hits, trials, ceiling) >= math.log(1 / alpha)


def error_rate_bound(
    challenger_errors: int, challenger_requests: int, champion_errors: int, champion_requests: int, *,
    margin: float, alpha: float,
) -> ErrorRateBound:
    """Is the challenger's error rate above the champion's plus ``margin``, at ``alpha``, valid at every look?

    Half of ``alpha`` goes to the champion's one-sided Clopper-Pearson upper bound (it serves most of
    the traffic, so its bound is tight), half to the challenger's mixture test against that ceiling.
    """
    if challenger_requests <= 0 or champion_requests <= 0:
        raise ValueError("both arms need requests to compare their error rates")
    champion_upper = 1.0 if champion_errors >= champion_requests else float(
        special.betaincinv(champion_errors + 1, champion_requests - champion_errors, 1 - alpha / 2))
    ceiling = min(champion_upper + margin, 1 - 1e-9)
    low = _always_valid_lower(challenger_errors, challenger_requests, alpha / 2)
    return ErrorRateBound(challenger_errors, challenger_requests, champion_errors, champion_requests, ceiling, low,
                          low > ceiling)


@dataclass(frozen=True)
class LossDifference:
    """Challenger's mean loss minus the champion's, with an always-valid confidence sequence at this look."""

    metric: str
    challenger: float
    champion: float
    ci_low: float
    ci_high: float
    n_challenger: int
    n_champion: int
    limit: float  # the tolerated drop: a breach needs ci_low above it

    @property
    def breach(self) -> bool:
        return self.ci_low > self.limit

    def describe(self) -> str:
        return (f"{self.metric}: {self.challenger:.4g} vs {self.champion:.4g} (diff {self.challenger - self.champion:+.4g}, "
                f"always-valid 95% CI [{self.ci_low:+.4g}, {self.ci_high:+.4g}], limit {self.limit:+.4g}, "
                f"n={self.n_challenger}/{self.n_champion})")


def loss_difference(
    challenger_losses: np.ndarray, champion_losses: np.ndarray, *, binary: bool, limit: float, alpha: float,
    mixture_scale: float | None = None,
) -> LossDifference:
    """The confidence sequence of the difference of mean losses (misclassification or absolute error).

    Binary losses take a variance with one added success and failure per arm (Agresti-Caffo), so a
    few labels with no mistake do not read as certainty. ``mixture_scale`` is the effect size the
    test is tuned to, the same at every look: ``MISCLASSIFICATION_MIXTURE`` for misclassification;
    for absolute errors the caller's (in the target's units).
    """
    challenger_losses, champion_losses = np.asarray(challenger_losses, float), np.asarray(champion_losses, float)
    n_ch, n_cp = len(challenger_losses), len(champion_losses)
    if min(n_ch, n_cp) < 2:
        raise ValueError("each arm needs at least two labelled predictions to compare their losses")
    mean_ch, mean_cp = float(challenger_losses.mean()), float(champion_losses.mean())
    if binary:
        p_ch = (challenger_losses.sum() + 1) / (n_ch + 2)
        p_cp = (champion_losses.sum() + 1) / (n_cp + 2)
        variance = p_ch * (1 - p_ch) / n_ch + p_cp * (1 - p_cp) / n_cp
        scale, metric = mixture_scale or MISCLASSIFICATION_MIXTURE, "misclassification rate"
    else:
        variance = challenger_losses.var(ddof=1) / n_ch + champion_losses.var(ddof=1) / n_cp
        if mixture_scale is None:
            raise ValueError("absolute errors need a mixture_scale in the target's units")
        scale, metric = mixture_scale, "absolute error"
    result = msprt(mean_ch - mean_cp, float(variance), minimum_effect=scale, alpha=alpha)
    return LossDifference(metric, mean_ch, mean_cp, result.ci_low, result.ci_high, n_ch, n_cp, limit)
