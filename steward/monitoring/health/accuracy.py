"""The accuracy check: measured accuracy against the validation baseline and the SLO, concept drift, label-free estimates."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from steward.monitoring.drift.policy import AccuracyEvidence, EvidenceSource
from steward.monitoring.drift.result import DriftResult
from steward.monitoring.health.outcomes import (
    Estimate,
    HalvesComparison,
    Outcomes,
    analytic_estimate,
    compare_halves,
    estimate_metric,
    metric_drop,
    outcomes,
)
from steward.monitoring.health.report import (
    Area,
    CheckResult,
    Issue,
    IssueCode,
    Metric,
    Severity,
    version_key,
)
from steward.spec import ModelSpec, Task
from steward.store.reader import typed_labels
from steward.training.data import prepare_features
from steward.training.evaluation import metric_outputs, predict_scores
from steward.training.scores import LABEL_METRIC, ScoreCheck, SkippedCheck, needs_scores, no_scores

ACCURACY_CRITICAL_FACTOR = 2.0  # an accuracy drop of twice health.max_accuracy_drop is critical
MIN_LABELLED = 200  # labelled predictions of a version before its measured accuracy is judged
SIGNIFICANT_Z = 2.326  # an accuracy drop must be this many standard errors clear of zero (one-sided 1%)
MAX_CALIBRATION_ERROR = 0.05  # expected calibration error on the holdout above which estimates are not trusted
EVIDENCE_FACTOR = 0.5  # the outputs' drift counts once accuracy fell significantly by half the health limit
SECONDARY_METRICS = ("accuracy",)  # watched beside a classifier's primary metric: a stale threshold shows here


@dataclass(frozen=True)
class Calibration:
    """How well a version's probabilities match outcomes on its holdout: the label-free estimate's validity."""

    rows: int
    expected_accuracy: float  # mean top-class probability
    observed_accuracy: float
    calibration_error: float  # expected calibration error, 10 equal-width bins of confidence

    @property
    def calibrated(self) -> bool:
        return self.calibration_error <= MAX_CALIBRATION_ERROR


def calibration_from(probabilities: np.ndarray, y_true: np.ndarray, classes: Sequence[Any]) -> Calibration:
    """Expected calibration error of top-class confidences against outcomes."""
    probabilities = np.asarray(probabilities, dtype=float)
    confidence = probabilities.max(axis=1)
    correct = np.asarray(classes)[probabilities.argmax(axis=1)] == np.asarray(y_true)
    bins = np.minimum((confidence * 10).astype(int), 9)
    error = sum(
        abs(confidence[bins == b].mean() - correct[bins == b].mean()) * np.sum(bins == b) / len(confidence)
        for b in np.unique(bins)
    )
    return Calibration(len(confidence), float(confidence.mean()), float(correct.mean()), float(error))


Scored = tuple[np.ndarray, np.ndarray | None]  # predict_scores' predictions and probabilities


def measure_calibration(model: Any, holdout: pd.DataFrame, spec: ModelSpec,
                        scored: Scored | None = None) -> Calibration | SkippedCheck:
    """Score the version's holdout (unless ``scored``) and compare its confidences with what happened (skipped:
    labels only)."""
    _, probabilities = scored or _score(model, holdout, spec)
    if probabilities is None:
        return no_scores(ScoreCheck.CALIBRATION, "no probabilities to calibrate on its hold-out")
    y = typed_labels(holdout[spec.target].astype(str), classification=True).to_numpy()
    classes = typed_labels(pd.Series([str(c) for c in model.classes_]), classification=True).to_numpy()
    return calibration_from(probabilities, y, classes)


def _score(model: Any, holdout: pd.DataFrame, spec: ModelSpec) -> Scored:
    return predict_scores(model, prepare_features(holdout, spec), spec.task)


def validation_errors(model: Any, holdout: pd.DataFrame, spec: ModelSpec,
                      scored: Scored | None = None) -> dict[str, float]:
    """The standard error of each validation metric health judges (primary, secondary), on the hold-out it was
    measured on: the baseline is an estimate too, and a live drop is judged against both errors."""
    y, (predictions, probabilities) = metric_outputs(model, scored or _score(model, holdout, spec),
                                                     holdout[spec.target].to_numpy(), spec)
    scores = probabilities[:, -1] if probabilities is not None and probabilities.ndim == 2 else np.full(len(y), np.nan)
    o = Outcomes(np.asarray(y), np.asarray(predictions), scores)
    errors = {}
    for metric in (spec.primary_metric, *secondary_metrics(spec)):
        if needs_scores(metric) and probabilities is None:
            continue
        estimate, _ = analytic_estimate(metric, o, seed=4)
        if math.isfinite(estimate.error):
            errors[metric] = estimate.error
    return errors


@dataclass(frozen=True)
class HoldoutFigures:
    """What a version's hold-out says about it: its calibration (or why there is none) and the standard
    errors of its validation metrics."""

    calibration: Calibration | SkippedCheck | str
    errors: dict[str, float]


def holdout_figures(model: Any, holdout: pd.DataFrame, spec: ModelSpec) -> HoldoutFigures:
    """The hold-out is scored once for both."""
    try:
        scored = _score(model, holdout, spec)
    except ValueError as error:
        return HoldoutFigures(str(error), {})
    try:
        calibration: Calibration | SkippedCheck | str = measure_calibration(model, holdout, spec, scored)
    except ValueError as error:
        calibration = str(error)
    try:
        errors = validation_errors(model, holdout, spec, scored)
    except ValueError:  # e.g. labels the spec cannot read: the baseline is then taken as exact, as before
        errors = {}
    return HoldoutFigures(calibration, errors)


def drop_error(live: float, baseline_error: float | None) -> float:
    """The standard error of live minus validation: independent rows, so the variances add."""
    return math.hypot(live, baseline_error or 0.0)


def _plus_minus(error: float | None) -> str:
    return f" (+/- {error:.3f})" if error else ""


def expected_accuracy(scores: np.ndarray, task: Task) -> np.ndarray:
    """Per row, the probability the prediction is right if the model is calibrated: max(p, 1 - p) for binary
    (the log keeps P(positive)); the top-class probability the log keeps for multiclass."""
    scores = np.asarray(scores, dtype=float)
    return np.maximum(scores, 1 - scores) if task is Task.BINARY_CLASSIFICATION else scores


def significant_drop(drop: float, error: float, limit: float) -> bool:
    """A drop past ``limit`` and ``SIGNIFICANT_Z`` standard errors clear of zero: the one rule for accuracy."""
    return drop > limit and drop >= SIGNIFICANT_Z * error


def measured_evidence(metric: str, estimate: Estimate, baseline: float, limit: float,
                      baseline_error: float | None = None) -> AccuracyEvidence:
    """Measured accuracy as drift evidence: moved when it fell significantly by ``EVIDENCE_FACTOR`` of the limit."""
    drop = metric_drop(metric, estimate.value, baseline)
    error = drop_error(estimate.error, baseline_error)
    return AccuracyEvidence(metric, EvidenceSource.MEASURED, estimate.value, baseline, drop, error,
                            estimate.rows, significant_drop(drop, error, EVIDENCE_FACTOR * limit))


def estimated_evidence(scores: np.ndarray, task: Task, calibration: Calibration, limit: float) -> AccuracyEvidence:
    """The label-free estimate as drift evidence (the caller checks the calibration first)."""
    confidence = expected_accuracy(scores, task)
    estimate = float(confidence.mean())
    error = float(confidence.std() / math.sqrt(len(confidence))) if len(confidence) else math.inf
    drop = calibration.expected_accuracy - estimate  # same estimator on the holdout: its bias cancels
    return AccuracyEvidence("accuracy", EvidenceSource.ESTIMATED, estimate, calibration.expected_accuracy, drop,
                            error, len(confidence), significant_drop(drop, error, EVIDENCE_FACTOR * limit))


def accuracy_evidence(
    spec: ModelSpec, served: pd.DataFrame, labelled: pd.DataFrame, baseline: Mapping[str, float],
    calibration: Calibration | SkippedCheck | str | None, baseline_errors: Mapping[str, float] | None = None,
) -> AccuracyEvidence | None:
    """What the drift judgment hears about accuracy in a window of one version.

    Measured on labelled rows when there are ``MIN_LABELLED`` of them (primary metric, then the
    secondary ones: the first that moved), else estimated from calibrated probabilities; None when
    neither can be had (few labels and a regression model, no baseline, or an uncalibrated model).
    """
    limit = spec.health.max_accuracy_drop
    labelled = labelled[labelled["status"] == "ok"] if "status" in labelled else labelled
    if len(labelled) >= MIN_LABELLED:
        o = outcomes(labelled, spec.task, spec.positive_label)
        scored = not spec.task.is_classification or bool(labelled["score"].notna().any())
        found = []
        for metric in (spec.primary_metric, *secondary_metrics(spec)):
            if metric in baseline and (scored or not needs_scores(metric)):  # labels only: accuracy speaks
                estimate = estimate_metric(metric, o)
                if not math.isnan(estimate.value):
                    found.append(measured_evidence(metric, estimate, baseline[metric], limit,
                                                   (baseline_errors or {}).get(metric)))
        return next((e for e in found if e.moved), found[0] if found else None)
    if spec.task.is_classification and isinstance(calibration, Calibration) and calibration.calibrated and len(served):
        return estimated_evidence(served["score"].to_numpy(dtype=float), spec.task, calibration, limit)
    return None


def secondary_metrics(spec: ModelSpec) -> tuple[str, ...]:
    return tuple(m for m in SECONDARY_METRICS if m != spec.primary_metric) if spec.task.is_classification else ()


@dataclass(frozen=True)
class InputDrift:
    """The window's drift measurement as the drift report makes it (against ``version``'s reference profile,
    seasonal features one season back), so the health check judges inputs exactly as the drift report does."""

    version: str
    result: DriftResult
    importances: Mapping[str, float]
    previous: DriftResult | None = None


@dataclass(frozen=True)
class InputStability:
    """The drift report's verdict (``assess_drift``) read as concept-drift evidence: stable = not material."""

    stable: bool
    drift_share: float
    drifted: tuple[str, ...]
    reason: str = ""

    def describe(self, against: str) -> str:
        state = "stable" if self.stable else "drifted"
        names = f": {', '.join(self.drifted)}" if self.drifted else ""
        return (f"inputs {state} against {against} by the drift policy ({len(self.drifted)} column(s) in the "
                f"drifted state{names}; {self.reason})")


