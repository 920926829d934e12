"""The drift monitor: which window to check, what the policy counts, when to announce, what to publish.

Pure functions over the typed results of ``engine`` and ``policy``; ``tasks/drift.py`` gathers the
inputs (prediction log, registry, record store) and ``flows/drift_report.py`` wires them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

import numpy as np
import pandas as pd

from steward.findings import Finding, MaintenanceKind, Priority
from steward.monitoring.drift.history import DriftRecord
from steward.monitoring.drift.policy import DriftPolicy, MaterialDriftDecision, decide_material_drift
from steward.monitoring.drift.profile import ReferenceProfile
from steward.monitoring.drift.result import DriftResult
from steward.spec import ModelSpec


@dataclass(frozen=True)
class DriftWindow:
    """The current window of a drift check: a time range, or the last N rows before ``end``."""

    end: datetime
    start: datetime | None = None
    last_rows: int | None = None
    lookback_days: int | None = None

    def describe(self) -> str:
        if self.last_rows is not None:
            return f"last {self.last_rows} rows before {self.end:%Y-%m-%d %H:%M} UTC"
        assert self.start is not None
        return f"{self.start:%Y-%m-%d %H:%M} to {self.end:%Y-%m-%d %H:%M} UTC"


def choose_drift_window(
    *,
    as_of: datetime,
    window_hours: float | None,
    last_rows: int | None,
    default_days: int,
    lookback_days: int,
) -> DriftWindow:
    """The window to check: ``window_hours`` or ``last_rows`` (not both), else the spec's ``window_days``."""
    if as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=UTC)
    if window_hours is not None and last_rows is not None:
        raise ValueError("pass window_hours or last_rows, not both: one defines the current window")
    if window_hours is not None:
        if not window_hours > 0:
            raise ValueError(f"window_hours must be positive, got {window_hours}")
        return DriftWindow(end=as_of, start=as_of - timedelta(hours=window_hours))
    if last_rows is not None:
        if last_rows < 1:
            raise ValueError(f"last_rows must be at least 1, got {last_rows}")
        return DriftWindow(end=as_of, last_rows=last_rows, lookback_days=lookback_days)
    return DriftWindow(end=as_of, start=as_of - timedelta(days=default_days))


def prediction_drift_column(spec: ModelSpec) -> tuple[str, Literal["numeric", "categorical"]]:
    """Which logged output is watched for drift: the score for binary and regression, the class otherwise."""
    from steward.spec import Task

    if spec.task is Task.MULTICLASS_CLASSIFICATION:
        return "prediction", "categorical"
    return "score", "numeric"


# Fewer current rows than this and the check is skipped: the statistics would mostly measure noise.
MIN_DRIFT_ROWS = 100
PROFILE_ARTIFACT = "drift/reference_profile.parquet"
IMPORTANCE_ARTIFACT = "drift/feature_importance.json"
REPORTS_ARTIFACT_DIR = "drift/reports"


def reference_outputs(estimator: Any, features: pd.DataFrame, spec: ModelSpec) -> pd.Series:
    """The model's output on reference rows, as the gateway logs it (``score`` or ``prediction``).

    Binary: P(second class); regression: the value; multiclass: the predicted class as text.
    """
    from steward.spec import Task
    from steward.store.records import label_text

    column, _ = prediction_drift_column(spec)
    if spec.task is Task.REGRESSION:
        values = np.asarray(estimator.predict(features), dtype="float64")
    else:
        probabilities = np.asarray(estimator.predict_proba(features), dtype="float64")
        if spec.task is Task.BINARY_CLASSIFICATION:
            values = probabilities[:, 1]
        else:
            classes = list(estimator.classes_)
            values = np.asarray([label_text(classes[i]) for i in probabilities.argmax(axis=1)], dtype=object)
    return pd.Series(values, index=features.index, name=column)


def permutation_importances(
    estimator: Any, holdout: pd.DataFrame, spec: ModelSpec, *, max_rows: int = 5000, repeats: int = 3, seed: int = 0
) -> dict[str, float]:
    """Each feature's drop in the primary metric when shuffled, on held-out rows (negative clipped to 0).

    Model-agnostic (a HistGradientBoosting model has no ``feature_importances_``) and measured on
    data the model did not train on, so noise features come out near 0.
    """
    from sklearn.inspection import permutation_importance

    from steward.training.evaluation import evaluate, higher_is_better

    rows = holdout if len(holdout) <= max_rows else holdout.sample(n=max_rows, random_state=seed)
    metric, sign = spec.primary_metric, (1.0 if higher_is_better(spec.primary_metric) else -1.0)

    def scorer(model: Any, x: pd.DataFrame, y: Any) -> float:
        frame = x.copy()
        frame[spec.target] = np.asarray(y)
        return sign * evaluate(model, frame, spec)[metric]

    result = permutation_importance(
        estimator, rows[spec.feature_names], rows[spec.target], scoring=scorer, n_repeats=repeats,
        random_state=seed, n_jobs=1,
    )
    return {name: max(0.0, float(value)) for name, value in zip(spec.feature_names, result.importances_mean, strict=True)}


