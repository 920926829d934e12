"""Tasks of progressive delivery: the rollout lock in the registry, traffic steps, step analysis, finishing.

The decisions are in ``steward.rollout`` (lock, resume) and ``steward.delivery`` (a step); these
tasks read and write the registry, the prediction log, Prefect, the ledger and the gateway.
``observe_step`` and ``finish_rollout`` are the parts the canary and blue-green flows share.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.exceptions import ObjectNotFound

from steward import events
from steward.config import apply_environment
from steward.delivery.decisions import ArmEvidence, StepAction, StepDecision, decide_canary_step
from steward.delivery.evidence import arm_evidence
from steward.delivery.rollout import (
    CLAIM_SETTLE_SECONDS,
    ROLLOUT_TAG,
    Candidate,
    Liveness,
    OwnerRun,
    Phase,
    RolloutError,
    RolloutInterrupted,
    RolloutKind,
    RolloutOutcome,
    RolloutRefused,
    RolloutResult,
    RolloutState,
    SmokeReport,
    SmokeResult,
    StartAction,
    StartPlan,
    StepRecord,
    StepWindow,
    active_rollouts,
    baseline_requests,
    baseline_window,
    champion_only,
    claim_holds,
    interruption,
    liveness,
    plan_start,
    roll_back_record,
    routes_to_challenger,
    should_record_hold,
    step_record,
    timeline,
    valid_scores,
)
from steward.delivery.traffic import DEFAULT_PLAN, Arm, TrafficMode, TrafficPlan
from steward.findings import MaintenanceKind, Priority
from steward.registry.adapter import RegistryError
from steward.registry.history import CHALLENGER, CHAMPION, AuditEntry, ChangeKind
from steward.spec import CanaryPlan, ModelSpec, SpecError, load_spec
from steward.store.log import join_labels
from steward.training.probes import edge_case_batches
from tasks.common import (
    current_flow_run_id,
    emit_model_event,
    ledger,
    publish_markdown,
    publish_table,
    registry,
    store,
)

IDLE_COLOUR_TIMEOUT_SECONDS = 60.0
SMOKE_SAMPLE_ROWS = 20


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


def read_active(model: str) -> list[tuple[RolloutState, Liveness]]:
    """The model's unfinished rollouts, each with whether its owner is still at work."""
    tags = {info.version: info.tags for info in registry().list_versions(model)}
    now = _now()
    return [(state, liveness(state, owner_run_state(state.owner), now)) for state in active_rollouts(tags)]


def read_state(model: str, version: str) -> RolloutState | None:
    text = registry().get_version(model, version).tags.get(ROLLOUT_TAG)
    return RolloutState.from_json(text) if text else None


def save_state(state: RolloutState) -> RolloutState:
    registry().set_version_tags(state.model, state.version, {ROLLOUT_TAG: state.to_json()})
    return state


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
    withdrawn = _now()
    save_state(state.evolve(phase=phase, reason=reason, heartbeat=withdrawn))
    return withdrawn


@dataclass(frozen=True)
class Claim:
    action: StartAction
    state: RolloutState


@task(name="claim-rollout", cache_policy=NO_CACHE)
def claim_rollout(spec: ModelSpec, kind: RolloutKind, version: str | None, lease_seconds: float) -> Claim:
    """Take the model's rollout lock: start, resume or finish an interrupted rollout, or refuse.

    The claim is written, then read again after ``CLAIM_SETTLE_SECONDS``: two runs claiming at the
    same moment then see each other and exactly one goes on.
    """
    logger = get_run_logger()
    owner = current_flow_run_id() or "no-flow-run"
    model = spec.name
    candidate = read_candidate(model, version)
    plan: StartPlan = plan_start(model, kind, candidate, read_active(model), owner)
    for stale in plan.cleanup:
        withdraw(stale, f"cleaned up by flow run {owner}: its {stale.kind.value} was interrupted and is not resumed")
        registry().record(model, ChangeKind.DELIVERY_DECISION,
                          f"interrupted {stale.kind.value} of v{stale.version} cleaned up: traffic back to the champion",
                          from_version=stale.champion_version, to_version=stale.version, details={"rollout": stale.id})
        logger.warning("cleaned up an interrupted rollout: %s", stale.describe())
    if plan.action is StartAction.REFUSE:
        raise RolloutRefused(plan.reason)

    now = _now()
    if plan.state is None:
        mine = RolloutState.begin(model, kind, candidate.version, candidate.champion, owner, now=now,
                                  lease_seconds=lease_seconds)
    else:
        mine = plan.state.evolve(owner=owner, claimed=now, heartbeat=now, lease_seconds=lease_seconds,
                                 step_started=now if plan.action is StartAction.RESUME else plan.state.step_started)
    save_state(mine)
    time.sleep(CLAIM_SETTLE_SECONDS)
    lost = claim_holds(mine, read_active(model))
    if lost:
        stored = read_state(model, mine.version)
        if plan.action is StartAction.START and stored is not None and stored.id == mine.id and stored.owner == owner:
            save_state(mine.evolve(phase=Phase.ABORTED, reason=lost))
        raise RolloutRefused(lost)
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
    why = interruption(state, read_state(state.model, state.version), serving.champion, serving.challenger)
    if why:
        raise RolloutInterrupted(why)
    return save_state(state.evolve(heartbeat=_now()))


