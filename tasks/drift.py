"""Tasks of the drift report: the serving version, its cached reference profile, the window, the verdict."""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from steward.config import get_settings
from steward.monitoring.drift.engine import attach_report, detect_drift
from steward.monitoring.drift.history import DriftRecord
from steward.monitoring.drift.monitor import (
    IMPORTANCE_ARTIFACT,
    MIN_DRIFT_ROWS,
    PROFILE_ARTIFACT,
    REPORTS_ARTIFACT_DIR,
    DriftVerdict,
    DriftWindow,
    build_drift_reference,
    drift_finding,
    drift_fingerprint,
    judge_drift,
    prediction_drift_column,
)
from steward.monitoring.drift.policy import AccuracyEvidence
from steward.monitoring.drift.profile import ReferenceProfile
from steward.monitoring.drift.result import DriftResult
from steward.monitoring.health.accuracy import (
    MIN_LABELLED,
    Calibration,
    HoldoutFigures,
    accuracy_evidence,
    holdout_figures,
)
from steward.monitoring.ledger import EntryStatus
from steward.monitoring.maintenance.retention import scratch_folder
from steward.monitoring.summaries.checks import read_late_labelled, recent_scan, summarize_log
from steward.monitoring.summaries.partitions import PartitionRunner
from steward.monitoring.summaries.window import summarize_window
from steward.registry.adapter import VersionInfo
from steward.registry.errors import RegistryError
from steward.registry.history import CHALLENGER
from steward.spec import FeatureRole, ModelSpec
from steward.store.reader import join_labels
from steward.training.data import prepare_features
from steward.training.gates import RetrainAllowance
from steward.training.scores import SkippedCheck
from tasks.common import current_flow_run_id, ledger, registry, services, store
from tasks.training import retrain_allowance


@dataclass(frozen=True)
class ServingVersions:
    champion: VersionInfo
    challenger: str | None


@dataclass(frozen=True)
class CachedProfile:
    """The version's reference profile and feature importances; ``built`` when made by this run."""

    profile: ReferenceProfile
    importances: dict[str, float]
    built: bool = False
    seconds: float = 0.0


@dataclass(frozen=True)
class CurrentWindow:
    """The served, answered rows of the window: all of them, or a uniform sample of ``rows`` at volume."""

    frame: pd.DataFrame = field(repr=False)
    start: datetime | None
    end: datetime
    seconds: float
    rows: int = -1  # rows in the window (the frame's length when not sampled)
    from_health_scan: bool = False  # read from the health check's scan of the same window (decision 0034)

    def __post_init__(self) -> None:
        if self.rows < 0:
            object.__setattr__(self, "rows", len(self.frame))


@task(name="resolve-serving-version")
def resolve_serving_version(spec: ModelSpec) -> ServingVersions:
    """The champion serves; drift is measured against the data it was trained on."""
    reg = registry()
    if not reg.model_exists(spec.name):
        raise RegistryError(f"no model named {spec.name!r} in the registry; train one with `steward train`")
    champion = reg.champion(spec.name)
    if champion is None:
        raise RegistryError(
            f"{spec.name} has no champion, so no version is serving and there is no reference to compare with; "
            "validate a version first (`steward validate`)"
        )
    return ServingVersions(champion, reg.alias_version(spec.name, CHALLENGER))


def _served_ok(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["served"] & (frame["status"] == "ok")]


@task(name="read-drift-window", retries=3, retry_delay_seconds=[2, 5, 15], cache_policy=NO_CACHE)
def read_drift_window(spec: ModelSpec, version: str, window: DriftWindow,
                      run: PartitionRunner | None = None) -> CurrentWindow:
    """Served, successful predictions of ``version`` in the window (the last N rows: newest days first).

    ``run`` summarises a time window a day per task on another engine (``flows.summaries``); None scans here."""
    started = time.perf_counter()
    log = store()
    if window.last_rows is None:
        assert window.start is not None
        summary = recent_scan.recall(log, spec.name, window.start, window.end)  # the health check's, same window
        recalled = summary is not None
        if summary is None:
            summary = summarize_log(log, spec, window.start, window.end, run, version=version, served_only=True,
                                    quality=False, all_rows=False)
        return CurrentWindow(summary.answered_frame(version), window.start, window.end, time.perf_counter() - started,
                             rows=summary.answered_rows[version], from_health_scan=recalled)
    parts, rows = [], 0
    day_end = window.end
    oldest = window.end - timedelta(days=window.lookback_days or 1)
    while rows < window.last_rows and day_end > oldest:
        day_start = max(oldest, datetime.combine((day_end - timedelta(microseconds=1)).date(), datetime.min.time(), UTC))
        part = _served_ok(log.read_predictions(spec.name, day_start, day_end, version, served_only=True))
        parts.append(part)
        rows += len(part)
        day_end = day_start
    frame = pd.concat(parts[::-1], ignore_index=True)
    frame = frame.sort_values("time", kind="stable").tail(window.last_rows).reset_index(drop=True)
    start = frame["time"].min().to_pydatetime() if len(frame) else None
    return CurrentWindow(frame, start, window.end, time.perf_counter() - started)


