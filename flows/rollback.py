"""Rollback: the previous champion back in one step, traffic to it alone, recorded as an incident."""

from __future__ import annotations

from prefect import flow, get_run_logger

from steward import events
from steward.delivery.timeline import RollbackOutcome
from tasks.common import emit_model_event, publish_markdown
from tasks.fleet import reach_gateways
from tasks.rollback import (
    record_rollback_incident,
    reset_traffic,
    restore_champion,
    rollback_target,
    stop_rollouts,
)


@flow(name="rollback", description="Return the champion alias to the previous champion now. Say why in 'reason'.")
def rollback(model: str, reason: str, actor: str | None = None) -> RollbackOutcome:
    """Restore the rollback target read from the alias history; returns once every live gateway serves it.

    A rollout in progress is stopped first: its challenger takes no more traffic and loses the alias.
    The gateways are told at once and acknowledged (``outcome.reach``); one that does not answer is
    named there, the rollback stands, and that gateway follows at its next registry poll.
    """
    logger = get_run_logger()
    if not reason or not reason.strip():
        raise ValueError("say why in `reason`: it is recorded in the history, the event and the incident")
    reason = reason.strip()
    current, target = rollback_target(model)
    stopped = stop_rollouts(model, reason)
    entry = restore_champion(model, reason, actor)
    reset_traffic(model, f"rollback to v{target}: {reason}", actor)
    reach = reach_gateways(model)
    incident = record_rollback_incident(entry)
    emit_model_event(events.ROLLED_BACK, model, version=target, from_version=current, champion_version=target,
                     reason=reason, actor=entry.actor)
    outcome = RollbackOutcome(model, current, target, entry.actor, reason, incident, stopped, reach, entry.time)
    publish_markdown(outcome.to_markdown(), "rollback", model, f"v{current}-to-v{target}")
    logger.info("%s rolled back from v%s to v%s by %s: %s", model, current, target, entry.actor, reason)
    return outcome