@task(name="save-rollout-state", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 3])
def persist(state: RolloutState) -> RolloutState:
    return save_state(state.evolve(heartbeat=_now()))


@task(name="set-step-traffic", cache_policy=NO_CACHE)
def start_step(state: RolloutState, plan: TrafficPlan, reason: str) -> RolloutState:
    """Apply the step's traffic plan (gateways follow within their poll interval); the step starts now."""
    if registry().get_traffic_plan(state.model) != plan:
        registry().set_traffic_plan(state.model, plan, reason=reason)
    now = _now()
    return save_state(state.evolve(step_started=now, heartbeat=now))


# ---------------------------------------------------------------------------------------- analysis
@dataclass(frozen=True)
class StepAnalysis:
    decision: StepDecision
    evidence: dict[str, ArmEvidence]
    at: datetime
    baseline: bool


@task(name="read-baseline", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 3])
def read_baseline(spec: ModelSpec, state: RolloutState, plan: CanaryPlan) -> ArmEvidence:
    """The champion's evidence for a step where the challenger takes all traffic (read once per step).

    Its requests in the rollout's last closed window, reaching back up to ``max_hold_seconds``
    before the window's end when that window holds fewer than ``min_requests_per_arm``.
    """
    start, end = baseline_window(state, _now(), plan.min_step_seconds)
    rows = store().read_predictions(spec.name, end - timedelta(seconds=plan.max_hold_seconds), end, served_only=True)
    rows = rows[(rows["arm"] == CHAMPION) & (rows["version"] == state.champion_version)]
    rows = baseline_requests(rows, start, plan.min_requests_per_arm)
    labelled = join_labels(rows, store().read_labels(spec.name, start=rows["time"].min())) if len(rows) else None
    return arm_evidence(rows, spec, versions={CHAMPION: state.champion_version}, labelled=labelled)[CHAMPION]


@task(name="analyse-step", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 3])
def analyse_step(
    spec: ModelSpec, state: RolloutState, percent: float, plan: CanaryPlan, baseline: ArmEvidence | None = None
) -> StepAnalysis:
    """Challenger against champion over [step start, now); with a ``baseline`` the champion is judged on it."""
    now = _now()
    elapsed = (now - state.step_started).total_seconds()
    predictions = store().read_predictions(spec.name, state.step_started, now, served_only=True)
    labelled = join_labels(predictions, store().read_labels(spec.name, start=state.step_started))
    arms = {CHALLENGER: state.version} if baseline is not None else state.arms
    evidence = arm_evidence(predictions, spec, versions=arms, labelled=labelled)
    if baseline is not None:
        evidence[CHAMPION] = baseline
    decision = decide_canary_step(evidence[CHALLENGER], evidence[CHAMPION], plan, elapsed_seconds=elapsed,
                                  across_windows=baseline is not None)
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


def _artifact_parts(state: RolloutState) -> tuple[str, ...]:
    return (state.kind.value.replace("_", "-"), state.model, f"v{state.version}")


@task(name="publish-timeline", cache_policy=NO_CACHE)
def publish_timeline(state: RolloutState, records: list[StepRecord]) -> None:
    publish_table([r.row() for r in records], *_artifact_parts(state), "timeline",
                  description=f"{state.describe()}: each step, its traffic, its evidence and its decision")


def observe_step(
    spec: ModelSpec, state: RolloutState, percent: float, plan: CanaryPlan, poll_seconds: float
) -> tuple[RolloutState, StepRecord]:
    """Poll the step's evidence until it advances or rolls back; holds are recorded as they happen.

    Raises ``RolloutInterrupted`` when the registry changes under the rollout.
    """
    logger = get_run_logger()
    holds, last_recorded = 0, None
    baseline = read_baseline(spec, state, plan) if percent >= 100 else None
    while True:
        state = renew_lease(state)
        analysis = analyse_step(spec, state, percent, plan, baseline)
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
        if should_record_hold(last_recorded, analysis.at):
            record_step(state, record)
            last_recorded = analysis.at
            logger.info("step %d (%g%%) holds: %s", state.step + 1, percent, record.reason)
        time.sleep(poll_seconds)


