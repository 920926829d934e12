"""Experiments on live traffic: the A/B test's data and verdict, the shadow comparison, and their state.

Everything here is pure. The flows read the prediction log and the audit history and pass
frames and entries in; what comes back is typed and says what to do in plain words.

* **A/B test**: the unit of analysis is the entity (the sticky key the gateway assigned by),
  because that is the unit that was randomised: requests of one customer are not independent.
  Each entity gets one outcome per metric (the share of its labelled predictions that were
  right, the mean of its labels, or its mean latency); ``steward.delivery.analyse_ab_test``
  then checks the sample ratio and compares the arms.
* **Shadow**: the champion's served answer and the challenger's copy of the same request are
  paired by request id and row; agreement, disagreement by slice and the latency cost come
  from those pairs and from the champion's own latency before the shadow started.
* **State between looks** lives in the model's audit history (``ChangeKind.DELIVERY_DECISION``
  entries): the start entry registers the design, versions and plan; each analysis entry
  carries the always-valid p-value, so the next look starts from it and the p-value never rises.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import numpy as np
import pandas as pd
from scipy import stats as sps
from statsmodels.stats.proportion import proportion_confint

from steward.delivery.decisions import MIN_SAMPLES_FOR_TESTS, ABResult, analyse_ab_test
from steward.delivery.traffic import DEFAULT_PLAN, TrafficMode, TrafficPlan
from steward.registry.history import CHALLENGER, CHAMPION, AuditEntry, ChangeKind
from steward.spec import ABTestSpec, ModelSpec, Task
from steward.stats import RatioEstimate, SampleRatioCheck, quantile_ratio, sample_ratio_mismatch

# Event of a conclusive A/B look; a plain string like those in steward.events.

# Entities seen in both arms beyond this share mean the assignment is not sticky: no conclusion.
MAX_CROSSOVER_SHARE = 0.01
MISSING_SLICE = "(missing)"


class ExperimentError(ValueError):
    """An experiment action that cannot be done in the model's current state; the message says what to do."""


class ExperimentKind(StrEnum):
    AB_TEST = "ab-test"
    SHADOW = "shadow"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def as_of_or_now(moment: datetime | None) -> datetime:
    """``moment`` in UTC (a naive time, as the command line gives it, is taken as UTC), or now."""
    if moment is None:
        return datetime.now(UTC)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


# ---------------------------------------------------------------------- state
@dataclass(frozen=True)
class ExperimentRun:
    """What the start of an experiment registered: versions, plan, design and when the analysis begins.

    ``analysis_from`` is the start plus a settling time: gateways apply a new plan within about a
    second, and requests routed by the old plan in between must not count for either arm.
    """

    kind: ExperimentKind
    model: str
    experiment_id: str
    started: datetime
    analysis_from: datetime
    champion_version: str
    challenger_version: str
    plan: TrafficPlan
    design: ABTestSpec | None = None
    window_minutes: float | None = None
    sequence: int = 0  # of the start entry in the audit history; 0 until recorded

    @property
    def planned_shares(self) -> tuple[float, float]:
        """(challenger, champion) shares of entities the plan assigns."""
        share = self.plan.challenger_percent / 100
        return share, 1 - share

    def describe(self) -> str:
        return (f"{self.kind.value} {self.experiment_id}: challenger v{self.challenger_version} against champion "
                f"v{self.champion_version} ({self.plan.describe()}), started {_stamp(self.started)} UTC")

    def to_details(self) -> dict[str, str]:
        return {
            "experiment": self.kind.value,
            "action": "start",
            "experiment_id": self.experiment_id,
            "started": _iso(self.started),
            "analysis_from": _iso(self.analysis_from),
            "champion": self.champion_version,
            "challenger": self.challenger_version,
            "plan": self.plan.model_dump_json(),
            "design": self.design.model_dump_json() if self.design is not None else "",
            "window_minutes": "" if self.window_minutes is None else repr(self.window_minutes),
        }

    @classmethod
    def from_entry(cls, entry: AuditEntry) -> ExperimentRun:
        d = entry.details
        return cls(
            kind=ExperimentKind(d["experiment"]), model=entry.model, experiment_id=d["experiment_id"],
            started=datetime.fromisoformat(d["started"]), analysis_from=datetime.fromisoformat(d["analysis_from"]),
            champion_version=d["champion"], challenger_version=d["challenger"],
            plan=TrafficPlan.model_validate_json(d["plan"]),
            design=ABTestSpec.model_validate_json(d["design"]) if d.get("design") else None,
            window_minutes=float(d["window_minutes"]) if d.get("window_minutes") else None,
            sequence=entry.sequence,
        )


