"""Health check: the five checks of the maintenance guide over a window of the prediction log, one verdict."""

from __future__ import annotations

from datetime import datetime

from prefect import flow, get_run_logger

from flows.summaries import partition_runner
from steward.monitoring.health.report import Area, HealthReport, HealthWindow, Verdict, failed_check
from tasks.common import store
from tasks.data import load_model_spec
from tasks.health import (
    accuracy_check,
    cost_check,
    data_quality_check,
    emit_health_degraded,
    infrastructure_check,
    load_reference,
    measure_window_input_drift,
    notify_critical,
    performance_check,
    publish_health_report,
    read_gateway_metrics,
    read_slo_report,
    read_window,
    record_findings,
    record_slo_days,
    run_check,
)


@flow(name="health-check", description="Performance, data quality, accuracy, infrastructure and cost of one model.")
def health_check(
    spec_path: str,
    window_hours: float | None = None,
    as_of: datetime | None = None,
    gateway_url: str | None = None,
) -> HealthReport:
    """Judge the window ``[as_of - window_hours, as_of)`` (defaults: the spec's window, now).

    ``gateway_url`` lets the check read the gateway's refused requests and find its process on this host.
    """
    logger = get_run_logger()
    spec = load_model_spec(spec_path)
    window = HealthWindow.ending(as_of, window_hours or spec.health.window_hours)
    gateway = read_gateway_metrics(gateway_url, spec.name) if gateway_url else None

    checks = {}
    run = log = None
    try:
        run = partition_runner(store(), spec)  # None by default: the window is scanned in this process
        log = read_window(spec, window, run)
    except Exception as error:  # the checks that read the log fail; infrastructure still runs
        logger.warning("the prediction log could not be read: %s", error)
        for area in (Area.PERFORMANCE, Area.DATA_QUALITY, Area.ACCURACY, Area.COST):
            checks[area] = failed_check(area, f"the prediction log could not be read: {error}")
    else:
        reference = load_reference(spec, log)
        checks[Area.PERFORMANCE] = run_check(Area.PERFORMANCE, performance_check, spec, window, log)
        checks[Area.DATA_QUALITY] = run_check(Area.DATA_QUALITY, data_quality_check, spec, log, reference, gateway)
        try:
            input_drift = measure_window_input_drift(spec, window, log)
        except Exception as error:  # accuracy is still judged; input stability then falls back to the sample
            logger.warning("the drift measurement of the window failed: %s: %s", type(error).__name__, error)
            input_drift = None
        checks[Area.ACCURACY] = run_check(Area.ACCURACY, accuracy_check, spec, log, reference, input_drift)
        checks[Area.COST] = run_check(Area.COST, cost_check, spec, window, log)
    checks[Area.INFRASTRUCTURE] = run_check(
        Area.INFRASTRUCTURE, infrastructure_check, spec, window, gateway_url, gateway
    )
    report = HealthReport.combine(spec.name, window, [checks[area] for area in Area])

    try:
        record_slo_days(spec, window, log, run)
        slo = read_slo_report(spec, window.end)
    except Exception as error:  # SLO records are kept beside the report; failing them must not hide it
        logger.warning("SLO compliance was not recorded: %s", error)
        slo = None
    publish_health_report(report, slo)
    record_findings(report)

    if report.degraded:
        emit_health_degraded(report)
    if report.verdict is Verdict.CRITICAL:
        try:
            notify_critical(report)
        except Exception as error:  # the event and the ledger already carry the finding
            logger.error("the critical report could not be sent: %s", error)
    logger.info("%s", report.summary())
    return report

