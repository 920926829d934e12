"""A team's labelled history: read it, check it has what the spec needs, and time its labels."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

from steward.spec import ModelSpec
from steward.training.data import DataError, read_frame


class BacktestError(ValueError):
    """The history or the configuration cannot be replayed; the message says what is wrong and what to do."""


def load_history(spec: ModelSpec, source: str, label_time_column: str | None = None) -> pd.DataFrame:
    """The history at ``source`` (CSV or Parquet, a path or any fsspec URL), checked and sorted by event time."""
    try:
        frame = read_frame(source)
    except DataError as error:
        raise BacktestError(f"cannot read the history: {error}") from None
    return check_history(spec, frame, label_time_column, source=source)


def check_history(
    spec: ModelSpec, frame: pd.DataFrame, label_time_column: str | None = None, *, source: str = "the history"
) -> pd.DataFrame:
    """The frame sorted by the spec's timestamp column (as UTC), or a BacktestError naming what is missing."""
    if not spec.timestamp_column:
        raise BacktestError(
            f"the spec of {spec.name!r} has no timestamp_column: a backtest replays the history in event time, "
            "so set timestamp_column to the column that says when each row happened"
        )
    wanted = {"timestamp": [spec.timestamp_column], "target": [spec.target], "features": spec.feature_names}
    if label_time_column:
        wanted["label time"] = [label_time_column]
    missing = {what: [c for c in names if c not in frame.columns] for what, names in wanted.items()}
    missing = {what: names for what, names in missing.items() if names}
    if missing:
        listed = "; ".join(f"{what} {names}" for what, names in missing.items())
        raise BacktestError(
            f"{source} lacks columns the spec of {spec.name!r} needs: {listed}. It has {list(frame.columns)[:20]}; "
            "rename the columns or point the spec at them"
        )
    if frame.empty:
        raise BacktestError(f"{source} has no rows")
    frame = frame.copy()
    frame[spec.timestamp_column] = _utc_times(frame[spec.timestamp_column], spec.timestamp_column, source)
    if label_time_column:
        label_times = _utc_times(frame[label_time_column], label_time_column, source, allow_missing=True)
        early = label_times < frame[spec.timestamp_column]
        if early.any():
            raise BacktestError(
                f"{source}: {int(early.sum())} rows have a label time ({label_time_column!r}) before their event time "
                f"({spec.timestamp_column!r}); a label cannot be known before the row happened"
            )
        frame[label_time_column] = label_times
    if frame[spec.target].isna().all():
        raise BacktestError(f"{source}: the target {spec.target!r} is empty in every row; a backtest needs labels")
    return frame.sort_values(spec.timestamp_column, kind="stable").reset_index(drop=True)


def label_times(
    frame: pd.DataFrame, spec: ModelSpec, label_time_column: str | None, label_delay: timedelta
) -> pd.Series:
    """When each row's label became known: the label-time column, else event time + ``label_delay``.

    Rows without a target never get a label (NaT).
    """
    assert spec.timestamp_column is not None
    if label_time_column:
        known = pd.to_datetime(frame[label_time_column], utc=True)
    else:
        known = frame[spec.timestamp_column] + pd.Timedelta(label_delay)
    return known.where(frame[spec.target].notna())


def _utc_times(column: pd.Series, name: str, source: str, *, allow_missing: bool = False) -> pd.Series:
    times = pd.to_datetime(column, utc=True, errors="coerce")
    bad = times.isna() & (column.notna() if allow_missing else True)
    if bad.any():
        examples = column[bad].astype(str).unique()[:3].tolist()
        raise BacktestError(
            f"{source}: {int(bad.sum())} rows of {name!r} are not times (e.g. {examples}); "
            "give ISO 8601 times or a datetime column"
        )
    return times
