"""Tasks of the A/B test and shadow flows: set up and end experiments, read their window, publish and record looks."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timedelta

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from steward import events
from steward.delivery.ab_data import ABData, ab_data, check_design
from steward.delivery.ab_verdict import ABTestReport, judge_ab_test
from steward.delivery.experiments import (
    ExperimentError,
    ExperimentKind,
    ExperimentRun,
    ExperimentWindow,
    ab_plan,
    check_can_start,
    new_experiment,
    shadow_plan,
    stop_details,
)
from steward.delivery.shadow import ShadowReport, baseline_window, compare_shadow
from steward.findings import MaintenanceKind, Priority
from steward.monitoring.ledger import LedgerEntry
from steward.registry.history import AuditEntry, ChangeKind
from steward.registry.traffic import DEFAULT_PLAN, TrafficPlan
from steward.spec import ModelSpec
from steward.store.reader import join_labels
from tasks.common import (
    current_flow_run_id,
    emit_model_event,
    ledger,
    publish_markdown,
    publish_table,
    registry,
    store,
)
from tasks.fleet import reach_gateways_now


@task(name="read-audit-history", retries=3, retry_delay_seconds=[2, 5, 15], cache_policy=NO_CACHE)
def read_history(model: str) -> list[AuditEntry]:
    return registry().history(model)


def _start(
    spec: ModelSpec, spec_path: str, kind: ExperimentKind, plan: TrafficPlan, *, now: datetime,
    settle_seconds: float, window_minutes: float | None = None,
) -> ExperimentRun:
    reg = registry()
    state = reg.serving_state(spec.name)
    if state.plan is None:
        raise ExperimentError(f"{spec.name}'s stored traffic plan cannot be read ({state.plan_error}); set a valid "
                              "plan through the gateway's admin API first")
    check_can_start(reg.history(spec.name), state.plan, model=spec.name, spec_path=spec_path,
                    champion=state.champion, challenger=state.challenger)
    run = new_experiment(
        kind, spec.name, champion_version=state.champion, challenger_version=state.challenger, plan=plan, now=now,
        settle_seconds=settle_seconds, design=spec.ab_test if kind is ExperimentKind.AB_TEST else None,
        window_minutes=window_minutes,
    )
    reason = f"{kind.value} {run.experiment_id} started: challenger v{run.challenger_version} against champion " \
             f"v{run.champion_version}"
    reg.set_traffic_plan(spec.name, plan, reason=reason)
    # The window opens once every live gateway serves the plan (a busy machine delays their polls), or after
    # settle_seconds, whichever is later.
    reach = reach_gateways_now(spec.name)
    get_run_logger().info("%s", reach.describe())
    if reach.seconds > settle_seconds:
        run = replace(run, analysis_from=run.started + timedelta(seconds=reach.seconds))
    entry = reg.record(spec.name, ChangeKind.DELIVERY_DECISION, reason, from_version=run.champion_version,
                       to_version=run.challenger_version, details=run.to_details())
    return replace(run, sequence=entry.sequence)


@task(name="start-ab-test", cache_policy=NO_CACHE)
def start_ab_test(
    spec: ModelSpec, spec_path: str, challenger_percent: float, *, now: datetime, settle_seconds: float
) -> ExperimentRun:
    """Register the design and versions, then split traffic by the sticky key (not retried: it changes the plan)."""
    check_design(spec, spec.ab_test)
    plan = ab_plan(spec, challenger_percent, salt=uuid.uuid4().hex[:12])
    return _start(spec, spec_path, ExperimentKind.AB_TEST, plan, now=now, settle_seconds=settle_seconds)


@task(name="start-shadow", cache_policy=NO_CACHE)
def start_shadow(
    spec: ModelSpec, spec_path: str, challenger_percent: float, *, now: datetime, settle_seconds: float,
    window_minutes: float | None,
) -> ExperimentRun:
    return _start(spec, spec_path, ExperimentKind.SHADOW, shadow_plan(challenger_percent), now=now,
                  settle_seconds=settle_seconds, window_minutes=window_minutes)


@task(name="collect-ab-data", retries=3, retry_delay_seconds=[2, 5, 15], cache_policy=NO_CACHE)
def collect_ab_data(spec: ModelSpec, run: ExperimentRun, window: ExperimentWindow, labels_until: datetime) -> ABData:
    """Served rows of the window and the labels received for them until ``labels_until``, per entity."""
    predictions = store().read_predictions(spec.name, window.start, window.end, served_only=True)
    labels = store().read_labels(spec.name, start=window.start, end=labels_until)
    return ab_data(predictions, join_labels(predictions, labels), spec, run)


@task(name="judge-ab-test", cache_policy=NO_CACHE)
def judge(
    data: ABData, run: ExperimentRun, window: ExperimentWindow, previous_p_value: float, spec_path: str,
    notes: list[str],
) -> ABTestReport:
    return judge_ab_test(data, run, window, previous_p_value=previous_p_value, spec_path=spec_path, notes=notes)


@task(name="compare-shadow", retries=3, retry_delay_seconds=[2, 5, 15], cache_policy=NO_CACHE)
def compare_shadow_window(
    spec: ModelSpec, run: ExperimentRun, window: ExperimentWindow, tolerance: float, labels_until: datetime
) -> ShadowReport:
    """Read the shadow's window (served and shadow rows), the champion's window before it, and the labels."""
    log = store().read_predictions(spec.name, window.start, window.end)
    before_start, before_end = baseline_window(run, window)
    before = store().read_predictions(spec.name, before_start, before_end, version=run.champion_version,
                                      served_only=True)
    labels = store().read_labels(spec.name, start=window.start, end=labels_until)
    return compare_shadow(log, spec, run, window, before=before, labels=labels, tolerance=tolerance)


@task(name="publish-ab-report", cache_policy=NO_CACHE)
def publish_ab_report(report: ABTestReport) -> None:
    publish_markdown(report.to_markdown(), "ab-test", report.model, description=report.summary())
    publish_table(report.arm_rows(), "ab-test-arms", report.model, description=report.summary())


@task(name="publish-shadow-report", cache_policy=NO_CACHE)
def publish_shadow_report(report: ShadowReport) -> None:
    publish_markdown(report.to_markdown(), "shadow", report.model, description=report.summary())
    if report.slices:
        publish_table(report.slice_rows(), "shadow-slices", report.model, description=report.summary())


@task(name="record-experiment-look", retries=2, retry_delay_seconds=[2, 5], cache_policy=NO_CACHE)
def record_look(run: ExperimentRun, reason: str, details: dict[str, str]) -> AuditEntry:
    """The look in the audit history; an A/B look's entry carries the p-value the next look starts from."""
    return registry().record(run.model, ChangeKind.DELIVERY_DECISION, reason, from_version=run.champion_version,
                             to_version=run.challenger_version, details=details)


