"""The target's classes and which one is positive: the one place that says how labels of any type compare.

A team's target may be ``good``/``bad``, ``1``/``2`` or booleans. Models are trained on the labels as
they are (so they answer in the team's vocabulary); metrics that need a positive class read it from
here, as 0/1 arrays, and every comparison of labels goes through :func:`label_key`, so a ``1`` read
from CSV, a ``1.0`` from Parquet, ``true`` from YAML and ``"1"`` from the prediction log are one class.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from steward.spec import ModelSpec, Task


class LabelError(ValueError):
    """Labels that do not fit the spec's classes or positive class; the message says what to set."""


def label_key(value: Any) -> str:
    """The canonical text of one label, the same as the prediction log stores (booleans as 0/1)."""
    if isinstance(value, bool | np.bool_):
        return str(int(value))
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "false"):
            return "1" if lowered == "true" else "0"
        try:
            number = float(value)
        except ValueError:
            return value
        return str(int(number)) if number.is_integer() else value
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, np.integer):
        return str(int(value))
    return str(value)


def label_keys(values: Iterable[Any]) -> np.ndarray:
    """``label_key`` of each value, computed once per distinct value (labels repeat: a window has millions)."""
    if not isinstance(values, np.ndarray | pd.Series | pd.Index):
        values = np.fromiter(values, dtype=object) if not isinstance(values, list | tuple) else values
    values = np.asarray(values, dtype=object)
    codes, distinct = pd.factorize(values)  # missing values (None, NaN: keys of their own) get -1
    keys = np.empty(len(distinct), dtype=object)
    keys[:] = [label_key(value) for value in distinct]
    result = keys[codes] if len(keys) else np.empty(len(values), dtype=object)
    for position in np.flatnonzero(codes < 0):
        result[position] = label_key(values[position])
    return result


def same_labels(left: Iterable[Any], right: Iterable[Any]) -> np.ndarray:
    """Element-wise: do two label sequences name the same class, whatever type each side was read as."""
    return label_keys(left) == label_keys(right)


@dataclass(frozen=True)
class BinaryTarget:
    """The positive class of a binary model, as its canonical key and as the spec gave it."""

    positive: Any
    key: str

    def indicator(self, labels: Iterable[Any]) -> np.ndarray:
        """1 where a label is the positive class, else 0."""
        return (label_keys(labels) == self.key).astype(int)

    def column(self, classes: Sequence[Any]) -> int:
        """Index of the positive class among a model's ``classes_`` (its probability column)."""
        keys = list(label_keys(classes))
        if self.key not in keys:
            raise LabelError(
                f"the model's classes are {list(classes)} and the positive label {self.positive!r} is not one of "
                "them: set positive_label in the spec to one of the model's classes"
            )
        return keys.index(self.key)


def binary_target(spec: ModelSpec, observed: Iterable[Any] = ()) -> BinaryTarget:
    """The positive class: the spec's ``positive_label``, else 1 when the classes are 0/1 (or booleans).

    ``observed`` are label values seen in data, used only to name them in the error.
    """
    if spec.positive_label is not None:
        return BinaryTarget(spec.positive_label, label_key(spec.positive_label))
    seen = sorted({label_key(v) for v in observed} | {label_key(c) for c in (spec.classes or ())})
    if not seen or set(seen) <= {"0", "1"}:
        return BinaryTarget(1, "1")
    raise LabelError(
        f"target {spec.target!r} has classes {seen}: set positive_label in the spec to the class the model "
        "should detect (the one precision, recall and ROC AUC are about)"
    )


@dataclass(frozen=True)
class LabelCheck:
    """What the labels of a training frame say against the spec; ``problem`` is None when they fit."""

    classes: tuple[str, ...]
    problem: str | None


def check_labels(labels: pd.Series, spec: ModelSpec) -> LabelCheck:
    """Refuse, before training, labels outside ``spec.classes`` and a binary target without a clear positive."""
    present = labels.dropna()
    keys = sorted(set(label_keys(present.unique())))
    if not spec.task.is_classification:
        return LabelCheck(tuple(keys), None)
    if spec.classes is not None:
        allowed = {label_key(c) for c in spec.classes}
        unknown = [k for k in keys if k not in allowed]
        if unknown:
            return LabelCheck(tuple(keys), f"target {spec.target!r} has values {unknown} that are not in the spec's "
                                           f"classes {list(spec.classes)}: fix the data or add them to `classes`")
    if spec.task is Task.BINARY_CLASSIFICATION:
        if len(keys) > 2:
            return LabelCheck(tuple(keys), f"target {spec.target!r} has {len(keys)} classes {keys[:10]} but the task "
                                           "is binary_classification: use multiclass_classification or map the labels")
        try:
            target = binary_target(spec, present.unique())
        except LabelError as error:
            return LabelCheck(tuple(keys), str(error))
        if keys and target.key not in keys:
            return LabelCheck(tuple(keys), f"positive_label {target.positive!r} never occurs in target "
                                           f"{spec.target!r} (its values: {keys}): set positive_label to one of them")
    return LabelCheck(tuple(keys), None)


def binary_outputs(
    target: BinaryTarget, classes: Sequence[Any], predictions: np.ndarray, probabilities: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """A binary model's outputs as metrics take them: predictions 0/1, probabilities as [P(other), P(positive)]."""
    encoded = target.indicator(predictions)
    if probabilities is None:
        return encoded, None
    positive = np.asarray(probabilities, dtype=float)[:, target.column(classes)]
    return encoded, np.column_stack([1 - positive, positive])


__all__ = [
    "BinaryTarget", "LabelCheck", "LabelError", "binary_outputs", "binary_target", "check_labels", "label_key",
    "label_keys", "same_labels",
]
