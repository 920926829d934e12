"""Scoring in a backtest replay: the served models' metrics on a window's labelled rows, and the oracle
baseline (models that saw the window's own labels)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from steward.estimators import build_estimator
from steward.spec import ModelSpec
from steward.training.evaluation import compute_metrics, predict_scores


@dataclass(frozen=True)
class Scored:
    predictions: np.ndarray
    probabilities: np.ndarray | None


def score(spec: ModelSpec, estimator: Any, features: pd.DataFrame) -> Scored:
    if features.empty:
        return Scored(np.empty(0), None)
    predictions, probabilities = predict_scores(estimator, features, spec.task)
    return Scored(predictions, probabilities)


def labelled_metrics(spec: ModelSpec, y: np.ndarray, scored: Scored, labelled: np.ndarray) -> dict[str, float]:
    """The metrics of ``scored`` on its labelled rows (``y`` holds the labelled rows' labels)."""
    if not labelled.any():
        return {}
    probabilities = scored.probabilities[labelled] if scored.probabilities is not None else None
    y = _typed_like(y, scored.predictions)
    return compute_metrics(spec.task, y, scored.predictions[labelled], probabilities)


def cross_fitted_oracle(spec: ModelSpec, window: pd.DataFrame, before: pd.DataFrame,
                        rng: np.random.Generator) -> dict[str, float] | None:
    """Metrics of models that saw the window's own labels: 2-fold cross-fitted inside the window (its
    labelled rows), each fold scored by a model trained on the other fold plus ``before`` (the preceding
    training window, every label known)."""
    if len(window) < 4:
        return None
    fold = rng.permutation(len(window)) % 2
    predictions = np.empty(len(window), dtype=object)
    probabilities: np.ndarray | None = None
    for part in (0, 1):
        train = pd.concat([before, window[fold != part]])
        if spec.task.is_classification and train[spec.target].nunique() < 2:
            return None
        model = build_estimator(spec)
        model.fit(train[spec.feature_names], _target(train[spec.target], spec))
        scored = score(spec, model, window[fold == part][spec.feature_names])
        predictions[fold == part] = scored.predictions
        if scored.probabilities is not None:
            if probabilities is None:
                probabilities = np.zeros((len(window), scored.probabilities.shape[1]))
            if scored.probabilities.shape[1] != probabilities.shape[1]:
                return None  # a fold missed a class: no comparable probabilities
            probabilities[fold == part] = scored.probabilities
    predictions = np.asarray(predictions.tolist())
    y = _typed_like(window[spec.target].to_numpy(), predictions)
    return compute_metrics(spec.task, y, predictions, probabilities)


def _target(column: pd.Series, spec: ModelSpec) -> pd.Series:
    """Class labels as integers when they are whole numbers (a target column with NaN reads as float)."""
    if spec.task.is_classification and pd.api.types.is_float_dtype(column) and (column % 1 == 0).all():
        return column.astype("int64")
    return column


def _typed_like(y: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """Labels in the predictions' type, so 1.0 and 1 compare equal and 'a' stays 'a'."""
    predictions = np.asarray(predictions)
    if predictions.dtype.kind in "iub" and np.asarray(y).dtype.kind == "f":
        return np.asarray(y).astype(predictions.dtype)
    return np.asarray(y)
