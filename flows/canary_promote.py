"""Canary promote: ramp a validated challenger through the spec's steps, analysing each; promote or roll back."""

from __future__ import annotations

from prefect import flow, get_run_logger

from steward.delivery.decisions import StepAction
from steward.delivery.lock import StartAction
from steward.delivery.rollout import Phase, RolloutInterrupted, RolloutKind, lease_for
from steward.delivery.timeline import CanaryOutcome
from steward.registry.traffic import TrafficPlan
from tasks.data import load_model_spec
from tasks.rollout import (
    claim_rollout,
    observe_step,
    persist,
    publish_timeline,
    read_timeline,
    read_validation_scores,
    start_step,
)
from tasks.rollout_finish import finish_rollout, interrupted_outcome, withdraw_after_exit


@flow(
    name="canary-promote",
    description="Shift traffic to the challenger step by step, analysing each step against the champion; "
                "promote at the end, roll back on harm.",
    on_failure=[withdraw_after_exit], on_crashed=[withdraw_after_exit], on_cancellation=[withdraw_after_exit],
)
def canary_promote(
    spec_path: str, version: str | None = None, poll_seconds: float = 5.0, lease_seconds: float | None = None
) -> CanaryOutcome:
    """Roll out ``version`` (default: the challenger) through ``spec.canary.steps``.

    Each step's window is [step start, now) of the prediction log, read every ``poll_seconds``.
    A run killed at any point is resumed (or its decision finished) by the next run once its
    lease (``lease_seconds``, default the larger of 60 s and five polls) has expired.
    """
    logger = get_run_logger()
    spec = load_model_spec(spec_path)
    claim = claim_rollout(spec, RolloutKind.CANARY, version, lease_for(poll_seconds, lease_seconds))
    state, resumed = claim.state, claim.action is not StartAction.START
    references = read_validation_scores(spec, state) if state.phase is Phase.RAMPING else None
    steps = spec.canary.steps
    try:
        while state.phase is Phase.RAMPING:
            percent = steps[state.step]
            state = start_step(state, TrafficPlan(mode="canary", challenger_percent=percent),
                               f"canary of v{state.version}: step {state.step + 1} of {len(steps)}, {percent:g}%")
            state, record = observe_step(spec, state, percent, spec.canary, poll_seconds, references)
            if record.action is StepAction.ROLLBACK:  # saved first, so a crash cannot resume the step
                state = persist(state.evolve(phase=Phase.ROLLING_BACK, reason=record.reason))
            elif state.step + 1 < len(steps):
                state = persist(state.next_step(record.decided, percent))
                publish_timeline(state, read_timeline(state))
            else:
                state = persist(state.evolve(
                    phase=Phase.PROMOTING,
                    reason=f"canary passed all {len(steps)} steps ({', '.join(f'{s:g}%' for s in steps)})",
                ))
    except RolloutInterrupted as stop:
        logger.warning("canary of v%s stopped: %s", state.version, stop)
        return interrupted_outcome(state, stop, resumed)
    return finish_rollout(state, resumed)
