"""Blue-green: smoke-test the idle colour through the gateway, switch atomically, watch, switch back on harm."""

from __future__ import annotations

from prefect import flow, get_run_logger

from steward.delivery.blue_green import smoke_record, watch_plan
from steward.delivery.decisions import StepAction
from steward.delivery.lock import StartAction
from steward.delivery.rollout import Phase, RolloutInterrupted, RolloutKind, lease_for
from steward.delivery.timeline import BlueGreenOutcome
from tasks.blue_green import smoke_test, switch_colour, wait_for_idle_colour
from tasks.data import load_model_spec
from tasks.rollout import (
    claim_rollout,
    observe_step,
    persist,
    read_validation_scores,
    record_step,
    renew_lease,
)
from tasks.rollout_finish import finish_rollout, interrupted_outcome, withdraw_after_exit


@flow(
    name="blue-green",
    description="Smoke-test the challenger as the idle colour, switch all traffic to it at once, watch it "
                "against the champion's last window, and switch back on harm.",
    on_failure=[withdraw_after_exit], on_crashed=[withdraw_after_exit], on_cancellation=[withdraw_after_exit],
)
def blue_green(
    spec_path: str,
    gateway_url: str,
    version: str | None = None,
    watch_seconds: float | None = None,
    poll_seconds: float = 5.0,
    lease_seconds: float | None = None,
) -> BlueGreenOutcome:
    """Switch ``version`` (default: the challenger) live behind the gateway at ``gateway_url``.

    The watch lasts ``watch_seconds`` (default: the spec's ``canary.min_step_seconds``) and longer
    while the evidence is too thin, up to ``canary.max_hold_seconds``; the thresholds are the
    canary's. The champion's baseline is its traffic over the same length before the switch.
    """
    logger = get_run_logger()
    spec = load_model_spec(spec_path)
    watch = watch_plan(spec.canary, watch_seconds if watch_seconds is not None else spec.canary.min_step_seconds)
    claim = claim_rollout(spec, RolloutKind.BLUE_GREEN, version, lease_for(poll_seconds, lease_seconds))
    state, resumed = claim.state, claim.action is not StartAction.START
    references = read_validation_scores(spec, state) if state.phase is Phase.RAMPING else None
    try:
        if state.phase is Phase.RAMPING and state.step == 0:
            state = renew_lease(state)
            wait_for_idle_colour(gateway_url, state)
            report = smoke_test(spec, gateway_url, state)
            state = renew_lease(state)  # a rollback or promotion made during the smoke test is not its to judge
            record = smoke_record(state, report)
            record_step(state, record)
            if not report.passed:
                state = persist(state.evolve(phase=Phase.ROLLING_BACK, reason=report.summary()))
            else:
                state = switch_colour(state, watch.min_step_seconds,
                                      f"blue-green: v{state.version} live after its smoke test passed")
        if state.phase is Phase.RAMPING:
            state, record = observe_step(spec, state, 100.0, watch, poll_seconds, references)
            if record.action is StepAction.ROLLBACK:
                state = persist(state.evolve(phase=Phase.ROLLING_BACK, reason=record.reason))
            else:
                state = persist(state.evolve(
                    phase=Phase.PROMOTING,
                    reason=f"blue-green watch passed after {(record.decided - record.started).total_seconds():.0f} s: "
                           + record.reason,
                ))
    except RolloutInterrupted as stop:
        logger.warning("blue-green of v%s stopped: %s", state.version, stop)
        return interrupted_outcome(state, stop, resumed)
    return finish_rollout(state, resumed)
