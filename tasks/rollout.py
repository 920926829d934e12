"""Tasks of a rollout's lock and steps: claim, heartbeat, traffic per step, the step's evidence and decision.

The decisions are in ``steward.delivery`` (the lock in ``lock``, a step in ``decisions``); these
tasks read and write the registry, the prediction log and Prefect. ``observe_step`` is the loop the
canary and blue-green flows share; finishing a rollout (or its run) is in ``tasks.rollout_finish``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import numpy as np
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.exceptions import ObjectNotFound

from steward.delivery.decisions import ArmEvidence, StepAction, StepDecision, decide_canary_step
from steward.delivery.evidence import arm_evidence, validation_scores
from steward.delivery.lock import Candidate, Liveness, RolloutLock, StartAction
from steward.delivery.rollout import (
    OwnerRun,
    Phase,
    RolloutError,
    RolloutKind,
    RolloutState,
    baseline_requests,
    baseline_window,
    champion_only,
    routes_to_challenger,
    should_record_hold,
)
from steward.delivery.timeline import StepRecord, step_record, timeline
from steward.registry.errors import RegistryError
from steward.registry.history import CHALLENGER, CHAMPION, ChangeKind
from steward.registry.traffic import TrafficPlan
from steward.spec import CanaryPlan, ModelSpec
from steward.store.reader import join_labels
from tasks.common import current_flow_run_id, publish_table, registry, store


def _now() -> datetime:
    return datetime.now(UTC)


def _transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry I/O failures, never a rollout decision (an interruption or a refusal)."""
    return not isinstance(state.result(raise_on_failure=False), RolloutError)


# ---------------------------------------------------------------------------------------- the lock
def owner_run_state(owner: str) -> OwnerRun:
    """What Prefect knows about the flow run that owns a rollout."""
    try:
        run_id = UUID(owner)
    except ValueError:
        return OwnerRun.UNKNOWN
    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(run_id)
    except ObjectNotFound:
        return OwnerRun.UNKNOWN
    if run.state is None:
        return OwnerRun.UNKNOWN
    ended = {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}
    return OwnerRun.ENDED if run.state.type in ended else OwnerRun.RUNNING


def rollout_lock() -> RolloutLock:
    """The lock on the registry's version tags, with Prefect saying whether an owner's run still runs."""
    return RolloutLock(registry(), owner_run_state, now=_now)


def read_active(model: str) -> list[tuple[RolloutState, Liveness]]:
    return rollout_lock().active(model)


def read_candidate(model: str, version: str | None) -> Candidate:
    serving = registry().serving_state(model)
    resolved = str(version) if version is not None else serving.challenger
    info = registry().get_version(model, resolved) if resolved is not None else None
    return Candidate(
        version=resolved, champion=serving.champion, challenger=serving.challenger,
        validation_status=info.tags.get("steward.validation.status") if info else None,
        stage=info.stage if info else None,
    )


def withdraw(state: RolloutState, reason: str, *, phase: Phase = Phase.ABORTED) -> datetime:
    """Send the rollout's challenger no more traffic and end its record; returns when traffic was withdrawn."""
    serving = registry().serving_state(state.model)
    if routes_to_challenger(serving.plan, state.kind):
        registry().set_traffic_plan(state.model, champion_only(state.kind), reason=reason)
    return rollout_lock().release(state, phase, reason).heartbeat


@dataclass(frozen=True)
class Claim:
    action: StartAction
    state: RolloutState


