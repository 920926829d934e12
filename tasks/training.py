"""Tasks that fit and register a model."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import pandas as pd
from prefect import task

from steward.registry.adapter import VersionInfo
from steward.spec import ModelSpec
from steward.training.data import Split, frame_sha256
from steward.training.entrypoints import PRODUCER_TAG
from steward.training.gates import (
    MODEL_TRAINED_AS_OF_TAG,
    TRAINED_AS_OF_TAG,
    RetrainAllowance,
    TrainingDurationVerdict,
    ValidationReport,
    ValidationVerdict,
    decide_retrain,
    judge_training_duration,
    model_trained_as_of,
    trained_as_of,
)
from steward.training.retrain_decision import (
    EXPIRED_STAGE,
    REVALIDATION_ROWS_TAG,
    TRIGGER_METRIC_TAG,
    PendingCandidate,
    Reading,
    RefreshCheck,
    RetrainNeed,
    RetrainTrigger,
    TriedRetrain,
    champion_training_from_tags,
    latest_tried,
    pending_from_tags,
    refresh_due,
    served_readings,
    tried_from_tags,
    trigger_tags,
)
from steward.training.train import TrainedModel, reference_sample, train_model
from tasks.common import registry


def retrain_allowance(spec: ModelSpec, as_of: datetime | None = None) -> RetrainAllowance:
    """The cooldown and weekly budget at event time ``as_of`` (default now), against the event times
    earlier versions were trained at."""
    reg = registry()
    versions = reg.list_versions(spec.name) if reg.model_exists(spec.name) else []
    earlier = [trained_as_of(v.tags, v.created) for v in versions]
    return decide_retrain(
        as_of, earlier, cooldown_hours=spec.retrain.cooldown_hours, max_per_week=spec.retrain.max_per_week
    )


@task(name="check-retrain-allowance", retries=2, retry_delay_seconds=[2, 5])
def check_retrain_allowance(spec: ModelSpec, as_of: datetime | None = None) -> RetrainAllowance:
    return retrain_allowance(spec, as_of)


@task(name="fit-model")
def fit_model(spec: ModelSpec, split: Split, data_sha256: str, data_source: str) -> TrainedModel:
    return train_model(spec, split, data_sha256=data_sha256, data_source=data_source)


@task(name="hash-training-data")
def hash_training_data(split: Split) -> str:
    import pandas as pd

    return frame_sha256(pd.concat([split.train, split.holdout]))


@task(name="judge-training-duration", retries=2, retry_delay_seconds=[2, 5])
def judge_duration(spec: ModelSpec, trained: TrainedModel) -> TrainingDurationVerdict:
    earlier = registry().training_durations(spec.name) if registry().model_exists(spec.name) else []
    return judge_training_duration(trained.lineage.training_seconds, earlier, spec.training.slow_training_factor)


@task(name="register-candidate", retries=2, retry_delay_seconds=[2, 5])
def register_candidate(
    spec: ModelSpec, trained: TrainedModel, slow: TrainingDurationVerdict, as_of: datetime | None = None,
    trigger_metric: str | None = None,
) -> VersionInfo:
    """Register with lineage, the held-out rows and a bounded training sample (the drift reference).

    ``as_of`` (default now) is recorded as the version's training event time, the clock of the retrain cooldown;
    ``trigger_metric`` (the metric whose drop started the retrain) as the metric the gate judges besides the primary.
    """
    reference = reference_sample(trained.train_frame, spec.training.reference_sample_rows, spec.training.random_state)
    info = registry().register_version(
        spec.name,
        trained.estimator,
        lineage=trained.lineage,
        metrics=trained.metrics,
        input_example=trained.holdout_frame[spec.feature_names].head(20),
        datasets={"holdout": trained.holdout_frame, "reference": reference},
        description=spec.description,
    )
    registry().set_version_tags(
        spec.name, info.version,
        {
            "steward.training_duration_flag": ("slow: " if slow.slow else "normal: ") + slow.reason,
            TRAINED_AS_OF_TAG: (as_of or datetime.now(UTC)).astimezone(UTC).isoformat(),
            PRODUCER_TAG: trained.producer.tag,
            **({TRIGGER_METRIC_TAG: trigger_metric} if trigger_metric else {}),
        },
    )
    return info


def pending_candidates(spec: ModelSpec) -> list[PendingCandidate]:
    """Versions kept after an inconclusive gate, oldest first (see ``pending_from_tags``)."""
    reg = registry()
    if not reg.model_exists(spec.name):
        return []
    found = (pending_from_tags(spec, v.version, v.tags, trained_as_of(v.tags, v.created))
             for v in reg.list_versions(spec.name))
    return [p for p in found if p is not None]


@task(name="find-pending-candidate", retries=2, retry_delay_seconds=[2, 5])
def find_pending_candidate(spec: ModelSpec, as_of: datetime | None = None) -> PendingCandidate | None:
    """The newest pending candidate not expired at ``as_of`` (default now): it blocks a second retrain."""
    now = as_of or datetime.now(UTC)
    live = [p for p in pending_candidates(spec) if now < p.expires]
    return live[-1] if live else None


@task(name="find-tried-retrain", retries=2, retry_delay_seconds=[2, 5])
def find_tried_retrain(spec: ModelSpec, as_of: datetime | None = None) -> TriedRetrain | None:
    """The newest retrain whose gate against the current champion found no expected gain and that is not yet
    forgotten at ``as_of`` (default now; ``retrain.no_gain_days``): the memory a repeat trigger is judged by."""
    now = as_of or datetime.now(UTC)
    reg = registry()
    if not reg.model_exists(spec.name):
        return None
    champion = reg.champion(spec.name)
    found = (tried_from_tags(spec, v.tags, trained_as_of(v.tags, v.created), champion.version if champion else None)
             for v in reg.list_versions(spec.name))
    return latest_tried([t for t in found if t is not None and t.at <= now < t.until])


@task(name="check-refresh-due", retries=2, retry_delay_seconds=[2, 5])
def check_refresh_due(spec: ModelSpec, as_of: datetime | None = None) -> RefreshCheck:
    """Whether the champion's training data is older than ``retrain.refresh_after_days`` at ``as_of`` (default now),
    or its catch-up is due (it was trained for a concept change on lagging labels)."""
    reg = registry()
    champion = reg.champion(spec.name) if reg.model_exists(spec.name) else None
    if champion is None:
        return refresh_due(spec, None, None, as_of or datetime.now(UTC))
    training = champion_training_from_tags(champion.tags, trained_as_of(champion.tags, champion.created),
                                           from_log=spec.data.kind == "production")
    return refresh_due(spec, training, model_trained_as_of(champion.tags, champion.created), as_of or datetime.now(UTC))


@task(name="measure-served-readings", retries=2, retry_delay_seconds=[2, 5])
def measure_served_readings(spec: ModelSpec, start: datetime, end: datetime) -> dict[str, Reading]:
    """The served model's primary and secondary metrics on the labelled predictions of ``[start, end)``
    (the window of the check that fired the trigger), as the backtest measures them."""
    from steward.monitoring.health.report import HealthWindow
    from tasks.health import read_window

    log = read_window.fn(spec, HealthWindow(start, end))
    labelled = log.labelled
    if "served" in labelled.columns:
        labelled = labelled[labelled["served"].astype(bool)]
    return served_readings(spec, labelled)


@task(name="record-retrain-trigger", retries=2, retry_delay_seconds=[2, 5])
def record_retrain_trigger(spec: ModelSpec, version: str, trigger: RetrainTrigger,
                           readings: dict[str, Reading]) -> None:
    """The trigger and the served model's readings on the version: a later trigger is judged against them."""
    registry().set_version_tags(spec.name, version, trigger_tags(trigger, readings))