def build_drift_reference(
    estimator: Any, reference: pd.DataFrame, holdout: pd.DataFrame, spec: ModelSpec
) -> tuple[ReferenceProfile, dict[str, float]]:
    """A version's drift reference: the profile of its training sample (prepared features) with the
    version's own outputs on it, and its permutation importances on its labelled holdout.

    The drift flow caches the pair with the version; the backtest builds it once per champion.
    """
    column, kind = prediction_drift_column(spec)
    frame = reference[spec.feature_names].copy()
    frame[column] = reference_outputs(estimator, frame, spec)
    profile = ReferenceProfile.build(
        frame, numeric=list(spec.numeric_features), categorical=list(spec.categorical_features),
        prediction_column=column, prediction_kind=kind,
    )
    return profile, permutation_importances(estimator, holdout, spec)


def focus_result(
    result: DriftResult, importances: Mapping[str, float] | None, top_n: int
) -> tuple[DriftResult, tuple[str, ...]]:
    """The result restricted to the ``top_n`` most important input columns, for the policy.

    Every column is measured and reported; the material-drift decision counts the most
    influential ones (the spec's ``monitoring.top_features``).  Returns the result to decide on
    and the columns left out of the decision.  Without importances nothing is left out.
    """
    if not importances or len(result.columns) <= top_n:
        return result, ()
    ranked = sorted(result.columns, key=lambda c: (-abs(importances.get(c.column, 0.0)), c.column))
    kept = {c.column for c in ranked[:top_n]}
    left_out = tuple(c.column for c in result.columns if c.column not in kept)
    return replace(result, columns=tuple(c for c in result.columns if c.column in kept)), left_out



@dataclass(frozen=True)
class AnnounceReason(StrEnum):
    NOT_MATERIAL = "not_material"
    STARTED = "started"  # not material at the previous check of this version (or none)
    SPREAD = "spread"  # columns entered the drifted state that were not in it
    PERSISTS = "persists"  # material as before, no new columns: announced already


@dataclass(frozen=True)
class Announcement:
    """Whether to emit the drift event: ``code`` says why, ``why`` says it for people."""

    announce: bool
    code: AnnounceReason
    why: str
    material_since: datetime | None


def decide_announcement(
    decision: MaterialDriftDecision, previous: DriftRecord | None, version: str, window_end: datetime
) -> Announcement:
    """Announce (emit the event) when material drift starts or spreads, not every day it persists.

    Starts: not material at the previous check of the same version (or no previous check).
    Spreads: columns entered the drifted state that were not in it.  A persisting drift keeps its
    open ledger entry (counted again each day) instead of re-alarming.
    """
    if not decision.material:
        return Announcement(False, AnnounceReason.NOT_MATERIAL, "no material drift", None)
    same = previous is not None and previous.version == version and previous.material
    if not same:
        return Announcement(True, AnnounceReason.STARTED, "material drift started", window_end)
    assert previous is not None
    since = previous.material_since or previous.window_end
    spread = tuple(c for c in decision.columns if c not in previous.columns)
    if spread:
        return Announcement(True, AnnounceReason.SPREAD, f"material drift spread to {', '.join(spread)}", since)
    return Announcement(
        False, AnnounceReason.PERSISTS,
        f"material drift persists since {since:%Y-%m-%d %H:%M} UTC (announced then; no new columns)", since,
    )


@dataclass(frozen=True)
class DriftVerdict:
    """The policy's decision on the counted columns, whether to announce it, and what was left out."""

    decision: MaterialDriftDecision
    announcement: Announcement
    left_out: tuple[str, ...]
    previous_used: bool


def judge_drift(
    spec: ModelSpec, version: str, result: DriftResult, previous: DriftRecord | None,
    importances: Mapping[str, float], window_end: datetime,
) -> DriftVerdict:
    """The spec's policy on the most influential columns, with hysteresis from the previous check of this version."""
    policy = DriftPolicy(**spec.drift.model_dump(exclude={"window_days"}))
    focused, left_out = focus_result(result, importances, spec.monitoring.top_features)
    same_version = previous is not None and previous.version == version
    decision = decide_material_drift(focused, policy, previous.result if same_version else None, importances)
    return DriftVerdict(decision, decide_announcement(decision, previous, version, window_end), left_out, same_version)