def judge_inputs(
    spec: ModelSpec, result: DriftResult, importances: Mapping[str, float] | None,
    previous: DriftResult | None = None, accuracy: AccuracyEvidence | None = None,
) -> InputStability:
    """Input stability by ``assess_drift``: the drift report's policy, importances, focus and feature roles."""
    from steward.monitoring.drift.monitor import assess_drift

    decision = assess_drift(spec, result, importances, previous, accuracy).decision
    return InputStability(not decision.material, result.drift_share, decision.columns,
                          decision.reason[0].lower() + decision.reason[1:].rstrip("."))


def input_stability(
    reference: pd.DataFrame, current: pd.DataFrame, spec: ModelSpec,
    importances: Mapping[str, float] | None = None, accuracy: AccuracyEvidence | None = None,
) -> InputStability:
    """Whether the inputs moved between two frames, judged by ``assess_drift`` like the drift report."""
    from steward.monitoring.drift.engine import detect_drift

    def usable(names: list[str]) -> list[str]:
        return [c for c in names if c in reference and c in current
                and reference[c].notna().any() and current[c].notna().any()]

    numeric, categorical = usable(spec.numeric_features), usable(spec.categorical_features)
    if not numeric and not categorical:
        raise ValueError("no feature has values on both sides, so input stability cannot be measured")
    result = detect_drift(
        reference[numeric + categorical], current[numeric + categorical], numeric=numeric, categorical=categorical,
        engine="profile", report=False,
    )
    return judge_inputs(spec, result, importances, accuracy=accuracy)