@task(name="load-champion-model", retries=2, retry_delay_seconds=[2, 5])
def load_champion_model(spec: ModelSpec) -> object | None:
    """The champion's scorer (None without one): the training-window choice asks whether a retrain could pass
    the gate's floor against it."""
    reg = registry()
    champion = reg.champion(spec.name) if reg.model_exists(spec.name) else None
    return reg.load_model(spec.name, champion.version).model if champion else None


@task(name="tag-version", retries=2, retry_delay_seconds=[2, 5])
def tag_version(spec: ModelSpec, version: str, tags: dict[str, str]) -> None:
    if tags:
        registry().set_version_tags(spec.name, version, tags)


@task(name="record-folded-retrain", retries=2, retry_delay_seconds=[2, 5])
def record_folded_retrain(spec: ModelSpec, need: RetrainNeed) -> str:
    """A retrain folded into the open entry (a pending candidate, a retrain that found no gain): one ledger entry
    per model and code, counted again at each repeat, so the repeat is visible and not announced anew."""
    from steward.findings import Finding, MaintenanceKind, Priority
    from tasks.common import current_flow_run_id, ledger

    finding = Finding(
        title=f"retrain folded: {need.code.value.replace('_', ' ')}",
        detail=f"{need.reason}\nThe champion keeps serving; a new drifted column or a further significant drop "
               "starts a retrain again.",
        kind=MaintenanceKind.ADAPTIVE, priority=Priority.LOW, source="retrain",
        fingerprint=f"retrain-folded:{spec.name}:{need.code.value}",
    )
    return ledger().record_finding(spec.name, finding, flow_run_id=current_flow_run_id()).id


