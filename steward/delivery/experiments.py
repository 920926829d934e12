"""Experiments on live traffic (A/B test, shadow): their state in the audit history, plans and windows.

Everything here is pure. The flows read the prediction log and the audit history and pass
frames and entries in; what comes back is typed and says what to do in plain words. By job:
``steward.delivery.ab_data`` shapes a window of the log into per-entity outcomes,
``steward.delivery.ab_verdict`` judges an A/B look, ``steward.delivery.shadow`` compares a shadow's
answers; this module holds what both kinds share.

**State between looks** lives in the model's audit history (``ChangeKind.DELIVERY_DECISION``
entries): the start entry registers the design, versions and plan; each analysis entry carries
what the next look needs (an A/B look's always-valid p-value, so the p-value never rises).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from steward.registry.history import CHALLENGER, CHAMPION, AuditEntry, ChangeKind
from steward.registry.traffic import DEFAULT_PLAN, TrafficMode, TrafficPlan
from steward.spec import ABTestSpec, ModelSpec


class ExperimentError(ValueError):
    """An experiment action that cannot be done in the model's current state; the message says what to do."""


class ExperimentKind(StrEnum):
    AB_TEST = "ab-test"
    SHADOW = "shadow"


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def as_of_or_now(moment: datetime | None) -> datetime:
    """``moment`` in UTC (a naive time, as the command line gives it, is taken as UTC), or now."""
    if moment is None:
        return datetime.now(UTC)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def utc_stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


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
                f"v{self.champion_version} ({self.plan.describe()}), started {utc_stamp(self.started)} UTC")

    def to_details(self) -> dict[str, str]:
        return {
            "experiment": self.kind.value,
            "action": "start",
            "experiment_id": self.experiment_id,
            "started": iso_utc(self.started),
            "analysis_from": iso_utc(self.analysis_from),
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


def experiment_entries(entries: Sequence[AuditEntry]) -> list[AuditEntry]:
    """The entries experiments wrote (start, look, stop), oldest first."""
    kinds = {k.value for k in ExperimentKind}
    return sorted(
        (e for e in entries if e.kind is ChangeKind.DELIVERY_DECISION and e.details.get("experiment") in kinds),
        key=lambda e: e.sequence,
    )


def active_experiment(entries: Sequence[AuditEntry]) -> ExperimentRun | None:
    """The experiment started last and not stopped since, of either kind (they share the traffic plan)."""
    active: ExperimentRun | None = None
    for entry in experiment_entries(entries):
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
        text = f"{utc_stamp(self.start)} to {utc_stamp(self.end)} UTC"
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
            closed = f"{entry.kind.value} at {utc_stamp(entry.time)} by {entry.actor}: {what} ({entry.reason})"
            return ExperimentWindow(run.analysis_from, max(entry.time, run.analysis_from), closed)
    return ExperimentWindow(run.analysis_from, max(now, run.analysis_from))


def stop_details(run: ExperimentRun, **extra: str) -> dict[str, str]:
    """What the audit entry of an experiment's stop keeps."""
    return {"experiment": run.kind.value, "action": "stop", "experiment_id": run.experiment_id, **extra}