def new_experiment(
    kind: ExperimentKind,
    model: str,
    *,
    champion_version: str,
    challenger_version: str,
    plan: TrafficPlan,
    now: datetime,
    settle_seconds: float,
    design: ABTestSpec | None = None,
    window_minutes: float | None = None,
) -> ExperimentRun:
    if settle_seconds < 0:
        raise ExperimentError(f"settle_seconds must be >= 0, got {settle_seconds}")
    if window_minutes is not None and window_minutes <= 0:
        raise ExperimentError(f"window_minutes must be positive, got {window_minutes}")
    experiment_id = f"{kind.value}-{now.astimezone(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    return ExperimentRun(kind, model, experiment_id, now, now + timedelta(seconds=settle_seconds),
                         str(champion_version), str(challenger_version), plan, design, window_minutes)


def sticky_key_of(spec: ModelSpec) -> str:
    """The A/B sticky key: ``ab_test.sticky_key`` (a bare name means a payload field), else the entity column."""
    key = spec.ab_test.sticky_key or (f"field:{spec.entity_column}" if spec.entity_column else None)
    if key is None:
        raise ExperimentError(
            f"{spec.name}: an A/B test assigns by entity; set ab_test.sticky_key (e.g. 'field:customer_id' or "
            "'header:X-Customer-Id') or entity_column in the spec"
        )
    return key if ":" in key else f"field:{key}"


def ab_plan(spec: ModelSpec, challenger_percent: float, salt: str) -> TrafficPlan:
    """The sticky A/B plan of a test; a fresh salt per test so entities are reshuffled between tests."""
    if not 0 < challenger_percent < 100:
        raise ExperimentError(f"challenger_percent must be strictly between 0 and 100, got {challenger_percent}")
    return TrafficPlan(mode=TrafficMode.AB, challenger_percent=challenger_percent, sticky_key=sticky_key_of(spec),
                       salt=salt)


def shadow_plan(challenger_percent: float) -> TrafficPlan:
    if not 0 < challenger_percent <= 100:
        raise ExperimentError(f"challenger_percent must be in (0, 100] for a shadow, got {challenger_percent}")
    return TrafficPlan(mode=TrafficMode.SHADOW, challenger_percent=challenger_percent)


def _experiment_entries(entries: Sequence[AuditEntry]) -> list[AuditEntry]:
    kinds = {k.value for k in ExperimentKind}
    return sorted(
        (e for e in entries if e.kind is ChangeKind.DELIVERY_DECISION and e.details.get("experiment") in kinds),
        key=lambda e: e.sequence,
    )


def active_experiment(entries: Sequence[AuditEntry]) -> ExperimentRun | None:
    """The experiment started last and not stopped since, of either kind (they share the traffic plan)."""
    active: ExperimentRun | None = None
    for entry in _experiment_entries(entries):
        action = entry.details.get("action")
        if action == "start":
            active = ExperimentRun.from_entry(entry)
        elif action == "stop" and active is not None and entry.details.get("experiment_id") == active.experiment_id:
            active = None
    return active


def require_active(entries: Sequence[AuditEntry], kind: ExperimentKind, model: str, spec_path: str) -> ExperimentRun:
    """The running experiment of ``kind``, or an error saying how to start one."""
    run = active_experiment(entries)
    if run is None:
        raise ExperimentError(
            f"no {kind.value} is running for {model}; start one with `steward {kind.value} {spec_path} --action start`"
        )
    if run.kind is not kind:
        raise ExperimentError(
            f"{model} is running a {run.kind.value}, not a {kind.value} ({run.describe()}); "
            f"stop it with `steward {run.kind.value} {spec_path} --action stop` first"
        )
    return run


def check_can_start(
    entries: Sequence[AuditEntry], current_plan: TrafficPlan, *, model: str, spec_path: str,
    champion: str | None, challenger: str | None,
) -> None:
    """An experiment needs both aliases and the traffic to itself: no other experiment, no canary under way."""
    running = active_experiment(entries)
    if running is not None:
        raise ExperimentError(
            f"{model} already runs {running.describe()}; stop it with "
            f"`steward {running.kind.value} {spec_path} --action stop` before starting another"
        )
    if champion is None:
        raise ExperimentError(f"{model} has no champion to compare against; validate a first version (`steward validate`)")
    if challenger is None:
        raise ExperimentError(
            f"{model} has no challenger; validate a candidate first (`steward validate`), which makes it the challenger"
        )
    if current_plan != DEFAULT_PLAN:
        raise ExperimentError(
            f"{model}'s traffic plan is '{current_plan.describe()}'; an experiment needs the traffic to itself: "
            "finish or roll back that delivery (or set the plan back to the champion) first"
        )


