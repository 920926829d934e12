"""Metrics on logged outcomes, with their standard errors: what the accuracy check, the model card and the
retrain decision measure, on the same names as the registry's validation metrics."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.stats import rankdata
from sklearn import metrics as skm

from steward.spec import Task
from steward.store.reader import typed_labels
from steward.training.evaluation import metric_change
from steward.training.labels import label_key, label_keys
from steward.training.paired import ComparisonError, delong_covariance

# The within-window comparison (later half against earlier half) is looked at in every window, so it is held to
# one-sided 0.1%: about one false alarm in a thousand quiet windows, not one in a hundred.
HALVES_CONFIDENCE = 0.999
BOOTSTRAP_RESAMPLES = 200


@dataclass(frozen=True)
class Outcomes:
    """Labels and model outputs as arrays a metric takes; binary classes as 0/1 (1 = the scored class)."""

    y: np.ndarray
    prediction: np.ndarray
    score: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def take(self, index: np.ndarray) -> Outcomes:
        return Outcomes(self.y[index], self.prediction[index], self.score[index])


def outcomes(labelled: pd.DataFrame, task: Task, positive_label: Any = None) -> Outcomes:
    """Typed outcomes of labelled log rows (label and prediction are stored as text).

    Binary: 1 is the spec's ``positive_label`` (default: the last class, as for 0/1); the log keeps the score of
    the model's last class (sklearn's ``classes_`` are sorted), so it is turned round when that is the other one.
    """
    n = len(labelled)
    both = typed_labels(pd.concat([labelled["label"], labelled["prediction"]], ignore_index=True),
                        classification=task.is_classification)
    y, prediction = both.iloc[:n].to_numpy(), both.iloc[n:].to_numpy()
    score = labelled["score"].to_numpy(dtype=float)
    if task is Task.BINARY_CLASSIFICATION:
        scored_class = label_key(sorted(set(y.tolist()) | set(prediction.tolist()))[-1]) if n else "1"
        positive = label_key(positive_label) if positive_label is not None else scored_class
        y, prediction = (label_keys(y) == positive).astype(int), (label_keys(prediction) == positive).astype(int)
        if positive != scored_class:
            score = 1 - score
    return Outcomes(y, prediction, score)


def _auc(o: Outcomes) -> float:
    """ROC AUC from ranks (Mann-Whitney U, ties averaged): sklearn's value, fast enough to bootstrap."""
    positives = o.y == 1
    n1 = int(positives.sum())
    n0 = len(o.y) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(o.score)
    return float((ranks[positives].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


_METRICS: dict[str, Callable[[Outcomes], float]] = {
    "accuracy": lambda o: float(np.mean(o.y == o.prediction)),
    "roc_auc": _auc,
    "precision": lambda o: float(skm.precision_score(o.y, o.prediction, zero_division=0)),
    "recall": lambda o: float(skm.recall_score(o.y, o.prediction, zero_division=0)),
    "f1": lambda o: float(skm.f1_score(o.y, o.prediction, zero_division=0)),
    "brier": lambda o: float(np.mean((o.score - o.y) ** 2)),
    "log_loss": lambda o: float(skm.log_loss(o.y, np.clip(o.score, 1e-15, 1 - 1e-15), labels=[0, 1])),
    "f1_macro": lambda o: float(skm.f1_score(o.y, o.prediction, average="macro", zero_division=0)),
    "rmse": lambda o: float(np.sqrt(np.mean((o.y.astype(float) - o.prediction.astype(float)) ** 2))),
    "mae": lambda o: float(np.mean(np.abs(o.y.astype(float) - o.prediction.astype(float)))),
    "r2": lambda o: float(skm.r2_score(o.y, o.prediction)) if len(o) > 1 else float("nan"),
}


def metric_value(metric: str, o: Outcomes) -> float:
    """The metric on logged outcomes; the same names the registry's validation metrics use."""
    try:
        return _METRICS[metric](o)
    except KeyError:
        raise ValueError(
            f"the metric {metric!r} cannot be computed from logged predictions; set gates.primary_metric "
            f"to one of {sorted(_METRICS)}"
        ) from None


@dataclass(frozen=True)
class Estimate:
    value: float
    error: float  # standard error (bootstrap unless said otherwise)
    rows: int


def estimate_metric(metric: str, o: Outcomes, seed: int = 0) -> Estimate:
    value = metric_value(metric, o)
    rng = np.random.default_rng(seed)
    resampled = [metric_value(metric, o.take(rng.integers(0, len(o), len(o)))) for _ in range(BOOTSTRAP_RESAMPLES)]
    return Estimate(value, float(np.nanstd(resampled)), len(o))


@dataclass(frozen=True)
class HalvesComparison:
    """The metric in the later half of a window against the earlier half, with the drop's standard error."""

    metric: str
    early: Estimate
    late: Estimate
    drop: float  # positive = worse in the later half
    error: float  # standard error of the drop (the halves are independent rows)
    method: str  # how the errors were had: DeLong, binomial or bootstrap
    confidence: float  # one-sided

    @property
    def needed(self) -> float:
        """The drop the sampling error alone exceeds with probability ``1 - confidence``."""
        return float(stats.norm.ppf(self.confidence)) * self.error

    def significant(self, limit: float) -> bool:
        """A drop past ``limit`` (the effect that matters) and past ``needed`` (not sampling error)."""
        return self.drop > limit and self.drop >= self.needed

    def describe(self) -> str:
        return (f"{self.metric} {self.early.value:.3f} -> {self.late.value:.3f} on {self.early.rows} + "
                f"{self.late.rows} labelled rows: a drop of {self.drop:.3f} +/- {self.error:.3f} ({self.method} "
                f"standard error); sampling error alone exceeds {self.needed:.3f} "
                f"{1 - self.confidence:.1%} of the time")


def analytic_estimate(metric: str, o: Outcomes, seed: int = 0) -> tuple[Estimate, str]:
    """The metric with its standard error: DeLong's for ROC AUC, binomial for accuracy, else bootstrap."""
    value = metric_value(metric, o)
    if metric == "roc_auc":
        try:
            _, covariance = delong_covariance(o.y, o.score)
            return Estimate(value, math.sqrt(max(float(covariance[0, 0]), 0.0)), len(o)), "DeLong"
        except ComparisonError:
            pass  # fewer than 2 rows of a class: the bootstrap below says what it can
    elif metric == "accuracy" and len(o):
        return Estimate(value, math.sqrt(max(value * (1 - value), 0.0) / len(o)), len(o)), "binomial"
    return estimate_metric(metric, o, seed), "bootstrap"


def compare_halves(metric: str, early: Outcomes, late: Outcomes,
                   confidence: float = HALVES_CONFIDENCE) -> HalvesComparison:
    first, method = analytic_estimate(metric, early, seed=1)
    second, _ = analytic_estimate(metric, late, seed=2)
    return HalvesComparison(metric, first, second, metric_drop(metric, second.value, first.value),
                            math.hypot(first.error, second.error), method, confidence)


def metric_drop(metric: str, current: float, baseline: float) -> float:
    """How much worse ``current`` is than ``baseline``, whatever the metric's direction (positive = worse)."""
    return -metric_change(metric, current, baseline)
