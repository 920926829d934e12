"""Retrain: load data, check it, split it in time, train, evaluate, register a candidate with lineage."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from prefect import flow, get_run_logger

from steward import events
from steward.training.data import DataError, TooFewRows
from steward.training.evaluation import higher_is_better
from steward.training.gates import RetrainCode
from steward.training.retrain_decision import (
    TRIGGER_METRIC_TAG,
    RetrainKind,
    RetrainNeedCode,
    RetrainTrigger,
    decide_retrain_need,
    retrain_kind,
    retrain_trigger,
)
from steward.training.train import RetrainSkip
from steward.training.windows import ExpectedBelowFloor
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
    check_refresh_due,
    check_retrain_allowance,
    find_pending_candidate,
    find_tried_retrain,
    fit_model,
    hash_training_data,
    judge_duration,
    load_champion_model,
    measure_served_readings,
    record_folded_retrain,
    record_retrain_trigger,
    refit_threshold_candidate,
    register_candidate,
    tag_version,
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
    need: RetrainNeedCode | None = None  # candidate_pending / no_new_evidence: the trigger folded into the open entry
    kind: RetrainKind = RetrainKind.TRAIN  # refit_threshold: the champion with its threshold re-fitted
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


def _refit_threshold(spec, reason: str, trigger: RetrainTrigger, readings, allowance, as_of: datetime | None
                     ) -> RetrainResult:
    """Only a threshold-dependent metric fell: the champion with its threshold re-fitted is the candidate."""
    logger = get_run_logger()
    try:
        refitted = refit_threshold_candidate(spec, as_of, reason)
    except DataError as error:
        entry_id = record_skipped_retrain(spec, str(error))
        logger.warning("threshold re-fit of %s skipped: %s", spec.name, error)
        return RetrainResult(model=spec.name, registered=False, reason=reason, skipped_because=str(error),
                             skip=RetrainSkip.TOO_FEW_ROWS, ledger_entry_id=entry_id, allowance=allowance.code,
                             as_of=allowance.as_of)
    info = refitted.info
    registry_tags = {TRIGGER_METRIC_TAG: trigger.metric} if trigger.metric else {}
    tag_version(spec, info.version, registry_tags)
    record_retrain_trigger(spec, info.version, trigger, readings)
    result = RetrainResult(model=spec.name, registered=True, reason=reason, version=info.version,
                           semver=info.semver, metrics=refitted.metrics, allowance=allowance.code,
                           as_of=allowance.as_of, kind=RetrainKind.REFIT_THRESHOLD)
    emit_model_event(events.CANDIDATE_REGISTERED, spec.name, version=info.version, semver=info.semver,
                     reason=f"threshold re-fitted ({refitted.reason}): {reason}")
    logger.info("registered %s v%s: %s", spec.name, info.version, refitted.reason)
    return result


@flow(name="retrain", description="Train a new candidate version of a model on fresh data, with full lineage.")
def retrain(
    spec_path: str, reason: str = "manual run", force: bool = False, as_of: datetime | None = None,
    trigger_metric: str | None = None, primary_dropped: bool = False, drift_columns: list[str] | None = None,
    window_start: datetime | None = None, refresh: bool = False, also_fell: str | None = None,
) -> RetrainResult:
    """``force`` skips the cooldown, the weekly budget and the retrain-need check (for a person; triggers never set it).

    ``as_of`` is the run's event time (default: now): it ends the production data window, and the
    cooldown and weekly budget are judged at it, so a backfill or a trigger from a past window's
    check decides as it would have then. Triggers pass the window end of the check that fired them.
    The trigger's findings, as the health and drift events carry them: ``trigger_metric`` (the metric
    whose drop started the retrain, e.g. accuracy while ROC AUC held; the gate judges it too),
    ``primary_dropped``, the announced ``drift_columns``, ``window_start`` (with ``as_of``, the window
    the served model's metrics are read on), and ``also_fell`` (a threshold metric or calibration that fell
    beside the primary).
    ``refresh``: the scheduled refresh (its daily schedule sets it when ``retrain.refresh_after_days`` or
    ``retrain.catch_up_lagging_labels`` is set): it trains only once the champion is that old, or when the
    champion's catch-up is due (decision 0038), and the gate keeps the fresher model unless it is shown worse
    (decision 0036).
    ``steward.training.retrain_decision`` decides, as in the backtest: a pending candidate for the same
    trigger, or a retrain for it that found no gain with nothing new since, folds the trigger into the open
    ledger entry; a threshold-only drop re-fits the champion's threshold instead of training, and so does a
    repeat of a primary drop whose new model found no gain when ``also_fell`` names what a threshold can repair
    (decision 0040).
    """
    logger = get_run_logger()
    spec = load_model_spec(spec_path)
    trigger = retrain_trigger(spec, drift_columns=drift_columns or (), metric=trigger_metric,
                              primary_dropped=primary_dropped, also_fell=also_fell)
    if refresh:
        due = check_refresh_due(spec, as_of)
        if due.trigger is None:
            logger.info("scheduled refresh of %s not due: %s", spec.name, due.reason)
            return RetrainResult(model=spec.name, registered=False, reason=reason, skipped_because=due.reason,
                                 skip=RetrainSkip.NOT_DUE, as_of=as_of)
        trigger, reason = due.trigger, (f"{reason}: {due.reason}" if due.catch_up
                                        else f"{reason}: scheduled refresh, {due.reason}")
    readings = measure_served_readings(spec, window_start, as_of) if window_start and as_of else {}
    if not force:
        pending = find_pending_candidate(spec, as_of)
        tried = find_tried_retrain(spec, as_of)
        need = decide_retrain_need(trigger, as_of or datetime.now(UTC), pending=pending, tried=tried,
                                   readings=readings, limit=spec.health.max_accuracy_drop,
                                   higher_is_better={m: higher_is_better(m) for m in readings})
        if not need.go:
            entry_id = record_folded_retrain(spec, need)
            logger.warning("retrain of %s folded into the open entry: %s", spec.name, need.reason)
            skip = RetrainSkip.CANDIDATE_PENDING if need.code is RetrainNeedCode.CANDIDATE_PENDING \
                else RetrainSkip.NO_NEW_EVIDENCE
            return RetrainResult(model=spec.name, registered=False, reason=reason, skipped_because=need.reason,
                                 skip=skip, need=need.code, ledger_entry_id=entry_id, as_of=as_of)
        if need.trigger is not None:  # RECALIBRATE: the champion's threshold instead of a second new model
            logger.info("retrain of %s: %s", spec.name, need.reason)
            trigger, reason = need.trigger, f"{reason}: {need.reason}"
    allowance = check_retrain_allowance(spec, as_of)
    if not allowance.allowed and not force:
        logger.warning("retrain of %s skipped: %s", spec.name, allowance.reason)
        return RetrainResult(model=spec.name, registered=False, reason=reason, skipped_because=allowance.reason,
                             skip=RetrainSkip.BUDGET, allowance=allowance.code, as_of=allowance.as_of)
    if retrain_kind(spec, trigger) is RetrainKind.REFIT_THRESHOLD:
        return _refit_threshold(spec, reason, trigger, readings, allowance, as_of)
    skip = RetrainSkip.TOO_FEW_ROWS
    try:
        frame, source = load_training_data(spec, as_of, None if force else load_champion_model(spec))
        too_few = None
    except ExpectedBelowFloor as error:  # the gate would fail it on the newest rows: wait for more of them
        too_few, skip = str(error), RetrainSkip.EXPECTED_BELOW_FLOOR
    except TooFewRows as error:
        too_few = str(error)
    if too_few is None:
        report = check_training_data(frame, spec)
        too_few = report.summary() if report.too_few_rows else None
    if too_few is not None:
        entry_id = record_skipped_retrain(spec, too_few)
        logger.warning("retrain of %s skipped (%s): %s", spec.name, skip.value, too_few)
        return RetrainResult(model=spec.name, registered=False, reason=reason, skipped_because=too_few,
                             skip=skip, ledger_entry_id=entry_id, allowance=allowance.code,
                             as_of=allowance.as_of)
    split = split_data(frame, spec)
    data_sha256 = hash_training_data(split)
    if spec.training.deployment:
        result = _retrain_by_team_deployment(spec, split, data_sha256, source, reason, allowance, as_of,
                                             trigger.metric)
        record_retrain_trigger(spec, result.version, trigger, readings)
        return result
    trained = fit_model(spec, split, data_sha256, source)
    duration = judge_duration(spec, trained)
    if duration.slow:
        logger.warning("training of %s was slow: %s", spec.name, duration.reason)
    info = register_candidate(spec, trained, duration, as_of, trigger.metric)
    record_retrain_trigger(spec, info.version, trigger, readings)
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
