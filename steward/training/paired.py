"""Paired comparison of two models on the same labelled rows: the difference of a metric, with its interval.

The gate asks "is the candidate at least as good as keeping the champion?" on one held-out set, so
the two models' errors are correlated row by row; pairing removes that shared noise. ROC AUC uses
DeLong's variance of correlated AUCs; every other metric a seeded, vectorised paired bootstrap (the
same resampled rows score both models). Differences are signed improvements: positive means the
candidate is better, whatever the metric's direction.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from scipy import stats

from steward.spec import Task
from steward.training.evaluation import higher_is_better

# Metrics bounded in [0, 1] where one row (of the smaller class, for the class-based ones) moves the
# value by up to 1 / rows: below 1 / tolerance such rows the metric cannot resolve the tolerance at all.
_PER_ROW_BOUNDED = frozenset({"accuracy", "brier"})
_PER_CLASS_BOUNDED = frozenset({"roc_auc", "precision", "recall", "f1", "f1_macro"})
_BOOTSTRAP_ELEMENTS = 4_000_000  # resampled row indices held in memory at once
_MAX_DISCRETE_KINDS = 256  # distinct per-row statistics drawn as multinomial counts
_EXACT_RESAMPLE_ROWS = 5_000


class ComparisonError(ValueError):
    """A comparison that cannot be computed from these rows; the message says what is missing."""


class NonInferiority(StrEnum):
    """How the candidate's interval of improvement sits against ``-tolerance``."""

    NON_INFERIOR = "non_inferior"  # the whole interval is above -tolerance
    INFERIOR = "inferior"  # the whole interval is below -tolerance
    INCONCLUSIVE = "inconclusive"  # the interval straddles -tolerance, or too few rows to resolve it


@dataclass(frozen=True)
class PairedInterval:
    """The candidate's improvement over the champion on the same rows, with a two-sided interval."""

    metric: str
    candidate: float
    champion: float
    difference: float
    lower: float
    upper: float
    standard_error: float
    confidence: float
    rows: int
    method: str

    def describe(self) -> str:
        return (
            f"{self.metric} {self.candidate:.4f} vs {self.champion:.4f}: {self.difference:+.4f} "
            f"[{self.lower:+.4f}, {self.upper:+.4f}] ({self.confidence:.1%} {self.method}, {self.rows} rows)"
        )


@dataclass(frozen=True)
class NonInferiorityResult:
    outcome: NonInferiority
    interval: PairedInterval
    tolerance: float
    rows_needed: int | None  # more labelled rows for the interval to resolve (inconclusive only); None: unknown
    resolution_rows: int | None  # smallest rows (of the smaller class, where it counts) the tolerance needs


def z_value(confidence: float) -> float:
    return float(stats.norm.ppf(0.5 + confidence / 2))


# --- DeLong -------------------------------------------------------------------------------------


def delong_covariance(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs of several score vectors on the same rows and DeLong's covariance matrix of them.

    ``scores`` is (models, rows). Uses the midrank form of Sun and Xu (2014): O(rows log rows) per model.
    """
    y = np.asarray(y_true).astype(bool)
    scores = np.atleast_2d(np.asarray(scores, dtype="float64"))
    positives, negatives = scores[:, y], scores[:, ~y]
    m, n = positives.shape[1], negatives.shape[1]
    if m < 2 or n < 2:
        raise ComparisonError(f"ROC AUC needs at least 2 rows of each class; got {m} positive and {n} negative")
    all_ranks = np.apply_along_axis(stats.rankdata, 1, np.hstack([positives, negatives]))
    positive_ranks = np.apply_along_axis(stats.rankdata, 1, positives)
    negative_ranks = np.apply_along_axis(stats.rankdata, 1, negatives)
    aucs = (all_ranks[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)
    v10 = (all_ranks[:, :m] - positive_ranks) / n  # per positive: share of negatives it outranks
    v01 = 1.0 - (all_ranks[:, m:] - negative_ranks) / m  # per negative: share of positives that outrank it
    covariance = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return aucs, covariance


def delong_difference(y_true: np.ndarray, candidate: np.ndarray, champion: np.ndarray, confidence: float = 0.95
                      ) -> PairedInterval:
    """ROC AUC of candidate minus champion on the same rows, with DeLong's normal interval."""
    aucs, cov = delong_covariance(y_true, np.vstack([candidate, champion]))
    difference = float(aucs[0] - aucs[1])
    variance = max(float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]), 0.0)
    se = math.sqrt(variance)
    half = z_value(confidence) * se
    return PairedInterval("roc_auc", float(aucs[0]), float(aucs[1]), difference, difference - half,
                          difference + half, se, confidence, len(y_true), "DeLong")


