"""The validation procedure: measure a candidate against the champion and apply the gate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from steward.findings import CheckStatus
from steward.spec import ModelSpec
from steward.training.evaluation import compute_metrics, labelled_outputs
from steward.training.gates import (
    ComparisonCode,
    GateCheck,
    SliceComparison,
    ValidationReport,
    check_edge_cases,
    check_primary_metric,
    check_signature,
    check_slices,
    check_speed,
    check_trigger_metric,
)
from steward.training.paired import (
    ComparisonError,
    NonInferiorityResult,
    judge_non_inferiority,
    paired_difference,
)
from steward.training.probes import compare_speed, run_edge_cases

Outputs = tuple[np.ndarray, np.ndarray | None]


@dataclass(frozen=True)
class Contender:
    """A model taking part in validation: its estimator, version and declared input schema."""

    estimator: Any
    version: str
    input_schema: dict[str, str]


def compare_primary_metric(
    spec: ModelSpec, y_true: np.ndarray, candidate: Outputs, champion: Outputs, *, seed: int = 0
) -> NonInferiorityResult:
    """The candidate against keeping the champion on the same rows, judged at the gate's tolerance."""
    gates = spec.gates
    interval = paired_difference(spec.primary_metric, spec.task, y_true, candidate, champion,
                                 confidence=gates.confidence, resamples=gates.bootstrap_resamples, seed=seed)
    return judge_non_inferiority(interval, gates.tolerance, y_true)


def compare_trigger_metric(
    spec: ModelSpec, metric: str, y_true: np.ndarray, candidate: Outputs, champion: Outputs
) -> GateCheck:
    """The paired interval of the candidate's improvement on the triggering metric (bootstrap, same rows)."""
    gates = spec.gates
    try:
        interval = paired_difference(metric, spec.task, y_true, candidate, champion, confidence=gates.confidence,
                                     resamples=gates.bootstrap_resamples, seed=1)
    except ComparisonError as error:
        return check_trigger_metric(metric, None, str(error))
    return check_trigger_metric(metric, interval)


def compare_slices(
    spec: ModelSpec, holdout: pd.DataFrame, y_true: np.ndarray, candidate: Outputs, champion: Outputs
) -> tuple[list[SliceComparison], int]:
    """Paired intervals per slice at a Bonferroni-adjusted confidence; also how many were too small to compare."""
    gates, metric = spec.gates, spec.primary_metric
    masks: list[tuple[str, str, np.ndarray]] = []
    too_small = 0
    for feature in gates.slice_features:
        values = holdout[feature].fillna("__missing__").astype(str).to_numpy()
        for value in sorted(set(values)):
            mask = values == value
            enough_classes = not spec.task.is_classification or len(np.unique(y_true[mask])) > 1
            if mask.sum() < gates.min_slice_rows or (metric == "roc_auc" and not enough_classes):
                too_small += 1
            else:
                masks.append((feature, value, mask))
    confidence = 1 - (1 - gates.confidence) / max(len(masks), 1)
    comparisons = []
    for index, (feature, value, mask) in enumerate(masks):

        def part(outputs: Outputs, mask: np.ndarray = mask) -> Outputs:
            return outputs[0][mask], None if outputs[1] is None else outputs[1][mask]

        try:
            interval = paired_difference(metric, spec.task, y_true[mask], part(candidate), part(champion),
                                         confidence=confidence, resamples=gates.bootstrap_resamples, seed=index)
        except ComparisonError:
            too_small += 1
            continue
        comparisons.append(SliceComparison(feature, value, interval))
    return comparisons, too_small


def validate_candidate(
    spec: ModelSpec, candidate: Contender, champion: Contender | None, holdout: pd.DataFrame,
    *, trigger_metric: str | None = None,
) -> ValidationReport:
    """Every check of the gate on the same held-out rows; the report says which failed and why.

    ``trigger_metric``: the metric whose drop triggered the retrain, when it is not the primary one
    (accuracy falling while ROC AUC holds). The candidate must then repair it with confidence and
    stay non-inferior on the primary metric, where no gain is expected.
    """
    metric = spec.primary_metric
    judged_trigger = trigger_metric if trigger_metric and trigger_metric != metric else None
    features = holdout[spec.feature_names]
    y_true, candidate_outputs = labelled_outputs(candidate.estimator, features, holdout[spec.target], spec)
    champion_outputs = labelled_outputs(champion.estimator, features, holdout[spec.target], spec)[1] if champion else None
    candidate_metrics = compute_metrics(spec.task, y_true, *candidate_outputs)
    champion_metrics = compute_metrics(spec.task, y_true, *champion_outputs) if champion_outputs else None

    comparison = slices = None
    too_small = 0
    expect_gain = None if judged_trigger is None else False
    primary = check_primary_metric(metric, candidate_metrics[metric], None, spec.gates)
    if champion_outputs is not None:
        try:
            comparison = compare_primary_metric(spec, y_true, candidate_outputs, champion_outputs)
            primary = check_primary_metric(metric, candidate_metrics[metric], comparison, spec.gates,
                                           expect_gain=expect_gain)
        except ComparisonError as error:  # e.g. one class in the hold-out: no verdict either way
            primary = [*primary[:-1], GateCheck("metric_vs_champion", CheckStatus.INCONCLUSIVE,
                                                f"cannot compare with the champion on this hold-out: {error}",
                                                ComparisonCode.INCONCLUSIVE)]
        if judged_trigger is not None:
            primary.append(compare_trigger_metric(spec, judged_trigger, y_true, candidate_outputs, champion_outputs))
        if spec.gates.slice_features:
            slices, too_small = compare_slices(spec, holdout, y_true, candidate_outputs, champion_outputs)
    checks = [
        check_signature(candidate.input_schema, champion.input_schema if champion else None, spec.gates),
        *primary,
        check_slices(slices or [], spec.gates, has_champion=champion is not None, too_small=too_small),
        check_edge_cases(run_edge_cases(candidate.estimator, spec, features)),
    ]
    candidate_speed, champion_speed = compare_speed(
        candidate.estimator, champion.estimator if champion else None, features
    )
    checks += check_speed(candidate_speed, champion_speed, spec.gates)
    return ValidationReport(
        model=spec.name,
        candidate_version=candidate.version,
        champion_version=champion.version if champion else None,
        primary_metric=metric,
        candidate_metrics=candidate_metrics,
        champion_metrics=champion_metrics,
        checks=tuple(checks),
        holdout_rows=len(holdout),
        extra={
            "candidate_p95_ms": f"{candidate_speed.single_row_p95_ms:.3f}",
            "candidate_rows_per_second": f"{candidate_speed.batch_rows_per_second:.0f}",
        },
    )


def report_tags(report: ValidationReport) -> dict[str, str]:
    """The report as model-version tags, so the registry shows the last validation."""
    tags = {
        "steward.validation.status": report.verdict.value,
        "steward.validation.summary": report.summary(),
        "steward.validation.against": report.champion_version or "none",
    }
    interval = report.primary_interval
    if interval is not None:
        tags["steward.validation.interval"] = interval.describe()
    if report.rows_needed is not None:
        tags["steward.validation.rows_needed"] = str(report.rows_needed)
    tags["steward.validation.expects_gain"] = "true" if report.expects_gain else "false"
    for check in report.checks:
        tags[f"steward.validation.{check.name}"] = f"{check.status.value}: {check.reason}"
    return tags