@dataclass(frozen=True)
class ExperimentWindow:
    """The part of the log an analysis reads: from the settled start to now, or to what ended the setup."""

    start: datetime
    end: datetime
    closed_by: str | None = None  # why the window ends before now: a plan change or an alias move

    @property
    def duration(self) -> timedelta:
        return max(self.end - self.start, timedelta(0))

    def describe(self) -> str:
        text = f"{_stamp(self.start)} to {_stamp(self.end)} UTC"
        return text + (f" (closed early: {self.closed_by})" if self.closed_by else "")


def experiment_window(entries: Sequence[AuditEntry], run: ExperimentRun, now: datetime) -> ExperimentWindow:
    """From ``analysis_from`` to ``now``, or to the first plan change or champion/challenger move after the start.

    After such a change the gateways no longer serve what the experiment set up, so later traffic
    belongs to something else; the evidence gathered until then is still valid.
    """
    for entry in sorted(entries, key=lambda e: e.sequence):
        if entry.sequence <= run.sequence or entry.time >= now:
            continue
        if entry.kind is ChangeKind.TRAFFIC_PLAN or entry.alias in (CHAMPION, CHALLENGER):
            what = entry.details.get("summary") or (
                f"{entry.alias} moved to v{entry.to_version}" if entry.alias else entry.kind.value
            )
            closed = f"{entry.kind.value} at {_stamp(entry.time)} by {entry.actor}: {what} ({entry.reason})"
            return ExperimentWindow(run.analysis_from, max(entry.time, run.analysis_from), closed)
    return ExperimentWindow(run.analysis_from, max(now, run.analysis_from))


def _analyses(entries: Sequence[AuditEntry], run: ExperimentRun) -> list[AuditEntry]:
    return [e for e in _experiment_entries(entries)
            if e.details.get("experiment_id") == run.experiment_id and e.details.get("action") in ("analyse", "stop")]


def previous_p_value(entries: Sequence[AuditEntry], run: ExperimentRun) -> float:
    """The smallest always-valid p-value recorded by earlier looks of this test (1 before the first)."""
    values = [float(e.details["p_value"]) for e in _analyses(entries, run) if e.details.get("p_value")]
    return min(values, default=1.0)


def already_concluded(entries: Sequence[AuditEntry], run: ExperimentRun) -> bool:
    """Whether an earlier look already concluded (its recommendation was already made)."""
    return any(e.details.get("status") == ABStatus.CONCLUDED.value for e in _analyses(entries, run))


# ---------------------------------------------------------------------- A/B data
OUTCOME_DESCRIPTIONS = {
    "accuracy": "share of the entity's labelled predictions that were right (an unanswered request counts as wrong)",
    "label_mean": "mean of the entity's labels (e.g. its conversion rate)",
    "latency_ms": "mean latency of the entity's requests, in ms",
}


@dataclass(frozen=True, eq=False)
class ABData:
    """Per-entity outcomes of both arms, and the counts the trust checks need.

    ``binary`` is true when every entity has exactly one 0/1 observation (one-shot entities): the
    outcomes are then Bernoulli and the two-proportion test applies; otherwise per-entity means
    are compared with Welch's test.
    """

    metric: str
    binary: bool
    treatment: np.ndarray  # challenger, one outcome per entity
    control: np.ndarray  # champion
    assigned: tuple[int, int]  # entities served per arm (challenger, champion): the SRM check's counts
    requests: tuple[int, int]
    observations: tuple[int, int]  # labelled predictions (or requests, for latency) behind the outcomes
    unkeyed_requests: int  # requests without the sticky key: always champion, left out
    crossover_entities: int  # entities served by both arms: left out
    other_version_rows: int  # rows of versions the test did not set up: left out
    truncated_to: int | None = None  # fixed design: the first N entities per arm by first request

    @property
    def units(self) -> tuple[int, int]:
        return len(self.treatment), len(self.control)

    @property
    def crossover_share(self) -> float:
        total = sum(self.assigned) + self.crossover_entities
        return self.crossover_entities / total if total else 0.0