# ---------------------------------------------------------------------------------------- finishing
@task(name="promote-challenger", cache_policy=NO_CACHE)
def promote_challenger(state: RolloutState, reason: str) -> None:
    """Challenger to champion (the old champion stays the rollback target), then all traffic to it."""
    if registry().alias_version(state.model, CHAMPION) != state.version:
        registry().promote(state.model, state.version, reason=reason)
    elif registry().alias_version(state.model, CHALLENGER) == state.version:  # a crash inside promote
        registry().clear_alias(state.model, CHALLENGER, reason=f"v{state.version} became champion")
    if registry().get_traffic_plan(state.model) != DEFAULT_PLAN:
        registry().set_traffic_plan(state.model, DEFAULT_PLAN, reason=f"v{state.version} promoted: {reason}")


@task(name="withdraw-challenger", cache_policy=NO_CACHE)
def withdraw_challenger(state: RolloutState, reason: str) -> datetime:
    """Traffic to the champion at once; returns when the plan was changed."""
    if registry().get_traffic_plan(state.model) != champion_only(state.kind):
        registry().set_traffic_plan(state.model, champion_only(state.kind), reason=reason)
    return _now()


@task(name="reject-version", cache_policy=NO_CACHE)
def reject_version(state: RolloutState, reason: str) -> None:
    """Tag the version rejected with the reason; it stops being the challenger."""
    registry().set_version_tags(state.model, state.version, {"steward.stage": "rejected",
                                                             "steward.rejected_reason": reason})
    if registry().alias_version(state.model, CHALLENGER) == state.version:
        registry().clear_alias(state.model, CHALLENGER, reason=f"v{state.version} rejected: {reason}")


@task(name="record-delivery-incident", cache_policy=NO_CACHE)
def record_incident(state: RolloutState, title: str, detail: str, *, priority: Priority, incident: bool) -> str:
    entry = ledger().record(
        state.model, title, detail=detail, kind=MaintenanceKind.CORRECTIVE, priority=priority,
        source=state.kind.value, fingerprint=f"{state.kind.value}:{state.id}:{state.version}",
        flow_run_id=current_flow_run_id(), incident=incident,
    )
    return entry.id


def finish_rollout(state: RolloutState, resumed: bool) -> RolloutOutcome:
    """Carry out a decided promotion or roll-back; each step is safe to repeat after a crash."""
    logger = get_run_logger()
    reason = state.reason
    withdrawn_at = None
    if state.phase is Phase.PROMOTING:
        promote_challenger(state, reason)
        emit_model_event(events.PROMOTED, state.model, version=state.version, previous_version=state.champion_version,
                         reason=reason, rollout=state.kind.value, rollout_id=state.id)
        result = RolloutResult.PROMOTED
        final = Phase.PROMOTED
    elif state.phase is Phase.ROLLING_BACK:
        withdrawn_at = withdraw_challenger(state, f"{state.kind.value} of v{state.version} rolled back: {reason}")
        reject_version(state, reason)
        aftermath = roll_back_record(state)
        record_incident(state, aftermath.title, reason, priority=aftermath.priority,
                        incident=aftermath.incident)
        emit_model_event(aftermath.event, state.model, version=state.version, champion_version=state.champion_version,
                         reason=reason, rollout=state.kind.value, rollout_id=state.id)
        result = aftermath.result
        final = Phase.ROLLED_BACK
    else:
        raise RolloutError(f"finish_rollout got a rollout still {state.phase.value}: {state.describe()}")
    done = persist(state.evolve(phase=final))
    records = read_timeline(done)
    publish_timeline(done, records)
    outcome = RolloutOutcome(state.model, state.kind, state.version, state.champion_version, result, reason,
                             state.id, tuple(records), resumed, withdrawn_at)
    publish_markdown(outcome.to_markdown(), *_artifact_parts(state), description=outcome.reason[:200])
    logger.info("%s", outcome.reason)
    return outcome


