"""Tasks that load and check training data."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
from prefect import get_run_logger, task

from steward.spec import ModelSpec, load_spec
from steward.training.data import (
    DataError,
    DataValidationReport,
    Split,
    read_frame,
    split_train_holdout,
    validate_training_data,
)


@task(name="load-spec")
def load_model_spec(spec_path: str) -> ModelSpec:
    return load_spec(spec_path)


def _retry_unless_data_error(task, task_run, state) -> bool:
    """I/O may fail for a moment; data that is wrong or too small will not change by retrying."""
    try:
        state.result()
    except DataError:
        return False
    except Exception:
        return True
    return False


@task(name="load-training-data", retries=3, retry_delay_seconds=[2, 5, 15], retry_condition_fn=_retry_unless_data_error)
def load_training_data(spec: ModelSpec, as_of: datetime | None = None, champion: Any | None = None
                       ) -> tuple[pd.DataFrame, str]:
    """The frame and a description of where it came from, for lineage.

    ``as_of`` ends the production window (default: now); a file source ignores it. With
    ``data.candidate_window_days`` the window is chosen by evidence and the description records
    the comparison.
    """
    if spec.data.kind == "file":
        return read_frame(spec.data.path, spec.data.format), spec.data.path
    from steward.training.data import production_training_frame

    candidates = spec.data.window_candidates
    if len(candidates) < 2:
        return production_training_frame(spec, now=as_of)
    from steward.training.windows import choose_training_window

    end = as_of or datetime.now(UTC)
    frame, source = production_training_frame(spec, now=end, window_days=max(candidates))
    choice = choose_training_window(spec, frame, end, champion)  # with the champion: wait when below the floor
    get_run_logger().info("%s: %s", spec.name, choice.describe())
    return choice.frame.reset_index(drop=True), f"{source}; {choice.describe()}"


@task(name="validate-training-data")
def check_training_data(frame: pd.DataFrame, spec: ModelSpec) -> DataValidationReport:
    """Stop the run with a message naming each failed check and its margin; too few rows is returned, for the
    flow to skip the retrain. Findings (a random split) go to the run's log."""
    report = validate_training_data(frame, spec)
    for finding in report.findings:
        get_run_logger().warning("%s: %s", spec.name, finding)
    if not report.passed and not report.too_few_rows:
        raise DataError(report.summary())
    return report


@task(name="record-skipped-retrain", retries=2, retry_delay_seconds=[2, 5])
def record_skipped_retrain(spec: ModelSpec, reason: str) -> str:
    """A retrain skipped for want of rows goes to the ledger, so the wait is visible and counted."""
    from steward.findings import Finding, MaintenanceKind, Priority
    from tasks.common import current_flow_run_id, ledger

    finding = Finding(
        title="retrain skipped: too few labelled rows",
        detail=f"{reason}\nThe retrain runs again at its next trigger; until then the champion keeps serving.",
        kind=MaintenanceKind.ADAPTIVE, priority=Priority.MEDIUM, source="retrain",
        fingerprint=f"retrain-too-few-rows:{spec.name}",
    )
    return ledger().record_finding(spec.name, finding, flow_run_id=current_flow_run_id()).id


@task(name="split-train-holdout")
def split_data(frame: pd.DataFrame, spec: ModelSpec) -> Split:
    return split_train_holdout(frame, spec)