def check_accuracy(
    predictions: pd.DataFrame,
    labelled: pd.DataFrame,
    spec: ModelSpec,
    baselines: Mapping[str, Mapping[str, float]],
    calibrations: Mapping[str, Calibration | SkippedCheck | str],
    reference: pd.DataFrame | None,
    *,
    input_drift: InputDrift | None = None,
    importances: Mapping[str, float] | None = None,
    baseline_errors: Mapping[str, Mapping[str, float]] | None = None,
) -> CheckResult:
    """Per version: measured accuracy against its validation baseline and the SLO, concept drift, and
    while labels are pending a label-free estimate from calibrated probabilities.

    ``labelled`` is ``join_labels`` of ``predictions`` with the labels received by the window's end;
    ``baselines`` the held-out metrics of each version; ``calibrations`` each version's calibration on
    its holdout (or why it could not be measured): the estimate's validity while labels are pending,
    the calibration baseline once they are in; ``reference`` the prepared training sample that input
    stability is judged against, unless ``input_drift`` brings the drift report's own measurement of
    the window (then the two cannot disagree); ``importances`` weigh the columns when judging from
    ``reference`` (the drift policy may need them); ``baseline_errors`` the standard errors of each version's
    validation metrics (``validation_errors``), which widen the error a drop is judged against.
    """
    area = Area.ACCURACY
    metric = spec.primary_metric
    metrics: dict[str, Metric] = {"metric": metric}
    issues: list[Issue] = []
    notes: list[str] = []
    skipped: list[SkippedCheck] = []
    answered = predictions[predictions["status"] == "ok"]
    labelled = labelled[labelled["status"] == "ok"]
    if answered.empty:
        notes.append("no answered predictions in the window")
    keys = pd.MultiIndex.from_frame(labelled[["request_id", "row"]]) if len(labelled) else None
    for version, rows in sorted(answered.groupby("version"), key=lambda item: version_key(item[0])):
        v = f"v{version}"
        version_labelled = labelled[labelled["version"] == version]
        is_pending = (~pd.MultiIndex.from_frame(rows[["request_id", "row"]]).isin(keys)
                      if keys is not None else np.ones(len(rows), bool))
        pending = rows[is_pending]
        metrics.update({f"labelled[{v}]": len(version_labelled), f"pending[{v}]": len(pending)})
        label_only = spec.task.is_classification and not rows["score"].notna().any()
        judged_on = LABEL_METRIC if label_only and needs_scores(metric) else metric
        if judged_on != metric:
            skipped.append(no_scores(ScoreCheck.PRIMARY_METRIC, f"{metric} is not measured on its labelled traffic; "
                                     f"{judged_on} is judged against its validation {judged_on}", v))
        if label_only:
            skipped.append(no_scores(ScoreCheck.CALIBRATION, "no probabilities to compare with outcomes", v))
        baseline = baselines.get(str(version), {}).get(judged_on)
        errors = (baseline_errors or {}).get(str(version), {})
        if baseline is None:
            notes.append(f"{v} has no validation {judged_on} in the registry, so no baseline to compare with")
        if len(version_labelled) >= MIN_LABELLED:
            drift = input_drift if input_drift is not None and input_drift.version == str(version) else None
            issues += _judge_labelled(spec, v, version_labelled, baseline, reference, metrics, notes,
                                      input_drift=drift, importances=importances, metric=judged_on,
                                      baseline_error=errors.get(judged_on))
            if judged_on == metric:
                issues += _judge_secondary(spec, v, version_labelled, baselines.get(str(version), {}), metrics,
                                           errors)
            if not label_only:
                issues += _judge_calibration(spec, v, version_labelled, calibrations.get(str(version)), metrics, notes)
        else:
            notes.append(f"{v}: {len(version_labelled)} labelled predictions, {MIN_LABELLED} needed to judge "
                         f"measured accuracy")
            if len(pending) and label_only:
                skipped.append(no_scores(ScoreCheck.ACCURACY_ESTIMATE, "no label-free estimate of accuracy while "
                                         "labels are pending", v))
            elif len(pending) and spec.task.is_classification:
                issues += _judge_estimate(spec, v, pending, baselines.get(str(version), {}),
                                          calibrations.get(str(version)), metrics, notes)
            elif len(pending):
                notes.append(f"{v}: labels pending and a regression model gives no label-free estimate")
    return CheckResult.judged(area, metrics, issues, notes, skipped=skipped)


