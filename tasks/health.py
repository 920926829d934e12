"""Tasks of the health check: read the window, measure, run each check, record and report what was found."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from steward import events
from steward.monitoring.drift.monitor import MIN_DRIFT_ROWS, compare_seasonal
from steward.monitoring.health.accuracy import (
    InputDrift,
    check_accuracy,
)
from steward.monitoring.health.cost import judge_cost
from steward.monitoring.health.data_quality import OutlierFences, judge_data_quality
from steward.monitoring.health.infrastructure import GatewayReading, check_infrastructure
from steward.monitoring.health.performance import judge_performance
from steward.monitoring.health.report import (
    Area,
    CheckResult,
    HealthReport,
    HealthWindow,
    VersionsInWindow,
    failed_check,
)
from steward.monitoring.infrastructure import find_gateway_processes, read_gateway, sample_processes
from steward.monitoring.ledger import LedgerEntry
from steward.monitoring.slo import (
    SLODay,
    SLOReport,
    day_bounds,
    days_between,
    slo_day_of,
    summarize_slo,
)
from steward.monitoring.summaries.checks import (
    read_late_labelled,
    recent_scan,
    slo_days_summary,
    summarize_log,
)
from steward.monitoring.summaries.partitions import PartitionRunner
from steward.monitoring.summaries.traffic import TrafficSummary
from steward.monitoring.summaries.window import WindowSummary
from steward.spec import FeatureRole, ModelSpec
from steward.store.scan import served_rows_by_version
from steward.training.data import prepare_features
from steward.training.retrain_decision import health_trigger
from tasks.common import (
    current_flow_run_id,
    emit_model_event,
    ledger,
    publish_table,
    registry,
    services,
    store,
)
from tasks.drift import (
    build_reference_profile,
    cache_reference_profile,
    fetch_reference_profile,
    load_previous_drift,
    measure_drift,
    measure_seasonal_drift,
    version_baseline,
    version_holdout,
)

NOTIFICATION_BLOCK = "steward-alerts"  # a Prefect notification block of any type saved under this name
SLO_REPORT_DAYS = 7
PROCESS_SAMPLE_SECONDS = 1.0


@dataclass(frozen=True)
class Reference:
    """The training sample of the version that served most of the window, prepared like model input."""

    version: str | None
    frame: pd.DataFrame | None
    error: str | None = None


@dataclass(frozen=True)
class WindowLog:
    """The window's log, summarised in one bounded scan (``WindowSummary``): counts and sketches for the load
    and data-quality checks, the labelled rows, and the rows themselves (a uniform sample beyond
    ``SAMPLE_ROWS``) for the accuracy and drift measurements.

    ``reference`` is the busiest version's training sample, read before the scan for its outlier fences;
    ``late_labelled`` the predictions of the label look-back before the window whose labels arrived in it.
    """

    summary: WindowSummary
    reference: Reference
    fences: OutlierFences | None
    late_labelled: pd.DataFrame | None = None

    @property
    def predictions(self) -> pd.DataFrame:
        return self.summary.predictions_frame()

    @property
    def labelled(self) -> pd.DataFrame:
        """The window's predictions labelled by its end, and the look-back's predictions labelled in it."""
        assert self.summary.labelled is not None
        if self.late_labelled is None or self.late_labelled.empty:
            return self.summary.labelled
        return pd.concat([self.late_labelled, self.summary.labelled], ignore_index=True)


@task(name="read-health-window", retries=3, retry_delay_seconds=[2, 5, 15], cache_policy=NO_CACHE)
def read_window(spec: ModelSpec, window: HealthWindow, run: PartitionRunner | None = None) -> WindowLog:
    """Labels count only if received inside the window: a check of a past window sees what was known then.
    Predictions made up to ``health.label_lookback_days`` before the window are judged too when their labels
    arrived in it (late feedback; ``read_late_labelled``).

    A scan of the version column first finds the busiest version, whose training sample gives the outlier
    fences the full scan counts against. ``run`` (``flows.summaries.partition_runner``) summarises the window
    a day per task on another engine; None scans it here.
    """
    log = store()
    served = served_rows_by_version(log, spec.name, window.start, window.end)
    busiest = VersionsInWindow.of_counts(served).busiest
    reference = read_reference(spec, busiest)
    fences = (OutlierFences.from_reference(reference.frame, spec, reference.version)
              if reference.frame is not None else None)
    summary = summarize_log(log, spec, window.start, window.end, run, fences=fences,
                            labels_window=(window.start, window.end))
    recent_scan.remember(log, spec.name, window.start, window.end, summary)  # the drift report of this window
    late = read_late_labelled(log, spec, window.start, window.end, run, unmatched=summary.unmatched_labels)
    return WindowLog(summary, reference, fences, late)


def read_reference(spec: ModelSpec, version: str | None) -> Reference:
    """Never raises: without a reference the checks that need it report a failed measurement, with this reason."""
    if version is None:
        return Reference(None, None, "no version answered in the window")
    try:
        frame = prepare_features(registry().load_dataset(spec.name, version, "reference"), spec)
    except Exception as error:  # reported in the checks' results, not raised
        return Reference(version, None, f"the training sample of v{version} could not be read: {error}")
    return Reference(version, frame)


@task(name="read-gateway-metrics")
def read_gateway_metrics(gateway_url: str, model: str) -> GatewayReading:
    return read_gateway(gateway_url, model)


@task(name="load-reference", retries=2, retry_delay_seconds=[2, 5], cache_policy=NO_CACHE)
def load_reference(spec: ModelSpec, log: WindowLog) -> Reference:
    """The busiest version's training sample, read with the window (its fences were needed by the scan)."""
    return log.reference


