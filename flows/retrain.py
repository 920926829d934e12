"""Retrain: load data, check it, split it in time, train, evaluate, register a candidate with lineage."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from prefect import flow, get_run_logger

from steward import events
from steward.training.data import TooFewRows
from steward.training.gates import RetrainCode
from steward.training.retrain_decision import RetrainNeedCode, RetrainTrigger, decide_retrain_need
from steward.training.train import RetrainSkip
from tasks.common import emit_model_event, publish_markdown
from tasks.data import (
    check_training_data,
    load_model_spec,
    load_training_data,
    record_skipped_retrain,
    split_data,
)
from tasks.team_training import start_team_training, take_in_team_candidate, wait_for_team_candidate
from tasks.training import (
    archive_old_versions,
    check_retrain_allowance,
    find_pending_candidate,
    fit_model,
    hash_training_data,
    judge_duration,
    register_candidate,
)


@dataclass(frozen=True)
class RetrainResult:
    model: str
    registered: bool
    reason: str
    skipped_because: str | None = None
    skip: RetrainSkip | None = None
    ledger_entry_id: str | None = None  # the entry a data skip opened (or counted again)
    allowance: RetrainCode | None = None  # the cooldown/budget verdict at ``as_of``
    need: RetrainNeedCode | None = None  # candidate_pending: a kept candidate covers the trigger
    as_of: datetime | None = None
    version: str | None = None
    semver: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    data_sha256: str | None = None
    training_seconds: float | None = None
    slow_training: bool = False


def _lineage_markdown(result: RetrainResult, source: str, window: str) -> str:
    metrics = "\n".join(f"| {name} | {value:.4f} |" for name, value in sorted(result.metrics.items()))
    return (
        f"# {result.model} v{result.version} ({result.semver}) registered as candidate\n\n"
        f"Why: {result.reason}\n\n"
        f"- data: `{source}`, window {window}, sha256 `{(result.data_sha256 or '')[:16]}…`\n"
        f"- training time: {result.training_seconds:.2f} s"
        f"{' — **slow: over the limit against earlier runs**' if result.slow_training else ''}\n\n"
        f"| metric (held-out) | value |\n| --- | --- |\n{metrics}\n"
    )


def _retrain_by_team_deployment(spec, split, data_sha256: str, source: str, reason: str, allowance,
                                as_of: datetime | None, trigger_metric: str | None) -> RetrainResult:
    """training.deployment: the team's own flow trains and registers; the version is then taken in like ours."""
    logger = get_run_logger()
    team_run = start_team_training(spec, split)
    version = wait_for_team_candidate(team_run)
    candidate = take_in_team_candidate(spec, team_run, version, split, data_sha256, source, as_of,
                                       trigger_metric)
    info = candidate.info
    archived = archive_old_versions(spec)
    if archived:
        logger.info("archived %s: past retention", ", ".join(f"v{v}" for v in archived))
    result = RetrainResult(
        model=spec.name, registered=True, reason=reason, version=info.version, semver=info.semver,
        metrics=candidate.metrics, data_sha256=data_sha256, training_seconds=candidate.training_seconds,
        allowance=allowance.code, as_of=allowance.as_of,
    )
    window = f"{info.tags.get('steward.data_window_start') or '?'} → {info.tags.get('steward.data_window_end') or '?'}"
    publish_markdown(_lineage_markdown(result, info.tags.get("steward.data_source", source), window), "retrain",
                     spec.name)
    emit_model_event(
        events.CANDIDATE_REGISTERED, spec.name, version=info.version, semver=info.semver,
        reason=f"retrained by {spec.training.deployment}: {reason}",
    )
    logger.info("%s registered %s v%s (%s); taken in as candidate", team_run.flow_run_name, spec.name,
                info.version, info.semver)
    return result