def _judge_labelled(
    spec: ModelSpec, v: str, labelled: pd.DataFrame, baseline: float | None, reference: pd.DataFrame | None,
    metrics: dict[str, Metric], notes: list[str], *, input_drift: InputDrift | None = None,
    importances: Mapping[str, float] | None = None, metric: str | None = None, baseline_error: float | None = None,
) -> list[Issue]:
    """``metric`` (default: the primary) is what the version's labelled traffic is judged on; ``baseline_error``
    the standard error of its validation figure."""
    area, limit = Area.ACCURACY, spec.health.max_accuracy_drop
    metric = metric or spec.primary_metric
    issues: list[Issue] = []
    labelled = labelled.sort_values("time", kind="stable")
    o = outcomes(labelled, spec.task, spec.positive_label)
    whole = estimate_metric(metric, o)
    metrics[f"{metric}[{v}]"] = whole.value
    if baseline is not None:
        metrics[f"baseline_{metric}[{v}]"] = baseline
    if baseline_error:
        metrics[f"baseline_{metric}_error[{v}]"] = baseline_error
    if math.isnan(whole.value):
        notes.append(f"{v}: {metric} undefined on the labelled rows (one class only?)")
        return issues

    drop = metric_drop(metric, whole.value, baseline) if baseline is not None else None
    error = drop_error(whole.error, baseline_error)
    dropped = drop is not None and significant_drop(drop, error, limit)
    evidence_of_drop = measured_evidence(metric, whole, baseline, limit, baseline_error) if baseline is not None else None
    if drop is not None:
        metrics[f"drop[{v}]"] = drop
    features = prepare_features(labelled, spec) if all(f in labelled for f in spec.feature_names) else None

    # Concept drift: accuracy fell while the inputs stayed where they were, against the training
    # data (with the baseline) or against the earlier half of the window (onset inside the window).
    half = len(labelled) // 2
    early, late = o.take(np.arange(half)), o.take(np.arange(half, len(o)))
    halves: HalvesComparison | None = None
    if half >= MIN_LABELLED // 2:
        halves = compare_halves(metric, early, late)
        metrics.update({f"{metric}_early[{v}]": halves.early.value, f"{metric}_late[{v}]": halves.late.value,
                        f"{metric}_halves_error[{v}]": halves.error})
        if not halves.significant(limit):
            if halves.drop > limit:
                notes.append(f"{v}: {halves.describe()}: within sampling error, not judged as concept drift")
            halves = None
    evidence = []
    explained = []
    try:
        if dropped and input_drift is not None:
            stability = judge_inputs(spec, input_drift.result, input_drift.importances, input_drift.previous,
                                     evidence_of_drop)
            metrics[f"input_drift_share[{v}]"] = stability.drift_share
            (evidence if stability.stable else explained).append(
                f"{metric} {drop:.3f} below the baseline, {stability.describe('the training data')}")
        elif dropped and reference is not None and features is not None:
            stability = input_stability(reference, features, spec, importances, evidence_of_drop)
            metrics[f"input_drift_share[{v}]"] = stability.drift_share
            (evidence if stability.stable else explained).append(
                f"{metric} {drop:.3f} below the baseline, {stability.describe('the training data')}")
        if halves is not None and features is not None:
            stability = input_stability(features.iloc[:half], features.iloc[half:], spec, importances)
            (evidence if stability.stable else explained).append(
                f"{metric} {halves.drop:.3f} lower in the later half of the window ({halves.describe()}), "
                f"{stability.describe('the earlier half')}")
    except ValueError as error:  # e.g. an importance-weighted policy and no importances: say so, judge the rest
        notes.append(f"{v}: input stability not judged: {error}")
    if features is None:
        notes.append(f"{v}: the log lacks some spec features, so input stability was not measured")

    if dropped:
        severity = Severity.CRITICAL if drop > ACCURACY_CRITICAL_FACTOR * limit else Severity.WARNING
        issues.append(Issue(
            area, IssueCode.ACCURACY_DROP, severity, f"{metric} of {v} dropped against its validation baseline",
            f"{metric} {whole.value:.3f} on {whole.rows} labelled predictions (+/- {whole.error:.3f}) against "
            f"{baseline:.3f} at validation{_plus_minus(baseline_error)}: a drop of {drop:.3f} +/- {error:.3f}, "
            f"limit {limit:g}",
            "retrain or analyse drift", subject=v,
        ))
    if evidence:
        issues.append(Issue(
            area, IssueCode.CONCEPT_DRIFT, Severity.WARNING, f"concept drift on {v}",
            "; ".join(evidence), "investigate distribution changes and retrain on recent labelled data", subject=v,
        ))
    notes += [f"{v}: {text}: data drift explains the drop better than concept drift" for text in explained]

    target = spec.slo.min_accuracy
    if target is not None and metric == spec.primary_metric:  # the SLO is in the primary metric's units
        shortfall = metric_drop(metric, whole.value, target)
        if shortfall > 0 and shortfall >= SIGNIFICANT_Z * whole.error:
            issues.append(Issue(
                area, IssueCode.ACCURACY_BELOW_SLO, Severity.CRITICAL, f"{metric} of {v} below the SLO",
                f"{metric} {whole.value:.3f} on {whole.rows} labelled predictions, SLO {target:g}",
                "roll back to the previous champion if it did better, and retrain", subject=v,
            ))
    return issues