def _arm_rows(frame: pd.DataFrame, run: ExperimentRun) -> tuple[pd.DataFrame, int]:
    """Served rows of the versions the test set up, with each row's arm; and how many rows were other versions."""
    served = frame[frame["served"].astype(bool)] if "served" in frame.columns else frame
    expected = ((served["arm"] == CHALLENGER) & (served["version"] == run.challenger_version)) | (
        (served["arm"] == CHAMPION) & (served["version"] == run.champion_version)
    )
    return served[expected], int((~expected).sum())


def check_design(spec: ModelSpec, design: ABTestSpec) -> None:
    """Refuse a design that cannot be measured on this model, before any traffic is split."""
    if design.metric == "accuracy" and spec.task is Task.REGRESSION:
        raise ExperimentError(
            f"ab_test.metric is 'accuracy' but {spec.name} is a regression model: use 'label_mean' for the "
            "outcome the business measures, or 'latency_ms'"
        )


def _row_outcomes(labelled: pd.DataFrame, metric: str) -> pd.Series:
    if metric == "accuracy":
        right = (labelled["status"] == "ok") & (labelled["prediction"].astype(str) == labelled["label"].astype(str))
        return right.astype(float)
    values = pd.to_numeric(labelled["label"], errors="coerce")
    if values.isna().any():
        bad = labelled.loc[values.isna(), "label"].astype(str).unique()[:3].tolist()
        raise ExperimentError(
            f"ab_test.metric is 'label_mean' but some labels are not numbers (e.g. {bad}); send numeric outcomes "
            "(1/0 for a conversion) to the feedback endpoint, or use metric 'accuracy'"
        )
    return values.astype(float)


def ab_data(
    predictions: pd.DataFrame, labelled: pd.DataFrame, spec: ModelSpec, run: ExperimentRun,
) -> ABData:
    """Shape a window of the log into per-entity outcomes for ``analyse_ab_test``.

    ``predictions`` are the window's served rows; ``labelled`` is ``join_labels`` of them (unused
    for latency). Entities seen in both arms, requests without the key and rows of other versions
    are left out and counted. With a fixed design only the first ``planned_samples_per_arm``
    entities of each arm (by first request) count, so reading the test again later does not add
    looks to a pre-registered sample.
    """
    design = run.design or spec.ab_test
    check_design(spec, design)
    rows, other_versions = _arm_rows(predictions, run)
    keyed = rows[rows["entity"].notna()]
    unkeyed = int(rows.loc[rows["entity"].isna(), "request_id"].nunique())
    arms_per_entity = keyed.groupby("entity")["arm"].nunique()
    crossover = set(arms_per_entity.index[arms_per_entity > 1])
    keyed = keyed[~keyed["entity"].isin(crossover)]
    assigned = tuple(int(keyed.loc[keyed["arm"] == arm, "entity"].nunique()) for arm in (CHALLENGER, CHAMPION))
    requests = tuple(int(keyed.loc[keyed["arm"] == arm, "request_id"].nunique()) for arm in (CHALLENGER, CHAMPION))

    if design.metric == "latency_ms":
        # latency is per request; a batch carrying several entities counts once for each of them
        observed = keyed.drop_duplicates(["request_id", "entity"]).assign(outcome=lambda f: f["latency_ms"].astype(float))
    else:
        labelled_rows, _ = _arm_rows(labelled, run) if len(labelled) else (labelled, 0)
        labelled_rows = labelled_rows[labelled_rows["entity"].notna() & ~labelled_rows["entity"].isin(crossover)]
        outcome = _row_outcomes(labelled_rows, design.metric) if len(labelled_rows) else pd.Series(dtype=float)
        observed = labelled_rows.assign(outcome=outcome)

    units = (
        observed.groupby(["arm", "entity"], sort=False)
        .agg(outcome=("outcome", "mean"), n=("outcome", "size"), first=("time", "min"))
        .reset_index()
        .sort_values(["first", "entity"], kind="stable")
    )
    limit = design.planned_samples_per_arm if design.stopping == "fixed" else None
    if limit is not None:
        units = units.groupby("arm", sort=False).head(limit)
    binary = (
        design.metric != "latency_ms" and len(units) > 0 and bool((units["n"] == 1).all())
        and bool(units["outcome"].isin([0.0, 1.0]).all())
    )
    by_arm = {arm: units[units["arm"] == arm] for arm in (CHALLENGER, CHAMPION)}
    return ABData(
        metric=design.metric,
        binary=binary,
        treatment=by_arm[CHALLENGER]["outcome"].to_numpy(float),
        control=by_arm[CHAMPION]["outcome"].to_numpy(float),
        assigned=assigned,  # type: ignore[arg-type]
        requests=requests,  # type: ignore[arg-type]
        observations=(int(by_arm[CHALLENGER]["n"].sum()), int(by_arm[CHAMPION]["n"].sum())),
        unkeyed_requests=unkeyed,
        crossover_entities=len(crossover),
        other_version_rows=other_versions,
        truncated_to=limit,
    )


