"""One model version loaded to score: its input preparation, its compiled pipeline, its output.

A ``LoadedArm`` is a digest-verified version with its schema and, when it gives the same bits,
its pipeline compiled to numpy (``fastpath``); ``ModelInput`` is a batch's validated rows
prepared once and shared by every version taking the same features; ``Scored`` is a model
call's output, ready for the response and the log.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from steward.serving.fastpath import (
    CompiledPipeline,
    Unsupported,
    compile_pipeline,
    default_output,
    stack_columns,
    verify,
)
from steward.serving.schema import InputSchema
from steward.spec import FeatureType, ModelSpec, Task
from steward.store.records import label_text
from steward.training.data import feature_dtypes, prepare_arrays, prepare_features


@dataclass(frozen=True)
class Scored:
    """Model output for a batch of rows, ready for the response and the log."""

    predictions: list[Any]  # JSON-native: class labels or regression values
    labels: list[str]  # the same as text, for the log
    scores: list[float] | None  # P(positive class), or the regression value
    probabilities: list[list[float]] | None  # per class, multiclass only

    def slice(self, start: int, stop: int) -> Scored:
        return Scored(
            self.predictions[start:stop],
            self.labels[start:stop],
            self.scores[start:stop] if self.scores is not None else None,
            self.probabilities[start:stop] if self.probabilities is not None else None,
        )


class ModelInput:
    """Validated rows as a model's input, prepared once and shared by every version with the same features.

    Two forms, each built on first use: ``arrays`` (``prepare_arrays``: one numpy array per
    feature, and ``block(names, dtype)``, the 2-D blocks of them a compiled pipeline's
    transformers take) for versions whose pipeline is compiled, and ``frame``
    (``prepare_features``) for the others. ``rows(start, stop)`` is a slice that shares them.
    """

    __slots__ = ("_arrays", "_blocks", "_frame", "_source", "columns", "size", "spec", "start", "stop")

    def __init__(self, columns: dict[str, list[Any]], spec: ModelSpec, size: int | None = None) -> None:
        self.columns = columns
        self.spec = spec
        self.size = size if size is not None else (len(next(iter(columns.values()))) if columns else 0)
        self.start, self.stop = 0, self.size
        self._source: ModelInput | None = None
        self._arrays: dict[str, np.ndarray] | None = None
        self._blocks: dict[Any, np.ndarray] = {}
        self._frame: pd.DataFrame | None = None

    def __len__(self) -> int:
        return self.stop - self.start

    def rows(self, start: int, stop: int) -> ModelInput:
        if start == self.start and stop == self.stop:
            return self
        part = ModelInput.__new__(ModelInput)
        part.columns, part.spec, part.size = self.columns, self.spec, self.size
        part.start, part.stop = self.start + start, self.start + stop
        part._source = self._source or self
        part._arrays = part._frame = None
        part._blocks = {}
        return part

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            source = self._source
            if source is None:
                self._arrays = prepare_arrays(self.columns, self.spec)
            else:
                self._arrays = {name: a[self.start:self.stop] for name, a in source.arrays.items()}
        return self._arrays

    def block(self, names: tuple[str, ...], dtype: np.dtype) -> np.ndarray:
        source = self._source
        if source is not None:  # the whole batch's block, built once for every version scoring it
            return source.block(names, dtype)[self.start:self.stop]
        found = self._blocks.get((names, dtype))
        if found is None:
            found = self._blocks[(names, dtype)] = stack_columns(self.arrays, names, dtype)
        return found

    @property
    def frame(self) -> pd.DataFrame:
        if self._frame is None:
            source = self._source
            if source is None:
                self._frame = prepare_features(pd.DataFrame(self.columns), self.spec)
            else:
                self._frame = source.frame.iloc[self.start:self.stop]
        return self._frame


@dataclass(frozen=True, eq=False)
class LoadedArm:
    """One digest-verified model version, ready to score."""

    model: str
    version: str
    digest: str
    estimator: Any
    spec: ModelSpec
    schema: InputSchema
    loaded_at: datetime
    load_seconds: float
    classes: tuple[Any, ...] | None
    compiled: CompiledPipeline | None = None  # the same pipeline on numpy arrays (``fastpath``), when it applies
    plain_reason: str | None = None  # why it is scored through the pipeline itself, when it is
    call_seconds: float | None = None  # one model call on a batch of CALL_PROBE_ROWS rows, measured at load

    @functools.cached_property
    def feature_key(self) -> str:
        """The spec's features as one string: versions with equal keys share a ``ModelInput``."""
        return json.dumps([f.model_dump(mode="json") for f in self.spec.features])

    def prepare(self, columns: dict[str, list[Any]]) -> ModelInput:
        """Validated columns as the model's input; prepared like in training (``prepare_features``)."""
        return ModelInput(columns, self.spec)

    def predict(self, prepared: ModelInput) -> Scored:
        compiled = self.compiled if self.compiled is not None and default_output() else None
        if self.classes is None and self.spec.task.is_classification:  # labels only: no score is made up
            picked = [v.item() if hasattr(v, "item") else v for v in np.asarray(self.estimator.predict(prepared.frame))]
            return Scored(picked, [label_text(c) for c in picked], None, None)
        if self.classes is None:
            raw = compiled.predict(prepared) if compiled else self.estimator.predict(prepared.frame)
            values = np.asarray(raw, dtype="float64").tolist()
            return Scored(values, [label_text(v) for v in values], values, None)
        # The class with the highest probability is the prediction, so prediction and score
        # always agree and the model runs once per batch.
        raw = compiled.predict_proba(prepared) if compiled else self.estimator.predict_proba(prepared.frame)
        probabilities = np.asarray(raw, dtype="float64")
        classes = self.classes
        picked = [classes[i] for i in probabilities.argmax(axis=1).tolist()]
        if len(classes) == 2:
            return Scored(picked, [label_text(c) for c in picked], probabilities[:, 1].tolist(), None)
        return Scored(picked, [label_text(c) for c in picked], probabilities.max(axis=1).tolist(), probabilities.tolist())

    def score(self, columns: dict[str, list[Any]]) -> Scored:
        return self.predict(self.prepare(columns))

    def describe(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "digest": self.digest,
            "loaded_at": self.loaded_at.isoformat(),
            "load_seconds": round(self.load_seconds, 3),
            "schema_fingerprint": self.spec.schema_fingerprint(),
            "scoring": "compiled" if self.compiled else f"pipeline ({self.plain_reason})",
            "call_ms": round(self.call_seconds * 1000, 3) if self.call_seconds is not None else None,
        }



