from __future__ import annotations

import numpy as np
import pytest

from steward.delivery.ab_verdict import ABReason, analyse_ab_test
from steward.delivery.decisions import (
    ArmEvidence,
    Check,
    StepAction,
    StepCode,
    Wait,
    decide_canary_step,
    latency_floor_ms,
)
from steward.spec import ABTestSpec, CanaryPlan

PLAN = CanaryPlan(min_requests_per_arm=200, min_step_seconds=60, max_hold_seconds=600, min_labelled=100)
rng = np.random.default_rng(11)


def arm(requests=1000, errors=2, latency=5.0, score_mean=0.3, wrong_rate=0.15, labelled=400) -> ArmEvidence:
    return ArmEvidence(
        requests=requests,
        errors=errors,
        latencies_ms=rng.lognormal(np.log(latency), 0.2, requests),
        scores=np.clip(rng.normal(score_mean, 0.1, requests), 0, 1),
        losses=rng.binomial(1, wrong_rate, labelled).astype(float),
    )


def test_equal_arms_advance():
    decision = decide_canary_step(arm(), arm(), PLAN, elapsed_seconds=120)
    assert decision.action is StepAction.ADVANCE and decision.code is StepCode.NO_BREACH, decision.reason
    assert decision.breaches == () and decision.waiting == () and len(decision.findings) == 4


@pytest.mark.parametrize(
    ("challenger", "expected"),
    [
        (dict(errors=60), Check.ERROR_RATE),
        (dict(latency=15.0), Check.LATENCY),
        (dict(wrong_rate=0.35), Check.ACCURACY),
        (dict(score_mean=0.7), Check.SCORE_DISTRIBUTION),
    ],
)
def test_each_breach_rolls_back(challenger, expected):
    decision = decide_canary_step(arm(**challenger), arm(), PLAN, elapsed_seconds=120)
    assert decision.action is StepAction.ROLLBACK and decision.code is StepCode.BREACH
    assert expected in decision.breaches, decision.reason


def test_error_spike_rolls_back_before_the_minimum_traffic():
    decision = decide_canary_step(arm(requests=40, errors=12, labelled=0), arm(labelled=0), PLAN, elapsed_seconds=5)
    assert decision.action is StepAction.ROLLBACK and decision.breaches == (Check.ERROR_RATE,), decision.reason


def test_too_little_traffic_holds_rather_than_aborts():
    decision = decide_canary_step(arm(requests=50, errors=0), arm(), PLAN, elapsed_seconds=120)
    assert decision.action is StepAction.HOLD and decision.code is StepCode.WAITING
    assert decision.waiting == (Wait.REQUESTS,), decision.reason
    young = decide_canary_step(arm(), arm(), PLAN, elapsed_seconds=10)
    assert young.action is StepAction.HOLD and young.waiting == (Wait.DURATION,), young.reason


def test_hold_turns_into_rollback_after_the_maximum():
    decision = decide_canary_step(arm(requests=50, errors=0), arm(), PLAN, elapsed_seconds=601)
    assert decision.action is StepAction.ROLLBACK and decision.code is StepCode.NO_EVIDENCE_IN_TIME
    assert decision.waiting == (Wait.REQUESTS,), decision.reason


def test_inconclusive_latency_holds():
    challenger = arm(requests=60, latency=7.4)  # point estimate over 1.5x, too few samples to be sure
    decision = decide_canary_step(challenger, arm(requests=60), PLAN.model_copy(update={"min_requests_per_arm": 50}),
                                  elapsed_seconds=120)
    assert decision.action in (StepAction.HOLD, StepAction.ROLLBACK)
    if decision.action is StepAction.HOLD:
        assert Wait.LATENCY_INCONCLUSIVE in decision.waiting, decision.reason


AB = ABTestSpec(metric="accuracy", minimum_effect=0.03)


def test_ab_equal_models_find_no_winner():
    a, b = rng.binomial(1, 0.8, 3000), rng.binomial(1, 0.8, 3000)
    result = analyse_ab_test(b, a, AB, assigned=(3000, 3000), planned_shares=(0.5, 0.5), binary=True)
    assert result.winner is None and result.code is ABReason.NO_CLEAR_WINNER, result.recommendation


def test_ab_known_difference_finds_the_right_winner():
    control, treatment = rng.binomial(1, 0.78, 4000), rng.binomial(1, 0.84, 4000)
    result = analyse_ab_test(treatment, control, AB, assigned=(4000, 4000), planned_shares=(0.5, 0.5), binary=True)
    assert result.winner == "treatment" and result.conclusive and result.code is ABReason.WINNER
    lower_better = ABTestSpec(metric="latency_ms", higher_is_better=False, minimum_effect=0.5)
    slow, fast = rng.normal(10, 2, 2000), rng.normal(9, 2, 2000)
    result = analyse_ab_test(slow, fast, lower_better, assigned=(2000, 2000), planned_shares=(0.5, 0.5), binary=False)
    assert result.winner == "control"