# --- paired bootstrap -----------------------------------------------------------------------------

# Each metric as (per-row statistics, metric from summed statistics): the bootstrap resamples rows,
# sums the statistics per resample, and evaluates the metric on the sums, so one pass serves every
# resample. ``Outputs`` are (predictions, positive-class or per-class probabilities or None).


def _safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), 0.0)


def _row_statistics(metric: str, task: Task, y: np.ndarray, predictions: np.ndarray, probabilities: np.ndarray | None,
                    labels: np.ndarray) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    if metric == "accuracy":
        return (predictions == y).astype(float)[:, None], lambda s: s[:, 0] / s[:, -1]
    if metric in ("precision", "recall", "f1"):
        tp = (predictions == 1) & (y == 1)
        fp = (predictions == 1) & (y != 1)
        fn = (predictions != 1) & (y == 1)
        columns = np.column_stack([tp, fp, fn]).astype(float)
        formulas = {
            "precision": lambda s: _safe_ratio(s[:, 0], s[:, 0] + s[:, 1]),
            "recall": lambda s: _safe_ratio(s[:, 0], s[:, 0] + s[:, 2]),
            "f1": lambda s: _safe_ratio(2 * s[:, 0], 2 * s[:, 0] + s[:, 1] + s[:, 2]),
        }
        return columns, formulas[metric]
    if metric == "f1_macro":
        columns = np.column_stack(
            [c for label in labels for c in ((predictions == label) & (y == label), (predictions == label) & (y != label),
                                             (predictions != label) & (y == label))]
        ).astype(float)

        def f1_macro(s: np.ndarray) -> np.ndarray:
            tp, fp, fn = s[:, 0:-1:3], s[:, 1:-1:3], s[:, 2:-1:3]
            return _safe_ratio(2 * tp, 2 * tp + fp + fn).mean(axis=1)

        return columns, f1_macro
    if metric in ("brier", "log_loss"):
        if probabilities is None:
            raise ComparisonError(f"{metric} needs class probabilities; the model has no predict_proba")
        positive = probabilities[:, -1] if probabilities.ndim == 2 else probabilities
        if metric == "brier":
            return ((positive - y) ** 2)[:, None], lambda s: s[:, 0] / s[:, -1]
        eps = np.finfo(float).eps
        chosen = np.clip(np.where(y == 1, positive, 1 - positive), eps, 1)
        return (-np.log(chosen))[:, None], lambda s: s[:, 0] / s[:, -1]
    if metric == "rmse":
        return ((predictions - y) ** 2)[:, None], lambda s: np.sqrt(s[:, 0] / s[:, -1])
    if metric == "mae":
        return np.abs(predictions - y)[:, None], lambda s: s[:, 0] / s[:, -1]
    if metric == "r2":
        columns = np.column_stack([(predictions - y) ** 2, y, y**2]).astype(float)

        def r2(s: np.ndarray) -> np.ndarray:
            total = s[:, 2] - s[:, 1] ** 2 / s[:, -1]
            return 1 - _safe_ratio(s[:, 0], total)

        return columns, r2
    raise ComparisonError(f"no paired comparison for metric {metric!r} ({task.value})")