def _judge_secondary(
    spec: ModelSpec, v: str, labelled: pd.DataFrame, baseline: Mapping[str, float], metrics: dict[str, Metric],
    baseline_errors: Mapping[str, float],
) -> list[Issue]:
    """Secondary metrics against their validation baselines, by the primary metric's rule.

    A classifier can keep its ranking (ROC AUC) while its decision threshold stops fitting: accuracy
    falls and only a secondary metric shows it.
    """
    limit = spec.health.max_accuracy_drop
    issues: list[Issue] = []
    o = outcomes(labelled.sort_values("time", kind="stable"), spec.task, spec.positive_label)
    for metric in secondary_metrics(spec):
        if metric not in baseline:
            continue
        measured = estimate_metric(metric, o, seed=3)
        drop = metric_drop(metric, measured.value, baseline[metric])
        metrics.update({f"{metric}[{v}]": measured.value, f"baseline_{metric}[{v}]": baseline[metric],
                        f"{metric}_drop[{v}]": drop})
        error = drop_error(measured.error, baseline_errors.get(metric))
        if significant_drop(drop, error, limit):
            severity = Severity.CRITICAL if drop > ACCURACY_CRITICAL_FACTOR * limit else Severity.WARNING
            issues.append(Issue(
                Area.ACCURACY, IssueCode.SECONDARY_METRIC_DROP, severity,
                f"{metric} of {v} dropped against its validation baseline",
                f"{metric} {measured.value:.3f} on {measured.rows} labelled predictions (+/- {measured.error:.3f}) "
                f"against {baseline[metric]:.3f} at validation{_plus_minus(baseline_errors.get(metric))}: a drop of "
                f"{drop:.3f} +/- {error:.3f}, limit {limit:g}",
                "re-fit the decision threshold on recent labelled data (the ranking may still hold), or retrain",
                subject=v,
            ))
    return issues


