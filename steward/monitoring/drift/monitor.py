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
from steward.monitoring.drift.policy import (
    AccuracyEvidence,
    DriftPolicy,
    MaterialDriftDecision,
    decide_material_drift,
)
from steward.monitoring.drift.profile import ReferenceProfile
from steward.monitoring.drift.result import DriftResult
from steward.spec import FeatureRole, ModelSpec
from steward.training.gates import RetrainAllowance
from steward.training.scores import (
    LABEL_METRIC,
    ScoreCheck,
    SkippedCheck,
    gives_scores,
    needs_scores,
    no_scores,
)


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


def prediction_drift_column(spec: ModelSpec, scored: bool = True) -> tuple[str, Literal["numeric", "categorical"]]:
    """Which logged output is watched for drift: the score for binary and regression, the class otherwise.

    A classifier that gives labels only (``scored`` False) logs no score: its predicted class is watched.
    """
    from steward.spec import Task

    if spec.task is Task.MULTICLASS_CLASSIFICATION or not scored:
        return "prediction", "categorical"
    return "score", "numeric"


def score_drift_skipped(spec: ModelSpec, prediction_column: str, version: str | None = None) -> tuple[SkippedCheck, ...]:
    """The typed record that a binary classifier's score drift was not measured (its profile watches the class)."""
    from steward.spec import Task

    if spec.task is not Task.BINARY_CLASSIFICATION or prediction_column != "prediction":
        return ()
    return (no_scores(ScoreCheck.SCORE_DRIFT, "the drift of its predicted class is measured instead of its score's",
                      f"v{version}" if version else None),)


# Fewer current rows than this and the check is skipped: the statistics would mostly measure noise.
MIN_DRIFT_ROWS = 100
PROFILE_ARTIFACT = "drift/reference_profile.parquet"
IMPORTANCE_ARTIFACT = "drift/feature_importance.json"
REPORTS_ARTIFACT_DIR = "drift/reports"


def reference_outputs(estimator: Any, features: pd.DataFrame, spec: ModelSpec) -> pd.Series:
    """The model's output on reference rows, as the gateway logs it (``score`` or ``prediction``).

    Binary: P(second class); regression: the value; multiclass, and a classifier that gives labels only:
    the predicted class as text.
    """
    from steward.spec import Task
    from steward.store.records import label_text

    column, _ = prediction_drift_column(spec, gives_scores(estimator, spec.task))
    if spec.task is Task.REGRESSION:
        values = np.asarray(estimator.predict(features), dtype="float64")
    elif column == "prediction" and not hasattr(estimator, "predict_proba"):  # labels only: the class, as logged
        values = np.asarray([label_text(v) for v in np.asarray(estimator.predict(features)).tolist()], dtype=object)
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
    metric = spec.primary_metric
    if needs_scores(metric) and not gives_scores(estimator, spec.task):  # labels only: what they can score
        metric = LABEL_METRIC
    sign = 1.0 if higher_is_better(metric) else -1.0

    def scorer(model: Any, x: pd.DataFrame, y: Any) -> float:
        frame = x.copy()
        frame[spec.target] = np.asarray(y)
        return sign * evaluate(model, frame, spec)[metric]

    x, y = rows[spec.feature_names], rows[spec.target]
    if hasattr(estimator, "fit"):
        result = permutation_importance(estimator, x, y, scoring=scorer, n_repeats=repeats, random_state=seed, n_jobs=1)
        means = result.importances_mean
    else:  # a python-function model has no fit, which scikit-learn's helper insists on: the same shuffles here
        rng = np.random.default_rng(seed)
        whole = scorer(estimator, x, y)
        means = []
        for name in spec.feature_names:
            drops = []
            for _ in range(repeats):
                shuffled = x.copy()
                shuffled[name] = rng.permutation(shuffled[name].to_numpy())
                drops.append(whole - scorer(estimator, shuffled, y))
            means.append(float(np.mean(drops)))
    return {name: max(0.0, float(value)) for name, value in zip(spec.feature_names, means, strict=True)}