def too_little_traffic(rows: int, version: str, window: DriftWindow) -> str | None:
    """Why the window is not checked, or None when it holds enough rows for the statistics to mean something."""
    if rows >= MIN_DRIFT_ROWS:
        return None
    return (
        f"{rows} served predictions of v{version} in {window.describe()} (at least {MIN_DRIFT_ROWS} "
        "needed): no drift check. Is the gateway serving the champion and logging predictions?"
    )


def drift_event_payload(
    *,
    spec: ModelSpec,
    version: str,
    champion_version: str | None,
    challenger_version: str | None,
    result: DriftResult,
    decision: MaterialDriftDecision,
    window: DriftWindow,
    why: str,
    report_uri: str | None,
) -> dict[str, Any]:
    """The ``steward.model.drift-detected`` payload: columns with their scores, versions, reason."""
    def col(name: str) -> dict[str, Any]:
        c = result.column(name)
        return {
            "column": c.column, "kind": c.kind, "method": c.method, "score": _finite(c.score),
            "threshold": c.threshold, "drifted": c.drifted,
            **({"importance": _finite(c.importance)} if c.importance is not None else {}),
        }

    prediction = result.prediction
    return {
        "version": version,
        "reference_version": version,
        "champion_version": champion_version,
        "challenger_version": challenger_version,
        "reason": decision.reason,
        "announced_because": why,
        "columns": [col(c) for c in decision.columns],
        "newly_drifted": list(decision.newly_drifted),
        "held": list(decision.held),
        "drift_share": result.drift_share,
        "dataset_drift": result.dataset_drift,
        "prediction_drifted": bool(prediction is not None and prediction.column in decision.columns),
        "window_start": window.start.isoformat() if window.start else None,
        "window_end": window.end.isoformat(),
        "current_rows": result.current_rows,
        "reference_rows": result.reference_rows,
        "policy": spec.drift.method,
        "report_uri": report_uri,
    }


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def drift_fingerprint(model: str) -> str:
    """One open drift entry per model: a persisting drift counts again on it; its end resolves it."""
    return f"drift:{model}"


def drift_finding(model: str, version: str, decision: MaterialDriftDecision, why: str) -> Finding:
    return Finding(
        f"material drift on v{version}: {', '.join(decision.columns[:6])}{' …' if len(decision.columns) > 6 else ''}",
        f"{decision.reason} ({why}). Investigate the distribution changes (the Evidently report is stored "
        "with the version) and retrain if they are real.",
        MaintenanceKind.ADAPTIVE, Priority.HIGH, "drift-report", drift_fingerprint(model),
    )


def drift_markdown(
    *,
    model: str,
    version: str,
    window: str,
    result: DriftResult,
    decision: MaterialDriftDecision,
    why: str,
    left_out: Sequence[str],
    report_uri: str | None,
    report_error: str | None,
) -> str:
    """The Prefect artifact: verdict, link to the Evidently HTML, and the drifted columns first."""
    state = {c: "newly drifted" for c in decision.newly_drifted} | {c: "held (hysteresis)" for c in decision.held}
    lines = [
        f"# Drift of {model} v{version}: {'MATERIAL' if decision.material else 'not material'}",
        "",
        f"Window: {window}, {result.current_rows} rows against {result.reference_rows} reference rows "
        f"(the training sample of v{version}).",
        "",
        f"{decision.reason}",
        "",
        f"Event: {why}.",
        "",
    ]
    if report_uri:
        lines += [f"Evidently report (MLflow artifact of v{version}): [{report_uri.rsplit('/', 1)[-1]}]({report_uri})", ""]
    else:
        lines += [f"No Evidently report stored{': ' + report_error if report_error else ''}.", ""]
    if left_out:
        lines += [f"Measured but not counted by the policy (outside the top features): {', '.join(left_out)}.", ""]
    drifted = [result.column(c) for c in decision.columns]
    if drifted:
        lines += [
            "## Drifted columns",
            "",
            "| column | kind | method | score | threshold | state | importance |",
            "|---|---|---|---:|---:|---|---:|",
        ]
        for c in drifted:
            importance = "" if c.importance is None else f"{c.importance:.3g}"
            lines.append(
                f"| {c.column} | {c.kind} | {c.method} | {c.score:.4g} | {c.threshold:.3g} | "
                f"{state.get(c.column, 'drifted')} | {importance} |"
            )
        lines.append("")
    lines += ["## All columns", "", result.to_markdown_table()]
    return "\n".join(lines)