# ---------------------------------------------------------------------- A/B verdict
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
            "window_end": _iso(self.window.end),
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
            status, text = ABStatus.INVALID, (f"no conclusion: {srm.describe()}: assignment or logging loses one "
                                              "arm's traffic; fix it and restart the test")
        elif problems:
            status, text = ABStatus.INVALID, "no conclusion: " + problems[0]
        else:
            status, text = ABStatus.WAITING, (
                f"waiting for data: {treatment_units} challenger / {control_units} champion entities have "
                f"outcomes; the test is read from {MIN_SAMPLES_FOR_TESTS} per arm")
        return ABTestReport(**base, result=None, status=status, recommendation=text,
                            p_value=previous_p_value if design.stopping == "sequential" else None,
                            problems=tuple(problems))

    result = analyse_ab_test(data.treatment, data.control, design, assigned=data.assigned, planned_shares=planned,
                             binary=data.binary, previous_p_value=previous_p_value)
    trusted = not problems and not srm.mismatch
    p_value = None
    if design.stopping == "sequential":
        p_value = result.sequential.p_value if trusted and result.sequential is not None else previous_p_value
    if not trusted:
        status = ABStatus.INVALID
        text = result.recommendation if srm.mismatch else "no conclusion: " + problems[0]
    elif result.conclusive:
        status, text = ABStatus.CONCLUDED, _recommendation(result, run, spec_path)
    else:
        status, text = ABStatus.RUNNING, result.recommendation
    return ABTestReport(**base, result=result, status=status, recommendation=text, p_value=p_value,
                        problems=tuple(problems))


# ---------------------------------------------------------------------- shadow
@dataclass(frozen=True)
class Percentiles:
    n: int
    p50: float
    p95: float
    p99: float

    @classmethod
    def of(cls, values: np.ndarray) -> Percentiles | None:
        if len(values) == 0:
            return None
        p50, p95, p99 = np.percentile(values, [50, 95, 99])
        return cls(len(values), float(p50), float(p95), float(p99))

    def describe(self) -> str:
        return f"p50 {self.p50:.1f} ms, p95 {self.p95:.1f} ms, p99 {self.p99:.1f} ms (n={self.n})"


@dataclass(frozen=True)
class LatencyCost:
    """What the shadow costs in time, from the log.

    ``challenger`` is the time from the request's arrival to the shadow score: it includes the
    shadow worker's gathering wait (``shadow_collect_seconds``) and, for the first copies, the
    start of the gateway's shadow scoring process, so it bounds the challenger's own cost from
    above (and a short window overstates it). ``champion_p95_change`` is the champion's served p95 during the shadow
    over its p95 in an equally long window before it: the cost the copies put on real answers.
    """

    champion: Percentiles | None
    challenger: Percentiles | None
    challenger_vs_champion_p95: RatioEstimate | None
    champion_before: Percentiles | None
    champion_p95_change: RatioEstimate | None

    @property
    def champion_slowed(self) -> bool | None:
        """True when the champion's served p95 rose significantly during the shadow; None when unmeasured."""
        change = self.champion_p95_change
        return None if change is None else change.ci_low > 1


@dataclass(frozen=True)
class SliceDisagreement:
    feature: str
    value: str
    pairs: int
    disagreements: int
    ci_low: float
    ci_high: float
    mean_abs_score_diff: float | None
    above_overall: bool  # the slice's 95% interval lies above the overall disagreement rate

    @property
    def rate(self) -> float:
        return self.disagreements / self.pairs if self.pairs else 0.0


@dataclass(frozen=True)
class LabelledComparison:
    """Both versions on the same labelled requests: a paired comparison."""

    pairs: int
    metric: str  # "accuracy" or "mean absolute error"
    champion: float
    challenger: float
    challenger_only_right: int | None  # classification: discordant pairs, for McNemar's test
    champion_only_right: int | None
    p_value: float | None
    method: str

    def describe(self) -> str:
        text = (f"{self.metric} on {self.pairs} labelled pairs: challenger {self.challenger:.4g}, "
                f"champion {self.champion:.4g}")
        if self.challenger_only_right is not None:
            text += (f"; challenger alone right {self.challenger_only_right}, champion alone right "
                     f"{self.champion_only_right}")
        if self.p_value is not None:
            text += f" ({self.method} p={self.p_value:.3g})"
        return text


