"""Retrain: load data, check it, split it in time, train, evaluate, register a candidate with lineage."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from prefect import flow, get_run_logger

from steward import events
from steward.training.gates import RetrainCode
from steward.training.retrain_decision import RetrainNeedCode, RetrainTrigger, decide_retrain_need
from tasks.common import emit_model_event, publish_markdown
from tasks.data import check_training_data, load_model_spec, load_training_data, split_data
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
                                 need=need.code, as_of=as_of)
    allowance = check_retrain_allowance(spec, as_of)
    if not allowance.allowed and not force:
        logger.warning("retrain of %s skipped: %s", spec.name, allowance.reason)
        return RetrainResult(model=spec.name, registered=False, reason=reason, skipped_because=allowance.reason,
                             allowance=allowance.code, as_of=allowance.as_of)
    frame, source = load_training_data(spec, as_of)
    check_training_data(frame, spec)
    split = split_data(frame, spec)
    data_sha256 = hash_training_data(split)
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
