"""Metrics of a fitted model on labelled data, overall and per slice."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from steward.spec import ModelSpec, Task

# Metrics where a smaller value is better; every other metric is better when larger.
LOWER_IS_BETTER = frozenset({"rmse", "mae", "log_loss", "brier"})


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


def metric_change(metric: str, candidate: float, baseline: float) -> float:
    """Signed improvement of the candidate: positive is better, whatever the metric's direction."""
    return candidate - baseline if higher_is_better(metric) else baseline - candidate


def predict_scores(model: Any, features: pd.DataFrame, task: Task) -> tuple[np.ndarray, np.ndarray | None]:
    """Predicted labels (or values) and, for classifiers that have them, class probabilities."""
    predictions = np.asarray(model.predict(features))
    probabilities = None
    if task.is_classification and hasattr(model, "predict_proba"):
        probabilities = np.asarray(model.predict_proba(features))
    return predictions, probabilities


def compute_metrics(
    task: Task, y_true: np.ndarray, predictions: np.ndarray, probabilities: np.ndarray | None
) -> dict[str, float]:
    y_true = np.asarray(y_true)
    if task is Task.REGRESSION:
        return {
            "rmse": float(np.sqrt(skm.mean_squared_error(y_true, predictions))),
            "mae": float(skm.mean_absolute_error(y_true, predictions)),
            "r2": float(skm.r2_score(y_true, predictions)) if len(y_true) > 1 else float("nan"),
        }
    result = {"accuracy": float(skm.accuracy_score(y_true, predictions))}
    if task is Task.BINARY_CLASSIFICATION:
        result.update(
            precision=float(skm.precision_score(y_true, predictions, zero_division=0)),
            recall=float(skm.recall_score(y_true, predictions, zero_division=0)),
            f1=float(skm.f1_score(y_true, predictions, zero_division=0)),
        )
        if probabilities is not None:
            positive = probabilities[:, -1]
            both_classes = len(np.unique(y_true)) == 2
            result["roc_auc"] = float(skm.roc_auc_score(y_true, positive)) if both_classes else float("nan")
            result["brier"] = float(skm.brier_score_loss(y_true, positive))
            result["log_loss"] = float(skm.log_loss(y_true, probabilities, labels=[0, 1]))
    else:
        result["f1_macro"] = float(skm.f1_score(y_true, predictions, average="macro", zero_division=0))
    return result


def evaluate(model: Any, frame: pd.DataFrame, spec: ModelSpec) -> dict[str, float]:
    """Metrics of ``model`` on a labelled frame already passed through ``prepare_features``."""
    predictions, probabilities = predict_scores(model, frame[spec.feature_names], spec.task)
    return compute_metrics(spec.task, frame[spec.target].to_numpy(), predictions, probabilities)


@dataclass(frozen=True)
class SliceMetric:
    feature: str
    value: str
    rows: int
    metric: str
    score: float


def evaluate_slices(
    model: Any, frame: pd.DataFrame, spec: ModelSpec, *, features: tuple[str, ...] | None = None
) -> list[SliceMetric]:
    """The primary metric per category of each slice feature; small slices are reported with their size."""
    metric = spec.primary_metric
    features = features if features is not None else spec.gates.slice_features
    predictions, probabilities = predict_scores(model, frame[spec.feature_names], spec.task)
    y_true = frame[spec.target].to_numpy()
    results = []
    for feature in features:
        values = frame[feature].fillna("__missing__").astype(str).to_numpy()
        for value in sorted(set(values)):
            mask = values == value
            scores = compute_metrics(
                spec.task, y_true[mask], predictions[mask], probabilities[mask] if probabilities is not None else None
            )
            results.append(SliceMetric(feature, value, int(mask.sum()), metric, scores.get(metric, float("nan"))))
    return results