@dataclass(frozen=True, eq=False)
class ShadowReport:
    model: str
    experiment_id: str
    champion_version: str
    challenger_version: str
    window: ExperimentWindow
    copy_percent: float
    served_requests: int
    shadow_requests: int
    shadow_errors: int
    pairs: int
    agreement_rate: float | None  # same class (classification) or |difference| within tolerance (regression)
    score_agreement_rate: float | None  # classification: |score difference| within tolerance
    mean_abs_score_diff: float | None
    tolerance: float
    classification: bool
    slices: tuple[SliceDisagreement, ...]
    latency: LatencyCost
    labelled: LabelledComparison | None
    notes: tuple[str, ...] = ()

    @property
    def coverage(self) -> float:
        return self.shadow_requests / self.served_requests if self.served_requests else 0.0

    @property
    def flagged_slices(self) -> tuple[SliceDisagreement, ...]:
        return tuple(s for s in self.slices if s.above_overall)

    def findings(self) -> str:
        """Agreement, flagged slices and the champion's latency change, in one line."""
        if not self.pairs:
            return (f"no paired predictions yet ({self.served_requests} served, {self.shadow_requests} shadow copies "
                    "in the window)")
        parts = [f"agreement {self.agreement_rate:.1%} on {self.pairs} pairs"]
        if self.flagged_slices:
            parts.append("disagreement above overall in " + ", ".join(
                f"{s.feature}={s.value} ({s.rate:.1%})" for s in self.flagged_slices))
        slowed = self.latency.champion_slowed
        if slowed is not None:
            change = self.latency.champion_p95_change
            parts.append(f"champion p95 {'rose' if slowed else 'did not rise significantly'} during the shadow "
                         f"(x{change.ratio:.2f})")
        return "; ".join(parts)

    def summary(self) -> str:
        return f"shadow of {self.model} (challenger v{self.challenger_version}): {self.findings()}"

    def to_details(self) -> dict[str, str]:
        return {
            "experiment": ExperimentKind.SHADOW.value,
            "action": "analyse",
            "experiment_id": self.experiment_id,
            "pairs": str(self.pairs),
            "agreement": "" if self.agreement_rate is None else f"{self.agreement_rate:.6g}",
            "flagged_slices": ", ".join(f"{s.feature}={s.value}" for s in self.flagged_slices),
            "champion_slowed": "" if self.latency.champion_slowed is None else str(self.latency.champion_slowed).lower(),
            "window_end": _iso(self.window.end),
        }

    def slice_rows(self) -> list[dict[str, object]]:
        return [
            {"feature": s.feature, "value": s.value, "pairs": s.pairs, "disagreements": s.disagreements,
             "disagreement rate": round(s.rate, 4), "95% CI": f"[{s.ci_low:.3f}, {s.ci_high:.3f}]",
             "mean |score diff|": None if s.mean_abs_score_diff is None else round(s.mean_abs_score_diff, 4),
             "above overall": s.above_overall}
            for s in self.slices
        ]

    def to_markdown(self) -> str:
        lines = [
            f"# Shadow of {self.model}, challenger v{self.challenger_version}: {self.findings()}",
            "",
            f"Challenger v{self.challenger_version} scored copies of {self.copy_percent:g}% of the requests champion "
            f"v{self.champion_version} answered; window {self.window.describe()}.",
            "",
            f"- requests served {self.served_requests}, shadow copies {self.shadow_requests} "
            f"(coverage {self.coverage:.1%}), shadow errors {self.shadow_errors}, paired rows {self.pairs}",
        ]
        if self.pairs:
            if self.classification:
                lines.append(f"- same predicted class: {self.agreement_rate:.2%}; scores within {self.tolerance:g}: "
                             f"{self.score_agreement_rate:.2%}; mean |score difference| {self.mean_abs_score_diff:.4f}")
            else:
                lines.append(f"- predictions within {self.tolerance:g} of each other: {self.agreement_rate:.2%}; "
                             f"mean |difference| {self.mean_abs_score_diff:.4g}")
        if self.labelled is not None:
            lines.append(f"- {self.labelled.describe()}")
        lat = self.latency
        if lat.champion is not None:
            lines.append(f"- champion served latency: {lat.champion.describe()}")
        if lat.challenger is not None:
            lines.append(f"- challenger time to shadow score (an upper bound: includes the shadow worker's gathering "
                         f"wait, and its start for the first copies): {lat.challenger.describe()}")
        if lat.challenger_vs_champion_p95 is not None:
            r = lat.challenger_vs_champion_p95
            lines.append(f"- p95 challenger shadow / champion served: {r.ratio:.2f} (95% CI [{r.ci_low:.2f}, "
                         f"{r.ci_high:.2f}])")
        if lat.champion_p95_change is not None and lat.champion_before is not None:
            r = lat.champion_p95_change
            verdict = "rose" if lat.champion_slowed else "no significant rise"
            lines.append(f"- champion served p95 during the shadow vs before ({lat.champion_before.describe()}): "
                         f"x{r.ratio:.2f} (95% CI [{r.ci_low:.2f}, {r.ci_high:.2f}]): {verdict}")
        else:
            lines.append("- champion p95 before the shadow: not enough served requests before it to compare")
        lines += [f"- note: {n}" for n in self.notes]
        if self.slices:
            lines += ["", "## Disagreement by slice", "",
                      "| feature | value | pairs | disagreement | 95% CI | mean abs score diff | above overall |",
                      "| --- | --- | --- | --- | --- | --- | --- |"]
            for s in self.slices:
                diff = "" if s.mean_abs_score_diff is None else f"{s.mean_abs_score_diff:.4f}"
                lines.append(f"| {s.feature} | {s.value} | {s.pairs} | {s.rate:.2%} | [{s.ci_low:.3f}, "
                             f"{s.ci_high:.3f}] | {diff} | {'yes' if s.above_overall else ''} |")
        return "\n".join(lines)