@task(name="claim-rollout", cache_policy=NO_CACHE)
def claim_rollout(spec: ModelSpec, kind: RolloutKind, version: str | None, lease_seconds: float) -> Claim:
    """Take the model's rollout lock: start, resume or finish an interrupted rollout, or refuse.

    Stale rollouts the plan does not resume are withdrawn first. Raises ``RolloutRefused``.
    """
    logger = get_run_logger()
    owner = current_flow_run_id() or "no-flow-run"
    model = spec.name
    lock = rollout_lock()
    candidate = read_candidate(model, version)
    plan = lock.plan(model, kind, candidate, owner)
    for stale in plan.cleanup:
        withdraw(stale, f"cleaned up by flow run {owner}: its {stale.kind.value} was interrupted and is not resumed")
        registry().record(model, ChangeKind.DELIVERY_DECISION,
                          f"interrupted {stale.kind.value} of v{stale.version} cleaned up: traffic back to the champion",
                          from_version=stale.champion_version, to_version=stale.version, details={"rollout": stale.id})
        logger.warning("cleaned up an interrupted rollout: %s", stale.describe())
    mine = lock.claim(plan, model, kind, candidate, owner, lease_seconds)
    registry().record(model, ChangeKind.DELIVERY_DECISION, f"{kind.value} of v{mine.version}: {plan.reason}",
                      from_version=mine.champion_version, to_version=mine.version,
                      details={"rollout": mine.id, "action": plan.action.value, "owner": owner})
    logger.info("%s", plan.reason)
    return Claim(plan.action, mine)


@task(name="renew-rollout-lease", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 3],
      retry_condition_fn=_transient)
def renew_lease(state: RolloutState) -> RolloutState:
    """Check that the registry still looks as this rollout left it, then write a heartbeat."""
    serving = registry().serving_state(state.model)
    return rollout_lock().heartbeat(state, serving.champion, serving.challenger)


@task(name="save-rollout-state", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 3])
def persist(state: RolloutState) -> RolloutState:
    return rollout_lock().touch(state)


# ---------------------------------------------------------------------------------------- steps
@task(name="set-step-traffic", cache_policy=NO_CACHE)
def start_step(state: RolloutState, plan: TrafficPlan, reason: str) -> RolloutState:
    """Apply the step's traffic plan (gateways follow within their poll interval); the step starts now."""
    if registry().get_traffic_plan(state.model) != plan:
        registry().set_traffic_plan(state.model, plan, reason=reason)
    now = _now()
    return rollout_lock().save(state.evolve(step_started=now, heartbeat=now))


@dataclass(frozen=True)
class StepAnalysis:
    decision: StepDecision
    evidence: dict[str, ArmEvidence]
    at: datetime
    baseline: bool


@dataclass(frozen=True, eq=False)
class ValidationScores:
    """Each arm's version's scores on its own hold-out (what the score check compares its live scores with)."""

    by_arm: dict[str, np.ndarray] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)  # arm -> why its version has none


@task(name="read-validation-scores", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 3])
def read_validation_scores(spec: ModelSpec, state: RolloutState) -> ValidationScores:
    """Score each version's stored hold-out with the version itself, once per run of the rollout."""
    scores, missing = {}, {}
    for arm, version in state.arms.items():
        try:
            model = registry().load_model(spec.name, version).model
            holdout = registry().load_dataset(spec.name, version, "holdout")
        except RegistryError as error:
            missing[arm] = str(error)
        else:
            try:
                scores[arm] = validation_scores(model, holdout, spec)
            except Exception as error:  # the model's own code: whatever it raises, its scores are missing
                missing[arm] = f"v{version} failed to score its own hold-out: {type(error).__name__}: {error}"
        if arm in missing:
            get_run_logger().warning("no validation scores for the %s v%s: %s", arm, version, missing[arm])
    return ValidationScores(scores, missing)


@task(name="read-baseline", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 3])
def read_baseline(
    spec: ModelSpec, state: RolloutState, plan: CanaryPlan, references: ValidationScores | None = None
) -> ArmEvidence:
    """The champion's evidence for a step where the challenger takes all traffic (read once per step).

    Its requests in the rollout's last closed window, reaching back up to ``max_hold_seconds``
    before the window's end when that window holds fewer than ``min_requests_per_arm``.
    """
    start, end = baseline_window(state, _now(), plan.min_step_seconds)
    rows = store().read_predictions(spec.name, end - timedelta(seconds=plan.max_hold_seconds), end, served_only=True)
    rows = rows[(rows["arm"] == CHAMPION) & (rows["version"] == state.champion_version)]
    rows = baseline_requests(rows, start, plan.min_requests_per_arm)
    labelled = join_labels(rows, store().read_labels(spec.name, start=rows["time"].min())) if len(rows) else None
    return arm_evidence(rows, spec, versions={CHAMPION: state.champion_version}, labelled=labelled,
                        reference_scores=references.by_arm if references else None)[CHAMPION]


