"""The validation procedure: measure a candidate against the champion and apply the gate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from steward.spec import ModelSpec
from steward.training.evaluation import evaluate, evaluate_slices
from steward.training.gates import (
    ValidationReport,
    check_edge_cases,
    check_primary_metric,
    check_signature,
    check_slices,
    check_speed,
)
from steward.training.probes import compare_speed, run_edge_cases


@dataclass(frozen=True)
class Contender:
    """A model taking part in validation: its estimator, version and declared input schema."""

    estimator: Any
    version: str
    input_schema: dict[str, str]


def _slice_scores(model: Any, holdout: pd.DataFrame, spec: ModelSpec) -> dict[tuple[str, str], tuple[int, float]]:
    return {(s.feature, s.value): (s.rows, s.score) for s in evaluate_slices(model, holdout, spec)}


def validate_candidate(
    spec: ModelSpec, candidate: Contender, champion: Contender | None, holdout: pd.DataFrame
) -> ValidationReport:
    """Every check of the gate on the same held-out rows; the report says which failed and why."""
    metric = spec.primary_metric
    candidate_metrics = evaluate(candidate.estimator, holdout, spec)
    champion_metrics = evaluate(champion.estimator, holdout, spec) if champion else None
    features = holdout[spec.feature_names]

    checks = [
        check_signature(candidate.input_schema, champion.input_schema if champion else None, spec.gates),
        *check_primary_metric(
            metric, candidate_metrics[metric], champion_metrics[metric] if champion_metrics else None, spec.gates
        ),
        check_slices(
            _slice_scores(candidate.estimator, holdout, spec),
            _slice_scores(champion.estimator, holdout, spec) if champion else None,
            metric,
            spec.gates,
        ),
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
        "steward.validation.status": "passed" if report.passed else "failed",
        "steward.validation.summary": report.summary(),
        "steward.validation.against": report.champion_version or "none",
    }
    for check in report.checks:
        tags[f"steward.validation.{check.name}"] = f"{check.status.value}: {check.reason}"
    return tags
