"""The pure decision of one canary (or blue-green watch) step: advance, hold or roll back.

It takes the evidence of two arms and the spec's canary plan, and returns a typed decision: an
action, a code saying why, the checks that breached or the evidence still missing, and the reason
in plain words. Two checks are built so that what moves both arms cannot read as a challenger
fault: the score distribution is judged against the challenger's own validation scores, beyond the
shift the champion shows against its own; latency only on time slices both arms served
(``steward.delivery.latency``), or against the SLO when the champion served no traffic alongside. The flows collect the evidence from the
prediction log and act on the decision. (The A/B verdict is in ``steward.delivery.ab_verdict``.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from steward.delivery.latency import matched_exceedance, matched_p95_ratio, p95_against_slo
from steward.delivery.sequential import error_rate_bound, loss_difference
from steward.spec import CanaryPlan
from steward.stats import distribution_shift

MIN_SAMPLES_FOR_TESTS = 30
MIN_CALLS_FOR_TAIL_TEST = 10  # a slow first call or two (a cold model) cannot reach a breach


@dataclass(frozen=True, eq=False)
class ArmEvidence:
    """What one arm did during the analysis period.

    ``losses`` holds one value per labelled prediction: 1/0 for a wrong/right class, or
    the absolute error for regression. ``times_s`` are the answered requests' arrival times
    (epoch seconds, one per latency): without them latency is compared as one slice.
    ``reference_scores`` are the arm's version's scores on its own validation hold-out.
    ``compute_ms`` is, per answered request (aligned with ``times_s``), the time inside the arm's
    model call for the batch it was scored in (requests of one batch carry the same value, which is
    how the compute-time checks count each call once); NaN where it was not recorded.
    """

    requests: int
    errors: int
    latencies_ms: np.ndarray = field(default_factory=lambda: np.empty(0))
    times_s: np.ndarray = field(default_factory=lambda: np.empty(0))
    scores: np.ndarray = field(default_factory=lambda: np.empty(0))
    losses: np.ndarray = field(default_factory=lambda: np.empty(0))
    binary_losses: bool = True
    reference_scores: np.ndarray = field(default_factory=lambda: np.empty(0))
    compute_ms: np.ndarray = field(default_factory=lambda: np.empty(0))

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


class StepAction(StrEnum):
    ADVANCE = "advance"
    HOLD = "hold"
    ROLLBACK = "rollback"


class StepCode(StrEnum):
    """Why a step advances, holds or rolls back."""

    NO_BREACH = "no_breach"  # advance: enough evidence and no breach
    WAITING = "waiting"  # hold: evidence still missing (see ``StepDecision.waiting``)
    BREACH = "breach"  # roll back: a significant breach (see ``StepDecision.breaches``)
    EXTENDED = "extended"  # hold past max_hold_seconds, once: the step's traffic rate brings the evidence in time
    NO_EVIDENCE_IN_TIME = "no_evidence_in_time"  # roll back as unproven: no evidence by the (extended) deadline
    SMOKE_PASSED = "smoke_passed"  # blue-green: the idle colour answered its smoke test
    SMOKE_FAILED = "smoke_failed"  # blue-green: it did not; the candidate is rejected


class Check(StrEnum):
    """The checks of a step; a breach names the ones that failed."""

    ERROR_RATE = "error_rate"
    ACCURACY = "accuracy"  # misclassification rate or absolute error on labelled traffic
    SCORE_DISTRIBUTION = "score_distribution"
    LATENCY = "p95_latency"  # end to end, from the request's arrival to its answer
    COMPUTE_TIME = "p95_compute_time"  # inside the arm's own model call


class Wait(StrEnum):
    """What a holding step waits for."""

    REQUESTS = "requests"  # min_requests_per_arm in both arms
    DURATION = "duration"  # min_step_seconds
    LATENCY_INCONCLUSIVE = "latency_inconclusive"  # a p95 ratio over the limit whose interval includes it


@dataclass(frozen=True)
class StepDecision:
    action: StepAction
    code: StepCode
    reason: str  # for people: wording may change, the code and the checks do not
    findings: tuple[str, ...] = ()
    breaches: tuple[Check, ...] = ()
    waiting: tuple[Wait, ...] = ()


def _error_breach(challenger: ArmEvidence, champion: ArmEvidence, plan: CanaryPlan) -> tuple[bool, str] | None:
    """Always valid (read at every poll): the challenger's errors against the champion's rate plus the margin."""
    if challenger.requests == 0 or champion.requests == 0:
        return None
    if challenger.errors == 0:
        return False, f"error rate: challenger 0/{challenger.requests}, champion {champion.errors}/{champion.requests}"
    bound = error_rate_bound(challenger.errors, challenger.requests, champion.errors, champion.requests,
                             margin=plan.max_error_rate_increase, alpha=plan.alpha)
    return bound.breach, bound.describe()


def _timed(values: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The measured values with their arrival times (all at 0 when the times are not known)."""
    values = np.asarray(values, float)
    times = np.asarray(times, float) if len(times) == len(values) else np.zeros(len(values))
    known = ~np.isnan(values)
    return values[known], times[known]