def build_drift_reference(
    estimator: Any, reference: pd.DataFrame, holdout: pd.DataFrame, spec: ModelSpec
) -> tuple[ReferenceProfile, dict[str, float]]:
    """A version's drift reference: the profile of its training sample (prepared features) with the
    version's own outputs on it, and its permutation importances on its labelled holdout.

    The drift flow caches the pair with the version; the backtest builds it once per champion.
    """
    column, kind = prediction_drift_column(spec, gives_scores(estimator, spec.task))
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



def compare_seasonal(result: DriftResult, season_back: DriftResult | None) -> DriftResult:
    """The result with each seasonal column's drift measured against the same period one season back.

    ``season_back`` is the current window against the log's window one season earlier, on the
    seasonal columns only (None: no such traffic).  Those columns' scores replace the ones against
    the training data, and ``seasonal_matched`` records which were replaced; the others stay out of
    the decision (``assess_drift``), as a weekly pattern against a training mix says nothing.
    """
    if season_back is None:
        return replace(result, seasonal_matched=())
    by_name = {c.column: c for c in season_back.columns}
    columns = tuple(by_name.get(c.column, c) for c in result.columns)
    drifted = sum(c.drifted for c in columns)
    return replace(result, columns=columns, drift_share=drifted / max(len(columns), 1),
                   seasonal_matched=tuple(c.column for c in result.columns if c.column in by_name))


def drift_policy(spec: ModelSpec) -> DriftPolicy:
    return DriftPolicy(**spec.drift.model_dump(exclude={"window_days", "season_days"}))


@dataclass(frozen=True)
class DriftAssessment:
    """The one notion of material drift, and which measured columns it did not count and why."""

    decision: MaterialDriftDecision
    left_out: tuple[str, ...] = ()  # outside the spec's top features
    calendar: tuple[str, ...] = ()  # calendar features: move by construction, shown but never counted
    seasonal_unmatched: tuple[str, ...] = ()  # seasonal features with no traffic one season back

    @property
    def material(self) -> bool:
        return self.decision.material


def assess_drift(
    spec: ModelSpec, result: DriftResult, importances: Mapping[str, float] | None,
    previous: DriftResult | None = None, accuracy: AccuracyEvidence | None = None,
) -> DriftAssessment:
    """Whether ``result`` is material drift: the spec's policy, importances and top features, calendar
    features left out, seasonal ones counted only against the same period one season back.

    The drift report and the health check's concept-drift evidence both decide here, so they cannot
    disagree on the same measurement.  ``previous`` (the last check of the same version) gives the
    hysteresis; ``accuracy`` lets the outputs' drift count under ``prediction_drift: with_accuracy``.
    """
    names = {c.column for c in result.columns}
    calendar = tuple(c for c in spec.features_with_role(FeatureRole.CALENDAR) if c in names)
    matched = set(result.seasonal_matched or ())
    unmatched = tuple(c for c in spec.features_with_role(FeatureRole.SEASONAL) if c in names and c not in matched)
    uncounted = set(calendar) | set(unmatched)
    counted = replace(result, columns=tuple(c for c in result.columns if c.column not in uncounted))
    focused, left_out = focus_result(counted, importances, spec.monitoring.top_features)
    weights = None if importances is None else {k: v for k, v in importances.items() if k not in uncounted}
    decision = decide_material_drift(focused, drift_policy(spec), previous, weights, accuracy)
    return DriftAssessment(decision, left_out, calendar, unmatched)


class AnnounceReason(StrEnum):
    NOT_MATERIAL = "not_material"
    STARTED = "started"  # not material at the previous check (or none)
    SPREAD = "spread"  # columns entered the drifted state that were not in it
    PERSISTS = "persists"  # material as before, no new columns: announced already
    PERSISTS_AFTER_RETRAIN = "persists_after_retrain"  # a new version drifts on the same columns: not news
    RETRAIN_ALLOWED_AGAIN = "retrain_allowed_again"  # persists, its retrain was skipped, and retraining is allowed now


@dataclass(frozen=True)
class Announcement:
    """Whether to emit the drift event: ``code`` says why, ``why`` says it for people.

    ``awaiting_retrain``: the drift was announced while retraining was not allowed (cooldown,
    weekly budget), so its retrain was skipped; carried from check to check until it is raised again.
    """

    announce: bool
    code: AnnounceReason
    why: str
    material_since: datetime | None
    awaiting_retrain: bool = False