@task(name="recommend-ab-outcome", retries=2, retry_delay_seconds=[2, 5], cache_policy=NO_CACHE)
def recommend(report: ABTestReport) -> LedgerEntry:
    """A conclusive test is a recommendation (maintenance guide): an event and a ledger entry, no alias moves."""
    emit_model_event(
        events.AB_TEST_CONCLUDED, report.model, winner=report.winner, winner_version=report.winner_version,
        version=report.challenger_version, champion_version=report.champion_version,
        experiment_id=report.experiment_id, reason=report.recommendation,
    )
    promote = report.winner == "challenger"
    title = (f"A/B test {report.experiment_id}: challenger v{report.challenger_version} beat champion "
             f"v{report.champion_version}; promotion recommended" if promote else
             f"A/B test {report.experiment_id}: champion v{report.champion_version} beat challenger "
             f"v{report.challenger_version}; stop the test")
    return ledger().record(
        report.model, title, detail=report.recommendation, kind=MaintenanceKind.PERFECTIVE,
        priority=Priority.MEDIUM if promote else Priority.LOW, source="ab-test",
        fingerprint=f"ab-test:{report.experiment_id}", flow_run_id=current_flow_run_id(),
    )


@task(name="stop-experiment", cache_policy=NO_CACHE)
def stop_experiment(run: ExperimentRun, reason: str) -> bool:
    """Send all traffic back to the champion and record the stop; True if this changed the plan.

    A plan someone changed since the start is left alone (it is no longer this experiment's).
    """
    reg = registry()
    restored = reg.get_traffic_plan(run.model) == run.plan
    if restored:
        reg.set_traffic_plan(run.model, DEFAULT_PLAN, reason=f"{run.kind.value} {run.experiment_id} stopped: {reason}")
        reach_gateways_now(run.model)
    reg.record(run.model, ChangeKind.DELIVERY_DECISION, f"{run.kind.value} {run.experiment_id} stopped: {reason}",
               from_version=run.champion_version, to_version=run.challenger_version,
               details=stop_details(run, plan_restored=str(restored).lower()))
    return restored