@task(name="check-performance", cache_policy=NO_CACHE)
def performance_check(spec: ModelSpec, window: HealthWindow, log: WindowLog) -> CheckResult:
    assert log.summary.traffic is not None
    return judge_performance(log.summary.traffic, window, spec)


@task(name="check-data-quality", cache_policy=NO_CACHE)
def data_quality_check(
    spec: ModelSpec, log: WindowLog, reference: Reference, gateway: GatewayReading | None
) -> CheckResult:
    assert log.summary.quality is not None
    return judge_data_quality(log.summary.quality, spec, log.fences, gateway, fences_error=reference.error)


def measure_window_input_drift(spec: ModelSpec, window: HealthWindow, log: WindowLog) -> InputDrift | None:
    """The drift report's own measurement of this window: the busiest version's served rows against its cached
    reference profile, seasonal features one season back, the previous drift check for hysteresis.

    Health's concept-drift evidence then judges the same numbers by the same rule as the drift report.
    None when the window holds too little traffic for a drift check.
    """
    version = log.summary.versions.busiest
    if version is None or log.summary.answered_rows[version] < MIN_DRIFT_ROWS:
        return None
    served = log.summary.answered_frame(version)  # all of them, or a uniform sample at volume
    cached = fetch_reference_profile(spec, version)
    if cached is None:
        cached = build_reference_profile(spec, version)
        cache_reference_profile(spec, version, cached)
    result = measure_drift(cached, served, spec)
    if spec.features_with_role(FeatureRole.SEASONAL):
        result = compare_seasonal(result, measure_seasonal_drift(spec, served, window.start, window.end))
    previous = load_previous_drift(spec, window.end)
    same = previous is not None and previous.version == version
    return InputDrift(version, result, cached.importances, previous.result if same else None)


@task(name="check-accuracy", cache_policy=NO_CACHE)
def accuracy_check(spec: ModelSpec, log: WindowLog, reference: Reference, input_drift: InputDrift | None = None
                   ) -> CheckResult:
    """Each version's hold-out is scored: its calibration (for a classifier) is the label-free estimate's validity
    while labels are pending and the calibration check's baseline once they are in; its validation metrics'
    standard errors widen the error a measured drop is judged against."""
    versions = log.summary.versions.versions
    baselines = {version: version_baseline(spec, version) for version in versions}
    holdouts = {version: version_holdout(spec, version) for version in versions}
    calibrations = ({version: figures.calibration for version, figures in holdouts.items()}
                    if spec.task.is_classification else {})
    return check_accuracy(log.predictions, log.labelled, spec, baselines, calibrations, reference.frame,
                          input_drift=input_drift, importances=input_drift.importances if input_drift else None,
                          baseline_errors={version: figures.errors for version, figures in holdouts.items()})


@task(name="check-infrastructure", cache_policy=NO_CACHE)
def infrastructure_check(
    spec: ModelSpec, window: HealthWindow, gateway_url: str | None, gateway: GatewayReading | None
) -> CheckResult:
    processes, searched = find_gateway_processes(spec.name, gateway_url)
    sample = sample_processes(processes, searched, PROCESS_SAMPLE_SECONDS)
    return check_infrastructure(sample, spec, window, gateway)


@task(name="check-cost", cache_policy=NO_CACHE)
def cost_check(spec: ModelSpec, window: HealthWindow, log: WindowLog) -> CheckResult:
    assert log.summary.traffic is not None
    return judge_cost(log.summary.traffic, window, spec)