@flow(name="retrain", description="Train a new candidate version of a model on fresh data, with full lineage.")
def retrain(
    spec_path: str, reason: str = "manual run", force: bool = False, as_of: datetime | None = None,
    trigger_metric: str | None = None,
) -> RetrainResult:
    """``force`` skips the cooldown, the weekly budget and a pending candidate (for a person; triggers never set it).

    ``as_of`` is the run's event time (default: now): it ends the production data window, and the
    cooldown and weekly budget are judged at it, so a backfill or a trigger from a past window's
    check decides as it would have then. Triggers pass the window end of the check that fired them.
    ``trigger_metric``: the metric whose drop started the retrain (e.g. accuracy while ROC AUC held);
    the gate then judges the candidate on it as well (recorded on the version).
    A candidate kept after an inconclusive gate, not yet expired, blocks the retrain: the daily
    maintenance run revalidates it once the labelled rows it needs exist.
    """
    logger = get_run_logger()
    spec = load_model_spec(spec_path)
    pending = None if force else find_pending_candidate(spec, as_of)
    if pending is not None:
        need = decide_retrain_need(RetrainTrigger(metric=trigger_metric), as_of or pending.created, pending=pending,
                                   tried=None, readings={}, limit=spec.health.max_accuracy_drop, higher_is_better={})
        if not need.go:
            logger.warning("retrain of %s skipped: %s", spec.name, need.reason)
            return RetrainResult(model=spec.name, registered=False, reason=reason, skipped_because=need.reason,
                                 skip=RetrainSkip.CANDIDATE_PENDING, need=need.code, as_of=as_of)
    allowance = check_retrain_allowance(spec, as_of)
    if not allowance.allowed and not force:
        logger.warning("retrain of %s skipped: %s", spec.name, allowance.reason)
        return RetrainResult(model=spec.name, registered=False, reason=reason, skipped_because=allowance.reason,
                             skip=RetrainSkip.BUDGET, allowance=allowance.code, as_of=allowance.as_of)
    try:
        frame, source = load_training_data(spec, as_of)
        too_few = None
    except TooFewRows as error:
        too_few = str(error)
    if too_few is None:
        report = check_training_data(frame, spec)
        too_few = report.summary() if report.too_few_rows else None
    if too_few is not None:
        entry_id = record_skipped_retrain(spec, too_few)
        logger.warning("retrain of %s skipped: too few rows: %s", spec.name, too_few)
        return RetrainResult(model=spec.name, registered=False, reason=reason, skipped_because=too_few,
                             skip=RetrainSkip.TOO_FEW_ROWS, ledger_entry_id=entry_id, allowance=allowance.code,
                             as_of=allowance.as_of)
    split = split_data(frame, spec)
    data_sha256 = hash_training_data(split)
    if spec.training.deployment:
        return _retrain_by_team_deployment(spec, split, data_sha256, source, reason, allowance, as_of, trigger_metric)
    trained = fit_model(spec, split, data_sha256, source)
    duration = judge_duration(spec, trained)
    if duration.slow:
        logger.warning("training of %s was slow: %s", spec.name, duration.reason)
    info = register_candidate(spec, trained, duration, as_of, trigger_metric)
    archived = archive_old_versions(spec)
    if archived:
        logger.info("archived %s: past retention", ", ".join(f"v{v}" for v in archived))
    result = RetrainResult(
        model=spec.name, registered=True, reason=reason, version=info.version, semver=info.semver,
        metrics=trained.metrics, data_sha256=data_sha256, training_seconds=trained.lineage.training_seconds,
        slow_training=duration.slow, allowance=allowance.code, as_of=allowance.as_of,
    )
    window = f"{trained.lineage.data_window_start or '?'} → {trained.lineage.data_window_end or '?'}"
    publish_markdown(_lineage_markdown(result, source, window), "retrain", spec.name)
    emit_model_event(
        events.CANDIDATE_REGISTERED, spec.name, version=info.version, semver=info.semver,
        reason=f"retrained: {reason}",
    )
    logger.info("registered %s v%s (%s) as candidate", spec.name, info.version, info.semver)
    return result