def calibration_gap(scores: np.ndarray, correct: np.ndarray, task: Task) -> tuple[float, float]:
    """Mean confidence minus observed accuracy on labelled traffic, and its standard error."""
    gaps = expected_accuracy(scores, task) - np.asarray(correct, dtype=float)
    return float(gaps.mean()), float(gaps.std() / math.sqrt(len(gaps)))


def _judge_calibration(
    spec: ModelSpec, v: str, labelled: pd.DataFrame, calibration: Calibration | str | None,
    metrics: dict[str, Metric], notes: list[str],
) -> list[Issue]:
    """Whether the probabilities still mean what they meant on the holdout: the confidence-accuracy gap
    on labelled traffic against the same gap on the version's holdout, with both standard errors."""
    if not spec.task.is_classification:
        return []
    if not isinstance(calibration, Calibration):
        notes.append(f"{v}: calibration not judged: the holdout's calibration is not known "
                     f"({calibration or 'not measured'})")
        return []
    o = outcomes(labelled, spec.task, spec.positive_label)
    gap, error = calibration_gap(o.score, o.y == o.prediction, spec.task)
    baseline = calibration.expected_accuracy - calibration.observed_accuracy
    baseline_error = 0.5 / math.sqrt(max(calibration.rows, 1))  # a gap of 0/1 outcomes varies by at most 1/2
    shift = abs(gap - baseline)
    limit = spec.health.max_calibration_shift
    metrics.update({f"calibration_gap[{v}]": gap, f"baseline_calibration_gap[{v}]": baseline})
    if shift > limit and shift >= SIGNIFICANT_Z * math.hypot(error, baseline_error):
        direction = "over-confident" if gap > baseline else "under-confident"
        return [Issue(
            Area.ACCURACY, IssueCode.CALIBRATION_DRIFT, Severity.WARNING, f"calibration of {v} drifted",
            f"mean confidence minus accuracy {gap:+.3f} on {len(o)} labelled predictions (+/- {error:.3f}) against "
            f"{baseline:+.3f} on the holdout: {direction} by {shift:.3f}, limit {limit:g}",
            "recalibrate the probabilities (e.g. CalibratedClassifierCV on recent labelled data) and re-fit the "
            "decision threshold", subject=v,
        )]
    return []