@task(name="analyse-step", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 3])
def analyse_step(
    spec: ModelSpec, state: RolloutState, percent: float, plan: CanaryPlan, baseline: ArmEvidence | None = None,
    references: ValidationScores | None = None,
) -> StepAnalysis:
    """Challenger against champion over [step start, now); with a ``baseline`` the champion's evidence is
    that earlier window's, and latency is not compared with it (see ``decide_canary_step``)."""
    now = _now()
    elapsed = (now - state.step_started).total_seconds()
    predictions = store().read_predictions(spec.name, state.step_started, now, served_only=True)
    labelled = join_labels(predictions, store().read_labels(spec.name, start=state.step_started))
    arms = {CHALLENGER: state.version} if baseline is not None else state.arms
    evidence = arm_evidence(predictions, spec, versions=arms, labelled=labelled,
                            reference_scores=references.by_arm if references else None)
    if baseline is not None:
        evidence[CHAMPION] = baseline
    # Without champion traffic alongside: a canary's last step relies on its previous step's matched slices;
    # a blue-green watch has no such step, so the SLO is its bar.
    slo = spec.slo.p95_latency_ms if state.kind is RolloutKind.BLUE_GREEN else None
    decision = decide_canary_step(evidence[CHALLENGER], evidence[CHAMPION], plan, elapsed_seconds=elapsed,
                                  across_windows=baseline is not None, latency_slo_ms=slo)
    return StepAnalysis(decision, evidence, now, baseline is not None)


@task(name="record-step-decision", cache_policy=NO_CACHE)
def record_step(state: RolloutState, record: StepRecord) -> None:
    """The decision with its reason and evidence, into the model's audit history."""
    registry().record(
        state.model, ChangeKind.DELIVERY_DECISION,
        f"{state.kind.value} step {record.step + 1} ({record.percent:g}%): {record.action.value}: {record.reason}",
        from_version=state.champion_version, to_version=state.version, details=record.details(),
    )


@task(name="read-timeline", cache_policy=NO_CACHE)
def read_timeline(state: RolloutState) -> list[StepRecord]:
    return timeline(registry().history(state.model), state.id)


def artifact_parts(state: RolloutState) -> tuple[str, ...]:
    return (state.kind.value.replace("_", "-"), state.model, f"v{state.version}")


@task(name="publish-timeline", cache_policy=NO_CACHE)
def publish_timeline(state: RolloutState, records: list[StepRecord]) -> None:
    publish_table([r.row() for r in records], *artifact_parts(state), "timeline",
                  description=f"{state.describe()}: each step, its traffic, its evidence and its decision")


def observe_step(
    spec: ModelSpec, state: RolloutState, percent: float, plan: CanaryPlan, poll_seconds: float,
    references: ValidationScores | None = None,
) -> tuple[RolloutState, StepRecord]:
    """Poll the step's evidence until it advances or rolls back; holds are recorded as they happen.

    ``references``: the versions' validation scores (``read_validation_scores``), read once per run.
    Raises ``RolloutInterrupted`` when the registry changes under the rollout.
    """
    logger = get_run_logger()
    holds, last_recorded, last_code = 0, None, None
    baseline = read_baseline(spec, state, plan, references) if percent >= 100 else None
    while True:
        state = renew_lease(state)
        analysis = analyse_step(spec, state, percent, plan, baseline, references)
        record = step_record(state, percent, analysis.decision, analysis.evidence, now=analysis.at, holds=holds,
                             baseline=analysis.baseline)
        if analysis.decision.action is not StepAction.HOLD:
            # The window took a while to read and judge: a rollback or promotion made meanwhile
            # would have this rollout act on a registry (and traffic) that is no longer its own.
            state = renew_lease(state)
            record_step(state, record)
            logger.info("step %d (%g%%): %s: %s", state.step + 1, percent, record.action.value, record.reason)
            return state, record
        holds += 1
        code = analysis.decision.code
        if should_record_hold(last_recorded, analysis.at, code_changed=last_code is not None and code != last_code):
            record_step(state, record)
            last_recorded, last_code = analysis.at, code
            logger.info("step %d (%g%%) holds: %s", state.step + 1, percent, record.reason)
        time.sleep(poll_seconds)
