from __future__ import annotations

import dataclasses

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
)
from steward.spec import ABTestSpec, CanaryPlan

PLAN = CanaryPlan(min_requests_per_arm=200, min_step_seconds=60, max_hold_seconds=600, min_labelled=100)
rng = np.random.default_rng(11)


def arm(requests=1000, errors=2, latency=5.0, score_mean=0.3, wrong_rate=0.15, labelled=400,
        reference_mean=None, seconds=120.0) -> ArmEvidence:
    """One arm's evidence: requests spread over ``seconds``, validation scores like its live ones unless told."""
    return ArmEvidence(
        requests=requests,
        errors=errors,
        latencies_ms=rng.lognormal(np.log(latency), 0.2, requests),
        times_s=np.sort(rng.uniform(0, seconds, requests)),
        scores=np.clip(rng.normal(score_mean, 0.1, requests), 0, 1),
        losses=rng.binomial(1, wrong_rate, labelled).astype(float),
        reference_scores=np.clip(rng.normal(score_mean if reference_mean is None else reference_mean, 0.1, 2000), 0, 1),
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
        (dict(score_mean=0.7, reference_mean=0.3), Check.SCORE_DISTRIBUTION),
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
    challenger = arm(requests=60, latency=8.0)  # point estimate over 1.5x, too few samples to be sure
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
    assert any("ms floor" in finding for finding in decision.findings)


WATCH = CanaryPlan(min_requests_per_arm=30, min_step_seconds=2, max_hold_seconds=60)  # as the flow tests' watch


# ------------------------------------------------------------------ the score check: against the own hold-out
def test_a_good_retrain_after_concept_drift_is_not_rolled_back_for_scoring_unlike_the_champion():
    """The retrain learnt the new concept: its scores differ from the champion's by design (KS about 0.8 here,
    where the old arm-against-arm check rolled back above 0.3), but match its own validation scores."""
    retrain = arm(score_mean=0.55, reference_mean=0.55)
    champion = arm(score_mean=0.3, reference_mean=0.3)
    decision = decide_canary_step(retrain, champion, PLAN, elapsed_seconds=120)
    assert decision.action is StepAction.ADVANCE and Check.SCORE_DISTRIBUTION not in decision.breaches, decision.reason


def test_a_population_shift_that_moves_both_arms_is_not_the_challengers_fault():
    challenger = arm(score_mean=0.5, reference_mean=0.3)
    champion = arm(score_mean=0.5, reference_mean=0.3)
    decision = decide_canary_step(challenger, champion, PLAN, elapsed_seconds=120)
    assert decision.action is StepAction.ADVANCE, decision.reason


def test_a_challenger_scoring_live_traffic_unlike_its_hold_out_is_rolled_back_at_once():
    challenger = arm(requests=60, score_mean=0.8, reference_mean=0.3, labelled=0)
    decision = decide_canary_step(challenger, arm(labelled=0), PLAN, elapsed_seconds=5)
    assert decision.action is StepAction.ROLLBACK and decision.breaches == (Check.SCORE_DISTRIBUTION,), decision.reason


def test_without_validation_scores_the_score_check_says_so_and_does_not_breach():
    challenger = dataclasses.replace(arm(score_mean=0.8), reference_scores=np.empty(0))
    decision = decide_canary_step(challenger, arm(), PLAN, elapsed_seconds=120)
    assert Check.SCORE_DISTRIBUTION not in decision.breaches
    assert any("no validation scores" in finding for finding in decision.findings), decision.findings


# ------------------------------------------------------------------ latency: matched slices, or the SLO
def _loaded(requests: int, early_share: float, base_ms: float) -> ArmEvidence:
    """Requests over 120 s; from 60 s on the machine is loaded and every answer takes 4x as long."""
    early = int(requests * early_share)
    times = np.concatenate([rng.uniform(0, 60, early), rng.uniform(60, 120, requests - early)])
    latencies = rng.lognormal(np.log(base_ms), 0.2, requests) * np.where(times < 60, 1.0, 4.0)
    return ArmEvidence(requests, 0, latencies_ms=latencies, times_s=times)


def test_load_that_hits_the_challengers_requests_more_than_the_champions_is_not_a_breach_on_matched_slices():
    """The champion served mostly while the machine was quiet, the challenger mostly once a CPU hog started:
    the windows' p95s are 4x apart, the same model's answers in the same slices are not."""
    champion, challenger = _loaded(2000, 0.97, 3.0), _loaded(400, 0.1, 3.0)
    decision = decide_canary_step(challenger, champion, WATCH, elapsed_seconds=120)
    assert decision.action is StepAction.ADVANCE, decision.reason
    # The same requests compared as two whole windows (no arrival times): load reads as a slower model.
    unmatched = [dataclasses.replace(e, times_s=np.empty(0)) for e in (challenger, champion)]
    naive = decide_canary_step(*unmatched, WATCH, elapsed_seconds=120)
    assert naive.action is StepAction.ROLLBACK and naive.breaches == (Check.LATENCY,), naive.reason


def test_a_candidate_three_times_slower_under_the_same_load_is_a_breach():
    champion, challenger = _loaded(2000, 0.5, 3.0), _loaded(60, 0.5, 9.0)
    decision = decide_canary_step(challenger, champion, WATCH, elapsed_seconds=120)
    assert decision.action is StepAction.ROLLBACK and decision.breaches == (Check.LATENCY,), decision.reason


def test_requests_in_slices_the_other_arm_did_not_serve_are_not_compared():
    champion = ArmEvidence(500, 0, latencies_ms=np.full(500, 2.0), times_s=rng.uniform(0, 50, 500))
    challenger = ArmEvidence(500, 0, latencies_ms=np.full(500, 20.0), times_s=rng.uniform(60, 110, 500))
    decision = decide_canary_step(challenger, champion, WATCH, elapsed_seconds=120)
    assert decision.action is StepAction.ADVANCE and not any("p95" in f for f in decision.findings), decision.reason


def test_without_champion_traffic_alongside_latency_is_judged_against_the_slo_not_the_earlier_window():
    """A blue-green watch: the champion's (previous) window was quiet and fast, this one is loaded."""
    earlier_champion, loaded_challenger = arm(latency=1.0), arm(latency=6.0)
    within = decide_canary_step(loaded_challenger, earlier_champion, WATCH, elapsed_seconds=10, across_windows=True,
                                latency_slo_ms=25)
    assert within.action is StepAction.ADVANCE, within.reason
    assert any("25 ms SLO" in f for f in within.findings), within.findings
    over = decide_canary_step(arm(latency=40.0), earlier_champion, WATCH, elapsed_seconds=10, across_windows=True,
                              latency_slo_ms=25)
    assert over.action is StepAction.ROLLBACK and over.breaches == (Check.LATENCY,), over.reason
    # A canary's 100% step passes no SLO: its previous step compared both arms on matched slices.
    last_step = decide_canary_step(arm(latency=40.0), earlier_champion, WATCH, elapsed_seconds=10,
                                   across_windows=True)
    assert last_step.action is StepAction.ADVANCE, last_step.reason
    assert any("not compared: no champion traffic alongside" in f for f in last_step.findings), last_step.findings


def test_the_retired_across_windows_floor_is_refused_with_what_to_do():
    with pytest.raises(ValueError, match="slo.p95_latency_ms"):
        CanaryPlan(min_p95_latency_increase_across_windows_ms=10)


# ---------------------------------------------------------------------------------------- valid at every look
BENCH_PLAN = CanaryPlan(min_requests_per_arm=50, min_step_seconds=3, max_hold_seconds=120, min_labelled=30)


def _looks(seed: int, *, share: float, wrong: tuple[float, float], failing: tuple[float, float] = (0.0, 0.0),
           looks: int = 50, per_look: int = 40):
    """The decision at each poll of a step whose traffic grows by ``per_look`` requests between polls, every
    request labelled: (challenger, champion) misclassification and error rates as given."""
    generator = np.random.default_rng(seed)
    outcomes = {"challenger": [], "champion": []}
    errors = {"challenger": 0, "champion": 0}
    for look in range(looks):
        to_challenger = generator.random(per_look) < share
        for name, n, wrong_rate, failing_rate in (
            ("challenger", int(to_challenger.sum()), wrong[0], failing[0]),
            ("champion", int((~to_challenger).sum()), wrong[1], failing[1]),
        ):
            failed = generator.random(n) < failing_rate
            errors[name] += int(failed.sum())
            outcomes[name] += list(generator.random(int((~failed).sum())) < wrong_rate)
        arms = {name: ArmEvidence(len(outcomes[name]) + errors[name], errors[name],
                                  losses=np.asarray(outcomes[name], float))
                for name in outcomes}
        yield look, arms["challenger"].requests, decide_canary_step(arms["challenger"], arms["champion"], BENCH_PLAN,
                                                                     elapsed_seconds=1.0 + look)


def test_equal_arms_read_at_every_look_are_almost_never_rolled_back():
    """Two equal arms read at each of 50 polls, over 300 seeds: the always-valid tests stay under alpha over the
    whole step, where a two-proportion test read at each look would not (the run that rolled back a good retrain)."""
    seeds, rolled_back, fixed_would_have = 200, 0, 0
    for seed in range(seeds):
        for _, _, decision in _looks(seed, share=0.5, wrong=(0.12, 0.12)):
            if decision.action is StepAction.ROLLBACK:
                rolled_back += 1
                break
        generator = np.random.default_rng(seed)
        hits, n = np.zeros(2, int), np.zeros(2, int)
        for _ in range(50):
            arm_of = generator.random(40) < 0.5
            wrong = generator.random(40) < 0.12
            for i, members in enumerate((arm_of, ~arm_of)):
                hits[i] += int(wrong[members].sum())
                n[i] += int(members.sum())
            if min(n) >= 30 and hits[0]:
                rate = hits / n  # the one-sided Wald z-test of steward.stats.proportion_increase_test
                z = (rate[0] - rate[1] - 0.02) / np.sqrt((rate * (1 - rate) / n).sum())
                if z > 1.6449:
                    fixed_would_have += 1
                    break
    assert rolled_back / seeds < BENCH_PLAN.alpha / 2, rolled_back
    assert fixed_would_have / seeds > BENCH_PLAN.alpha, fixed_would_have  # the failure this replaces


def test_inverted_labels_are_stopped_at_the_first_look_with_enough_labels():
    for seed in range(20):
        for look, _, decision in _looks(seed, share=0.1, wrong=(0.86, 0.15)):  # noqa: B007 - read after it
            if decision.action is StepAction.ROLLBACK:
                break
        assert decision.action is StepAction.ROLLBACK and decision.breaches == (Check.ACCURACY,), decision.reason
        assert "always-valid 95% CI" in decision.reason
        assert look <= 12, look  # 10 % of 40 requests a look: about 30 challenger labels after 8 looks


def test_a_candidate_failing_a_quarter_of_its_requests_is_stopped_for_errors_within_a_few_dozen_requests():
    requests_at_stop = []
    for seed in range(30):
        for _, requests, decision in _looks(seed, share=0.1, wrong=(0.15, 0.15), failing=(0.25, 0.0)):  # noqa: B007
            if decision.action is StepAction.ROLLBACK:
                break
        assert decision.action is StepAction.ROLLBACK and decision.breaches == (Check.ERROR_RATE,), decision.reason
        requests_at_stop.append(requests)
    # Before the latency checks' 30 answered requests (about 40 requests at this error rate) in most runs.
    assert np.median(requests_at_stop) <= 36, requests_at_stop


def test_a_challenger_as_flaky_as_the_champion_is_not_rolled_back_for_errors():
    for seed in range(60):
        for _, _, decision in _looks(seed, share=0.5, wrong=(0.15, 0.15), failing=(0.02, 0.02)):
            assert Check.ERROR_RATE not in decision.breaches, decision.reason


# ---------------------------------------------------------------------------------------- compute time per arm
def _shared_loop(requests: int, compute_ms: float, others_ms: float, seed: int) -> ArmEvidence:
    """Requests of one arm answered from the gateway's one loop: each waits for its own model call and for the
    other arm's in the same batch, so its end-to-end latency is the sum of both; under a CPU hog every call is
    stretched by a factor that changes over time, alike for both arms."""
    generator = np.random.default_rng(seed)
    times = np.sort(generator.uniform(0, 60, requests))
    stretch = np.where((times // 10) % 2 == 0, 1.0, 3.0)  # the hog, on and off every 10 s
    own = generator.lognormal(np.log(compute_ms), 0.3, requests) * stretch
    other = generator.lognormal(np.log(others_ms), 0.3, requests) * stretch
    return ArmEvidence(requests, 0, latencies_ms=own + other + 2.0 * stretch, times_s=times, compute_ms=own)


def test_a_candidate_slow_only_under_concurrency_is_caught_on_its_own_compute_time():
    """It delays the champion's answers as much as its own: end-to-end they look alike, its own calls do not."""
    challenger = _shared_loop(300, compute_ms=30.0, others_ms=2.0, seed=1)
    champion = _shared_loop(300, compute_ms=2.0, others_ms=30.0, seed=2)
    decision = decide_canary_step(challenger, champion, WATCH, elapsed_seconds=60)
    assert decision.action is StepAction.ROLLBACK and decision.breaches == (Check.COMPUTE_TIME,), decision.reason
    assert any(f.startswith("p95 latency ratio") for f in decision.findings)  # end to end: no breach


def test_a_good_candidate_under_a_hog_and_concurrency_passes_the_compute_time_check():
    for seed in range(20):
        challenger = _shared_loop(300, compute_ms=2.0, others_ms=2.0, seed=seed)
        champion = _shared_loop(300, compute_ms=2.0, others_ms=2.0, seed=100 + seed)
        decision = decide_canary_step(challenger, champion, WATCH, elapsed_seconds=60)
        assert decision.action is StepAction.ADVANCE, decision.reason
        assert any(f.startswith("p95 compute time ratio") for f in decision.findings)


def test_without_recorded_compute_times_only_end_to_end_latency_is_judged():
    challenger = dataclasses.replace(_shared_loop(300, 2.0, 2.0, 1), compute_ms=np.full(300, np.nan))
    champion = dataclasses.replace(_shared_loop(300, 2.0, 2.0, 2), compute_ms=np.empty(0))
    decision = decide_canary_step(challenger, champion, WATCH, elapsed_seconds=60)
    assert decision.action is StepAction.ADVANCE and not any("compute" in f for f in decision.findings)


# ---------------------------------------------------------------------------------------- a thin 10 % step
def _thin_step(requests: int, compute_ms: float, seconds: float, seed: int, hog: str | None,
               descheduled: float = 0.01) -> ArmEvidence:
    """One arm of a slow stream (a busy machine answering one connection at about 1.5 requests a second):
    its own model call per request, stretched alike for both arms by a CPU hog (``"on"``: all along, as in
    the candidate scenarios; ``"on_off"``: every other 20 s), and a ``descheduled`` share of calls delayed by
    tens of ms."""
    generator = np.random.default_rng(seed)
    times = np.sort(generator.uniform(0, seconds, requests))
    loaded = np.full(requests, hog == "on") | ((hog == "on_off") & ((times // 20) % 2 == 1))
    stretch = np.where(loaded, 8.0, 1.0)
    own = generator.lognormal(np.log(compute_ms), 0.3, requests) * stretch
    own += np.where(generator.random(requests) < descheduled, generator.uniform(10, 60, requests), 0.0)
    return ArmEvidence(requests, 0, latencies_ms=own * 40, times_s=times, compute_ms=own)


@pytest.mark.parametrize("hog", [None, "on"])
def test_a_slower_candidate_is_stopped_at_a_thin_first_step_on_its_own_calls(hog):
    """The run that held it: 18 challenger requests in 140 s against about 160 champion ones, short of the
    30 a p95 ratio needs. Its calls are 4x the champion's on the same slices: more than 5 % of them above
    1.5x the champion's p95 is provable from a dozen calls, whatever the load."""
    for seed in range(20):
        challenger = _thin_step(14, compute_ms=8.0, seconds=140, seed=seed, hog=hog)
        champion = _thin_step(160, compute_ms=2.0, seconds=140, seed=100 + seed, hog=hog)
        decision = decide_canary_step(challenger, champion, BENCH_PLAN, elapsed_seconds=100)
        assert decision.action is StepAction.ROLLBACK and decision.code is StepCode.BREACH, decision.reason
        assert Check.COMPUTE_TIME in decision.breaches, decision.reason
        assert "challenger calls above" in decision.reason


@pytest.mark.parametrize("hog", [None, "on", "on_off"])
def test_a_good_candidate_at_a_thin_first_step_is_not_rolled_back_for_latency(hog):
    for seed in range(100):
        challenger = _thin_step(14, compute_ms=2.0, seconds=140, seed=seed, hog=hog, descheduled=0.04)
        champion = _thin_step(160, compute_ms=2.0, seconds=140, seed=100 + seed, hog=hog, descheduled=0.04)
        decision = decide_canary_step(challenger, champion, BENCH_PLAN, elapsed_seconds=100)
        assert decision.action is StepAction.HOLD and decision.waiting == (Wait.REQUESTS,), decision.reason
        assert any("challenger calls above" in f for f in decision.findings)


def test_a_cold_first_call_or_two_do_not_stop_a_good_candidate():
    challenger = _thin_step(12, compute_ms=2.0, seconds=60, seed=1, hog=None)
    cold = dataclasses.replace(challenger, compute_ms=np.concatenate([[400.0, 90.0], challenger.compute_ms[2:]]))
    champion = _thin_step(120, compute_ms=2.0, seconds=60, seed=2, hog=None)
    decision = decide_canary_step(cold, champion, BENCH_PLAN, elapsed_seconds=60)
    assert decision.action is StepAction.HOLD, decision.reason


def test_a_thin_but_steady_step_is_extended_once_then_rolled_back_as_unproven():
    """max_hold 120 s: 30 of 50 challenger requests by then projects 60 by 240 s, so the step holds on (extended);
    at 240 s it rolls back as unproven. A step with (almost) no traffic is not extended."""
    good = dict(errors=0, latency=5.0, labelled=0)
    steady = decide_canary_step(arm(requests=30, **good), arm(requests=300, **good), BENCH_PLAN, elapsed_seconds=121)
    assert steady.action is StepAction.HOLD and steady.code is StepCode.EXTENDED, steady.reason
    assert steady.waiting == (Wait.REQUESTS,)
    late = decide_canary_step(arm(requests=45, **good), arm(requests=450, **good), BENCH_PLAN, elapsed_seconds=240)
    assert late.action is StepAction.ROLLBACK and late.code is StepCode.NO_EVIDENCE_IN_TIME, late.reason
    trickle = decide_canary_step(arm(requests=5, **good), arm(requests=50, **good), BENCH_PLAN, elapsed_seconds=121)
    assert trickle.action is StepAction.ROLLBACK and trickle.code is StepCode.NO_EVIDENCE_IN_TIME, trickle.reason


def test_compute_time_counts_each_model_call_once_not_each_request_of_its_batch():
    """Eight connections: requests arrive in batches that share their call's time. A few descheduled batches of
    the challenger carry many requests; counted per request they read as a slower model."""
    generator = np.random.default_rng(5)

    def batched(calls: int, slow_batch_size: int) -> ArmEvidence:
        times = np.sort(generator.uniform(0, 60, calls))
        compute = generator.lognormal(np.log(20.0), 0.3, calls)
        sizes = np.ones(calls, int)
        slow = generator.choice(calls, 3, replace=False)
        compute[slow] *= 4  # descheduled under the hog
        sizes[slow] = slow_batch_size
        return ArmEvidence(int(sizes.sum()), 0, latencies_ms=np.repeat(compute + 5, sizes),
                           times_s=np.repeat(times, sizes), compute_ms=np.repeat(compute, sizes))

    challenger, champion = batched(60, slow_batch_size=8), batched(60, slow_batch_size=1)
    decision = decide_canary_step(challenger, champion, WATCH, elapsed_seconds=60)
    assert Check.COMPUTE_TIME not in decision.breaches, decision.reason
    per_request = dataclasses.replace(challenger, compute_ms=challenger.compute_ms + np.arange(challenger.requests) * 1e-9)
    naive = decide_canary_step(per_request, champion, WATCH, elapsed_seconds=60)
    assert Check.COMPUTE_TIME in naive.breaches, naive.reason  # the same data, each request counted as a call
