"""Pure decisions: the validation gate and the slow-training flag.

Everything here takes measurements and a policy and returns a typed verdict with a
reason a person can act on. Nothing here loads models or talks to a registry.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from steward.findings import CheckStatus
from steward.spec import GateSpec
from steward.training.evaluation import higher_is_better, metric_change
from steward.training.probes import EdgeCaseOutcome, SpeedProfile


@dataclass(frozen=True)
class GateCheck:
    name: str
    status: CheckStatus
    reason: str

    @property
    def failed(self) -> bool:
        return self.status is CheckStatus.FAILED


@dataclass(frozen=True)
class ValidationReport:
    model: str
    candidate_version: str
    champion_version: str | None
    primary_metric: str
    candidate_metrics: dict[str, float]
    champion_metrics: dict[str, float] | None
    checks: tuple[GateCheck, ...]
    holdout_rows: int = 0
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not any(check.failed for check in self.checks)

    @property
    def failures(self) -> tuple[GateCheck, ...]:
        return tuple(check for check in self.checks if check.failed)

    def summary(self) -> str:
        against = f"champion v{self.champion_version}" if self.champion_version else "no champion (bootstrap)"
        if self.passed:
            return f"v{self.candidate_version} passed {len(self.checks)} checks against {against}"
        reasons = "; ".join(f"{c.name}: {c.reason}" for c in self.failures)
        return f"v{self.candidate_version} failed against {against}: {reasons}"

    def to_markdown(self) -> str:
        verdict = "PASSED" if self.passed else "FAILED"
        lines = [
            f"# Validation of {self.model} v{self.candidate_version}: {verdict}",
            "",
            f"Compared with: {'v' + self.champion_version if self.champion_version else 'no champion (bootstrap)'}"
            f" on {self.holdout_rows} held-out rows. Primary metric: `{self.primary_metric}`.",
            "",
            "| check | result | reason |",
            "| --- | --- | --- |",
        ]
        lines += [f"| {c.name} | {c.status.value} | {c.reason} |" for c in self.checks]
        lines += ["", "| metric | candidate | champion |", "| --- | --- | --- |"]
        for name, value in sorted(self.candidate_metrics.items()):
            baseline = (self.champion_metrics or {}).get(name)
            lines.append(f"| {name} | {value:.4f} | {'' if baseline is None else f'{baseline:.4f}'} |")
        return "\n".join(lines)


def check_primary_metric(
    metric: str, candidate: float, champion: float | None, policy: GateSpec
) -> list[GateCheck]:
    checks = []
    if policy.floor is not None:
        meets = candidate >= policy.floor if higher_is_better(metric) else candidate <= policy.floor
        bound = "at least" if higher_is_better(metric) else "at most"
        checks.append(
            GateCheck(
                "metric_floor",
                CheckStatus.PASSED if meets else CheckStatus.FAILED,
                f"{metric} {candidate:.4f}, must be {bound} {policy.floor:.4f}",
            )
        )
    if champion is None:
        checks.append(GateCheck("metric_vs_champion", CheckStatus.SKIPPED, "no champion to compare with"))
    else:
        change = metric_change(metric, candidate, champion)
        ok = change >= -policy.tolerance
        checks.append(
            GateCheck(
                "metric_vs_champion",
                CheckStatus.PASSED if ok else CheckStatus.FAILED,
                f"{metric} {candidate:.4f} vs champion {champion:.4f} "
                f"({'+' if change >= 0 else ''}{change:.4f}; tolerance {policy.tolerance})",
            )
        )
    return checks


def check_slices(
    candidate: dict[tuple[str, str], tuple[int, float]],
    champion: dict[tuple[str, str], tuple[int, float]] | None,
    metric: str,
    policy: GateSpec,
) -> GateCheck:
    """No slice with enough rows may lose more than ``slice_tolerance`` against the champion."""
    if not policy.slice_features:
        return GateCheck("slices", CheckStatus.SKIPPED, "no slice features in the spec (gates.slice_features)")
    if champion is None:
        return GateCheck("slices", CheckStatus.SKIPPED, "no champion to compare slices with")
    regressions, compared = [], 0
    for key, (rows, score) in sorted(candidate.items()):
        if key not in champion or rows < policy.min_slice_rows:
            continue
        compared += 1
        change = metric_change(metric, score, champion[key][1])
        if change < -policy.slice_tolerance:
            regressions.append(f"{key[0]}={key[1]} {score:.3f} vs {champion[key][1]:.3f} ({rows} rows)")
    if regressions:
        return GateCheck(
            "slices", CheckStatus.FAILED,
            f"{metric} dropped beyond {policy.slice_tolerance} in " + ", ".join(regressions),
        )
    return GateCheck(
        "slices", CheckStatus.PASSED,
        f"{compared} slices with ≥{policy.min_slice_rows} rows within {policy.slice_tolerance} of the champion",
    )


def check_edge_cases(outcomes: Sequence[EdgeCaseOutcome]) -> GateCheck:
    failed = [o.describe() for o in outcomes if not o.passed]
    if failed:
        return GateCheck("edge_cases", CheckStatus.FAILED, "; ".join(failed))
    return GateCheck("edge_cases", CheckStatus.PASSED, "; ".join(o.describe() for o in outcomes))


def check_speed(candidate: SpeedProfile, champion: SpeedProfile | None, policy: GateSpec) -> list[GateCheck]:
    if champion is None:
        reason = (
            f"single-row p95 {candidate.single_row_p95_ms:.2f} ms, "
            f"{candidate.batch_rows_per_second:,.0f} rows/s; no champion to compare with"
        )
        return [GateCheck("inference_speed", CheckStatus.SKIPPED, reason)]
    limit_ms = max(champion.single_row_p95_ms * policy.max_latency_factor, policy.min_latency_ms)
    latency_ok = candidate.single_row_p95_ms <= limit_ms
    throughput_floor = champion.batch_rows_per_second * policy.min_batch_throughput_factor
    throughput_ok = candidate.batch_rows_per_second >= throughput_floor
    return [
        GateCheck(
            "latency_p95",
            CheckStatus.PASSED if latency_ok else CheckStatus.FAILED,
            f"single-row p95 {candidate.single_row_p95_ms:.2f} ms vs champion "
            f"{champion.single_row_p95_ms:.2f} ms (limit {limit_ms:.2f} ms)",
        ),
        GateCheck(
            "batch_throughput",
            CheckStatus.PASSED if throughput_ok else CheckStatus.FAILED,
            f"{candidate.batch_rows_per_second:,.0f} rows/s vs champion "
            f"{champion.batch_rows_per_second:,.0f} (floor {throughput_floor:,.0f})",
        ),
    ]


def check_signature(
    candidate_schema: dict[str, str], champion_schema: dict[str, str] | None, policy: GateSpec
) -> GateCheck:
    """The candidate must accept what the champion accepts, unless a schema change is allowed."""
    if champion_schema is None:
        return GateCheck("signature", CheckStatus.SKIPPED, "no champion signature to compare with")
    added = sorted(set(candidate_schema) - set(champion_schema))
    removed = sorted(set(champion_schema) - set(candidate_schema))
    retyped = sorted(k for k in set(candidate_schema) & set(champion_schema) if candidate_schema[k] != champion_schema[k])
    if not (added or removed or retyped):
        return GateCheck("signature", CheckStatus.PASSED, f"same {len(candidate_schema)} input columns and types")
    change = f"added {added}, removed {removed}, retyped {retyped}"
    if policy.allow_schema_change:
        return GateCheck("signature", CheckStatus.PASSED, f"input schema changed ({change}); allowed by gates")
    return GateCheck(
        "signature", CheckStatus.FAILED,
        f"input schema changed ({change}): callers would break. Set gates.allow_schema_change: true "
        "to accept it as a new major version",
    )


@dataclass(frozen=True)
class TrainingDurationVerdict:
    slow: bool
    reason: str


def judge_training_duration(
    seconds: float, earlier_seconds: Sequence[float], factor: float
) -> TrainingDurationVerdict:
    """Flag a training run that took over ``factor`` times the median of the model's earlier runs."""
    if not earlier_seconds:
        return TrainingDurationVerdict(False, f"{seconds:.1f} s; first training of this model, no baseline")
    median = statistics.median(earlier_seconds)
    ratio = seconds / median if median > 0 else float("inf")
    if ratio > factor:
        return TrainingDurationVerdict(
            True, f"{seconds:.1f} s is {ratio:.1f}x the median {median:.1f} s of {len(earlier_seconds)} earlier runs "
            f"(limit {factor:g}x): check data volume and the estimator settings",
        )
    return TrainingDurationVerdict(False, f"{seconds:.1f} s, {ratio:.1f}x the median of earlier runs")


