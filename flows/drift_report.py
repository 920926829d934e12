"""Drift report: the serving version's recent inputs and outputs against the data it was trained on."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from prefect import flow, get_run_logger

from flows.summaries import partition_runner
from steward import events
from steward.monitoring.drift.history import DriftRecord
from steward.monitoring.drift.monitor import (
    DriftVerdict,
    choose_drift_window,
    compare_seasonal,
    drift_event_payload,
    drift_markdown,
    score_drift_skipped,
    too_little_traffic,
)
from steward.monitoring.drift.policy import DriftReason
from steward.monitoring.drift.result import DriftResult
from steward.monitoring.drift.workspace import WorkspaceOutcome
from steward.spec import FeatureRole
from steward.training.scores import SkippedCheck
from tasks.common import current_flow_run_id, emit_model_event, publish_markdown, store
from tasks.data import load_model_spec
from tasks.drift import (
    build_reference_profile,
    cache_reference_profile,
    decide_drift,
    fetch_reference_profile,
    gather_accuracy_evidence,
    load_previous_drift,
    measure_drift,
    measure_seasonal_drift,
    read_drift_window,
    record_drift_check,
    render_drift_report,
    resolve_serving_version,
    retrain_allowance_at,
    store_drift_report,
    update_drift_ledger,
)
from tasks.evidently_workspace import add_to_evidently_workspace


class DriftCheckStatus(StrEnum):
    CHECKED = "checked"
    NO_DATA = "no data"  # too little traffic in the window to measure


@dataclass(frozen=True)
class DriftReportOutcome:
    """One drift-report run: the check as recorded (``record``, without the Evidently snapshot) and the verdict.

    Neither exists when the window held too little traffic (``status`` NO_DATA; ``reason`` says so).
    """

    model: str
    version: str
    status: DriftCheckStatus
    reason: str
    window_start: datetime | None
    window_end: datetime
    record: DriftRecord | None = None
    verdict: DriftVerdict | None = None
    report_error: str | None = None
    profile_built: bool = False
    ledger_entry_id: str | None = None
    seconds: Mapping[str, float] = dataclasses.field(default_factory=dict)
    current_rows: int = 0
    from_health_scan: bool = False  # the window's rows came from the health check's scan of it (decision 0034)
    skipped: tuple[SkippedCheck, ...] = ()  # e.g. score drift of a model that gives labels only (no_scores)
    workspace: WorkspaceOutcome | None = None  # the window's snapshots in Evidently's workspace, or why not

    @property
    def material(self) -> bool:
        return self.record is not None and self.record.material

    @property
    def announced(self) -> bool:
        return self.record is not None and self.record.announced

    @property
    def columns(self) -> tuple[str, ...]:
        """Columns in the drifted state (the prediction included when it drifted)."""
        return self.record.columns if self.record is not None else ()

    @property
    def held(self) -> tuple[str, ...]:
        return self.verdict.decision.held if self.verdict is not None else ()

    @property
    def result(self) -> DriftResult | None:
        return self.record.result if self.record is not None else None

    @property
    def report_uri(self) -> str | None:
        return self.record.report_uri if self.record is not None else None


@flow(name="drift-report", description="Compare the serving version's recent traffic with its training data.")
def drift_report(
    spec_path: str,
    window_hours: float | None = None,
    last_rows: int | None = None,
    as_of: datetime | None = None,
) -> DriftReportOutcome:
    """``window_hours`` or ``last_rows`` choose the window (default: the spec's ``drift.window_days``) ending at ``as_of``."""
    logger = get_run_logger()
    spec = load_model_spec(spec_path)
    window = choose_drift_window(
        as_of=as_of or datetime.now(UTC), window_hours=window_hours, last_rows=last_rows,
        default_days=spec.drift.window_days, lookback_days=spec.monitoring.log_retention_days,
    )
    serving = resolve_serving_version(spec)
    version = serving.champion.version
    current = read_drift_window(spec, version, window, partition_runner(store(), spec))  # None: in process
    seconds = {"read": current.seconds}
    skipped = too_little_traffic(current.rows, version, window)
    if skipped is not None:
        logger.warning("%s", skipped)
        publish_markdown(f"# Drift of {spec.name} v{version}: not checked\n\n{skipped}\n", "drift", spec.name)
        return DriftReportOutcome(spec.name, version, DriftCheckStatus.NO_DATA, skipped, current.start, window.end,
                                  seconds=seconds, current_rows=current.rows)

    cached = fetch_reference_profile(spec, version)
    if cached is None:
        cached = build_reference_profile(spec, version)
        cache_reference_profile(spec, version, cached)
        seconds["profile_build"] = cached.seconds
        logger.info("built and cached the reference profile of v%s in %.1f s", version, cached.seconds)
    result = measure_drift(cached, current.frame, spec)
    seconds["verdict"] = result.seconds or 0.0
    window_start = current.start or window.end
    if spec.features_with_role(FeatureRole.SEASONAL):
        result = compare_seasonal(result, measure_seasonal_drift(spec, current.frame, window_start, window.end))
    previous = load_previous_drift(spec, window.end)
    retrain = retrain_allowance_at(spec, window.end)
    verdict = decide_drift(spec, version, result, previous, cached.importances, window.end, None, retrain)
    if verdict.decision.code is DriftReason.PREDICTION_UNCONFIRMED:  # the outputs moved: did accuracy?
        evidence = gather_accuracy_evidence(spec, version, current.frame, window_start, window.end)
        if evidence is not None:
            verdict = decide_drift(spec, version, result, previous, cached.importances, window.end, evidence, retrain)
    decision, announcement = verdict.decision, verdict.announcement

    result = render_drift_report(result, cached, current.frame)
    seconds["report"] = result.report_seconds or 0.0
    report_uri, report_error = None, result.report_error
    if result.snapshot is not None:
        stored = store_drift_report(spec, version, result, window.end, return_state=True)
        if stored.is_completed():
            report_uri = stored.result()
        else:
            report_error = f"storing the HTML in MLflow failed: {stored.message}"
            logger.error("%s", report_error)
    workspace = add_to_evidently_workspace(spec, version, result, current.frame, window_start, window.end)

    record = DriftRecord(
        model=spec.name, version=version, window_start=current.start, window_end=window.end,
        current_rows=current.rows, material=decision.material, announced=announcement.announce,
        reason=decision.reason, columns=decision.columns,
        result=dataclasses.replace(result.with_decision(decision), snapshot=None),
        material_since=announcement.material_since, report_uri=report_uri, flow_run_id=current_flow_run_id(),
        awaiting_retrain=announcement.awaiting_retrain,
    )
    record_drift_check(record)
    entry_id = update_drift_ledger(spec, version, verdict, window.end)
    if announcement.announce:
        emit_model_event(events.DRIFT_DETECTED, spec.name, resource_labels=events.retrain_label(True), **drift_event_payload(
            spec=spec, version=version, champion_version=version, challenger_version=serving.challenger,
            result=result, decision=decision, window=window, why=announcement.why, report_uri=report_uri,
        ))
    skipped = score_drift_skipped(spec, cached.profile.prediction_column, version)
    publish_markdown(
        drift_markdown(
            model=spec.name, version=version, window=window.describe(), result=result, decision=decision,
            why=announcement.why, left_out=verdict.left_out, report_uri=report_uri, report_error=report_error,
            calendar=verdict.calendar, seasonal_unmatched=verdict.seasonal_unmatched,
        ) + "".join(f"\n- Skipped: {s.describe()}\n" for s in skipped),
        "drift", spec.name, description=f"drift of {spec.name} v{version}: {decision.reason}",
    )
    (logger.warning if decision.material else logger.info)("%s (%s)", decision.reason, announcement.why)
    return DriftReportOutcome(
        model=spec.name, version=version, status=DriftCheckStatus.CHECKED, reason=decision.reason,
        window_start=current.start, window_end=window.end, record=record, verdict=verdict, report_error=report_error,
        profile_built=cached.built, ledger_entry_id=entry_id, seconds=seconds, current_rows=current.rows,
        skipped=skipped, workspace=workspace, from_health_scan=current.from_health_scan,
    )
