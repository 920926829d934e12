"""Pure decisions: the validation gate and the slow-training flag.

Everything here takes measurements and a policy and returns a typed verdict with a
reason a person can act on. Nothing here loads models or talks to a registry.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from steward.findings import CheckStatus
from steward.spec import GateSpec
from steward.training.evaluation import higher_is_better
from steward.training.paired import (
    NonInferiority,
    NonInferiorityResult,
    PairedInterval,
    rows_for_clear_gain,
    same_on_every_row,
)
from steward.training.probes import EdgeCaseOutcome, SpeedProfile


class ComparisonCode(StrEnum):
    """How a paired comparison with the champion ended (primary metric, slices)."""

    NON_INFERIOR = "non_inferior"  # interval above -tolerance (and, when required, no expected loss)
    INFERIOR = "inferior"  # interval below -tolerance
    NO_EXPECTED_GAIN = "no_expected_gain"  # within tolerance with confidence, but expected worse than the champion
    INCONCLUSIVE = "inconclusive"  # the interval straddles -tolerance, or too few rows for the tolerance
    NO_SIGNIFICANT_DROP = "no_significant_drop"  # slices: no slice is significantly below its tolerance
    CLEAR_GAIN = "clear_gain"  # the triggering metric: the interval of the improvement is wholly above zero
    FRESH_NOT_WORSE = "fresh_not_worse"  # a scheduled refresh whose estimate is within the tolerance, not shown worse
    SIGNIFICANT_DROP = "significant_drop"  # slices: some slice is
    NO_SCORES = "no_scores"  # skipped: the check needs a score per row and a contender gives labels only
    SCORING_ERROR = "scoring_error"  # the candidate raised on its own hold-out: nothing else can be judged


class ValidationVerdict(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"  # nothing failed, but the evidence cannot tell yet: not a pass


@dataclass(frozen=True)
class GateCheck:
    name: str
    status: CheckStatus
    reason: str
    code: ComparisonCode | None = None
    interval: PairedInterval | None = None
    rows_needed: int | None = None  # more labelled held-out rows for an inconclusive check to resolve

    @property
    def failed(self) -> bool:
        return self.status is CheckStatus.FAILED

    @property
    def inconclusive(self) -> bool:
        return self.status is CheckStatus.INCONCLUSIVE


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
    def verdict(self) -> ValidationVerdict:
        if any(check.failed for check in self.checks):
            return ValidationVerdict.FAILED
        if any(check.inconclusive for check in self.checks):
            return ValidationVerdict.INCONCLUSIVE
        return ValidationVerdict.PASSED

    @property
    def passed(self) -> bool:
        """May become challenger (or champion on bootstrap): every check passed or was skipped."""
        return self.verdict is ValidationVerdict.PASSED

    @property
    def failures(self) -> tuple[GateCheck, ...]:
        return tuple(check for check in self.checks if check.failed)

    @property
    def undecided(self) -> tuple[GateCheck, ...]:
        return tuple(check for check in self.checks if check.inconclusive)

    @property
    def skipped_for_no_scores(self) -> tuple[GateCheck, ...]:
        """The checks a label-only contender left out (code ``no_scores``): the report says which and why."""
        return tuple(c for c in self.checks if c.status is CheckStatus.SKIPPED and c.code is ComparisonCode.NO_SCORES)

    @property
    def rows_needed(self) -> int | None:
        """More labelled held-out rows every inconclusive check needs (None: none inconclusive, or unknown)."""
        needed = [check.rows_needed for check in self.undecided]
        return max(needed) if needed and None not in needed else None

    @property
    def primary_interval(self) -> PairedInterval | None:
        return next((c.interval for c in self.checks if c.name == "metric_vs_champion"), None)

    @property
    def trigger_interval(self) -> PairedInterval | None:
        return next((c.interval for c in self.checks if c.name == "trigger_metric_vs_champion"), None)

    @property
    def expects_gain(self) -> bool:
        """The estimate favours the candidate where a gain is expected (the triggering metric when judged, else
        the primary metric): an inconclusive candidate worth keeping until more rows decide it."""
        interval = self.trigger_interval or self.primary_interval
        return interval is None or interval.difference >= 0

    def summary(self) -> str:
        against = f"champion v{self.champion_version}" if self.champion_version else "no champion (bootstrap)"
        verdict = self.verdict
        if verdict is ValidationVerdict.PASSED:
            return f"v{self.candidate_version} passed {len(self.checks)} checks against {against}"
        if verdict is ValidationVerdict.INCONCLUSIVE:
            reasons = "; ".join(f"{c.name}: {c.reason}" for c in self.undecided)
            return f"v{self.candidate_version} is inconclusive against {against} (not a pass): {reasons}"
        reasons = "; ".join(f"{c.name}: {c.reason}" for c in self.failures)
        return f"v{self.candidate_version} failed against {against}: {reasons}"

    def to_markdown(self) -> str:
        verdict = self.verdict.value.upper()
        lines = [
            f"# Validation of {self.model} v{self.candidate_version}: {verdict}",
            "",
            f"Compared with: {'v' + self.champion_version if self.champion_version else 'no champion (bootstrap)'}"
            f" on {self.holdout_rows} held-out rows. Primary metric: `{self.primary_metric}`.",
            "",
        ]
        if self.primary_interval is not None:
            lines += [f"Against keeping the champion: {self.primary_interval.describe()}.", ""]
        if self.verdict is ValidationVerdict.INCONCLUSIVE:
            need = f"about {self.rows_needed} more labelled rows" if self.rows_needed else "more labelled rows"
            lines += [f"**Inconclusive, not a pass**: the evidence needs {need} to decide.", ""]
        lines += [
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
    metric: str, candidate: float, comparison: NonInferiorityResult | None, policy: GateSpec,
    *, expect_gain: bool | None = None, refresh: bool = False,
) -> list[GateCheck]:
    """The floor on the candidate's own value, then the paired comparison with the champion.

    A pass needs the interval of the improvement above ``-tolerance`` and, with ``expect_gain``
    (default ``gates.require_expected_gain``), an estimate at least as good as keeping the champion.
    A retrain triggered by another metric expects its gain there (``check_trigger_metric``).
    A scheduled ``refresh`` carries the burden the other way: the fresher model passes unless it is
    worse beyond the tolerance with confidence or its estimate is (decision 0036).
    """
    gain_elsewhere = expect_gain is False  # validate_candidate's word that another metric is judged for the gain
    expect_gain = policy.require_expected_gain if expect_gain is None else expect_gain
    checks = []
    if policy.floor is not None:
        def meets(value: float) -> bool:
            return value >= policy.floor if higher_is_better(metric) else value <= policy.floor

        bound = "at least" if higher_is_better(metric) else "at most"
        reason = f"{metric} {candidate:.4f}, must be {bound} {policy.floor:.4f}"
        checks.append(_floor_check(meets, candidate, comparison, reason, gain_elsewhere=gain_elsewhere))
    if comparison is None:
        checks.append(GateCheck("metric_vs_champion", CheckStatus.SKIPPED, "no champion to compare with"))
        return checks
    interval, tolerance = comparison.interval, comparison.tolerance
    described = f"{interval.describe()}; tolerance {tolerance:g}"
    if comparison.outcome is NonInferiority.INFERIOR:
        checks.append(GateCheck("metric_vs_champion", CheckStatus.FAILED,
                                f"worse than the champion beyond the tolerance: {described}",
                                ComparisonCode.INFERIOR, interval))
    elif refresh:
        checks.append(_refresh_check(interval, tolerance, described))
    elif comparison.outcome is NonInferiority.INCONCLUSIVE:
        floor = comparison.resolution_rows
        counted = "" if floor is None else f" (the tolerance needs {floor} rows of the smaller class)"
        need = ("no number of rows is sure to resolve it: the estimate sits on the tolerance"
                if comparison.rows_needed is None else f"need about {comparison.rows_needed} more labelled rows")
        checks.append(GateCheck("metric_vs_champion", CheckStatus.INCONCLUSIVE,
                                f"{need} to decide{counted}; {described}",
                                ComparisonCode.INCONCLUSIVE, interval, comparison.rows_needed))
    elif expect_gain and interval.difference < 0 and not same_on_every_row(interval):
        checks.append(GateCheck("metric_vs_champion", CheckStatus.FAILED,
                                f"no expected gain over keeping the champion (estimate below it): {described}",
                                ComparisonCode.NO_EXPECTED_GAIN, interval))
    else:
        checks.append(GateCheck("metric_vs_champion", CheckStatus.PASSED, f"non-inferior: {described}",
                                ComparisonCode.NON_INFERIOR, interval))
    return checks


def _floor_check(meets: Callable[[float], bool], candidate: float, comparison: NonInferiorityResult | None,
                 reason: str, *, gain_elsewhere: bool = False) -> GateCheck:
    """The candidate's own value against ``gates.floor``. Keeping a champion that is further below the floor on
    the same rows is the worse choice: a candidate better with confidence passes, and one whose estimate is
    better by more than the tolerance but not yet shown (a world where neither can reach the floor any more)
    waits for the rows. A candidate that ranks every row as the champion does (its threshold re-fitted) and is
    judged for its gain on another metric (``gain_elsewhere``) is not the floor's to choose."""
    if meets(candidate):
        return GateCheck("metric_floor", CheckStatus.PASSED, reason)
    if comparison is None or meets(comparison.interval.champion):
        return GateCheck("metric_floor", CheckStatus.FAILED, reason)
    interval = comparison.interval
    below = f"{reason}; the champion is below it too on the same rows ({interval.champion:.4f})"
    if gain_elsewhere and same_on_every_row(interval):
        return GateCheck("metric_floor", CheckStatus.PASSED,
                         f"{below}, and the candidate ranks every row as the champion does: the floor does not "
                         "choose between them")
    if interval.lower > 0:
        return GateCheck("metric_floor", CheckStatus.PASSED, f"{below} and the candidate is better with confidence")
    needed = rows_for_clear_gain(interval)
    if needed is None or interval.difference <= comparison.tolerance:  # a gain within the margin is not worth the wait
        return GateCheck("metric_floor", CheckStatus.FAILED,
                         f"{below}, and the candidate is not expected better by more than the tolerance "
                         f"{comparison.tolerance:g}: {interval.describe()}")
    return GateCheck("metric_floor", CheckStatus.INCONCLUSIVE,
                     f"{below}; need about {needed} more labelled rows to show the candidate better: "
                     f"{interval.describe()}", ComparisonCode.INCONCLUSIVE, interval, needed)