@dataclass(frozen=True)
class RefittedCandidate:
    info: VersionInfo
    metrics: dict[str, float]
    reason: str


@task(name="refit-threshold-candidate")
def refit_threshold_candidate(spec: ModelSpec, as_of: datetime | None, why: str) -> RefittedCandidate:
    """The champion with its decision threshold re-fitted on recent labelled production rows, registered as a
    candidate (its hold-out: the newer rows the shift was not fitted on). ``steward.training.threshold`` decides
    the rows and the shift, as in the backtest. Raises ``DataError`` when no recent window has usable rows."""
    import time

    from steward.registry.lineage import Lineage, code_version, package_versions
    from steward.training.data import DataError, production_training_frame
    from steward.training.evaluation import compute_metrics, predict_scores
    from steward.training.threshold import refit_threshold

    now = as_of or datetime.now(UTC)
    reg = registry()
    champion_info = reg.champion(spec.name) if reg.model_exists(spec.name) else None
    if champion_info is None:
        raise DataError(f"{spec.name} has no champion whose threshold could be re-fitted")
    champion = reg.load_model(spec.name, champion_info.version)

    def rows_for_days(days: int) -> pd.DataFrame:
        try:
            return production_training_frame(spec, now=now, window_days=days)[0]
        except DataError:
            return pd.DataFrame()

    started = time.perf_counter()
    refitted = refit_threshold(spec, champion.model, rows_for_days)
    seconds = time.perf_counter() - started
    holdout = refitted.holdout
    metrics = compute_metrics(spec.task, holdout[spec.target].to_numpy(),
                              *predict_scores(refitted.model, holdout[spec.feature_names], spec.task))
    rows = pd.concat([refitted.fit_rows, holdout])
    times = pd.to_datetime(rows[spec.timestamp_column], utc=True)
    reason = f"v{champion_info.version} with its {refitted.fit.describe()}"
    lineage = Lineage(
        data_sha256=frame_sha256(rows), data_rows=len(rows),
        data_source=f"production log before {now:%Y-%m-%d %H:%M} UTC; {reason}",
        data_window_start=times.min().isoformat(), data_window_end=times.max().isoformat(),
        params={"producer": "threshold_refit", "threshold.base_version": champion_info.version,
                "threshold.log_odds_shift": round(refitted.fit.shift, 6), "train_rows": len(refitted.fit_rows),
                "holdout_rows": len(holdout)},
        code_version=code_version(), packages=package_versions(), training_seconds=seconds,
        schema_fingerprint=spec.schema_fingerprint(), spec_yaml=spec.to_yaml(),
    )
    reference = reg.load_dataset(spec.name, champion_info.version, "reference")
    info = reg.register_version(
        spec.name, refitted.model, lineage=lineage, metrics=metrics,
        input_example=holdout[spec.feature_names].head(20),
        datasets={"holdout": holdout.drop(columns=[spec.timestamp_column]), "reference": reference},
        description=spec.description,
    )
    reg.set_version_tags(spec.name, info.version, {
        TRAINED_AS_OF_TAG: now.astimezone(UTC).isoformat(), PRODUCER_TAG: "threshold_refit",
        MODEL_TRAINED_AS_OF_TAG: model_trained_as_of(champion_info.tags, champion_info.created).astimezone(UTC).isoformat(),
        "steward.training_duration_flag": "normal: a threshold re-fit trains no model",
    })
    return RefittedCandidate(info, metrics, reason)