def _request_latencies(rows: pd.DataFrame) -> np.ndarray:
    return rows.drop_duplicates("request_id")["latency_ms"].dropna().to_numpy(float)


def _ratio(treatment: np.ndarray, control: np.ndarray) -> RatioEstimate | None:
    if min(len(treatment), len(control)) < MIN_SAMPLES_FOR_TESTS:
        return None
    return quantile_ratio(treatment, control, resamples=1000)


def _slices(pairs: pd.DataFrame, spec: ModelSpec, overall_disagreement: float) -> tuple[SliceDisagreement, ...]:
    found = []
    for feature in spec.gates.slice_features:
        if feature not in pairs.columns:
            continue
        values = pairs[feature].astype(object).where(pairs[feature].notna(), MISSING_SLICE).astype(str)
        for value, group in pairs.groupby(values, sort=True):
            n, k = len(group), int((~group["agree"]).sum())
            low, high = proportion_confint(k, n, alpha=0.05, method="wilson")
            diff = group["abs_diff"].dropna()
            found.append(SliceDisagreement(feature, str(value), n, k, float(low), float(high),
                                           float(diff.mean()) if len(diff) else None, bool(low > overall_disagreement)))
    return tuple(sorted(found, key=lambda s: (s.feature, -s.rate, s.value)))


def _labelled(pairs: pd.DataFrame, labels: pd.DataFrame, classification: bool) -> LabelledComparison | None:
    if labels is None or labels.empty:
        return None
    latest = labels.sort_values("time", kind="stable").drop_duplicates(["request_id", "row"], keep="last")
    joined = pairs.merge(latest[["request_id", "row", "label"]], on=["request_id", "row"], how="inner")
    if joined.empty:
        return None
    if classification:
        right_ch = (joined["prediction_challenger"].astype(str) == joined["label"].astype(str)).to_numpy()
        right_cp = (joined["prediction_champion"].astype(str) == joined["label"].astype(str)).to_numpy()
        only_ch, only_cp = int((right_ch & ~right_cp).sum()), int((right_cp & ~right_ch).sum())
        p_value = float(sps.binomtest(only_ch, only_ch + only_cp, 0.5).pvalue) if only_ch + only_cp else None
        return LabelledComparison(len(joined), "accuracy", float(right_cp.mean()), float(right_ch.mean()),
                                  only_ch, only_cp, p_value, "exact McNemar")
    label = pd.to_numeric(joined["label"], errors="coerce")
    err_ch = (pd.to_numeric(joined["prediction_challenger"], errors="coerce") - label).abs()
    err_cp = (pd.to_numeric(joined["prediction_champion"], errors="coerce") - label).abs()
    ok = err_ch.notna() & err_cp.notna()
    if not ok.any():
        return None
    p_value = float(sps.ttest_rel(err_ch[ok], err_cp[ok]).pvalue) if ok.sum() > 2 else None
    return LabelledComparison(int(ok.sum()), "mean absolute error", float(err_cp[ok].mean()), float(err_ch[ok].mean()),
                              None, None, p_value, "paired t-test")