def _refresh_check(interval: PairedInterval, tolerance: float, described: str) -> GateCheck:
    """A scheduled refresh: the champion's age is the evidence for the fresher model, so a hold-out too
    small to resolve the tolerance keeps the refresh instead of the stale champion."""
    if interval.difference < -tolerance:
        return GateCheck("metric_vs_champion", CheckStatus.FAILED,
                         f"a refresh expected worse than the champion by more than the tolerance: {described}",
                         ComparisonCode.NO_EXPECTED_GAIN, interval)
    return GateCheck("metric_vs_champion", CheckStatus.PASSED,
                     f"a scheduled refresh not shown worse than the older champion: {described}",
                     ComparisonCode.FRESH_NOT_WORSE, interval)


def check_trigger_metric(metric: str, interval: PairedInterval | None, error: str | None = None) -> GateCheck:
    """The metric whose drop triggered the retrain: the candidate must repair it, with confidence.

    A pass needs the paired interval of the improvement wholly above zero; an estimate at or below
    keeping the champion fails (the retrain does not repair what it was started for); a positive
    estimate whose interval reaches zero is inconclusive, with the rows a clear gain would need.
    """
    name = "trigger_metric_vs_champion"
    if interval is None:
        return GateCheck(name, CheckStatus.INCONCLUSIVE,
                         f"cannot compare {metric} with the champion on this hold-out: {error}",
                         ComparisonCode.INCONCLUSIVE)
    described = f"{interval.describe()}; the retrain was triggered by a drop of {metric}"
    if interval.lower > 0:
        return GateCheck(name, CheckStatus.PASSED, f"repairs it with confidence: {described}",
                         ComparisonCode.CLEAR_GAIN, interval)
    needed = rows_for_clear_gain(interval)
    if needed is None:
        return GateCheck(name, CheckStatus.FAILED, f"no expected gain where the retrain was needed: {described}",
                         ComparisonCode.NO_EXPECTED_GAIN, interval)
    return GateCheck(name, CheckStatus.INCONCLUSIVE,
                     f"need about {needed} more labelled rows to show the gain: {described}",
                     ComparisonCode.INCONCLUSIVE, interval, needed)