def _expected_columns(spec: ModelSpec) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """The spec's features and the output columns a profile may watch (the class when a model gives no score)."""
    watched = tuple(dict.fromkeys(prediction_drift_column(spec, scored)[0] for scored in (True, False)))
    return tuple(spec.numeric_features), tuple(spec.categorical_features), watched


@task(name="fetch-reference-profile", retries=2, retry_delay_seconds=[2, 5], cache_policy=NO_CACHE)
def fetch_reference_profile(spec: ModelSpec, version: str) -> CachedProfile | None:
    """The profile cached with the version, or None when absent or built for other columns."""
    home = scratch_folder(get_settings().home, spec.name)
    home.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=home) as scratch:
        path = registry().download_version_artifact(spec.name, version, PROFILE_ARTIFACT, scratch)
        weights = registry().download_version_artifact(spec.name, version, IMPORTANCE_ARTIFACT, scratch)
        if path is None or weights is None:
            return None
        profile = ReferenceProfile.from_parquet(path)
        importances = json.loads(Path(weights).read_text())
    numeric, categorical, watched = _expected_columns(spec)
    if (profile.numeric, profile.categorical) != (numeric, categorical) or profile.prediction_column not in watched:
        return None  # the spec's features changed since it was cached: rebuilt by the caller
    return CachedProfile(profile, {k: float(v) for k, v in importances.items()})


@task(name="build-reference-profile", retries=1, retry_delay_seconds=[5], cache_policy=NO_CACHE)
def build_reference_profile(spec: ModelSpec, version: str) -> CachedProfile:
    """Profile the version's training sample with the version's own outputs on it, and its importances."""
    started = time.perf_counter()
    reg = registry()
    model = reg.load_model(spec.name, version).model
    reference = prepare_features(reg.load_dataset(spec.name, version, "reference"), spec)
    holdout_raw = reg.load_dataset(spec.name, version, "holdout")
    holdout = prepare_features(holdout_raw, spec)
    holdout[spec.target] = holdout_raw[spec.target].to_numpy()
    profile, importances = build_drift_reference(model, reference, holdout, spec)
    return CachedProfile(profile, importances, built=True, seconds=time.perf_counter() - started)


@task(name="cache-reference-profile", retries=2, retry_delay_seconds=[2, 5])
def cache_reference_profile(spec: ModelSpec, version: str, cached: CachedProfile) -> None:
    """Store the profile and importances with the version, so later checks skip the build."""
    home = scratch_folder(get_settings().home, spec.name)
    home.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=home) as scratch:
        profile_path = cached.profile.to_parquet(Path(scratch) / Path(PROFILE_ARTIFACT).name)
        weights_path = Path(scratch) / Path(IMPORTANCE_ARTIFACT).name
        weights_path.write_text(json.dumps(cached.importances, sort_keys=True))
        folder = str(Path(PROFILE_ARTIFACT).parent)
        registry().log_version_artifact(spec.name, version, profile_path, folder)
        registry().log_version_artifact(spec.name, version, weights_path, folder)


@task(name="measure-drift", cache_policy=NO_CACHE)
def measure_drift(cached: CachedProfile, current: pd.DataFrame, spec: ModelSpec) -> DriftResult:
    """The verdict on every current row (profile engine); the Evidently report comes after."""
    numeric, categorical, _ = _expected_columns(spec)
    return detect_drift(
        cached.profile, current, numeric=list(numeric), categorical=list(categorical),
        prediction_column=cached.profile.prediction_column,
        importances=cached.importances, report=False,
    )


@task(name="load-previous-drift", retries=2, retry_delay_seconds=[2, 5])
def load_previous_drift(spec: ModelSpec, before: datetime) -> DriftRecord | None:
    return services().drift_history.previous(spec.name, before)


@task(name="measure-seasonal-drift", retries=2, retry_delay_seconds=[2, 5], cache_policy=NO_CACHE)
def measure_seasonal_drift(spec: ModelSpec, current: pd.DataFrame, start: datetime, end: datetime) -> DriftResult | None:
    """The seasonal features of the window against the same window one season earlier (any version served it:
    inputs do not depend on the model); None when that window holds too little traffic to compare with."""
    seasonal = spec.features_with_role(FeatureRole.SEASONAL)
    assert spec.drift.season_days is not None  # the spec refuses seasonal features without it
    season = timedelta(days=spec.drift.season_days)
    summary = summarize_window(store(), spec, start - season, end - season, served_only=True, quality=False,
                               samples=False)
    earlier = _served_ok(summary.predictions_frame())  # every served row, or a uniform sample at volume
    if len(earlier) < MIN_DRIFT_ROWS:
        return None
    numeric = [c for c in seasonal if c in spec.numeric_features]
    categorical = [c for c in seasonal if c in spec.categorical_features]
    return detect_drift(earlier[seasonal].reset_index(drop=True), current[seasonal].reset_index(drop=True),
                        numeric=numeric, categorical=categorical, engine="profile", report=False)


