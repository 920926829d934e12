"""Fit a spec's estimator on validated data and describe the result for the registry."""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pandas as pd

from steward.estimators import build_estimator
from steward.registry.lineage import Lineage, code_version, package_versions
from steward.spec import ModelSpec
from steward.training.data import Split, frame_sha256, prepare_features
from steward.training.evaluation import evaluate


class RetrainSkip(StrEnum):
    """Why a retrain ended without a candidate, when it was not a failure."""

    BUDGET = "budget"  # the cooldown or the weekly budget (see RetrainCode)
    TOO_FEW_ROWS = "too_few_rows"  # the data is not there yet: wait for more labels


@dataclass(frozen=True)
class TrainedModel:
    estimator: Any
    metrics: dict[str, float]
    lineage: Lineage
    train_frame: pd.DataFrame
    holdout_frame: pd.DataFrame


def labelled_frame(frame: pd.DataFrame, spec: ModelSpec) -> pd.DataFrame:
    """Prepared features plus the target and, where the spec has them, time and entity columns."""
    prepared = prepare_features(frame, spec)
    for column in (spec.target, spec.timestamp_column, spec.entity_column):
        if column and column in frame.columns:
            prepared[column] = frame[column].to_numpy()
    return prepared


def train_model(spec: ModelSpec, split: Split, *, data_sha256: str, data_source: str) -> TrainedModel:
    """Fit on the training part, evaluate on the held-out part, and collect the lineage."""
    train = labelled_frame(split.train, spec)
    holdout = labelled_frame(split.holdout, spec)
    estimator = build_estimator(spec)
    started = time.perf_counter()
    estimator.fit(train[spec.feature_names], train[spec.target])
    seconds = time.perf_counter() - started
    metrics = evaluate(estimator, holdout, spec)
    window = split.train_window
    lineage = Lineage(
        data_sha256=data_sha256,
        data_rows=len(split.train) + len(split.holdout),
        data_source=data_source,
        data_window_start=window[0].isoformat() if window else None,
        data_window_end=(split.holdout_window or window)[1].isoformat() if window else None,
        params={
            "estimator.factory": spec.estimator.factory,
            **{f"estimator.{k}": v for k, v in spec.estimator.params.items()},
            "split.method": split.method,
            "split.holdout_fraction": spec.training.holdout_fraction,
            "train_rows": len(train),
            "holdout_rows": len(holdout),
        },
        code_version=code_version(),
        packages=package_versions(),
        training_seconds=seconds,
        schema_fingerprint=spec.schema_fingerprint(),
        spec_yaml=spec.to_yaml(),
    )
    return TrainedModel(estimator, metrics, lineage, train, holdout)


def reference_sample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """A bounded, seeded sample of the training data, kept with the version as the drift reference."""
    return frame if len(frame) <= rows else frame.sample(n=rows, random_state=seed).sort_index()


__all__ = ["RetrainSkip", "TrainedModel", "frame_sha256", "labelled_frame", "reference_sample", "train_model"]