class RevalidationCode(StrEnum):
    NONE_PENDING = "none_pending"
    WAITING = "waiting"  # fewer new labelled rows than it needs
    EXPIRED = "expired"  # not decided within retrain.pending_days: dropped
    DECIDED = "decided"  # judged again: the report says how


@dataclass(frozen=True)
class Revalidation:
    code: RevalidationCode
    reason: str
    version: str | None = None
    report: ValidationReport | None = None


@task(name="revalidate-pending-candidates", retries=1, retry_delay_seconds=[5])
def revalidate_pending(spec: ModelSpec, as_of: datetime | None = None) -> list[Revalidation]:
    """Judge each pending candidate again once the labelled rows it needs exist; drop one whose deadline
    (``retrain.pending_days``) passes before it has them, or that is still inconclusive after it.

    The new rows are the production rows served after the candidate's training event time whose labels
    arrived by ``as_of``: no model trained on them. The gate runs on the stored hold-out plus these rows,
    with the same triggering metric; a pass makes it challenger (``candidate-validated`` starts the canary).
    """
    from steward import events
    from steward.training.data import DataError, prepare_features, production_training_frame
    from steward.training.validation import Contender, validate_candidate
    from tasks.common import emit_model_event
    from tasks.validation import record_validation

    now = as_of or datetime.now(UTC)
    reg = registry()
    outcomes: list[Revalidation] = []
    for pending in pending_candidates(spec):
        days = max(1, math.ceil((now - pending.created).total_seconds() / 86_400))
        try:
            frame, _ = production_training_frame(spec, now=now, window_days=days)
        except DataError:
            frame = pd.DataFrame()
        if len(frame):
            frame = frame[pd.to_datetime(frame[spec.timestamp_column], utc=True) >= pending.created]
        if len(frame) - pending.new_rows_used < pending.rows_needed:
            if now >= pending.expires:  # its deadline passed before it had the rows it needs
                reg.set_version_tags(spec.name, pending.version, {"steward.stage": EXPIRED_STAGE})
                outcomes.append(Revalidation(RevalidationCode.EXPIRED, f"{pending.describe()}: {len(frame)} new "
                                             "labelled rows; expired, dropped", pending.version))
                continue
            outcomes.append(Revalidation(RevalidationCode.WAITING, f"{pending.describe()}: {len(frame)} new labelled "
                                         "rows so far", pending.version))
            continue
        champion_info = reg.champion(spec.name)
        candidate = reg.load_model(spec.name, pending.version)
        champion = reg.load_model(spec.name, champion_info.version) if champion_info else None
        stored = reg.load_dataset(spec.name, pending.version, "holdout")
        rows = pd.concat([stored, frame], ignore_index=True)
        holdout = prepare_features(rows, spec)
        holdout[spec.target] = rows[spec.target].to_numpy()
        report = validate_candidate(
            spec, Contender(candidate.model, pending.version, candidate.version.input_schema),
            Contender(champion.model, champion.version.version, champion.version.input_schema) if champion else None,
            holdout, trigger_metric=pending.trigger_metric, refresh=pending.trigger.refresh,
        )
        action = record_validation.fn(spec, report)
        reg.set_version_tags(spec.name, pending.version, {REVALIDATION_ROWS_TAG: str(len(frame))})
        if report.verdict is ValidationVerdict.INCONCLUSIVE and now >= pending.expires:
            reg.set_version_tags(spec.name, pending.version, {"steward.stage": EXPIRED_STAGE})
            action = "inconclusive again past its deadline: expired, dropped"
        if report.passed:
            emit_model_event(events.CANDIDATE_VALIDATED, spec.name, version=pending.version,
                             champion_version=report.champion_version,
                             reason=f"revalidated with {len(frame)} new labelled rows: {report.summary()}")
        outcomes.append(Revalidation(RevalidationCode.DECIDED, f"v{pending.version} on {len(holdout)} rows "
                                     f"({len(frame)} new): {action}", pending.version, report))
    if not outcomes:
        outcomes.append(Revalidation(RevalidationCode.NONE_PENDING, "no candidate waits for labelled rows"))
    return outcomes


@task(name="archive-old-versions", retries=2, retry_delay_seconds=[2, 5])
def archive_old_versions(spec: ModelSpec) -> tuple[str, ...]:
    """Tag versions past retention archived; aliased ones and the rollback path are kept."""
    return registry().apply_retention(spec.name).archive