@task(name="retrain-allowance-at", retries=2, retry_delay_seconds=[2, 5])
def retrain_allowance_at(spec: ModelSpec, when: datetime) -> RetrainAllowance:
    """Whether a retrain triggered at ``when`` would run (cooldown, weekly budget), on the event times of the
    versions trained by then."""
    return retrain_allowance(spec, when)


@task(name="gather-accuracy-evidence", retries=2, retry_delay_seconds=[2, 5], cache_policy=NO_CACHE)
def gather_accuracy_evidence(
    spec: ModelSpec, version: str, current: pd.DataFrame, start: datetime, end: datetime
) -> AccuracyEvidence | None:
    """What accuracy did in the window: measured on the labels received by its end, else the label-free
    estimate of a calibrated classifier; None when neither is available."""
    labelled = join_labels(current, store().read_labels(spec.name, start=start, end=end))
    late = read_late_labelled(store(), spec, start, end, version=version)  # earlier predictions labelled now
    if late is not None and len(late):
        labelled = pd.concat([late[late["version"].astype(str) == str(version)], labelled], ignore_index=True)
    calibration: Calibration | SkippedCheck | str | None = None
    errors: dict[str, float] = {}
    if len(labelled) >= MIN_LABELLED or spec.task.is_classification:
        figures = version_holdout(spec, version)
        calibration, errors = figures.calibration, figures.errors
    return accuracy_evidence(spec, current, labelled, version_baseline(spec, version), calibration, errors)


def version_baseline(spec: ModelSpec, version: str) -> dict[str, float]:
    """The version's held-out metrics from validation (empty when the registry has none)."""
    try:
        return registry().get_version(spec.name, version, with_metrics=True).metrics
    except RegistryError:
        return {}


def version_holdout(spec: ModelSpec, version: str) -> HoldoutFigures:
    """The version's calibration on its holdout (skipped: a model that gives labels only) and its validation
    metrics' standard errors; why, in place of the calibration, when the model or hold-out cannot be read."""
    try:
        reg = registry()
        return holdout_figures(reg.load_model(spec.name, version).model,
                               reg.load_dataset(spec.name, version, "holdout"), spec)
    except (RegistryError, ValueError) as error:
        return HoldoutFigures(str(error), {})


@task(name="decide-material-drift")
def decide_drift(
    spec: ModelSpec, version: str, result: DriftResult, previous: DriftRecord | None, importances: dict[str, float],
    window_end: datetime, accuracy: AccuracyEvidence | None = None, retrain: RetrainAllowance | None = None,
) -> DriftVerdict:
    """The spec's policy on the most influential columns, with hysteresis from the previous check of this version."""
    return judge_drift(spec, version, result, previous, importances, window_end, accuracy=accuracy, retrain=retrain)


@task(name="render-drift-report", cache_policy=NO_CACHE)
def render_drift_report(result: DriftResult, cached: CachedProfile, current: pd.DataFrame) -> DriftResult:
    """Evidently's report on a seeded sample of the window (all of it when small); the verdict stands."""
    return attach_report(result, cached.profile, current)


@task(name="store-drift-report", retries=2, retry_delay_seconds=[2, 5])
def store_drift_report(spec: ModelSpec, version: str, result: DriftResult, window_end: datetime) -> str:
    """The HTML as an MLflow artifact of the serving version; returns its URI."""
    home = scratch_folder(get_settings().home, spec.name)
    home.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=home) as scratch:
        path = result.save_html(Path(scratch) / f"drift-{window_end.astimezone(UTC):%Y%m%dT%H%M%SZ}.html")
        return registry().log_version_artifact(spec.name, version, path, REPORTS_ARTIFACT_DIR)


@task(name="record-drift-check", retries=2, retry_delay_seconds=[2, 5])
def record_drift_check(record: DriftRecord) -> str:
    """Persist the check; the next one reads it back for hysteresis, the monthly review for the trend."""
    return services().drift_history.append(record)


@task(name="update-drift-ledger", retries=2, retry_delay_seconds=[2, 5])
def update_drift_ledger(spec: ModelSpec, version: str, verdict: DriftVerdict, window_end: datetime) -> str | None:
    """Material drift opens (or counts again) the model's drift entry; its end resolves the entry."""
    book = ledger()
    decision = verdict.decision
    if decision.material:
        finding = drift_finding(spec.name, version, decision, verdict.announcement.why)
        return book.record_finding(spec.name, finding, flow_run_id=current_flow_run_id()).id
    for entry in book.entries(spec.name, status=EntryStatus.OPEN):
        if entry.fingerprint == drift_fingerprint(spec.name):
            book.close(entry.id, resolution=f"no material drift in the window ending {window_end:%Y-%m-%d %H:%M} UTC: "
                       f"{decision.reason}")
    return None