class RetrainCode(StrEnum):
    WITHIN_BUDGET = "within_budget"
    COOLDOWN = "cooldown"
    WEEKLY_BUDGET_SPENT = "weekly_budget_spent"


@dataclass(frozen=True)
class RetrainAllowance:
    code: RetrainCode
    reason: str
    as_of: datetime | None = None  # the event time the allowance was judged at

    @property
    def allowed(self) -> bool:
        return self.code is RetrainCode.WITHIN_BUDGET


# Version tag holding the event time a version was trained at (the retrain's ``as_of``, else the
# wall clock then): the clock the cooldown and the weekly budget run on.
TRAINED_AS_OF_TAG = "steward.trained_as_of"


def trained_as_of(tags: dict[str, str], created: datetime) -> datetime:
    """A version's training event time: its ``steward.trained_as_of`` tag, else its creation time
    (versions registered before the tag existed)."""
    value = tags.get(TRAINED_AS_OF_TAG)
    if not value:
        return created
    stamp = datetime.fromisoformat(value)
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def decide_retrain(
    as_of: datetime | None, earlier_retrains: Sequence[datetime], *, cooldown_hours: float, max_per_week: int
) -> RetrainAllowance:
    """Enforce the spec's cooldown and weekly budget, so a burst of triggers cannot retrain in a loop.

    Both run on event time: ``as_of`` is the time the run judges (a backfill's past window end;
    None means now) and ``earlier_retrains`` the event times earlier retrains ran at, so a replay
    of last month decides as it would have then. Retrains at a later event time than ``as_of``
    had not happened yet at that time and do not count.
    """
    now = as_of if as_of is not None else datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    before = [t if t.tzinfo else t.replace(tzinfo=UTC) for t in earlier_retrains]
    before = [t for t in before if t <= now]
    if before:
        latest = max(before)
        since = (now - latest).total_seconds() / 3600
        if since < cooldown_hours:
            return RetrainAllowance(
                RetrainCode.COOLDOWN, f"cooldown: last retrain {since:.1f} h before {now:%Y-%m-%d %H:%M} UTC, "
                f"cooldown is {cooldown_hours:g} h "
                f"(next allowed after {(latest + timedelta(hours=cooldown_hours)).isoformat(timespec='minutes')})",
                now,
            )
    week = [t for t in before if now - t < timedelta(days=7)]
    if len(week) >= max_per_week:
        return RetrainAllowance(
            RetrainCode.WEEKLY_BUDGET_SPENT,
            f"budget: {len(week)} retrains in the 7 days before {now:%Y-%m-%d %H:%M} UTC, "
            f"the budget is {max_per_week} a week", now,
        )
    return RetrainAllowance(
        RetrainCode.WITHIN_BUDGET, f"{len(week)} of {max_per_week} retrains used in the week before "
        f"{now:%Y-%m-%d %H:%M} UTC; cooldown respected", now,
    )