def run_check(area: Area, check: Callable[..., CheckResult], *args: object) -> CheckResult:
    """Run one check task; if it raises, the area is a failed check and the other checks still run."""
    try:
        return check(*args)
    except Exception as error:  # any failure of a check is reported as such, never as healthy
        get_run_logger().warning("the %s check failed: %s: %s", area.value, type(error).__name__, error)
        return failed_check(area, error)


@task(name="record-slo-days", retries=2, retry_delay_seconds=[2, 5], cache_policy=NO_CACHE)
def record_slo_days(spec: ModelSpec, window: HealthWindow, log: WindowLog | None,
                    run: PartitionRunner | None = None) -> list[SLODay]:
    """Compute and store every UTC day the window touches (whole days, up to the window's end), from the
    window's scan (``log``) and, when the window starts after midnight, a scan of its first day's earlier part."""
    days = days_between(window.start, window.end)
    summary = slo_days_summary(store(), spec, window.start, window.end, run, log.summary if log else None)
    labelled = summary.labelled
    assert labelled is not None
    slo_store = services().slo
    records = []
    for day in days:
        start, end = day_bounds(day)
        labelled_in_day = labelled[(labelled["time"] >= start) & (labelled["time"] < end)]
        traffic = summary.days.get(day) or TrafficSummary.for_spec(spec)
        record = slo_day_of(spec, day, traffic, labelled_in_day, as_of=window.end,
                            labelled_count=summary.answered_labelled_by_day[day])
        slo_store.write(record)
        records.append(record)
    return records


@task(name="read-slo-report", retries=2, retry_delay_seconds=[2, 5])
def read_slo_report(spec: ModelSpec, as_of: datetime, days: int = SLO_REPORT_DAYS) -> SLOReport:
    last = as_of.date()
    first = last - timedelta(days=days - 1)
    return summarize_slo(spec.name, services().slo.read(spec.name, first, last), first, last)


@task(name="publish-health-report")
def publish_health_report(report: HealthReport, slo: SLOReport | None) -> None:
    publish_table(report.to_table_rows(), "health", report.model, description=report.summary())
    if slo is not None and slo.days:
        publish_table(slo.to_table_rows(), "slo", report.model, description=slo.describe())


@task(name="record-health-findings", retries=2, retry_delay_seconds=[2, 5])
def record_findings(report: HealthReport) -> list[LedgerEntry]:
    """One ledger entry per issue; a repeat of an open finding counts as another occurrence of it."""
    run_id = current_flow_run_id()
    return [
        ledger().record_finding(report.model, issue.to_finding(f"health-check:{issue.area.value}"), flow_run_id=run_id)
        for issue in report.issues
    ]


@task(name="emit-health-degraded")
def emit_health_degraded(report: HealthReport) -> None:
    """The event, with resource labels saying the degraded areas and whether a retrain is wanted (accuracy)."""
    window = report.window
    trigger = health_trigger(report)  # what the retrain this may start is to judge (the backtest's trigger)
    emit_model_event(
        events.HEALTH_DEGRADED, report.model,
        resource_labels={events.HEALTH_AREAS_LABEL: ",".join(area.value for area in report.degraded_areas),
                         **events.retrain_label(Area.ACCURACY in report.degraded_areas)},
        verdict=report.verdict.value, reason=report.summary(),
        issues=[issue.to_payload() for issue in report.issues],
        window_start=window.start.isoformat(), window_end=window.end.isoformat(),
        trigger_metric=trigger.metric, primary_dropped=trigger.primary_dropped, also_fell=trigger.also_fell,
    )


def _notification_block(name: str):
    """The notification block saved under ``name``, whatever its type, or None when there is none."""
    from prefect.blocks.core import Block
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        slugs = sorted({schema.block_type.slug for schema in client.read_block_schemas()
                        if "notify" in schema.capabilities and schema.block_type is not None})
        for slug in slugs:
            try:
                client.read_block_document_by_name(name, slug)
            except ObjectNotFound:
                continue
            return Block.load(f"{slug}/{name}")
    return None


@task(name="notify-critical", retries=2, retry_delay_seconds=[5, 15])
def notify_critical(report: HealthReport) -> bool:
    """Send the critical report through the configured notification block; False when none is configured."""
    block = _notification_block(NOTIFICATION_BLOCK)
    if block is None:
        get_run_logger().info("no notification block named %r: critical report not sent", NOTIFICATION_BLOCK)
        return False
    lines = [report.summary(), ""] + [f"- {issue.describe()}" for issue in report.issues]
    run_id = current_flow_run_id()
    if run_id:
        lines.append(f"\nflow run {run_id}")
    block.notify("\n".join(lines), subject=f"Steward: {report.model} health is critical")
    return True
