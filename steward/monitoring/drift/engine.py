"""``detect_drift``: the entry point of a drift check, choosing the engine.

- ``evidently``: Evidently 0.7's ``DataDriftPreset`` on the full reference and current frames.
  Exact, but its cost grows with rows and columns (minutes for a 1M-row window).
- ``profile``: a ``ReferenceProfile`` built once per model version and the same statistic
  Evidently would pick for each column, computed with numpy on the full current window.  The
  Evidently HTML report is still produced, on a bounded seeded sample of the current window.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Literal

import pandas as pd

from steward.monitoring.drift.evidently_adapter import evidently_report, parse_snapshot, run_evidently_engine
from steward.monitoring.drift.policy import DriftPolicy
from steward.monitoring.drift.profile import (
    REPORT_SAMPLE_ROWS,
    ReferenceProfile,
    check_frame,
    column_lists,
    prediction_kind_of,
    sample_frame,
)
from steward.monitoring.drift.result import ColumnKind, DriftReportFormatError, DriftResult
from steward.monitoring.drift.statistics import profile_column

_log = logging.getLogger(__name__)

Engine = Literal["auto", "evidently", "profile"]



def detect_drift(
    reference: pd.DataFrame | ReferenceProfile,
    current: pd.DataFrame,
    *,
    numeric: Sequence[str],
    categorical: Sequence[str],
    prediction_column: str | None = None,
    prediction_kind: ColumnKind | None = None,
    importances: Mapping[str, float] | None = None,
    policy: DriftPolicy | None = None,
    engine: Engine = "auto",
    full_max_rows: int = 100_000,
    sample_rows: int = REPORT_SAMPLE_ROWS,
    report: bool = True,
    drift_share: float = 0.5,
    seed: int = 0,
) -> DriftResult:
    """Compare ``current`` with the reference and return a typed ``DriftResult``.

    ``engine="auto"`` runs Evidently on the full data when reference + current hold at most
    ``full_max_rows`` rows (and the reference is a frame), else the profile engine: Evidently's
    default per-column statistic on the full current window against the ``ReferenceProfile``,
    plus (``report=True``) an Evidently report on a seeded sample of ``sample_rows`` current rows
    against the profile's reference sample.  ``policy.stattest_threshold`` overrides every
    column's threshold, as Evidently's ``threshold=`` does; ``drift_share`` is Evidently's
    dataset-level rule (dataset drift when at least that share of columns drifted).
    """
    if engine not in ("auto", "evidently", "profile"):
        raise ValueError(f"engine must be 'auto', 'evidently' or 'profile', got {engine!r}")
    if not 0 < drift_share <= 1:
        raise ValueError(f"drift_share must be in (0, 1], got {drift_share}")
    if sample_rows < 1:
        raise ValueError(f"sample_rows must be >= 1, got {sample_rows}")
    numeric, categorical = column_lists(numeric, categorical, prediction_column)
    extra = [prediction_column] if prediction_column is not None else []
    check_frame(current, "current", numeric, categorical, extra)
    threshold = policy.stattest_threshold if policy is not None else None
    weights = dict(importances or {})

    if isinstance(reference, ReferenceProfile):
        profile: ReferenceProfile | None = reference
        absent = [c for c in [*numeric, *categorical, *extra] if c not in reference.columns]
        if absent:
            raise ValueError(
                f"the reference profile has no statistics for {absent}; rebuild it with "
                "ReferenceProfile.build(...) including those columns"
            )
        for c in numeric:
            if reference.kind(c) != "numeric":
                raise ValueError(
                    f"column {c!r} is categorical in the reference profile but passed as numeric"
                )
        for c in categorical:
            if reference.kind(c) != "categorical":
                raise ValueError(
                    f"column {c!r} is numeric in the reference profile but passed as categorical"
                )
        if prediction_column is not None:
            if reference.prediction_column != prediction_column:
                raise ValueError(
                    f"the reference profile was built for prediction column {reference.prediction_column!r}, "
                    f"not {prediction_column!r}; rebuild it with prediction_column={prediction_column!r}"
                )
            pkind = reference.prediction_kind
            if prediction_kind is not None and prediction_kind != pkind:
                raise ValueError(
                    f"the reference profile treats {prediction_column!r} as {pkind}, not {prediction_kind}; "
                    "rebuild it with the prediction_kind you want"
                )
        else:
            pkind = None
        ref_rows = reference.rows
    else:
        check_frame(reference, "reference", numeric, categorical, extra)
        profile = None
        pkind = prediction_kind_of(reference, prediction_column, prediction_kind)
        ref_rows = len(reference)

    if prediction_column is not None and pkind == "numeric":
        check_frame(current, "current", [prediction_column], [], [])

    if engine == "auto":
        small = profile is None and ref_rows + len(current) <= full_max_rows
        engine = "evidently" if small else "profile"

    if engine == "evidently":
        ref_frame = reference.sample if isinstance(reference, ReferenceProfile) else reference
        result = run_evidently_engine(
            ref_frame,
            current,
            numeric,
            categorical,
            prediction_column,
            pkind,
            threshold,
            drift_share,
            weights,
        )
        if isinstance(reference, ReferenceProfile):
            result = dataclasses.replace(result, sample_seed=reference.sample_seed)
        return result

    start = time.perf_counter()
    if profile is None:
        assert isinstance(reference, pd.DataFrame)
        profile = ReferenceProfile.build(
            reference,
            numeric=numeric,
            categorical=categorical,
            prediction_column=prediction_column,
            prediction_kind=pkind,
            sample_rows=sample_rows,
            seed=seed,
        )
    columns = tuple(
        profile_column(c, "numeric", current, profile, threshold, weights.get(c)) for c in numeric
    ) + tuple(
        profile_column(c, "categorical", current, profile, threshold, weights.get(c)) for c in categorical
    )
    prediction = (
        profile_column(prediction_column, pkind, current, profile, threshold, None)
        if prediction_column is not None and pkind is not None
        else None
    )
    n_drifted = sum(c.drifted for c in columns)
    share = n_drifted / len(columns)
    seconds = time.perf_counter() - start

    result = DriftResult(
        columns=columns,
        prediction=prediction,
        drift_share=share,
        dataset_drift=share >= drift_share,
        reference_rows=profile.rows,
        current_rows=len(current),
        engine="profile",
        dataset_drift_share=drift_share,
        seconds=seconds,
    )
    if report:
        result = attach_report(result, profile, current, sample_rows=sample_rows, seed=seed)
    return result


def attach_report(
    result: DriftResult,
    profile: ReferenceProfile,
    current: pd.DataFrame,
    *,
    sample_rows: int = REPORT_SAMPLE_ROWS,
    seed: int = 0,
) -> DriftResult:
    """Add the Evidently report, on a seeded sample of ``current``, to a profile-engine result.

    ``detect_drift(..., report=True)`` calls this; call it yourself after ``report=False`` to give
    the verdict first and render the report later (e.g. in a separate task).  Each column's test
    is pinned to the one the verdict used.  If Evidently fails, the verdict stands and
    ``report_error`` says why.
    """
    if result.engine != "profile":
        raise ValueError(
            "attach_report is for profile-engine results; the evidently engine already has its report"
        )
    numeric = [c.column for c in result.columns if c.kind == "numeric"]
    categorical = [c.column for c in result.columns if c.kind == "categorical"]
    pred = result.prediction
    extra = [pred.column] if pred is not None else []
    t0 = time.perf_counter()
    cur_sample = sample_frame(current, [*numeric, *categorical, *extra], sample_rows, seed)
    note = (
        f"Evidently ran on seeded samples ({len(cur_sample)} of {len(current)} current rows, seed {seed}; "
        f"{len(profile.sample)} of {profile.rows} reference rows, seed {profile.sample_seed}); the drift "
        "verdict was computed by Steward's profile engine on all rows"
    )
    snapshot = None
    report_drifted = None
    report_error = None
    try:
        snapshot = evidently_report(
            profile.sample,
            cur_sample,
            numeric,
            categorical,
            pred.column if pred is not None else None,
            pred.kind if pred is not None else None,
            None,
            result.dataset_drift_share,
            metadata={"steward_engine": "profile", "steward_note": note},
            methods={c.column: c.method for c in (*result.columns, *([pred] if pred else []))},
            thresholds={c.column: c.threshold for c in (*result.columns, *([pred] if pred else []))},
        )
        parsed = parse_snapshot(
            snapshot, numeric + categorical, pred.column if pred else None, result.dataset_drift_share
        )
    except DriftReportFormatError:
        raise
    except Exception as exc:  # the verdict stands without its illustration; say why
        snapshot = None
        report_error = f"{type(exc).__name__}: {exc}"
        _log.warning("drift verdict computed, but the sampled Evidently report failed: %s", report_error)
    else:
        report_drifted = tuple(c for c in numeric + categorical if parsed.columns[c][3])
    return dataclasses.replace(
        result,
        report_reference_rows=len(profile.sample),
        report_current_rows=len(cur_sample),
        sample_seed=seed,
        report_drifted_columns=report_drifted,
        report_seconds=time.perf_counter() - t0,
        report_error=report_error,
        snapshot=snapshot,
    )
