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
from steward.training.entrypoints import Producer, ProducerKind, fit_with_entrypoint
from steward.training.evaluation import evaluate


class RetrainSkip(StrEnum):
    """Why a retrain ended without a candidate, when it was not a failure."""

    BUDGET = "budget"  # the cooldown or the weekly budget (see RetrainCode)
    TOO_FEW_ROWS = "too_few_rows"  # the data is not there yet: wait for more labels
    CANDIDATE_PENDING = "candidate_pending"  # a kept candidate awaits the labels to judge it (see RetrainNeedCode)
    NO_NEW_EVIDENCE = "no_new_evidence"  # a retrain for the same trigger found no gain, and nothing moved since
    EXPECTED_BELOW_FLOOR = "expected_below_floor"  # the newest rows say the gate would fail it: wait for more
    NOT_DUE = "not_due"  # a scheduled refresh found the champion younger than retrain.refresh_after_days


@dataclass(frozen=True)
class TrainedModel:
    estimator: Any
    metrics: dict[str, float]
    lineage: Lineage
    train_frame: pd.DataFrame
    holdout_frame: pd.DataFrame
    producer: Producer


def labelled_frame(frame: pd.DataFrame, spec: ModelSpec) -> pd.DataFrame:
    """Prepared features plus the target and, where the spec has them, time and entity columns."""
    prepared = prepare_features(frame, spec)
    for column in (spec.target, spec.timestamp_column, spec.entity_column):
        if column and column in frame.columns:
            prepared[column] = frame[column].to_numpy()
    return prepared


def train_model(spec: ModelSpec, split: Split, *, data_sha256: str, data_source: str) -> TrainedModel:
    """Fit on the training part (``estimator.factory``, or the team's ``training.entrypoint``), evaluate on the
    held-out part, and collect the lineage."""
    producer = Producer.of(spec)
    if producer.kind is ProducerKind.DEPLOYMENT:
        raise ValueError(f"{spec.name}: training.deployment {spec.training.deployment!r} registers its own versions; "
                         "the retrain flow runs it (tasks/team_training.py), train_model does not")
    train = labelled_frame(split.train, spec)
    holdout = labelled_frame(split.holdout, spec)
    started = time.perf_counter()
    if producer.kind is ProducerKind.ENTRYPOINT:
        estimator = fit_with_entrypoint(spec, train, holdout[spec.feature_names])
    else:
        estimator = build_estimator(spec)
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
            "producer": producer.tag,
            **({
                "estimator.factory": spec.estimator.factory,
                **{f"estimator.{k}": v for k, v in spec.estimator.params.items()},
            } if producer.kind is ProducerKind.ESTIMATOR else {
                f"training.{k}": v for k, v in spec.training.params.items()
            }),
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
    return TrainedModel(estimator, metrics, lineage, train, holdout, producer)


def reference_sample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """A bounded, seeded sample of the training data, kept with the version as the drift reference."""
    return frame if len(frame) <= rows else frame.sample(n=rows, random_state=seed).sort_index()


__all__ = ["RetrainSkip", "TrainedModel", "frame_sha256", "labelled_frame", "reference_sample", "train_model"]
