"""The pure decision of one canary (or blue-green watch) step: advance, hold or roll back.

It takes the evidence of two arms collected over the same period and the spec's canary plan,
and returns a typed decision: an action, a code saying why, the checks that breached or the
evidence still missing, and the reason in plain words. The flows collect the evidence from the
prediction log and act on the decision. (The A/B verdict is in ``steward.delivery.ab_verdict``.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from steward.spec import CanaryPlan
from steward.stats import (
    distribution_shift,
    proportion_increase_test,
    quantile_ratio,
    welch_difference,
)

MIN_SAMPLES_FOR_TESTS = 30
MAX_BOOTSTRAP_SAMPLES = 5000  # per arm: bounds the bootstrap's memory on long, busy steps


@dataclass(frozen=True, eq=False)
class ArmEvidence:
    """What one arm did during the analysis period.

    ``losses`` holds one value per labelled prediction: 1/0 for a wrong/right class, or
    the absolute error for regression.
    """

    requests: int
    errors: int
    latencies_ms: np.ndarray = field(default_factory=lambda: np.empty(0))
    scores: np.ndarray = field(default_factory=lambda: np.empty(0))
    losses: np.ndarray = field(default_factory=lambda: np.empty(0))
    binary_losses: bool = True

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
    NO_EVIDENCE_IN_TIME = "no_evidence_in_time"  # roll back: still waiting after max_hold_seconds
    SMOKE_PASSED = "smoke_passed"  # blue-green: the idle colour answered its smoke test
    SMOKE_FAILED = "smoke_failed"  # blue-green: it did not; the candidate is rejected


class Check(StrEnum):
    """The checks of a step; a breach names the ones that failed."""

    ERROR_RATE = "error_rate"
    ACCURACY = "accuracy"  # misclassification rate or absolute error on labelled traffic
    SCORE_DISTRIBUTION = "score_distribution"
    LATENCY = "p95_latency"


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
    if challenger.requests == 0 or champion.requests == 0:
        return None
    if challenger.errors == 0:
        return False, f"error rate: challenger 0/{challenger.requests}, champion {champion.errors}/{champion.requests}"
    test = proportion_increase_test(
        challenger.errors, challenger.requests, champion.errors, champion.requests,
        margin=plan.max_error_rate_increase, alpha=plan.alpha, metric="error rate",
    )
    return test.p_value < plan.alpha, test.describe()


def latency_floor_ms(plan: CanaryPlan, *, across_windows: bool) -> float:
    """How many ms slower the challenger's p95 must be before its ratio can count as a breach.

    With sub-millisecond answers a ratio of p95s measures jitter. When the champion is judged on
    an earlier window (a canary's 100% step, the blue-green watch) it also measures the change of
    machine load between the windows, which a bootstrap over each window cannot see (figures in
    docs/delivery.md).
    """
    if across_windows:
        return max(plan.min_p95_latency_increase_ms, plan.min_p95_latency_increase_across_windows_ms)
    return plan.min_p95_latency_increase_ms


def _latency(
    challenger: ArmEvidence, champion: ArmEvidence, plan: CanaryPlan, *, across_windows: bool
) -> tuple[str, str] | None:
    """('breach' | 'inconclusive' | 'ok', description) for the p95 latency ratio."""
    if min(len(challenger.latencies_ms), len(champion.latencies_ms)) < MIN_SAMPLES_FOR_TESTS:
        return None
    p95_challenger = float(np.percentile(challenger.latencies_ms, 95))
    p95_champion = float(np.percentile(champion.latencies_ms, 95))
    increase, floor = p95_challenger - p95_champion, latency_floor_ms(plan, across_windows=across_windows)
    if increase < floor:  # no material slowdown: the ratio's bootstrap (CPU the gateway shares) is not needed
        return "ok", (
            f"p95 latency ratio {p95_challenger / max(p95_champion, 1e-9):.2f} ({p95_challenger:.2f} vs "
            f"{p95_champion:.2f} ms); p95 only {increase:+.2f} ms apart (below {floor:g} ms"
            + (" across windows)" if across_windows else ")")
        )
    rng = np.random.default_rng(0)

    def bounded(values: np.ndarray) -> np.ndarray:
        return values if len(values) <= MAX_BOOTSTRAP_SAMPLES else rng.choice(values, MAX_BOOTSTRAP_SAMPLES, replace=False)

    ratio = quantile_ratio(bounded(challenger.latencies_ms), bounded(champion.latencies_ms), alpha=plan.alpha,
                           resamples=1000)
    text = (
        f"p95 latency ratio {ratio.ratio:.2f} (95% CI [{ratio.ci_low:.2f}, {ratio.ci_high:.2f}], "
        f"limit {plan.max_p95_latency_factor:g}; {increase:+.2f} ms)"
    )
    if ratio.ci_low > plan.max_p95_latency_factor:
        return "breach", text
    if ratio.ratio > plan.max_p95_latency_factor:
        return "inconclusive", text
    return "ok", text


def _accuracy_breach(challenger: ArmEvidence, champion: ArmEvidence, plan: CanaryPlan) -> tuple[bool, str] | None:
    if min(len(challenger.losses), len(champion.losses)) < plan.min_labelled:
        return None
    if challenger.binary_losses:
        wrong_ch, wrong_ch_n = int(challenger.losses.sum()), len(challenger.losses)
        wrong_cp, wrong_cp_n = int(champion.losses.sum()), len(champion.losses)
        if wrong_ch == 0:
            return False, f"misclassification: challenger 0/{wrong_ch_n}"
        test = proportion_increase_test(
            wrong_ch, wrong_ch_n, wrong_cp, wrong_cp_n, margin=plan.max_accuracy_drop, alpha=plan.alpha,
            metric="misclassification rate",
        )
        return test.p_value < plan.alpha, test.describe()
    welch = welch_difference(challenger.losses, champion.losses, alpha=2 * plan.alpha, metric="absolute error")
    return welch.ci_low > plan.max_accuracy_drop, welch.describe()


def _score_breach(challenger: ArmEvidence, champion: ArmEvidence, plan: CanaryPlan) -> tuple[bool, str] | None:
    if min(len(challenger.scores), len(champion.scores)) < MIN_SAMPLES_FOR_TESTS:
        return None
    shift = distribution_shift(challenger.scores, champion.scores)
    text = f"score distribution KS {shift.statistic:.3f} (p={shift.p_value:.3g}, limit {plan.max_score_ks:g})"
    return shift.statistic > plan.max_score_ks and shift.p_value < plan.alpha, text


def decide_canary_step(
    challenger: ArmEvidence, champion: ArmEvidence, plan: CanaryPlan, *, elapsed_seconds: float,
    across_windows: bool = False,
) -> StepDecision:
    """Advance, hold or roll back one canary step.

    A breach rolls back as soon as the evidence is significant, even before the step's
    minimum traffic: exposure then never exceeds what this step already served. Without
    a breach the step advances once both arms have the minimum requests and the minimum
    time has passed; until then it holds, up to ``max_hold_seconds``.

    ``across_windows``: the champion's evidence comes from an earlier window than the
    challenger's (a canary's 100% step, the blue-green watch); a latency breach then needs
    the larger increase of ``latency_floor_ms``.
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
    latency = _latency(challenger, champion, plan, across_windows=across_windows)
    if latency is not None:
        findings.append(latency[1])
        if latency[0] == "breach":
            breaches.append((Check.LATENCY, latency[1]))
    if breaches:
        return StepDecision(StepAction.ROLLBACK, StepCode.BREACH, "breach: " + "; ".join(t for _, t in breaches),
                            tuple(findings), breaches=tuple(c for c, _ in breaches))

    waiting: list[tuple[Wait, str]] = []
    if min(challenger.requests, champion.requests) < plan.min_requests_per_arm:
        waiting.append((Wait.REQUESTS, f"{challenger.requests} challenger / {champion.requests} champion requests "
                                        f"of {plan.min_requests_per_arm} per arm"))
    if elapsed_seconds < plan.min_step_seconds:
        waiting.append((Wait.DURATION, f"{elapsed_seconds:.0f} s of the step's {plan.min_step_seconds:.0f} s minimum"))
    if latency is not None and latency[0] == "inconclusive":
        waiting.append((Wait.LATENCY_INCONCLUSIVE, "latency inconclusive: " + latency[1]))
    if waiting:
        missing, texts = tuple(w for w, _ in waiting), "; ".join(t for _, t in waiting)
        if elapsed_seconds >= plan.max_hold_seconds:
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