def probe_row(spec: ModelSpec) -> dict[str, list[Any]]:
    """One row the schema admits (mid-range numbers, first categories), to check a version answers."""
    row: dict[str, list[Any]] = {}
    for feature in spec.features:
        if feature.is_numeric:
            low, high = feature.min, feature.max
            value = (low + high) / 2 if low is not None and high is not None else low if low is not None else high
            row[feature.name] = [float(round(value)) if value is not None else 0.0]
        elif feature.type is FeatureType.BOOLEAN:
            row[feature.name] = ["false"]
        else:
            row[feature.name] = [feature.categories[0] if feature.categories else "unknown"]
    return row


def check_rows(spec: ModelSpec) -> dict[str, list[Any]]:
    """Rows that cover what requests can carry: each feature's bounds, missing values, every
    category and an unseen one; for comparing a compiled pipeline with the pipeline itself."""
    values: dict[str, list[Any]] = {}
    for feature in spec.features:
        if feature.is_numeric:
            low, high = feature.min, feature.max
            middle = probe_row(spec)[feature.name][0]
            options = [middle, 0.0, 1.0, -1.5, 123456.789, 1e-9]
            options = [v for v in options if (low is None or v >= low) and (high is None or v <= high)]
            options += [float(v) for v in (low, high) if v is not None]
            if feature.type is FeatureType.INTEGER:
                options = [float(round(v)) for v in options]
        elif feature.type is FeatureType.BOOLEAN:
            options = ["true", "false"]
        else:
            options = [*(feature.categories or []), "unknown", "__steward_unseen__"]
        if feature.nullable:
            options.append(None)
        values[feature.name] = options or [None]
    n = max(len(options) for options in values.values())
    return {name: [options[i % len(options)] for i in range(n)] for name, options in values.items()}


CALL_PROBE_ROWS = 16  # a batch's size at 16 connections
CALL_PROBE_REPEATS = 7


def measure_call_seconds(arm: LoadedArm) -> float:
    """How long one model call takes on a batch of ``CALL_PROBE_ROWS`` probe rows (the fastest of a few).

    The gateway decides from it where a challenger's shadow copies are scored (see
    ``steward.serving.shadow``): the fastest of several calls, so that a busy moment at load
    time does not make a quick version look slow.
    """
    columns = {name: values * CALL_PROBE_ROWS for name, values in probe_row(arm.spec).items()}
    best = float("inf")
    for _ in range(CALL_PROBE_REPEATS):
        started = time.perf_counter()
        arm.score(columns)
        best = min(best, time.perf_counter() - started)
    return best


def compile_arm(estimator: Any, spec: ModelSpec) -> tuple[CompiledPipeline | None, str | None]:
    """The compiled pipeline of a version, if it gives the same bits as the pipeline on ``check_rows``."""
    try:
        compiled = compile_pipeline(estimator, feature_dtypes(spec))
    except Unsupported as reason:
        return None, str(reason)
    rows = check_rows(spec)
    problem = None
    for columns in (rows, {name: values[:1] for name, values in rows.items()}):
        problem = verify(compiled, estimator, prepare_features(pd.DataFrame(columns), spec),
                         prepare_arrays(columns, spec))
        if problem:
            return None, f"compiled path disagrees with the pipeline: {problem}"
    return compiled, None


def loaded_arm(
    model: str, version: str, digest: str, estimator: Any, spec: ModelSpec, schema: InputSchema,
    *, started: float | None = None,
) -> LoadedArm:
    """A version ready to score: its classes read and its pipeline compiled when that gives the same bits."""
    classes = _classes(estimator, spec.task)
    compiled, plain_reason = compile_arm(estimator, spec)
    seconds = time.perf_counter() - started if started is not None else 0.0
    return LoadedArm(model, version, digest, estimator, spec, schema, datetime.now(UTC), seconds, classes,
                     compiled, plain_reason)


def _classes(estimator: Any, task: Task) -> tuple[Any, ...] | None:
    """The classes in the order of the model's probabilities; None for regression and for a classifier
    that gives labels only (``steward.registry.flavors``: it is served without scores)."""
    if not task.is_classification or not hasattr(estimator, "predict_proba"):
        return None
    classes = getattr(estimator, "classes_", None)
    if classes is None:
        raise TypeError("a classifier with predict_proba must have classes_ to say which class each score is for")
    return tuple(c.item() if hasattr(c, "item") else c for c in classes)
