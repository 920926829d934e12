"""Metrics of a fitted model on labelled data, overall and per slice."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from steward.spec import ModelSpec, Task
from steward.training.labels import binary_outputs, binary_target

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


def labelled_outputs(
    model: Any, features: pd.DataFrame, y_true: Any, spec: ModelSpec
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray | None]]:
    """Labels and outputs as the metrics take them: for a binary model, 0/1 with 1 the spec's positive class,
    and probabilities as [P(other), P(positive)], whatever type the labels are."""
    return metric_outputs(model, predict_scores(model, features, spec.task), y_true, spec)


def metric_outputs(
    model: Any, scored: tuple[np.ndarray, np.ndarray | None], y_true: Any, spec: ModelSpec
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray | None]]:
    """``labelled_outputs`` of outputs already had from ``predict_scores``."""
    predictions, probabilities = scored
    y_true = np.asarray(y_true)
    if spec.task is not Task.BINARY_CLASSIFICATION:
        return y_true, (predictions, probabilities)
    target = binary_target(spec, pd.unique(y_true))
    classes = getattr(model, "classes_", ())
    return target.indicator(y_true), binary_outputs(target, classes, predictions, probabilities)


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
    y_true, outputs = labelled_outputs(model, frame[spec.feature_names], frame[spec.target].to_numpy(), spec)
    return compute_metrics(spec.task, y_true, *outputs)


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
    y_true, (predictions, probabilities) = labelled_outputs(
        model, frame[spec.feature_names], frame[spec.target].to_numpy(), spec
    )
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
