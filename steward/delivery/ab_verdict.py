"""The A/B verdict: the statistics of one look (``analyse_ab_test``) and the judged report of a test.

A look first checks that the data can be trusted (sample ratio, sticky assignment), then compares
the arms per entity with an always-valid (or pre-registered) rule. Each verdict carries a status,
an ``ABReason`` code and the recommendation in plain words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from steward.delivery.ab_data import OUTCOME_DESCRIPTIONS, ABData
from steward.delivery.decisions import MIN_SAMPLES_FOR_TESTS
from steward.delivery.experiments import (
    ExperimentError,
    ExperimentKind,
    ExperimentRun,
    ExperimentWindow,
    experiment_entries,
    iso_utc,
)
from steward.registry.history import CHALLENGER, CHAMPION, AuditEntry
from steward.registry.traffic import TrafficPlan
from steward.spec import ABTestSpec
from steward.stats import (
    Comparison,
    SampleRatioCheck,
    SequentialResult,
    proportion_difference,
    sample_ratio_mismatch,
    samples_needed_for_means,
    samples_needed_for_proportions,
    sequential_means,
    sequential_proportions,
    welch_difference,
)

# Entities seen in both arms beyond this share mean the assignment is not sticky: no conclusion.
MAX_CROSSOVER_SHARE = 0.01


class ABReason(StrEnum):
    """Why a look reads as it does; ``recommendation`` says the same in words."""

    WAITING_FOR_DATA = "waiting_for_data"  # too few entities with outcomes per arm
    SAMPLE_RATIO_MISMATCH = "sample_ratio_mismatch"  # the arms' traffic does not match the plan
    NOT_STICKY = "not_sticky"  # too many entities were served by both arms
    BELOW_PLANNED_SAMPLE = "below_planned_sample"  # fixed design: the pre-registered size is not reached
    NO_CLEAR_WINNER = "no_clear_winner"  # readable, not significant: run longer or change the design
    WINNER = "winner"  # significant on trusted data (``winner`` names the arm)


@dataclass(frozen=True)
class ABResult:
    metric: str
    srm: SampleRatioCheck
    comparison: Comparison
    sequential: SequentialResult | None
    winner: str | None  # "treatment", "control" or None
    conclusive: bool
    code: ABReason
    recommendation: str
    additional_samples_per_arm: int | None

    def to_markdown(self, control_name: str = "champion", treatment_name: str = "challenger") -> str:
        lines = [
            f"# A/B test on {self.metric}: {self.recommendation}",
            "",
            f"- {self.srm.describe()}",
            f"- {self.comparison.describe()} ({self.comparison.method})",
        ]
        if self.sequential is not None:
            s = self.sequential
            lines.append(
                f"- sequential (always-valid) p={s.p_value:.3g}, confidence sequence [{s.ci_low:+.4g}, {s.ci_high:+.4g}]"
            )
        lines.append(f"- winner: {({'treatment': treatment_name, 'control': control_name}).get(self.winner or '', 'none')}")
        if self.additional_samples_per_arm:
            lines.append(f"- about {self.additional_samples_per_arm} more samples per arm would be needed")
        return "\n".join(lines)


def analyse_ab_test(
    treatment: Sequence[float],
    control: Sequence[float],
    policy: ABTestSpec,
    *,
    assigned: tuple[int, int],
    planned_shares: tuple[float, float],
    binary: bool,
    previous_p_value: float = 1.0,
) -> ABResult:
    """Compare per-unit outcomes of two arms; declare a winner only when significant and trustworthy.

    ``assigned`` are the counts of units each arm received (treatment, control), checked
    against ``planned_shares`` for sample-ratio mismatch before anything else is read.
    """
    treatment, control = np.asarray(treatment, float), np.asarray(control, float)
    srm = sample_ratio_mismatch(assigned, planned_shares)
    if min(len(treatment), len(control)) < 2:
        raise ValueError(
            f"A/B analysis needs outcomes in both arms (treatment {len(treatment)}, control {len(control)}): "
            "let the test run until labels arrive"
        )
    if binary:
        hits_t, hits_c = int(treatment.sum()), int(control.sum())
        comparison = proportion_difference(hits_t, len(treatment), hits_c, len(control), alpha=policy.alpha,
                                           metric=policy.metric)
        sequential = sequential_proportions(hits_t, len(treatment), hits_c, len(control),
                                            minimum_effect=policy.minimum_effect, alpha=policy.alpha,
                                            previous_p_value=previous_p_value)
    else:
        comparison = welch_difference(treatment, control, alpha=policy.alpha, metric=policy.metric)
        sequential = sequential_means(treatment, control, minimum_effect=policy.minimum_effect, alpha=policy.alpha,
                                      previous_p_value=previous_p_value)

    if srm.mismatch:
        return ABResult(policy.metric, srm, comparison, sequential, None, False, ABReason.SAMPLE_RATIO_MISMATCH,
                        "no conclusion: the arms' traffic does not match the plan (sample ratio mismatch); "
                        "fix assignment or logging and restart the test", None)

    n = min(len(treatment), len(control))
    if policy.stopping == "sequential":
        significant = sequential.significant
        interval = (sequential.ci_low, sequential.ci_high)
    else:
        reached = n >= (policy.planned_samples_per_arm or 0)
        significant = reached and comparison.p_value < policy.alpha
        interval = (comparison.ci_low, comparison.ci_high)
        if not reached:
            return ABResult(policy.metric, srm, comparison, None, None, False, ABReason.BELOW_PLANNED_SAMPLE,
                            f"keep running: pre-registered stop at {policy.planned_samples_per_arm} per arm, "
                            f"now {n}", policy.planned_samples_per_arm - n)

    if significant:
        better = comparison.difference > 0 if policy.higher_is_better else comparison.difference < 0
        winner = "treatment" if better else "control"
        return ABResult(
            policy.metric, srm, comparison, sequential if policy.stopping == "sequential" else None, winner, True,
            ABReason.WINNER,
            f"{winner} wins: {policy.metric} {comparison.treatment:.4g} vs {comparison.control:.4g}, "
            f"difference {comparison.difference:+.4g} (interval [{interval[0]:+.4g}, {interval[1]:+.4g}])",
            None,
        )
    if binary:
        needed = samples_needed_for_proportions(comparison.control, policy.minimum_effect, alpha=policy.alpha,
                                                power=policy.power)
    else:
        pooled_sd = float(np.sqrt((treatment.var(ddof=1) + control.var(ddof=1)) / 2))
        needed = samples_needed_for_means(max(pooled_sd, 1e-12), policy.minimum_effect, alpha=policy.alpha,
                                          power=policy.power)
    more = max(needed - n, 0)
    return ABResult(
        policy.metric, srm, comparison, sequential if policy.stopping == "sequential" else None, None, False,
        ABReason.NO_CLEAR_WINNER,
        "no clear winner: run longer or change the design"
        + (f" (about {more} more per arm to detect {policy.minimum_effect:g})" if more else ""),
        more or None,
    )


class ABStatus(StrEnum):
    WAITING = "waiting"  # too few entities with outcomes to read the test yet
    RUNNING = "running"  # readable, no clear winner: keep running (or change the design)
    CONCLUDED = "concluded"  # a significant winner on trustworthy data
    INVALID = "invalid"  # the data cannot be trusted (sample ratio mismatch, non-sticky assignment)


@dataclass(frozen=True, eq=False)
class ABTestReport:
    """One look at an A/B test: the data's trust checks, the comparison and what to do."""

    model: str
    experiment_id: str
    champion_version: str
    challenger_version: str
    plan: TrafficPlan
    design: ABTestSpec
    window: ExperimentWindow
    data: ABData
    srm: SampleRatioCheck
    result: ABResult | None
    status: ABStatus
    code: ABReason
    recommendation: str
    p_value: float | None  # the always-valid p-value after this look (sequential designs), carried to the next
    previous_p_value: float
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def conclusive(self) -> bool:
        return self.status is ABStatus.CONCLUDED

    @property
    def winner(self) -> str | None:
        """``challenger``, ``champion`` or None."""
        if not self.conclusive or self.result is None:
            return None
        return {"treatment": CHALLENGER, "control": CHAMPION}.get(self.result.winner or "")

    @property
    def winner_version(self) -> str | None:
        return {CHALLENGER: self.challenger_version, CHAMPION: self.champion_version}.get(self.winner or "")

    def summary(self) -> str:
        return f"A/B test of {self.model} ({self.status.value}): {self.recommendation}"

    def to_details(self) -> dict[str, str]:
        """What the audit entry of this look keeps; ``p_value`` is what the next look starts from."""
        r = self.result
        return {
            "experiment": ExperimentKind.AB_TEST.value,
            "action": "analyse",
            "experiment_id": self.experiment_id,
            "status": self.status.value,
            "winner": self.winner or "",
            "p_value": "" if self.p_value is None else repr(self.p_value),
            "srm_p_value": f"{self.srm.p_value:.6g}",
            "units": f"{self.data.units[0]}/{self.data.units[1]}",
            "assigned": f"{self.data.assigned[0]}/{self.data.assigned[1]}",
            "difference": "" if r is None else f"{r.comparison.difference:.6g}",
            "ci": "" if r is None else f"[{r.comparison.ci_low:.6g}, {r.comparison.ci_high:.6g}]",
            "window_end": iso_utc(self.window.end),
        }

    def arm_rows(self) -> list[dict[str, object]]:
        d = self.data
        rows = []
        for index, (arm, version, outcomes) in enumerate(
            ((CHALLENGER, self.challenger_version, d.treatment), (CHAMPION, self.champion_version, d.control))
        ):
            rows.append({
                "arm": arm, "version": version, "entities assigned": d.assigned[index],
                "entities with outcomes": len(outcomes), "observations": d.observations[index],
                "requests": d.requests[index],
                f"mean {d.metric}": round(float(outcomes.mean()), 6) if len(outcomes) else None,
            })
        return rows

    def to_markdown(self) -> str:
        d, design = self.data, self.design
        direction = "higher" if design.higher_is_better else "lower"
        stopping = ("sequential (mixture SPRT: valid at every look)" if design.stopping == "sequential"
                    else f"fixed, pre-registered at {design.planned_samples_per_arm} entities per arm")
        test = ("two-proportion test (each entity had one labelled outcome)" if d.binary
                else "Welch t-test on per-entity outcomes")
        lines = [
            f"# A/B test of {self.model}: {self.recommendation}",
            "",
            f"Challenger v{self.challenger_version} (treatment) against champion v{self.champion_version} (control), "
            f"{self.plan.describe()}; window {self.window.describe()}.",
            "",
            f"- design, registered at the start: {design.metric} ({direction} is better), minimum effect "
            f"{design.minimum_effect:g}, alpha {design.alpha:g}, power {design.power:g}, stopping {stopping}",
            f"- unit of analysis: the entity; outcome: {OUTCOME_DESCRIPTIONS[d.metric]}; {test}",
            f"- {self.srm.describe()}",
        ]
        r = self.result
        if r is not None:
            c = r.comparison
            relative = f", relative {c.difference / c.control:+.2%}" if c.control else ""
            lines.append(f"- effect: {c.describe()}{relative} ({c.method})")
            if r.sequential is not None:
                s = r.sequential
                lines.append(
                    f"- always-valid p={s.p_value:.3g} (previous looks: {self.previous_p_value:.3g}), "
                    f"confidence sequence [{s.ci_low:+.4g}, {s.ci_high:+.4g}]"
                )
            if r.additional_samples_per_arm:
                lines.append(f"- about {r.additional_samples_per_arm} more entities per arm would be needed")
        lines.append(f"- status: {self.status.value}; winner: "
                     + (f"{self.winner} v{self.winner_version}" if self.winner else "none"))
        lines += [f"- problem: {p}" for p in self.problems]
        left_out = []
        if d.unkeyed_requests:
            left_out.append(f"{d.unkeyed_requests} requests without the sticky key (served by the champion)")
        if d.crossover_entities:
            left_out.append(f"{d.crossover_entities} entities served by both arms")
        if d.other_version_rows:
            left_out.append(f"{d.other_version_rows} rows of versions this test did not set up")
        if d.truncated_to:
            left_out.append(f"entities past the first {d.truncated_to} per arm (fixed design)")
        if left_out:
            lines.append("- left out: " + "; ".join(left_out))
        lines += [f"- note: {n}" for n in self.notes]
        lines += ["", "| arm | version | entities assigned | with outcomes | observations | requests | mean |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for row in self.arm_rows():
            mean = row[f"mean {d.metric}"]
            lines.append(f"| {row['arm']} | v{row['version']} | {row['entities assigned']} | "
                         f"{row['entities with outcomes']} | {row['observations']} | {row['requests']} | "
                         f"{'' if mean is None else f'{mean:.4g}'} |")
        return "\n".join(lines)


def _recommendation(result: ABResult, run: ExperimentRun, spec_path: str) -> str:
    metric = result.metric
    c = result.comparison
    effect = f"{metric} {c.treatment:.4g} vs {c.control:.4g}, difference {c.difference:+.4g}"
    if result.winner == "treatment":
        return (f"challenger v{run.challenger_version} wins ({effect}): recommend promoting it "
                f"(`steward promote {run.model} {run.challenger_version} --reason '{run.experiment_id}'`), "
                f"then stop the test (`steward ab-test {spec_path} --action stop`)")
    return (f"champion v{run.champion_version} wins ({effect}): keep it, stop the test "
            f"(`steward ab-test {spec_path} --action stop`) and retire challenger v{run.challenger_version}")


def judge_ab_test(
    data: ABData, run: ExperimentRun, window: ExperimentWindow, *, previous_p_value: float = 1.0,
    spec_path: str = "<spec>", notes: Sequence[str] = (),
) -> ABTestReport:
    """Check that the data can be trusted, then compare; a winner only when significant and trusted.

    Reading waits for ``MIN_SAMPLES_FOR_TESTS`` entities with outcomes per arm (the normal
    approximations behind both tests need them); the sample-ratio check runs at every look,
    also before that. A look whose data cannot be trusted does not move the carried p-value.
    """
    if run.design is None:
        raise ExperimentError(f"{run.experiment_id} registered no A/B design; stop it and start a new test")
    design = run.design
    planned = run.planned_shares
    srm = sample_ratio_mismatch(data.assigned, planned)
    problems = []
    if data.crossover_share > MAX_CROSSOVER_SHARE:
        problems.append(
            f"{data.crossover_entities} entities ({data.crossover_share:.1%}) were served by both arms: assignment "
            "is not sticky (did the plan or its salt change, or do clients send the key inconsistently?); "
            "fix it and restart the test"
        )
    base = dict(model=run.model, experiment_id=run.experiment_id, champion_version=run.champion_version,
                challenger_version=run.challenger_version, plan=run.plan, design=design, window=window, data=data,
                srm=srm, previous_p_value=previous_p_value, notes=tuple(notes))
    treatment_units, control_units = data.units
    if min(treatment_units, control_units) < MIN_SAMPLES_FOR_TESTS:
        if srm.mismatch:
            status, code, text = ABStatus.INVALID, ABReason.SAMPLE_RATIO_MISMATCH, (
                f"no conclusion: {srm.describe()}: assignment or logging loses one arm's traffic; fix it and "
                "restart the test")
        elif problems:
            status, code, text = ABStatus.INVALID, ABReason.NOT_STICKY, "no conclusion: " + problems[0]
        else:
            status, code, text = ABStatus.WAITING, ABReason.WAITING_FOR_DATA, (
                f"waiting for data: {treatment_units} challenger / {control_units} champion entities have "
                f"outcomes; the test is read from {MIN_SAMPLES_FOR_TESTS} per arm")
        return ABTestReport(**base, result=None, status=status, code=code, recommendation=text,
                            p_value=previous_p_value if design.stopping == "sequential" else None,
                            problems=tuple(problems))

    result = analyse_ab_test(data.treatment, data.control, design, assigned=data.assigned, planned_shares=planned,
                             binary=data.binary, previous_p_value=previous_p_value)
    trusted = not problems and not srm.mismatch
    p_value = None
    if design.stopping == "sequential":
        p_value = result.sequential.p_value if trusted and result.sequential is not None else previous_p_value
    if srm.mismatch:
        status, code, text = ABStatus.INVALID, ABReason.SAMPLE_RATIO_MISMATCH, result.recommendation
    elif not trusted:
        status, code, text = ABStatus.INVALID, ABReason.NOT_STICKY, "no conclusion: " + problems[0]
    elif result.conclusive:
        status, code, text = ABStatus.CONCLUDED, ABReason.WINNER, _recommendation(result, run, spec_path)
    else:
        status, code, text = ABStatus.RUNNING, result.code, result.recommendation
    return ABTestReport(**base, result=result, status=status, code=code, recommendation=text, p_value=p_value,
                        problems=tuple(problems))


def _analyses(entries: Sequence[AuditEntry], run: ExperimentRun) -> list[AuditEntry]:
    return [e for e in experiment_entries(entries)
            if e.details.get("experiment_id") == run.experiment_id and e.details.get("action") in ("analyse", "stop")]


def previous_p_value(entries: Sequence[AuditEntry], run: ExperimentRun) -> float:
    """The smallest always-valid p-value recorded by earlier looks of this test (1 before the first)."""
    values = [float(e.details["p_value"]) for e in _analyses(entries, run) if e.details.get("p_value")]
    return min(values, default=1.0)


def already_concluded(entries: Sequence[AuditEntry], run: ExperimentRun) -> bool:
    """Whether an earlier look already concluded (its recommendation was already made)."""
    return any(e.details.get("status") == ABStatus.CONCLUDED.value for e in _analyses(entries, run))
