"""Shadow: the challenger scores copies of live traffic without answering; then its answers are compared.

``start`` sets a shadow plan and registers the versions; with ``window_minutes`` the same run
waits out the window, compares and stops the shadow. ``analyse`` compares what the window holds
so far (up to the configured window's end); ``stop`` compares one last time and sends all
traffic back to the champion alone. The report gives the agreement rate, disagreement by the
spec's slice features and the latency cost, as Prefect artifacts and an audit entry.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from prefect import flow, get_run_logger

from steward.delivery.experiments import (
    ExperimentKind,
    ExperimentRun,
    as_of_or_now,
    experiment_window,
    require_active,
)
from steward.delivery.shadow import ShadowReport
from steward.serving.fleet import FleetFlush
from steward.spec import ModelSpec
from tasks.data import load_model_spec
from tasks.experiments import (
    compare_shadow_window,
    publish_shadow_report,
    read_history,
    record_look,
    start_shadow,
    stop_experiment,
)
from tasks.fleet import flush_fleet


@dataclass(frozen=True)
class ShadowOutcome:
    model: str
    action: str
    experiment_id: str
    champion_version: str
    challenger_version: str
    summary: str
    report: ShadowReport | None  # None right after a start without a window
    stopped: bool = False
    flushed: FleetFlush | None = None  # the gateways' flush after the window (a start with a window)


def _window_end(run: ExperimentRun) -> datetime | None:
    return run.analysis_from + timedelta(minutes=run.window_minutes) if run.window_minutes else None


def _look(spec: ModelSpec, run: ExperimentRun, now: datetime, tolerance: float) -> ShadowReport:
    """Compare the window so far (capped at the configured window), publish it and record it."""
    history = read_history(spec.name)
    configured_end = _window_end(run)
    window = experiment_window(history, run, min(now, configured_end) if configured_end else now)
    report = compare_shadow_window(spec, run, window, tolerance, labels_until=now)
    publish_shadow_report(report)
    record_look(run, report.summary(), report.to_details())
    return report


@flow(name="shadow-analysis", description="Shadow the challenger on live traffic; compare answers and latency.")
def shadow_analysis(
    spec_path: str,
    action: Literal["start", "analyse", "stop"] = "analyse",
    challenger_percent: float = 100.0,
    window_minutes: float | None = None,
    tolerance: float = 0.05,
    settle_seconds: float = 5.0,
    as_of: datetime | None = None,
) -> ShadowOutcome:
    """``challenger_percent`` is the share of requests copied; ``tolerance`` the score (or, for regression,
    prediction) difference still counted as agreement."""
    logger = get_run_logger()
    spec = load_model_spec(spec_path)
    now = as_of_or_now(as_of)
    if action == "start":
        run = start_shadow(spec, spec_path, challenger_percent, now=now, settle_seconds=settle_seconds,
                           window_minutes=window_minutes)
        logger.info("started %s", run.describe())
        end = _window_end(run)
        if end is None:
            return ShadowOutcome(spec.name, action, run.experiment_id, run.champion_version, run.challenger_version,
                                 f"started {run.describe()}; compare with `steward shadow {spec_path} --action analyse`",
                                 None)
        wait = (end - datetime.now(UTC)).total_seconds()
        logger.info("waiting %.0f s for the shadow window to fill", max(wait, 0))
        time.sleep(max(wait, 0))
        # The gateways score their last copies and write them, however busy the machine; one not reached writes
        # on its own flush interval: the settling time again.
        flushed = flush_fleet(spec.name)
        if not flushed.acks or not flushed.complete:
            time.sleep(settle_seconds)
        now = datetime.now(UTC)
    else:
        flushed = None
        run = require_active(read_history(spec.name), ExperimentKind.SHADOW, spec.name, spec_path)

    report = _look(spec, run, now, tolerance)
    logger.info("%s", report.summary())
    stopping = action == "stop" or (action == "start" and run.window_minutes is not None)
    if stopping and not stop_experiment(run, report.summary()):
        logger.warning("the traffic plan changed since the shadow started; it was left as it is")
    return ShadowOutcome(spec.name, action, run.experiment_id, run.champion_version, run.challenger_version,
                         report.summary(), report, stopped=stopping, flushed=flushed)
