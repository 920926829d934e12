"""Tasks that load and check training data."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from prefect import task

from steward.spec import ModelSpec, load_spec
from steward.training.data import DataError, Split, read_frame, split_train_holdout, validate_training_data


@task(name="load-spec")
def load_model_spec(spec_path: str) -> ModelSpec:
    return load_spec(spec_path)


@task(name="load-training-data", retries=3, retry_delay_seconds=[2, 5, 15])
def load_training_data(spec: ModelSpec, as_of: datetime | None = None) -> tuple[pd.DataFrame, str]:
    """The frame and a description of where it came from, for lineage.

    ``as_of`` ends the production window (default: now); a file source ignores it.
    """
    if spec.data.kind == "file":
        return read_frame(spec.data.path, spec.data.format), spec.data.path
    from steward.training.data import production_training_frame

    return production_training_frame(spec, now=as_of)


@task(name="validate-training-data")
def check_training_data(frame: pd.DataFrame, spec: ModelSpec) -> None:
    """Stop the run with a message naming each failed check and its margin."""
    report = validate_training_data(frame, spec)
    if not report.passed:
        raise DataError(report.summary())


@task(name="split-train-holdout")
def split_data(frame: pd.DataFrame, spec: ModelSpec) -> Split:
    return split_train_holdout(frame, spec)
