"""Tasks of the rollback flow: the target, stopping rollouts under way, the alias back, traffic reset, the incident."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from steward.findings import MaintenanceKind, Priority
from steward.registry.errors import RegistryError
from steward.registry.history import CHALLENGER, CHAMPION, AuditEntry
from steward.registry.traffic import DEFAULT_PLAN
from tasks.common import current_flow_run_id, ledger, registry
from tasks.rollout import read_active, withdraw


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
    """The one step: the champion alias back to the rollback target (the flow then tells the gateways)."""
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