@dataclass(frozen=True)
class SliceComparison:
    """One category of a slice feature, both models scored on its rows."""

    feature: str
    value: str
    interval: PairedInterval


def check_slices(
    slices: Sequence[SliceComparison], policy: GateSpec, *, has_champion: bool, too_small: int = 0
) -> GateCheck:
    """No slice may be *significantly* worse than the champion by more than ``slice_tolerance``.

    Each slice's interval is already at the family confidence (Bonferroni over the compared
    slices), so a small slice fails only on a drop its own row count can show.
    """
    if not policy.slice_features:
        return GateCheck("slices", CheckStatus.SKIPPED, "no slice features in the spec (gates.slice_features)")
    if not has_champion:
        return GateCheck("slices", CheckStatus.SKIPPED, "no champion to compare slices with")
    skipped = f"; {too_small} slices under {policy.min_slice_rows} rows or with one class not compared" \
        if too_small else ""
    significant = [s for s in slices if s.interval.upper < -policy.slice_tolerance]
    if significant:
        listed = ", ".join(f"{s.feature}={s.value} {s.interval.describe()}" for s in significant)
        return GateCheck("slices", CheckStatus.FAILED,
                         f"significantly worse than the champion beyond {policy.slice_tolerance} in {listed}{skipped}",
                         ComparisonCode.SIGNIFICANT_DROP)
    worst = min(slices, key=lambda s: s.interval.difference, default=None)
    detail = f"; largest drop {worst.feature}={worst.value} {worst.interval.describe()}" if worst else ""
    confidence = f" at {worst.interval.confidence:.1%} each" if worst else ""
    return GateCheck(
        "slices", CheckStatus.PASSED,
        f"{len(slices)} slices compared{confidence}: none significantly beyond {policy.slice_tolerance} below the "
        f"champion{detail}{skipped}",
        ComparisonCode.NO_SIGNIFICANT_DROP,
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


# Version tag of a threshold re-fit: when the estimator it wraps was trained. A re-fit moves only the
# threshold, so the model's age, which a scheduled refresh counts, is its base version's.
MODEL_TRAINED_AS_OF_TAG = "steward.model_trained_as_of"


def _utc_stamp(value: str) -> datetime:
    stamp = datetime.fromisoformat(value)
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def trained_as_of(tags: dict[str, str], created: datetime) -> datetime:
    """A version's training event time: its ``steward.trained_as_of`` tag, else its creation time
    (versions registered before the tag existed)."""
    value = tags.get(TRAINED_AS_OF_TAG)
    return _utc_stamp(value) if value else created


def model_trained_as_of(tags: dict[str, str], created: datetime) -> datetime:
    """When a version's estimator was trained: a threshold re-fit's base model's time, else ``trained_as_of``."""
    value = tags.get(MODEL_TRAINED_AS_OF_TAG)
    return _utc_stamp(value) if value else trained_as_of(tags, created)


# Lineage tag (steward.registry.lineage): the event time of the newest row a version was trained on.
DATA_WINDOW_END_TAG = "steward.data_window_end"


def data_window_end(tags: Mapping[str, str]) -> datetime | None:
    """The newest training row's event time (None: not recorded, or not a time)."""
    value = tags.get(DATA_WINDOW_END_TAG)
    try:
        return _utc_stamp(value) if value else None
    except ValueError:
        return None


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