def decide_announcement(
    decision: MaterialDriftDecision, previous: DriftRecord | None, version: str, window_end: datetime,
    retrain: RetrainAllowance | None = None,
) -> Announcement:
    """Announce (emit the event) when material drift starts or spreads, not every day it persists.

    Starts: not material at the previous check (or no previous check).  Spreads: columns entered
    the drifted state that were not in it.  A persisting drift keeps its open ledger entry instead of
    re-alarming, also after a retrain to a new version that drifts on the same columns.  One
    exception: when the event that announced it met a closed retrain allowance (``retrain`` at that
    check), it is raised again at the first check where ``retrain`` allows retraining.
    """
    if not decision.material:
        return Announcement(False, AnnounceReason.NOT_MATERIAL, "no material drift", None)
    blocked = retrain is not None and not retrain.allowed
    if previous is None or not previous.material:
        return Announcement(True, AnnounceReason.STARTED, "material drift started", window_end, blocked)
    since = previous.material_since or previous.window_end
    spread = tuple(c for c in decision.columns if c not in previous.columns)
    if spread:
        return Announcement(True, AnnounceReason.SPREAD, f"material drift spread to {', '.join(spread)}", since,
                            blocked)
    if previous.awaiting_retrain and retrain is not None and retrain.allowed:
        return Announcement(
            True, AnnounceReason.RETRAIN_ALLOWED_AGAIN,
            f"material drift persists since {since:%Y-%m-%d %H:%M} UTC; the retrain it asked for was skipped "
            "and retraining is allowed again", since,
        )
    awaiting = previous.awaiting_retrain and blocked
    if previous.version != version:
        return Announcement(
            False, AnnounceReason.PERSISTS_AFTER_RETRAIN,
            f"material drift persists since {since:%Y-%m-%d %H:%M} UTC on the same columns after the change to "
            f"v{version} (announced then; the retrain did not end it)", since, awaiting,
        )
    return Announcement(
        False, AnnounceReason.PERSISTS,
        f"material drift persists since {since:%Y-%m-%d %H:%M} UTC (announced then; no new columns)", since, awaiting,
    )


@dataclass(frozen=True)
class DriftVerdict:
    """The policy's decision on the counted columns, whether to announce it, and what was left out."""

    decision: MaterialDriftDecision
    announcement: Announcement
    left_out: tuple[str, ...]
    previous_used: bool
    calendar: tuple[str, ...] = ()
    seasonal_unmatched: tuple[str, ...] = ()


def judge_drift(
    spec: ModelSpec, version: str, result: DriftResult, previous: DriftRecord | None,
    importances: Mapping[str, float], window_end: datetime, *,
    accuracy: AccuracyEvidence | None = None, retrain: RetrainAllowance | None = None,
) -> DriftVerdict:
    """``assess_drift`` with hysteresis from the previous check of this version, and whether to announce it.

    ``accuracy``: what the accuracy check found in the window (the outputs' drift needs it to count);
    ``retrain``: the retrain allowance at ``window_end`` (a drift announced while retraining was not
    allowed is raised again once it is).
    """
    same_version = previous is not None and previous.version == version
    assessment = assess_drift(spec, result, importances, previous.result if same_version else None, accuracy)
    decision = assessment.decision
    return DriftVerdict(
        decision, decide_announcement(decision, previous, version, window_end, retrain), assessment.left_out,
        same_version, assessment.calendar, assessment.seasonal_unmatched,
    )


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
    calendar: Sequence[str] = (),
    seasonal_unmatched: Sequence[str] = (),
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
    if calendar:
        lines += [f"Calendar features, shown but never counted (they move by construction): {', '.join(calendar)}.",
                  ""]
    if result.seasonal_matched:
        lines += [f"Seasonal features, compared with the same period one season earlier: "
                  f"{', '.join(result.seasonal_matched)}.", ""]
    if seasonal_unmatched:
        lines += [f"Seasonal features not counted (no traffic one season earlier to compare with): "
                  f"{', '.join(seasonal_unmatched)}.", ""]
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
