"""Re-fit a binary classifier's decision threshold on recent labelled rows, keeping its ranking.

When the base rate moves (a threshold shift) the ranking still holds (ROC AUC unchanged) while
accuracy at the 0.5 threshold falls. Retraining on a few days of the new world loses ranking
quality for little gain; moving the threshold repairs what broke. The threshold is moved as a
shift of the model's log-odds fitted by maximum likelihood (calibration in the large), so the
probabilities keep meaning what they say and the highest-probability class (what the gateway
serves) is the prediction at the new threshold.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize
from sklearn.base import BaseEstimator, ClassifierMixin

from steward.spec import ModelSpec, Task
from steward.training.data import DataError

_EDGE = 1e-12  # probabilities are clipped this far from 0 and 1 before taking log-odds
MAX_SHIFT = 8.0  # log-odds; a larger shift is a broken model or a one-class window, not a base-rate move


class ShiftedLogOdds(ClassifierMixin, BaseEstimator):
    """A fitted binary classifier whose positive-class log-odds are moved by ``shift``.

    Picklable (the registry stores it like any estimator); ``fit`` is not part of its use: the
    wrapped model is already fitted and the shift is fitted by ``fit_threshold``.
    """

    def __init__(self, estimator: Any = None, shift: float = 0.0) -> None:
        self.estimator = estimator
        self.shift = shift

    def fit(self, X: Any, y: Any) -> ShiftedLogOdds:  # noqa: N803 (scikit-learn's names)
        raise TypeError("ShiftedLogOdds wraps a fitted model; build it with steward.training.threshold.fit_threshold")

    @property
    def classes_(self) -> np.ndarray:
        return self.estimator.classes_

    def predict_proba(self, X: Any) -> np.ndarray:  # noqa: N803
        positive = shifted(np.asarray(self.estimator.predict_proba(X))[:, -1], self.shift)
        return np.column_stack([1.0 - positive, positive])

    def predict(self, X: Any) -> np.ndarray:  # noqa: N803
        probabilities = self.predict_proba(X)
        return np.asarray(self.classes_)[probabilities.argmax(axis=1)]


def log_odds(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype="float64"), _EDGE, 1 - _EDGE)
    return np.log(p) - np.log1p(-p)


def shifted(p: np.ndarray, shift: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(log_odds(p) + shift)))


@dataclass(frozen=True)
class ThresholdFit:
    """The fitted shift, the threshold it means on the original probabilities, and the rows it used."""

    shift: float
    rows: int
    positive_rate: float
    mean_probability: float

    @property
    def threshold(self) -> float:
        """The original model's probability at which the shifted model predicts the positive class."""
        return 1.0 / (1.0 + math.exp(self.shift))

    def describe(self) -> str:
        return (f"decision threshold {self.threshold:.3f} on the champion's probabilities (log-odds shift "
                f"{self.shift:+.3f}) fitted on {self.rows} labelled rows: positive rate {self.positive_rate:.3f} "
                f"against a mean probability of {self.mean_probability:.3f}")


def fit_log_odds_shift(probabilities: np.ndarray, y: np.ndarray) -> float:
    """The log-odds shift that maximises the likelihood of ``y`` (0/1) under the shifted probabilities.

    At the optimum the mean shifted probability equals the observed positive rate.
    """
    z = log_odds(probabilities)
    y = np.asarray(y, dtype="float64")

    def negative_log_likelihood(shift: float) -> float:
        t = z + shift
        return float(np.sum(np.logaddexp(0.0, t) - y * t))

    found = optimize.minimize_scalar(negative_log_likelihood, bounds=(-MAX_SHIFT, MAX_SHIFT), method="bounded",
                                     options={"xatol": 1e-6})
    return float(found.x)


def fit_threshold(spec: ModelSpec, estimator: Any, frame: pd.DataFrame) -> tuple[ShiftedLogOdds, ThresholdFit]:
    """``estimator`` with its log-odds shifted to fit ``frame`` (prepared features and the target).

    Raises ``DataError`` when the rows cannot fit a threshold (not a binary classifier, one class).
    """
    if spec.task is not Task.BINARY_CLASSIFICATION or not hasattr(estimator, "predict_proba"):
        raise DataError(f"a decision threshold is re-fitted for binary classifiers with predict_proba; "
                        f"{spec.name} is {spec.task.value}")
    inner = estimator.estimator if isinstance(estimator, ShiftedLogOdds) else estimator
    base_shift = estimator.shift if isinstance(estimator, ShiftedLogOdds) else 0.0
    classes = list(inner.classes_)
    y = frame[spec.target].to_numpy()
    if len(np.unique(y)) < 2:
        raise DataError(f"the {len(frame)} recent labelled rows hold one class only; a threshold needs both")
    positive = (y == classes[-1]).astype(float)
    probabilities = shifted(np.asarray(inner.predict_proba(frame[spec.feature_names]))[:, -1], base_shift)
    shift = fit_log_odds_shift(probabilities, positive)
    fit = ThresholdFit(base_shift + shift, len(frame), float(positive.mean()), float(probabilities.mean()))
    return ShiftedLogOdds(inner, fit.shift), fit


THRESHOLD_HOLDOUT_SHARE = 0.5  # of the recent rows a threshold refit holds out for its gate (one parameter to fit)


@dataclass(frozen=True)
class ThresholdRefit:
    """The re-fitted model, its fit, and the rows it was fitted and is to be gated on."""

    model: ShiftedLogOdds
    fit: ThresholdFit
    fit_rows: pd.DataFrame
    holdout: pd.DataFrame


def refit_threshold(spec: ModelSpec, estimator: Any, rows_for_days: Callable[[int], pd.DataFrame]
                    ) -> ThresholdRefit:
    """``estimator`` with its threshold re-fitted on the shortest candidate window whose labelled rows pass the
    data checks: the older part fits the shift, the newer ``THRESHOLD_HOLDOUT_SHARE`` is the gate's hold-out.

    ``rows_for_days(days)``: the labelled rows of the last ``days`` (raw columns with the timestamp). The
    backtest and the retrain flow both come here. Raises ``DataError`` when no window has usable rows.
    """
    from steward.training.data import validate_training_data
    from steward.training.train import labelled_frame

    time_column = spec.timestamp_column
    if time_column is None:
        raise DataError(f"{spec.name} has no timestamp column: a threshold is re-fitted on its most recent rows")
    recent = None
    for days in sorted(spec.data.window_candidates or (spec.data.window_days or 1,)):
        rows = rows_for_days(days)
        if len(rows) and validate_training_data(rows, spec).passed:
            recent = rows
            break
    if recent is None:
        raise DataError("no recent window with usable labelled rows to re-fit the threshold on")
    ordered = labelled_frame(recent, spec)
    ordered[time_column] = recent[time_column].to_numpy()
    ordered = ordered.sort_values(time_column, kind="stable")
    cut = int(round(len(ordered) * (1 - THRESHOLD_HOLDOUT_SHARE)))
    fit_rows, holdout = ordered.iloc[:cut], ordered.iloc[cut:]
    model, fit = fit_threshold(spec, estimator, fit_rows)
    return ThresholdRefit(model, fit, fit_rows, holdout)