def interrupted_outcome(state: RolloutState, why: str, resumed: bool) -> RolloutOutcome:
    """The registry changed under the rollout: whoever changed it owns traffic and aliases now; touch neither.

    The rollout's own record is ended too if it is still this run's (a heartbeat may have overwritten the mark).
    """
    stored = read_state(state.model, state.version)
    if stored is not None and stored.id == state.id and stored.owner == state.owner and not stored.phase.terminal:
        save_state(stored.evolve(phase=Phase.ABORTED, reason=why))
    registry().record(state.model, ChangeKind.DELIVERY_DECISION,
                      f"{state.kind.value} of v{state.version} stopped: {why}",
                      from_version=state.champion_version, to_version=state.version, details={"rollout": state.id})
    records = read_timeline(state)
    outcome = RolloutOutcome(state.model, state.kind, state.version, state.champion_version, RolloutResult.ABORTED,
                             f"stopped: {why}", state.id, tuple(records), resumed)
    publish_markdown(outcome.to_markdown(), *_artifact_parts(state), description=outcome.reason[:200])
    return outcome


def withdraw_after_exit(flow: Any, flow_run: Any, state: Any) -> None:
    """Flow hook (failed, crashed, cancelled): a ramping rollout this run owns stops sending the challenger traffic.

    A rollout that had already decided (promoting, rolling back) is left for a re-run to finish.
    """
    spec_path = (flow_run.parameters or {}).get("spec_path")
    if not spec_path:
        return
    try:
        model = load_spec(spec_path).name
    except SpecError:  # the run failed before it could claim anything
        return
    for rollout, _ in read_active(model):
        if rollout.owner == str(flow_run.id) and rollout.phase is Phase.RAMPING:
            withdraw(rollout, f"flow run {flow_run.id} ended ({state.name}) during the {rollout.kind.value}; "
                              "traffic back to the champion")


# ---------------------------------------------------------------------------------------- blue-green
def _admin_headers(actor: str) -> dict[str, str]:
    token = apply_environment().admin_token
    if token is None or not token.get_secret_value():
        raise RolloutError("the blue-green smoke test forces requests to the idle colour, which needs the gateway's "
                           "admin token: set STEWARD_ADMIN_TOKEN to the token the gateway was started with")
    return {"authorization": f"Bearer {token.get_secret_value()}", "x-steward-actor": actor}


@task(name="wait-for-idle-colour", cache_policy=NO_CACHE)
def wait_for_idle_colour(gateway_url: str, state: RolloutState) -> None:
    """Until the gateway has the challenger loaded (it loads it as soon as the alias exists)."""
    headers = _admin_headers(f"blue-green {state.owner}")
    deadline = time.monotonic() + IDLE_COLOUR_TIMEOUT_SECONDS
    with httpx.Client(base_url=gateway_url.rstrip("/"), headers=headers, timeout=30) as client:
        while True:
            try:
                answer = client.post(f"/admin/models/{state.model}/refresh")
            except httpx.HTTPError as error:
                raise RolloutError(f"the gateway at {gateway_url} cannot be reached ({error}); start it "
                                   f"(`steward serve {state.model}`) or pass its URL") from error
            if answer.status_code in (401, 403, 404):
                raise RolloutError(f"the gateway at {gateway_url} refused the refresh ({answer.status_code}: "
                                   f"{answer.text[:200]}); check the admin token and that it serves {state.model}")
            loaded = {m["model"]: m for m in answer.json().get("models", [])}.get(state.model, {})
            if (loaded.get("challenger") or {}).get("version") == state.version:
                return
            if time.monotonic() > deadline:
                raise RolloutError(
                    f"the gateway at {gateway_url} has not loaded {state.model} v{state.version} as the idle colour "
                    f"after {IDLE_COLOUR_TIMEOUT_SECONDS:.0f} s (problems: {loaded.get('problems')}); see its /admin/status"
                )
            time.sleep(0.5)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    def plain(value: Any) -> Any:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        return value.item() if hasattr(value, "item") else value

    return [{k: plain(v) for k, v in row.items()} for row in frame.astype(object).to_dict(orient="records")]


def _smoke_one(client: httpx.Client, model: str, case: str, frame: pd.DataFrame, must_answer: bool) -> SmokeResult:
    try:
        answer = client.post(f"/v1/models/{model}/predict", json={"dataframe_records": _records(frame)})
    except httpx.HTTPError as error:
        return SmokeResult(case, len(frame), must_answer, 0, None, None, 0, False, f"{type(error).__name__}: {error}")
    body = answer.json() if answer.headers.get("content-type", "").startswith("application/json") else {}
    if answer.status_code >= 400:
        return SmokeResult(case, len(frame), must_answer, answer.status_code, None, None, 0, False,
                           str(body.get("error", answer.text))[:300])
    predictions = body.get("predictions") or []
    return SmokeResult(case, len(frame), must_answer, answer.status_code, body.get("version"), body.get("arm"),
                       len(predictions), valid_scores(body.get("scores"), len(frame)))