def _judge_estimate(
    spec: ModelSpec, v: str, pending: pd.DataFrame, baseline: Mapping[str, float],
    calibration: Calibration | str | None, metrics: dict[str, Metric], notes: list[str],
) -> list[Issue]:
    confidence = expected_accuracy(pending["score"].to_numpy(dtype=float), spec.task)
    estimate = float(confidence.mean())
    error = float(confidence.std() / math.sqrt(len(confidence)))
    metrics[f"estimated_accuracy[{v}]"] = estimate
    if "accuracy" in baseline:
        metrics[f"baseline_accuracy[{v}]"] = baseline["accuracy"]
    if not isinstance(calibration, Calibration):
        notes.append(f"{v}: accuracy {estimate:.3f} is an estimate from probabilities on {len(pending)} unlabelled "
                     f"predictions; its calibration could not be checked ({calibration or 'not measured'}), "
                     "so it is not judged")
        return []
    metrics[f"holdout_calibration_error[{v}]"] = calibration.calibration_error
    if not calibration.calibrated:
        notes.append(f"{v}: accuracy {estimate:.3f} is an estimate, but the model is not calibrated on its holdout "
                     f"(calibration error {calibration.calibration_error:.3f} > {MAX_CALIBRATION_ERROR}), so it is "
                     "not judged; calibrate the model (e.g. CalibratedClassifierCV) to get label-free estimates")
        return []
    notes.append(f"{v}: accuracy {estimate:.3f} is an ESTIMATE from calibrated probabilities on {len(pending)} "
                 "unlabelled predictions (valid only while the model stays calibrated; it cannot see concept drift)")
    drop = calibration.expected_accuracy - estimate  # same estimator on the holdout: its bias cancels
    metrics[f"estimated_drop[{v}]"] = drop
    limit = spec.health.max_accuracy_drop
    if drop > limit and drop >= SIGNIFICANT_Z * error:
        return [Issue(
            Area.ACCURACY, IssueCode.ESTIMATED_ACCURACY_DROP, Severity.WARNING,
            f"estimated accuracy of {v} dropped (estimate, labels pending)",
            f"estimated accuracy {estimate:.3f} on {len(pending)} unlabelled predictions against "
            f"{calibration.expected_accuracy:.3f} on the holdout: an estimated drop of {drop:.3f}, limit {limit:g}",
            "check the drift report for the features behind the drop, and confirm once labels arrive",
            subject=v,
        )]
    return []
