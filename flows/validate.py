"""Validate: gate a candidate against the champion; on pass it becomes challenger (or champion on bootstrap)."""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow, get_run_logger

from steward import events
from steward.training.gates import ValidationReport
from steward.training.retrain_decision import TRIGGER_METRIC_TAG, recorded_trigger
from tasks.common import emit_model_event, publish_markdown, registry
from tasks.data import load_model_spec
from tasks.validation import load_contender, load_holdout, pick_candidate, record_validation, run_gate


@dataclass(frozen=True)
class ValidationOutcome:
    model: str
    version: str
    passed: bool
    action: str  # champion (bootstrap), challenger, rejected, or inconclusive (not a pass: needs more rows)
    summary: str
    report: ValidationReport


@flow(name="validate", description="Gate a candidate against the current champion on the same held-out data.")
def validate(spec_path: str, version: str | None = None) -> ValidationOutcome:
    logger = get_run_logger()
    spec = load_model_spec(spec_path)
    candidate_version = pick_candidate(spec, version)
    champion_info = registry().champion(spec.name)
    if champion_info is not None and champion_info.version == candidate_version:
        raise ValueError(f"{spec.name} v{candidate_version} is already the champion; validate a newer candidate")
    candidate = load_contender(spec, candidate_version)
    champion = load_contender(spec, champion_info.version) if champion_info else None
    holdout = load_holdout(spec, candidate_version)
    tags = registry().get_version(spec.name, candidate_version).tags
    trigger = recorded_trigger(tags)
    report = run_gate(spec, candidate, champion, holdout, tags.get(TRIGGER_METRIC_TAG),
                      refresh=trigger is not None and trigger.refresh)
    action = record_validation(spec, report)
    publish_markdown(report.to_markdown(), "validation", spec.name, f"v{candidate_version}")

    if report.passed:
        emit_model_event(
            events.PROMOTED if action == "champion" else events.CANDIDATE_VALIDATED,
            spec.name, version=candidate_version, champion_version=report.champion_version,
            reason=report.summary(),
        )
        logger.info("%s", report.summary())
    else:  # failed or inconclusive: neither may become challenger
        emit_model_event(
            events.CANDIDATE_REJECTED, spec.name, version=candidate_version,
            champion_version=report.champion_version, reason=report.summary(), verdict=report.verdict.value,
            rows_needed=report.rows_needed,
        )
        logger.warning("%s", report.summary())
    return ValidationOutcome(spec.name, candidate_version, report.passed, action, report.summary(), report)