def compare_shadow(
    log: pd.DataFrame,
    spec: ModelSpec,
    run: ExperimentRun,
    window: ExperimentWindow,
    *,
    before: pd.DataFrame | None = None,
    labels: pd.DataFrame | None = None,
    tolerance: float = 0.05,
) -> ShadowReport:
    """Pair each served champion row with the challenger's shadow copy of it and compare them.

    ``log`` holds the window's rows, served and shadow; ``before`` the served rows of an equally
    long window before the shadow started (the champion's own latency baseline); ``labels`` the
    labels received so far (both versions of a pair share the request's label).
    """
    if tolerance < 0:
        raise ExperimentError(f"tolerance must be >= 0, got {tolerance}")
    served_mask = log["served"].astype(bool)
    served = log[served_mask & (log["arm"] == CHAMPION) & (log["version"] == run.champion_version)]
    shadow = log[~served_mask & (log["version"] == run.challenger_version)]
    classification = spec.task.is_classification
    notes = []
    other = int((~served_mask & (log["version"] != run.challenger_version)).sum())
    if other:
        notes.append(f"{other} shadow rows of other versions left out (the challenger alias moved)")

    slice_columns = [f for f in spec.gates.slice_features if f in served.columns]
    keep = ["request_id", "row", "prediction", "score"]
    pairs = served.loc[served["status"] == "ok", keep + slice_columns].merge(
        shadow.loc[shadow["status"] == "ok", keep], on=["request_id", "row"], suffixes=("_champion", "_challenger"),
    )
    agreement = score_agreement = mean_diff = None
    slices: tuple[SliceDisagreement, ...] = ()
    if len(pairs):
        if classification:
            pairs["agree"] = pairs["prediction_champion"].astype(str) == pairs["prediction_challenger"].astype(str)
            pairs["abs_diff"] = (pairs["score_challenger"] - pairs["score_champion"]).abs()
            score_agreement = float((pairs["abs_diff"] <= tolerance).mean())
        else:
            pairs["abs_diff"] = (pd.to_numeric(pairs["prediction_challenger"], errors="coerce")
                                 - pd.to_numeric(pairs["prediction_champion"], errors="coerce")).abs()
            pairs["agree"] = pairs["abs_diff"] <= tolerance
        agreement = float(pairs["agree"].mean())
        mean_diff = float(pairs["abs_diff"].mean())
        slices = _slices(pairs, spec, 1 - agreement)
    if not spec.gates.slice_features:
        notes.append("the spec names no gates.slice_features, so disagreement is not broken down by slice")

    champion_lat, challenger_lat = _request_latencies(served), _request_latencies(shadow)
    before_lat = np.empty(0)
    if before is not None and len(before):
        before_rows = before[before["served"].astype(bool) & (before["arm"] == CHAMPION)
                             & (before["version"] == run.champion_version)]
        before_lat = _request_latencies(before_rows)
    latency = LatencyCost(
        Percentiles.of(champion_lat), Percentiles.of(challenger_lat), _ratio(challenger_lat, champion_lat),
        Percentiles.of(before_lat), _ratio(champion_lat, before_lat),
    )
    return ShadowReport(
        model=run.model, experiment_id=run.experiment_id, champion_version=run.champion_version,
        challenger_version=run.challenger_version, window=window, copy_percent=run.plan.challenger_percent,
        served_requests=int(served["request_id"].nunique()), shadow_requests=int(shadow["request_id"].nunique()),
        shadow_errors=int(shadow.loc[shadow["status"] == "error", "request_id"].nunique()), pairs=len(pairs),
        agreement_rate=agreement, score_agreement_rate=score_agreement, mean_abs_score_diff=mean_diff,
        tolerance=tolerance, classification=classification, slices=slices, latency=latency,
        labelled=_labelled(pairs, labels, classification) if len(pairs) and labels is not None else None,
        notes=tuple(notes),
    )


def baseline_window(run: ExperimentRun, window: ExperimentWindow) -> tuple[datetime, datetime]:
    """An equally long window ending where the experiment started: the champion's latency before it."""
    return run.started - window.duration, run.started


def stop_details(run: ExperimentRun, **extra: str) -> dict[str, str]:
    """What the audit entry of an experiment's stop keeps."""
    return {"experiment": run.kind.value, "action": "stop", "experiment_id": run.experiment_id, **extra}