def _resampled_sums(rows: np.ndarray, resamples: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Column sums of ``rows`` over ``resamples`` draws of len(rows) rows with replacement.

    Rows of few distinct kinds (classification outcomes) are drawn as multinomial counts of each
    kind, which is the same bootstrap at any size; continuous rows are drawn row by row up to
    ``_EXACT_RESAMPLE_ROWS`` and above it from the normal limit of the resampled sums (same mean and
    covariance), which the row-by-row draws approach at that size.
    """
    n = len(rows)
    kinds, counts = np.unique(rows, axis=0, return_counts=True)
    if len(kinds) <= _MAX_DISCRETE_KINDS:
        return rng.multinomial(n, counts / n, size=resamples) @ kinds, ""
    if n <= _EXACT_RESAMPLE_ROWS:
        chunk = max(1, _BOOTSTRAP_ELEMENTS // n)
        parts = []
        for start in range(0, resamples, chunk):
            size = min(chunk, resamples - start)
            index = rng.integers(0, n, size=(size, n)) + (np.arange(size) * n)[:, None]
            weights = np.bincount(index.ravel(), minlength=size * n).reshape(size, n)
            parts.append(weights @ rows)
        return np.vstack(parts), ""
    mean, covariance = rows.mean(axis=0), np.cov(rows, rowvar=False)
    return rng.multivariate_normal(n * mean, n * covariance, size=resamples, method="eigh"), ", normal limit"


def paired_bootstrap_difference(
    metric: str,
    task: Task,
    y_true: np.ndarray,
    candidate: tuple[np.ndarray, np.ndarray | None],
    champion: tuple[np.ndarray, np.ndarray | None],
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> PairedInterval:
    """Candidate's improvement in ``metric`` over the champion with a percentile paired-bootstrap interval.

    Both models are scored on the same resampled rows, so what the rows share cancels.
    """
    y = np.asarray(y_true)
    if len(y) < 2:
        raise ComparisonError(f"a paired bootstrap needs at least 2 labelled rows; got {len(y)}")
    labels = np.unique(np.concatenate([y, np.asarray(candidate[0]), np.asarray(champion[0])]))  # f1_macro's classes
    a_rows, formula = _row_statistics(metric, task, y, np.asarray(candidate[0]), candidate[1], labels)
    b_rows, _ = _row_statistics(metric, task, y, np.asarray(champion[0]), champion[1], labels)
    ones = np.ones((len(y), 1))
    rows = np.hstack([a_rows, ones, b_rows, ones])  # the trailing column of each block counts rows
    width = a_rows.shape[1] + 1
    sign = 1.0 if higher_is_better(metric) else -1.0

    def difference(sums: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a, b = formula(sums[:, :width]), formula(sums[:, width:])
        return sign * (a - b), a, b

    full, a_full, b_full = difference(rows.sum(axis=0, keepdims=True))
    sums, how = _resampled_sums(rows, resamples, np.random.default_rng(seed))
    boot = difference(sums)[0]
    alpha = 1 - confidence
    lower, upper = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return PairedInterval(metric, float(a_full[0]), float(b_full[0]), float(full[0]), float(lower), float(upper),
                          float(boot.std(ddof=1)), confidence, len(y), f"paired bootstrap ({resamples} resamples{how})")


def paired_difference(
    metric: str,
    task: Task,
    y_true: np.ndarray,
    candidate: tuple[np.ndarray, np.ndarray | None],
    champion: tuple[np.ndarray, np.ndarray | None],
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> PairedInterval:
    """DeLong for a binary ROC AUC, the paired bootstrap for everything else."""
    if metric == "roc_auc":
        if task is not Task.BINARY_CLASSIFICATION or candidate[1] is None or champion[1] is None:
            raise ComparisonError("roc_auc compares binary classifiers with predict_proba")
        return delong_difference(y_true, candidate[1][:, -1], champion[1][:, -1], confidence)
    return paired_bootstrap_difference(metric, task, y_true, candidate, champion, confidence=confidence,
                                       resamples=resamples, seed=seed)


# --- the decision ---------------------------------------------------------------------------------

_SAME = 1e-9  # a difference and interval this close to zero are the same metric on every resample


def same_on_every_row(interval: PairedInterval) -> bool:
    """Both models give the metric the same value on the rows and on every resample of them (a zero-width
    interval at zero): e.g. ROC AUC of a model and of the same model with its threshold moved."""
    return max(abs(interval.difference), abs(interval.lower), abs(interval.upper)) < _SAME


def rows_for_clear_gain(interval: PairedInterval) -> int | None:
    """More rows for an interval with a positive estimate to lie wholly above zero, from its standard error
    (which shrinks as 1/sqrt(rows)); None when the estimate is not a gain."""
    if interval.difference <= 0:
        return None
    half_width = z_value(interval.confidence) * interval.standard_error
    return max(math.ceil(interval.rows * (half_width / interval.difference) ** 2) - interval.rows, 1)


def resolution_rows(metric: str, tolerance: float, y_true: np.ndarray) -> tuple[int, int | None, float]:
    """(rows that count, rows the tolerance needs, share of all rows that count) for this metric.

    For a metric in [0, 1] one row (of the smaller class, for the class-based ones) can move the value
    by up to 1 / rows, so fewer than 1 / tolerance of them cannot resolve the tolerance. Metrics in
    the target's units (rmse, mae) or unbounded ones (log_loss) have no such floor: None.
    """
    y = np.asarray(y_true)
    if tolerance <= 0 or not len(y):
        return len(y), None, 1.0
    needed = math.ceil(1 / tolerance - 1e-9)
    if metric in _PER_ROW_BOUNDED:
        return len(y), needed, 1.0
    if metric in _PER_CLASS_BOUNDED:
        _, counts = np.unique(y, return_counts=True)
        smallest = int(counts.min()) if len(counts) > 1 else 0
        return smallest, needed, (smallest / len(y)) if smallest else 1.0 / len(y)
    return len(y), None, 1.0


def judge_non_inferiority(
    interval: PairedInterval, tolerance: float, y_true: np.ndarray
) -> NonInferiorityResult:
    """Non-inferior, inferior or inconclusive at ``-tolerance``; inconclusive says how many more rows.

    Below the tolerance's resolution floor (``resolution_rows``) only a clear gain passes (the interval
    wholly above zero); non-inferiority by the tolerance's margin needs the floor's rows.

    The rows needed come from the observed standard error of the paired difference, which shrinks
    as 1/sqrt(rows): enough rows that the interval's half-width is smaller than the distance between
    the estimate and ``-tolerance``, and at least the tolerance's resolution floor.
    """
    counted, floor, share = resolution_rows(interval.metric, tolerance, y_true)
    too_few = floor is not None and counted < floor
    if same_on_every_row(interval):  # e.g. a re-fitted threshold keeps the ranking: no sampling error to resolve
        return NonInferiorityResult(NonInferiority.NON_INFERIOR, interval, tolerance, None, floor)
    # The floor stops a pass by the tolerance's margin on noise; an interval wholly above zero is a gain
    # over keeping the champion at the stated confidence, whatever the tolerance.
    if interval.lower > 0 or (not too_few and interval.lower > -tolerance):
        return NonInferiorityResult(NonInferiority.NON_INFERIOR, interval, tolerance, None, floor)
    if interval.upper < -tolerance:  # the floor guards passes: clear evidence of harm fails at any size
        return NonInferiorityResult(NonInferiority.INFERIOR, interval, tolerance, None, floor)
    rows = interval.rows
    margin = abs(interval.difference + tolerance)
    half_width = z_value(interval.confidence) * interval.standard_error
    if half_width == 0:
        by_variance = rows
    elif margin == 0:
        by_variance = None  # the estimate sits on the tolerance: no number of rows is sure to resolve it
    else:
        by_variance = math.ceil(rows * (half_width / margin) ** 2)
    by_floor = math.ceil(floor / share) if too_few and floor is not None else rows
    needed = None if by_variance is None else max(by_variance, by_floor) - rows
    return NonInferiorityResult(NonInferiority.INCONCLUSIVE, interval, tolerance,
                                None if needed is None else max(needed, 1), floor)
