"""Tasks that end a rollout: promote or roll back as decided, stop on an interruption, withdraw when the run dies.

Each step is safe to repeat after a crash: a re-run finishes a decision that a killed run had saved.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from steward import events
from steward.delivery.rollout import (
    Phase,
    RolloutError,
    RolloutInterrupted,
    RolloutResult,
    RolloutState,
    champion_only,
)
from steward.delivery.timeline import RolloutOutcome, roll_back_record
from steward.findings import MaintenanceKind, Priority
from steward.registry.history import CHALLENGER, CHAMPION, ChangeKind
from steward.registry.traffic import DEFAULT_PLAN
from steward.spec import SpecError, load_spec
from tasks.common import current_flow_run_id, emit_model_event, ledger, publish_markdown, registry
from tasks.fleet import reach_gateways
from tasks.rollout import (
    artifact_parts,
    persist,
    publish_timeline,
    read_active,
    read_timeline,
    rollout_lock,
    withdraw,
)


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
    return datetime.now(UTC)


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
    """Carry out a decided promotion or roll-back; each step is safe to repeat after a crash.

    Once the aliases and plan are final, the gateways are told and acknowledge (``outcome.reach``).
    """
    logger = get_run_logger()
    reason = state.reason
    withdrawn_at = None
    if state.phase is Phase.PROMOTING:
        promote_challenger(state, reason)
        reach = reach_gateways(state.model)
        emit_model_event(events.PROMOTED, state.model, version=state.version, previous_version=state.champion_version,
                         reason=reason, rollout=state.kind.value, rollout_id=state.id)
        result = RolloutResult.PROMOTED
        final = Phase.PROMOTED
    elif state.phase is Phase.ROLLING_BACK:
        withdrawn_at = withdraw_challenger(state, f"{state.kind.value} of v{state.version} rolled back: {reason}")
        reach = reach_gateways(state.model)  # told before the rejection's writes: exposure ends here
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
                             state.id, tuple(records), resumed, withdrawn_at, reach=reach)
    publish_markdown(outcome.to_markdown(), *artifact_parts(state), description=outcome.reason[:200])
    logger.info("%s", outcome.reason)
    return outcome


def interrupted_outcome(state: RolloutState, stop: RolloutInterrupted, resumed: bool) -> RolloutOutcome:
    """The registry changed under the rollout: whoever changed it owns traffic and aliases now; touch neither.

    The rollout's own record is ended too if it is still this run's (a heartbeat may have overwritten the mark).
    """
    why = str(stop)
    rollout_lock().abandon(state, why)
    registry().record(state.model, ChangeKind.DELIVERY_DECISION,
                      f"{state.kind.value} of v{state.version} stopped: {why}",
                      from_version=state.champion_version, to_version=state.version, details={"rollout": state.id})
    records = read_timeline(state)
    outcome = RolloutOutcome(state.model, state.kind, state.version, state.champion_version, RolloutResult.ABORTED,
                             f"stopped: {why}", state.id, tuple(records), resumed, interruption=stop.code)
    publish_markdown(outcome.to_markdown(), *artifact_parts(state), description=outcome.reason[:200])
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