def test_ab_sample_ratio_mismatch_blocks_any_conclusion():
    control, treatment = rng.binomial(1, 0.70, 4000), rng.binomial(1, 0.90, 3000)
    result = analyse_ab_test(treatment, control, AB, assigned=(3000, 4000), planned_shares=(0.5, 0.5), binary=True)
    assert result.srm.mismatch and result.winner is None and result.code is ABReason.SAMPLE_RATIO_MISMATCH


def test_ab_fixed_design_waits_for_its_planned_size():
    policy = ABTestSpec(stopping="fixed", planned_samples_per_arm=5000, minimum_effect=0.03)
    a, b = rng.binomial(1, 0.7, 1000), rng.binomial(1, 0.9, 1000)
    result = analyse_ab_test(b, a, policy, assigned=(1000, 1000), planned_shares=(0.5, 0.5), binary=True)
    assert result.winner is None and result.code is ABReason.BELOW_PLANNED_SAMPLE
    assert result.additional_samples_per_arm == 4000


def test_ab_needs_outcomes():
    with pytest.raises(ValueError, match="labels arrive"):
        analyse_ab_test([], [1, 0], AB, assigned=(0, 2), planned_shares=(0.5, 0.5), binary=True)


def test_a_slower_p95_of_sub_millisecond_answers_is_not_a_breach():
    """2.5x of 0.4 ms is jitter, not a slower model: the increase must also exceed min_p95_latency_increase_ms."""
    decision = decide_canary_step(arm(latency=1.0), arm(latency=0.4), CanaryPlan(), elapsed_seconds=600)
    assert decision.action is StepAction.ADVANCE, decision.reason
    assert any("ms apart" in finding for finding in decision.findings)


WATCH = CanaryPlan(min_requests_per_arm=30, min_step_seconds=2, max_hold_seconds=60)  # as the flow tests' watch


@pytest.mark.parametrize("across_windows", [False, True])
def test_jitter_of_sub_millisecond_p95s_does_not_roll_back(across_windows):
    """0.3 ms against 0.8 ms: a ratio of 2.7 (as in the flaky blue-green failure), but half a millisecond."""
    decision = decide_canary_step(arm(latency=0.8), arm(latency=0.3), WATCH, elapsed_seconds=10,
                                  across_windows=across_windows)
    assert decision.action is StepAction.ADVANCE, decision.reason
    [latency] = [f for f in decision.findings if "p95 latency" in f]
    assert "ms apart" in latency, latency


def test_a_load_change_between_windows_is_not_a_breach_but_the_same_gap_in_one_window_is():
    """Measured in a blue-green watch: the good candidate at p95 4.9 ms after the switch, the champion at 1.3 ms before.

    Within one window (both arms under the same load) that gap is a slower model; across windows it is
    within what the machine's load moves, so it needs min_p95_latency_increase_across_windows_ms.
    """
    challenger, champion = arm(latency=3.6), arm(latency=1.0)
    same = decide_canary_step(challenger, champion, WATCH, elapsed_seconds=10)
    assert same.action is StepAction.ROLLBACK and same.breaches == (Check.LATENCY,), same.reason
    across = decide_canary_step(challenger, champion, WATCH, elapsed_seconds=10, across_windows=True)
    assert across.action is StepAction.ADVANCE, across.reason
    assert any("below 10 ms across windows" in f for f in across.findings)


@pytest.mark.parametrize("across_windows", [False, True])
def test_a_genuinely_slower_candidate_still_rolls_back(across_windows):
    """+20 ms on a sub-millisecond champion (the slow forest added 22-32 ms through the gateway)."""
    decision = decide_canary_step(arm(latency=16.0), arm(latency=0.5), WATCH, elapsed_seconds=10,
                                  across_windows=across_windows)
    assert decision.action is StepAction.ROLLBACK and Check.LATENCY in decision.breaches, decision.reason


def test_the_floor_across_windows_is_never_below_the_floor_in_one_window():
    plan = CanaryPlan(min_p95_latency_increase_ms=15, min_p95_latency_increase_across_windows_ms=5)
    assert latency_floor_ms(plan, across_windows=True) == 15
    assert latency_floor_ms(CanaryPlan(), across_windows=True) == 10
    assert latency_floor_ms(CanaryPlan(), across_windows=False) == 2
