"""A/B test: split traffic by entity between champion and challenger, then read the test as often as wanted.

``start`` registers the design and versions and sets a sticky A/B plan; ``analyse`` reads the
window since the start, checks the sample ratio, compares the arms per entity with an
always-valid (or pre-registered) rule, publishes the report and records the look; ``stop``
does a last look and sends all traffic back to the champion. A conclusive test is a
recommendation: it emits an event and opens a ledger entry, and never moves an alias itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from prefect import flow, get_run_logger

from steward.delivery.ab_verdict import ABStatus, ABTestReport, already_concluded, previous_p_value
from steward.delivery.experiments import ExperimentKind, as_of_or_now, experiment_window, require_active
from tasks.data import load_model_spec
from tasks.experiments import (
    collect_ab_data,
    judge,
    publish_ab_report,
    read_history,
    recommend,
    record_look,
    start_ab_test,
    stop_experiment,
)


@dataclass(frozen=True)
class ABTestOutcome:
    model: str
    action: str
    experiment_id: str
    champion_version: str
    challenger_version: str
    status: ABStatus | None  # None right after the start: nothing to read yet
    recommendation: str
    report: ABTestReport | None
    stopped: bool = False


@flow(name="ab-test", description="Sticky A/B test of challenger against champion: start, analyse, stop.")
def ab_test(
    spec_path: str,
    action: Literal["start", "analyse", "stop"] = "analyse",
    challenger_percent: float = 50.0,
    settle_seconds: float = 5.0,
    as_of: datetime | None = None,
) -> ABTestOutcome:
    """``challenger_percent`` and ``settle_seconds`` (traffic before the gateways follow the plan is left
    out) apply to ``start``; ``as_of`` reads the test as it stood at that time."""
    logger = get_run_logger()
    spec = load_model_spec(spec_path)
    now = as_of_or_now(as_of)
    if action == "start":
        run = start_ab_test(spec, spec_path, challenger_percent, now=now, settle_seconds=settle_seconds)
        text = f"started {run.describe()}; analyse with `steward ab-test {spec_path} --action analyse`"
        logger.info("%s", text)
        return ABTestOutcome(spec.name, action, run.experiment_id, run.champion_version, run.challenger_version,
                             None, text, None)

    history = read_history(spec.name)
    run = require_active(history, ExperimentKind.AB_TEST, spec.name, spec_path)
    window = experiment_window(history, run, now)
    notes = []
    if run.design is not None and spec.ab_test != run.design:
        notes.append("the spec's ab_test section changed since the start; the design registered then is used")
    data = collect_ab_data(spec, run, window, labels_until=now)
    report = judge(data, run, window, previous_p_value(history, run), spec_path, notes)
    publish_ab_report(report)
    record_look(run, report.summary(), report.to_details())
    if report.conclusive and not already_concluded(history, run):
        recommend(report)
    logger.info("%s", report.summary())
    if action == "stop":
        restored = stop_experiment(run, f"last look {report.status.value}: {report.recommendation}")
        if not restored:
            logger.warning("the traffic plan changed since the test started; it was left as it is")
    return ABTestOutcome(spec.name, action, run.experiment_id, run.champion_version, run.challenger_version,
                         report.status, report.recommendation, report, stopped=action == "stop")