@task(name="smoke-test-idle-colour", cache_policy=NO_CACHE)
def smoke_test(spec: ModelSpec, gateway_url: str, state: RolloutState) -> SmokeReport:
    """Forced-arm requests to the idle colour: sample rows of its held-out data, then the validation edge cases."""
    sample = registry().load_dataset(spec.name, state.version, "holdout")
    features = sample[list(spec.feature_names)]
    cases: list[tuple[str, pd.DataFrame, bool]] = [
        (f"sample row {i}", features.iloc[[i]], True) for i in range(min(SMOKE_SAMPLE_ROWS, len(features)))
    ]
    cases.append(("sample batch", features.head(100), True))
    cases += [(name, batch, must) for name, (batch, must) in edge_case_batches(spec, features).items()]
    headers = {**_admin_headers(f"blue-green {state.owner}"), "x-steward-arm": CHALLENGER}
    with httpx.Client(base_url=gateway_url.rstrip("/"), headers=headers, timeout=30) as client:
        results = tuple(_smoke_one(client, spec.name, case, frame, must) for case, frame, must in cases)
    return SmokeReport(state.version, results)


@task(name="switch-colour", cache_policy=NO_CACHE)
def switch_colour(state: RolloutState, baseline_seconds: float, reason: str) -> RolloutState:
    """The atomic switch: one plan change sends every request to the new colour.

    The champion's baseline is its traffic before the blue-green began: the smoke test's forced
    requests share the gateway's batches and would slow the champion's answers. The state is saved
    first (step 1, with that window), so a crash right after the switch resumes the watch.
    """
    began = state.step_started
    baseline = StepWindow(0.0, began - timedelta(seconds=baseline_seconds), began)
    now = _now()
    switched = save_state(state.evolve(step=1, step_started=now, heartbeat=now, windows=(*state.windows, baseline)))
    registry().set_traffic_plan(state.model, TrafficPlan(mode=TrafficMode.BLUE_GREEN, live=Arm.CHALLENGER),
                                reason=reason)
    started = _now()
    return save_state(switched.evolve(step_started=started, heartbeat=started))


# ---------------------------------------------------------------------------------------- rollback
@task(name="check-rollback-target", cache_policy=NO_CACHE)
def rollback_target(model: str) -> tuple[str, str]:
    """(current champion, version to restore); raises before anything changes when there is none."""
    current = registry().alias_version(model, CHAMPION)
    if current is None:
        raise RegistryError(f"{model!r} has no champion, so there is nothing to roll back")
    target = registry().rollback_target(model)
    if target is None:
        raise RegistryError(f"{model} has no earlier champion to roll back to (champion is v{current}); "
                            "promote a specific version with `steward promote` instead")
    return current, target


@task(name="stop-rollouts", cache_policy=NO_CACHE)
def stop_rollouts(model: str, reason: str) -> tuple[str, ...]:
    """End every unfinished rollout of the model; its challenger takes no more traffic and loses the alias.

    The rollout's own flow run sees its record ended at its next poll and stops without touching anything.
    """
    stopped = []
    for state, _ in read_active(model):
        withdraw(state, f"stopped by a rollback: {reason}")
        if registry().alias_version(model, CHALLENGER) == state.version:
            registry().clear_alias(model, CHALLENGER, reason=f"rollback stopped the {state.kind.value} of "
                                                             f"v{state.version}: {reason}")
        stopped.append(state.describe())
    return tuple(stopped)


@task(name="restore-rollback-target", cache_policy=NO_CACHE)
def restore_champion(model: str, reason: str, actor: str | None) -> AuditEntry:
    """The one step: the champion alias back to the rollback target (gateways follow at their next poll)."""
    return registry().rollback(model, reason=reason, actor=actor)


@task(name="reset-traffic-plan", cache_policy=NO_CACHE)
def reset_traffic(model: str, reason: str, actor: str | None) -> None:
    if registry().get_traffic_plan(model) != DEFAULT_PLAN:
        registry().set_traffic_plan(model, DEFAULT_PLAN, reason=reason, actor=actor)


@task(name="record-rollback-incident", cache_policy=NO_CACHE)
def record_rollback_incident(entry: AuditEntry) -> str:
    recorded = ledger().record(
        entry.model, f"rolled back from v{entry.from_version} to v{entry.to_version}",
        detail=f"by {entry.actor}: {entry.reason}", kind=MaintenanceKind.CORRECTIVE, priority=Priority.CRITICAL,
        source="rollback", fingerprint=f"rollback:{entry.sequence}", flow_run_id=current_flow_run_id(), incident=True,
    )
    return recorded.id
