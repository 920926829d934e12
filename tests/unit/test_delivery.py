from __future__ import annotations

import numpy as np
import pytest

from steward.delivery import ArmEvidence, StepAction, analyse_ab_test, decide_canary_step
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
    assert decision.action is StepAction.ADVANCE, decision.reason
    assert any("error rate" in f for f in decision.findings) and any("p95 latency" in f for f in decision.findings)


@pytest.mark.parametrize(
    ("challenger", "expected"),
    [
        (dict(errors=60), "error rate"),
        (dict(latency=15.0), "p95 latency"),
        (dict(wrong_rate=0.35), "misclassification"),
        (dict(score_mean=0.7), "score distribution"),
    ],
)
def test_each_breach_rolls_back(challenger, expected):
    decision = decide_canary_step(arm(**challenger), arm(), PLAN, elapsed_seconds=120)
    assert decision.action is StepAction.ROLLBACK and expected in decision.reason


def test_error_spike_rolls_back_before_the_minimum_traffic():
    decision = decide_canary_step(arm(requests=40, errors=12, labelled=0), arm(labelled=0), PLAN, elapsed_seconds=5)
    assert decision.action is StepAction.ROLLBACK and "error rate" in decision.reason


def test_too_little_traffic_holds_rather_than_aborts():
    decision = decide_canary_step(arm(requests=50, errors=0), arm(), PLAN, elapsed_seconds=120)
    assert decision.action is StepAction.HOLD and "50 challenger" in decision.reason
    young = decide_canary_step(arm(), arm(), PLAN, elapsed_seconds=10)
    assert young.action is StepAction.HOLD and "minimum" in young.reason


def test_hold_turns_into_rollback_after_the_maximum():
    decision = decide_canary_step(arm(requests=50, errors=0), arm(), PLAN, elapsed_seconds=601)
    assert decision.action is StepAction.ROLLBACK and "max hold" in decision.reason


def test_inconclusive_latency_holds():
    challenger = arm(requests=60, latency=7.4)  # point estimate over 1.5x, too few samples to be sure
    decision = decide_canary_step(challenger, arm(requests=60), PLAN.model_copy(update={"min_requests_per_arm": 50}),
                                  elapsed_seconds=120)
    assert decision.action in (StepAction.HOLD, StepAction.ROLLBACK)
    if decision.action is StepAction.HOLD:
        assert "latency inconclusive" in decision.reason


AB = ABTestSpec(metric="accuracy", minimum_effect=0.03)


def test_ab_equal_models_find_no_winner():
    a, b = rng.binomial(1, 0.8, 3000), rng.binomial(1, 0.8, 3000)
    result = analyse_ab_test(b, a, AB, assigned=(3000, 3000), planned_shares=(0.5, 0.5), binary=True)
    assert result.winner is None and "no clear winner: run longer or change the design" in result.recommendation


def test_ab_known_difference_finds_the_right_winner():
    control, treatment = rng.binomial(1, 0.78, 4000), rng.binomial(1, 0.84, 4000)
    result = analyse_ab_test(treatment, control, AB, assigned=(4000, 4000), planned_shares=(0.5, 0.5), binary=True)
    assert result.winner == "treatment" and result.conclusive
    lower_better = ABTestSpec(metric="latency_ms", higher_is_better=False, minimum_effect=0.5)
    slow, fast = rng.normal(10, 2, 2000), rng.normal(9, 2, 2000)
    result = analyse_ab_test(slow, fast, lower_better, assigned=(2000, 2000), planned_shares=(0.5, 0.5), binary=False)
    assert result.winner == "control"


def test_ab_sample_ratio_mismatch_blocks_any_conclusion():
    control, treatment = rng.binomial(1, 0.70, 4000), rng.binomial(1, 0.90, 3000)
    result = analyse_ab_test(treatment, control, AB, assigned=(3000, 4000), planned_shares=(0.5, 0.5), binary=True)
    assert result.srm.mismatch and result.winner is None and "sample ratio mismatch" in result.recommendation


def test_ab_fixed_design_waits_for_its_planned_size():
    policy = ABTestSpec(stopping="fixed", planned_samples_per_arm=5000, minimum_effect=0.03)
    a, b = rng.binomial(1, 0.7, 1000), rng.binomial(1, 0.9, 1000)
    result = analyse_ab_test(b, a, policy, assigned=(1000, 1000), planned_shares=(0.5, 0.5), binary=True)
    assert result.winner is None and "pre-registered stop at 5000" in result.recommendation


def test_ab_needs_outcomes():
    with pytest.raises(ValueError, match="labels arrive"):
        analyse_ab_test([], [1, 0], AB, assigned=(0, 2), planned_shares=(0.5, 0.5), binary=True)


def test_a_slower_p95_of_sub_millisecond_answers_is_not_a_breach():
    """2.5x of 0.4 ms is jitter, not a slower model: the increase must also exceed min_p95_latency_increase_ms."""
    decision = decide_canary_step(arm(latency=1.0), arm(latency=0.4), CanaryPlan(), elapsed_seconds=600)
    assert decision.action is StepAction.ADVANCE, decision.reason
    assert any("ms apart" in finding for finding in decision.findings)