def _latency(
    challenger: ArmEvidence, champion: ArmEvidence, plan: CanaryPlan, *, concurrent: bool, slo_ms: float | None
) -> tuple[str, str] | None:
    """('breach' | 'inconclusive' | 'ok', description) of the challenger's end-to-end p95 latency."""
    if not concurrent:
        return _latency_against_slo(challenger, plan, slo_ms)
    return _matched(_timed(challenger.latencies_ms, challenger.times_s), _timed(champion.latencies_ms, champion.times_s),
                    plan, "p95 latency")


def _compute_time(challenger: ArmEvidence, champion: ArmEvidence, plan: CanaryPlan) -> tuple[str, str] | None:
    """The same comparison on the time inside each arm's own model call.

    The gateway scores both arms' requests in one event loop, so under concurrent traffic a slow
    challenger delays the champion's answers as much as its own and end-to-end latency cannot tell
    them apart; the time inside each arm's model call can.
    """
    return _matched(_per_call(*_timed(challenger.compute_ms, challenger.times_s)),
                    _per_call(*_timed(champion.compute_ms, champion.times_s)), plan, "p95 compute time")


def _per_call(values: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One compute time per model call: every request of a batch carries its call's time (the same float),
    so counted per request one slow batch of eight would read as eight independent slow calls (a good
    candidate under a hog and eight connections was rolled back at 3.70x per request, 0.94x per call)."""
    _, first = np.unique(values, return_index=True)
    first = np.sort(first)
    return values[first], times[first]


def _matched(
    challenger: tuple[np.ndarray, np.ndarray], champion: tuple[np.ndarray, np.ndarray], plan: CanaryPlan, what: str,
) -> tuple[str, str] | None:
    """Breach when either test proves the challenger's p95 above the limit on matched slices: the share of its
    calls above the limit (from MIN_CALLS_FOR_TAIL_TEST calls: a 10 % step of a slow stream has no 30 within a
    hold), or the bootstrap of the p95 ratio (30 or more)."""
    # Without arrival times both windows count as one slice: still the same period, so the same load.
    common = dict(slice_seconds=plan.latency_slice_seconds, alpha=plan.alpha,
                  min_increase_ms=plan.min_p95_latency_increase_ms)
    tail = matched_exceedance(*challenger, *champion, factor=plan.max_p95_latency_factor,
                              min_challenger=MIN_CALLS_FOR_TAIL_TEST, min_champion=MIN_SAMPLES_FOR_TESTS, **common)
    matched = None
    if min(len(challenger[0]), len(champion[0])) >= MIN_SAMPLES_FOR_TESTS:
        matched = matched_p95_ratio(*challenger, *champion, min_requests=MIN_SAMPLES_FOR_TESTS, **common)
    if matched is None:
        if tail is None:
            return None
        return ("breach" if tail.breach else "ok"), tail.describe(what)
    where = (f"{what} ratio {matched.ratio:.2f} on {matched.slices} matched {plan.latency_slice_seconds:g} s "
             f"slices ({matched.p95_challenger_ms:.2f} vs {matched.p95_champion_ms:.2f} ms, {matched.increase_ms:+.2f} ms")
    if matched.ci_low is None:  # sub-millisecond answers: a ratio of jitter
        return "ok", where + f", below the {plan.min_p95_latency_increase_ms:g} ms floor)"
    text = (where + f"; 95% CI [{matched.ci_low:.2f}, {matched.ci_high:.2f}], limit {plan.max_p95_latency_factor:g})")
    if tail is not None and tail.breach:
        return "breach", text + "; " + tail.describe(what)
    if matched.ci_low > plan.max_p95_latency_factor:
        return "breach", text
    if matched.ratio > plan.max_p95_latency_factor:
        return "inconclusive", text
    return "ok", text


def _latency_against_slo(challenger: ArmEvidence, plan: CanaryPlan, slo_ms: float | None) -> tuple[str, str] | None:
    """No champion traffic in the same period: the challenger's p95 against the SLO, never an earlier window.

    Without an SLO (a canary's 100% step, whose previous step compared both arms on matched slices)
    latency is only reported.
    """
    if len(challenger.latencies_ms) < MIN_SAMPLES_FOR_TESTS:
        return None
    if slo_ms is None:
        p95 = float(np.quantile(challenger.latencies_ms, 0.95))
        return "ok", (f"p95 latency {p95:.2f} ms, not compared: no champion traffic alongside (the previous step "
                      "compared both arms on matched slices)")
    slo = p95_against_slo(challenger.latencies_ms, slo_ms, alpha=plan.alpha)
    text = f"p95 latency {slo.p95_ms:.2f} ms (95% CI [{slo.ci_low:.2f}, {slo.ci_high:.2f}]) against the {slo_ms:g} ms SLO"
    if slo.ci_low > slo_ms:
        return "breach", text
    if slo.p95_ms > slo_ms:
        return "inconclusive", text
    return "ok", text


def _accuracy_breach(challenger: ArmEvidence, champion: ArmEvidence, plan: CanaryPlan) -> tuple[bool, str] | None:
    """Always valid (read at every poll): a breach when the confidence sequence of the loss difference lies
    above ``max_accuracy_drop``."""
    if min(len(challenger.losses), len(champion.losses)) < max(plan.min_labelled, 2):
        return None
    if challenger.binary_losses and challenger.losses.sum() == 0:
        return False, f"misclassification: challenger 0/{len(challenger.losses)}"
    # Absolute errors: tuned to a tenth of the champion's mean error (a scale that settles within a step).
    scale = None if challenger.binary_losses else max(plan.max_accuracy_drop, 0.1 * float(champion.losses.mean()), 1e-9)
    difference = loss_difference(challenger.losses, champion.losses, binary=challenger.binary_losses,
                                 limit=plan.max_accuracy_drop, alpha=plan.alpha, mixture_scale=scale)
    return difference.breach, difference.describe()


def _score_breach(challenger: ArmEvidence, champion: ArmEvidence, plan: CanaryPlan) -> tuple[bool, str] | None:
    """The challenger's live scores against its own validation scores, beyond the champion's shift.

    A retrain after concept drift scores differently from the champion by design; what would be
    its fault is scoring live traffic unlike the hold-out it was validated on. A population shift
    moves both arms' scores away from their hold-outs, so only the excess over the champion's
    shift counts.
    """
    if len(challenger.scores) < MIN_SAMPLES_FOR_TESTS:
        return None
    if len(challenger.reference_scores) < MIN_SAMPLES_FOR_TESTS:
        return False, "score distribution not judged: the challenger has no validation scores to compare with"
    own = distribution_shift(challenger.scores, challenger.reference_scores)
    yardstick = 0.0
    if min(len(champion.scores), len(champion.reference_scores)) >= MIN_SAMPLES_FOR_TESTS:
        yardstick = distribution_shift(champion.scores, champion.reference_scores).statistic
    excess = own.statistic - yardstick
    text = (f"score distribution KS {own.statistic:.3f} against the challenger's validation scores "
            f"(p={own.p_value:.3g}), champion's own shift {yardstick:.3f}: excess {excess:+.3f} "
            f"(limit {plan.max_score_ks:g})")
    return excess > plan.max_score_ks and own.p_value < plan.alpha, text


EXTENSION = 2.0  # a step that would have its evidence by this multiple of max_hold_seconds is held that long


def _extension_can_finish(
    challenger: ArmEvidence, champion: ArmEvidence, plan: CanaryPlan, elapsed_seconds: float, missing: tuple[Wait, ...],
) -> bool:
    """Whether one extension, to EXTENSION x max_hold_seconds, can bring what the step still lacks.

    The step's request rate so far is projected to the extended deadline: a thin but steady stream
    (a 10 % step of a slow or loaded service) gets its minimum in time, a step with (almost) no
    traffic does not and rolls back as unproven at once. More traffic also narrows an inconclusive
    latency interval, so that wait is extended too.
    """
    deadline = EXTENSION * plan.max_hold_seconds
    if elapsed_seconds >= deadline or elapsed_seconds <= 0:
        return False
    if Wait.DURATION in missing and plan.min_step_seconds > deadline:
        return False
    if Wait.REQUESTS in missing:
        projected = min(challenger.requests, champion.requests) * deadline / elapsed_seconds
        return projected >= plan.min_requests_per_arm
    return True


def decide_canary_step(
    challenger: ArmEvidence, champion: ArmEvidence, plan: CanaryPlan, *, elapsed_seconds: float,
    across_windows: bool = False, latency_slo_ms: float | None = None,
) -> StepDecision:
    """Advance, hold or roll back one canary step.

    A breach rolls back as soon as the evidence is significant, even before the step's
    minimum traffic: exposure then never exceeds what this step already served. Without
    a breach the step advances once both arms have the minimum requests and the minimum
    time has passed; until then it holds, up to ``max_hold_seconds``. A step still short of
    evidence then is held once more, up to ``EXTENSION`` times ``max_hold_seconds``, if its traffic
    rate brings the evidence by then (``StepCode.EXTENDED``), and otherwise, or at that deadline,
    rolled back as unproven (``StepCode.NO_EVIDENCE_IN_TIME``): a candidate never holds forever.

    ``across_windows``: the champion's evidence comes from an earlier window than the
    challenger's (a canary's 100% step, the blue-green watch). Its latency is then no yardstick
    (the machine's load changes between windows): the challenger's p95 is judged against
    ``latency_slo_ms`` (the spec's SLO: the blue-green watch) or, without one, only reported (a
    canary's 100% step, after its previous step compared both arms on matched slices).
    """
    findings: list[str] = []
    breaches: list[tuple[Check, str]] = []
    checks = ((Check.ERROR_RATE, _error_breach), (Check.ACCURACY, _accuracy_breach),
              (Check.SCORE_DISTRIBUTION, _score_breach))
    for name, check in checks:
        outcome = check(challenger, champion, plan)
        if outcome is not None:
            breached, text = outcome
            findings.append(text)
            if breached:
                breaches.append((name, text))
    latency = _latency(challenger, champion, plan, concurrent=not across_windows, slo_ms=latency_slo_ms)
    compute = None if across_windows else _compute_time(challenger, champion, plan)
    inconclusive: list[str] = []
    for name, outcome in ((Check.LATENCY, latency), (Check.COMPUTE_TIME, compute)):
        if outcome is not None:
            findings.append(outcome[1])
            if outcome[0] == "breach":
                breaches.append((name, outcome[1]))
            elif outcome[0] == "inconclusive":
                inconclusive.append(outcome[1])
    if breaches:
        return StepDecision(StepAction.ROLLBACK, StepCode.BREACH, "breach: " + "; ".join(t for _, t in breaches),
                            tuple(findings), breaches=tuple(c for c, _ in breaches))

    waiting: list[tuple[Wait, str]] = []
    if min(challenger.requests, champion.requests) < plan.min_requests_per_arm:
        waiting.append((Wait.REQUESTS, f"{challenger.requests} challenger / {champion.requests} champion requests "
                                        f"of {plan.min_requests_per_arm} per arm"))
    if elapsed_seconds < plan.min_step_seconds:
        waiting.append((Wait.DURATION, f"{elapsed_seconds:.0f} s of the step's {plan.min_step_seconds:.0f} s minimum"))
    if inconclusive:
        waiting.append((Wait.LATENCY_INCONCLUSIVE, "latency inconclusive: " + "; ".join(inconclusive)))
    if waiting:
        missing, texts = tuple(w for w, _ in waiting), "; ".join(t for _, t in waiting)
        if elapsed_seconds >= plan.max_hold_seconds:
            if _extension_can_finish(challenger, champion, plan, elapsed_seconds, missing):
                return StepDecision(
                    StepAction.HOLD, StepCode.EXTENDED,
                    f"extended once past the {plan.max_hold_seconds:.0f} s hold, to {EXTENSION * plan.max_hold_seconds:.0f} s "
                    "(at this step's traffic rate the evidence arrives by then): " + texts,
                    tuple(findings), waiting=missing,
                )
            return StepDecision(
                StepAction.ROLLBACK, StepCode.NO_EVIDENCE_IN_TIME,
                f"no conclusive evidence after {elapsed_seconds:.0f} s (max hold {plan.max_hold_seconds:.0f} s): "
                + texts,
                tuple(findings), waiting=missing,
            )
        return StepDecision(StepAction.HOLD, StepCode.WAITING, "waiting for evidence: " + texts, tuple(findings),
                            waiting=missing)
    return StepDecision(StepAction.ADVANCE, StepCode.NO_BREACH, "no breach on the step's evidence: " + "; ".join(findings),
                        tuple(findings))
