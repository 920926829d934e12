"""Replay a labelled history window by window on an event-time clock, deciding as Steward's flows decide.

At each window's end the served model's batch-scored window goes through the same pure procedures
the flows call: the health check's data-quality and accuracy checks, the drift engine and the drift
verdict with the previous check's record, the retrain trigger (announced drift, degraded accuracy),
the retrain allowance at that event time, training on the labels known by then, and the validation
gate against the champion. State lives in memory: no gateway, no registry, no Prefect. A promotion
serves from the next window (the canary is not replayed).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from steward.backtest.history import BacktestError, check_history, label_times
from steward.backtest.result import (
    NOT_CHECKED,
    Action,
    ActionKind,
    BacktestConfig,
    BacktestResult,
    Strategy,
    WindowOutcome,
)
from steward.backtest.scoring import Scored, cross_fitted_oracle, labelled_metrics, score
from steward.backtest.versions import KeptCandidate, ReplayVersion
from steward.monitoring.drift.engine import detect_drift
from steward.monitoring.drift.history import DriftRecord
from steward.monitoring.drift.monitor import (
    MIN_DRIFT_ROWS,
    compare_seasonal,
    judge_drift,
    reference_outputs,
)
from steward.monitoring.drift.result import DriftResult
from steward.monitoring.health.accuracy import (
    InputDrift,
    accuracy_evidence,
    check_accuracy,
)
from steward.monitoring.health.data_quality import check_data_quality
from steward.monitoring.health.report import (
    Area,
    CheckResult,
    HealthReport,
    HealthWindow,
    failed_check,
)
from steward.spec import FeatureRole, ModelSpec, Task
from steward.store.records import label_text
from steward.training.data import DataError, frame_sha256, split_train_holdout, validate_training_data
from steward.training.evaluation import compute_metrics, higher_is_better, predict_scores
from steward.training.gates import ValidationReport, ValidationVerdict, decide_retrain
from steward.training.retrain_decision import (
    PendingCandidate,
    Reading,
    RetrainKind,
    RetrainTrigger,
    TriedRetrain,
    decide_retrain_need,
    health_trigger,
    latest_tried,
    pending_until,
    refresh_due,
    retrain_kind,
    retrain_trigger,
    served_readings,
    tried_until,
)
from steward.training.threshold import refit_threshold
from steward.training.train import RetrainSkip, TrainedModel, labelled_frame, train_model
from steward.training.validation import validate_candidate
from steward.training.windows import ExpectedBelowFloor, choose_training_window

LABEL_TIME = "__steward_label_time"


@dataclass(frozen=True)
class _DriftCheck:
    record: DriftRecord
    why: str  # why it was (not) announced
    code: str  # the DriftReason value

    @property
    def announced(self) -> bool:
        return self.record.announced


def run_backtest(
    spec: ModelSpec,
    history: pd.DataFrame,
    config: BacktestConfig | None = None,
    *,
    on_window: Callable[[WindowOutcome], None] | None = None,
) -> BacktestResult:
    """Replay ``history`` (the spec's features, target and timestamp) and return what each strategy did.

    ``on_window`` is called with each window's outcome as it is decided (progress for the CLI and flow).
    """
    started = time.perf_counter()
    config = config or BacktestConfig()
    windows = []
    # One native thread: the replay fits and scores many small models, and on a shared host OpenMP's
    # spinning thread pools make each tree fit many times slower than one thread.
    with threadpool_limits(limits=1):
        replay = _Replay(spec, history, config)
        for index, (start, end) in enumerate(replay.bounds):
            outcome = replay.window(index, start, end)
            windows.append(outcome)
            if on_window is not None:
                on_window(outcome)
    return BacktestResult(
        model=spec.name, config=config, windows=tuple(windows), primary_metric=spec.primary_metric,
        initial_training_rows=replay.initial_rows, seconds=time.perf_counter() - started, notes=tuple(replay.notes),
    )


class _Replay:
    def __init__(self, spec: ModelSpec, history: pd.DataFrame, config: BacktestConfig) -> None:
        self.spec, self.config = spec, config
        raw = check_history(spec, history, config.label_time_column)
        assert spec.timestamp_column is not None
        self.time_column = spec.timestamp_column
        self.frame = labelled_frame(raw, spec)
        self.frame[self.time_column] = raw[self.time_column].to_numpy()
        self.frame[LABEL_TIME] = label_times(raw, spec, config.label_time_column, config.label_delay).to_numpy()
        self.times = self.frame[self.time_column]
        self.notes: list[str] = []
        self.versions = 0
        self.bounds = self._bounds()
        first_start = self.bounds[0][0]
        self.training_window = config.training_window or (
            timedelta(days=spec.data.window_days) if spec.data.window_days else config.initial_training)

        initial = self._known(first_start - config.initial_training, first_start, first_start)
        self.initial_rows = len(initial)
        report = validate_training_data(initial, spec)
        if not report.passed:
            raise BacktestError(
                f"the first champion cannot be trained on the {len(initial)} labelled rows before the first window "
                f"({first_start - config.initial_training:%Y-%m-%d %H:%M} to {first_start:%Y-%m-%d %H:%M} UTC): "
                f"{report.summary()}. Lengthen the initial training span (--initial), start later, or lower "
                "data_validation.min_rows in the spec"
            )
        trained = self._train(initial, "initial training")
        first = self._version(trained, first_start)
        gate = validate_candidate(spec, first.contender(), None, trained.holdout_frame)
        if not gate.passed:
            raise BacktestError(f"the first model fails the bootstrap gate, so nothing would serve: {gate.summary()}")
        self.champion = first
        self.frozen = first
        self.every_window: TrainedModel = trained
        self.retrain_times: list[datetime] = [first_start]
        self.previous_drift: DriftRecord | None = None
        self.kept: KeptCandidate | None = None  # the one pending candidate (inconclusive, expected to gain)
        self.tried: TriedRetrain | None = None  # the last retrain that found no expected gain
        # Earlier windows' logged rows whose labels arrive later, for the label look-back (health.label_lookback_days)
        self.awaiting: list[tuple[datetime, pd.DataFrame]] = []

    # ------------------------------------------------------------------ the clock
    def _bounds(self) -> list[tuple[datetime, datetime]]:
        config = self.config
        first_time = self.times.min()
        start = pd.Timestamp(config.start) if config.start else first_time.floor("D") + config.initial_training
        start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
        end = pd.Timestamp(config.end) if config.end else self.times.max() + pd.Timedelta(microseconds=1)
        end = end.tz_localize("UTC") if end.tzinfo is None else end.tz_convert("UTC")
        if end <= start:
            raise BacktestError(
                f"the history ends ({end:%Y-%m-%d %H:%M} UTC) before the first window starts ({start:%Y-%m-%d %H:%M} "
                f"UTC = first row + initial training {config.initial_training}): shorten --initial or give more history"
            )
        cadence = pd.Timedelta(config.cadence)
        count = math.ceil((end - start) / cadence)
        if count > 1 and end - (start + (count - 1) * cadence) < cadence / 2:
            count -= 1  # a last sliver of a window would be judged on a handful of rows
            self.notes.append(f"rows after {start + count * cadence:%Y-%m-%d %H:%M} UTC (less than half a window) "
                              "are not replayed")
        return [((start + i * cadence).to_pydatetime(warn=False),
                 min(start + (i + 1) * cadence, end).to_pydatetime(warn=False)) for i in range(count)]

    def _rows(self, start: datetime, end: datetime) -> pd.DataFrame:
        mask = (self.times >= start) & (self.times < end)
        return self.frame[mask.to_numpy()]

    def _known(self, start: datetime, end: datetime, as_of: datetime) -> pd.DataFrame:
        """Rows of ``[start, end)`` whose label was received before ``as_of`` (production_training_frame's rule)."""
        rows = self._rows(start, end)
        return rows[(rows[LABEL_TIME] < as_of).to_numpy()].drop(columns=[LABEL_TIME])

    # ------------------------------------------------------------------ training
    def _train(self, frame: pd.DataFrame, source: str) -> TrainedModel:
        split = split_train_holdout(frame, self.spec)
        return train_model(self.spec, split, data_sha256=frame_sha256(frame), data_source=f"backtest: {source}")

    def _version(self, trained: TrainedModel, at: datetime, model_trained_at: datetime | None = None) -> ReplayVersion:
        example = trained.holdout_frame[self.spec.feature_names].head(20)
        schema = {column: str(dtype) for column, dtype in example.dtypes.items()}
        self.versions += 1
        return ReplayVersion(str(self.versions), trained, at, schema, model_trained_at or at)

    # ------------------------------------------------------------------ one window
    def window(self, index: int, start: datetime, end: datetime) -> WindowOutcome:
        spec, config = self.spec, self.config
        rows = self._rows(start, end)
        labelled = rows[spec.target].notna().to_numpy()
        y = rows[spec.target].to_numpy()[labelled]
        features = rows[spec.feature_names]
        served = self.champion
        metrics: dict[Strategy, dict[str, float]] = {}
        scored_champion = score(spec, served.estimator, features)
        metrics[Strategy.STEWARD] = labelled_metrics(spec, y, scored_champion, labelled)
        if Strategy.FROZEN in config.strategies:
            frozen = scored_champion if self.frozen is served else score(spec, self.frozen.estimator, features)
            metrics[Strategy.FROZEN] = labelled_metrics(spec, y, frozen, labelled)
        if Strategy.EVERY_WINDOW in config.strategies:
            weekly = (scored_champion if self.every_window is served.trained
                      else score(spec, self.every_window.estimator, features))
            metrics[Strategy.EVERY_WINDOW] = labelled_metrics(spec, y, weekly, labelled)
        baseline_retrains: list[Strategy] = []
        if Strategy.ORACLE in config.strategies:
            oracle = self._oracle(index, start, rows, labelled)
            if oracle is not None:
                metrics[Strategy.ORACLE] = oracle
                baseline_retrains.append(Strategy.ORACLE)

        served.prepare_monitoring(spec)
        actions: list[Action] = []
        log, labelled_log = self._log(served, rows, scored_champion, start, end)
        measured = self._measure_drift(served, rows, start, end)
        report = self._health(served, log, labelled_log, start, end, measured)
        if report.degraded:
            actions.append(Action(ActionKind.HEALTH_ALARM, report.summary(), report.verdict.value))
        drift = self._drift(served, log, labelled_log, measured, start, end)
        if drift is not None and drift.announced:
            decision = drift.record
            actions.append(Action(ActionKind.DRIFT_ALARM, f"{decision.reason} ({drift.why})", drift.code))

        training = self._known(end - self.training_window, end, end)
        retrained_here: TrainedModel | None = None
        if self.kept is not None:
            self._revalidate(end, actions)
        if drift is None or not drift.record.material:
            self.tried = None if self.tried is not None and self.tried.trigger.drift_columns else self.tried
        trigger = (self._trigger(report, drift)
                   or refresh_due(spec, self.champion.training(), self.champion.model_trained_at, end).trigger)
        if trigger is not None:
            retrained_here = self._steward_retrain(
                end, training, actions, trigger,
                served_readings(self.spec, labelled_log[labelled_log["version"] == served.version]))

        if Strategy.EVERY_WINDOW in config.strategies and index < len(self.bounds) - 1:  # a model that will serve
            if retrained_here is not None and len(spec.data.window_candidates) <= 1:
                self.every_window = retrained_here  # the same rows and seed train the same model
                baseline_retrains.append(Strategy.EVERY_WINDOW)
            elif validate_training_data(training, spec).passed:
                self.every_window = self._train(training, f"every window, labels known by {end:%Y-%m-%d %H:%M}")
                baseline_retrains.append(Strategy.EVERY_WINDOW)

        return WindowOutcome(
            index=index, start=start, end=end, rows=len(rows), labelled_rows=int(labelled.sum()),
            served_version=served.version, metrics=metrics,
            drift_material=bool(drift is not None and drift.record.material),
            drift_code=drift.code if drift is not None else NOT_CHECKED,
            drift_announced=bool(drift is not None and drift.announced),
            drift_columns=drift.record.columns if drift is not None else (),
            health_codes=tuple(dict.fromkeys(i.code.value for i in report.issues)),
            actions=tuple(actions), health_verdict=report.verdict.value,
            labels_known_at_end=int((rows[LABEL_TIME] < end).sum()),
            late_labels=int((labelled_log["time"] < start).sum()),
            baseline_retrains=tuple(baseline_retrains),
        )

    # ------------------------------------------------------------------ Steward's checks
    def _health(self, served: ReplayVersion, log: pd.DataFrame, labelled_log: pd.DataFrame, start: datetime,
                end: datetime, measured: DriftResult | None) -> HealthReport:
        """The health check's data-quality and accuracy checks over the window, with the labels known by its end,
        judging inputs on the same drift measurement as the drift verdict (as the health flow does).

        Performance, infrastructure and cost need a gateway and are not replayed.
        """
        spec = self.spec
        checks: list[CheckResult] = []
        try:
            checks.append(check_data_quality(log, spec, served.fences, None))
        except Exception as error:  # a check that fails is reported as failed, as the flow does
            checks.append(failed_check(Area.DATA_QUALITY, error))
        try:
            calibrations = ({served.version: served.calibration or "not measured"}
                            if spec.task.is_classification else {})
            input_drift = None if measured is None else InputDrift(
                served.version, measured, served.importances, self._previous_result(served))
            checks.append(check_accuracy(log, labelled_log, spec, {served.version: served.trained.metrics},
                                         calibrations, served.reference, input_drift=input_drift,
                                         importances=served.importances,
                                         baseline_errors={served.version: served.validation_errors}))
        except Exception as error:  # as above
            checks.append(failed_check(Area.ACCURACY, error))
        return HealthReport.combine(spec.name, HealthWindow(start, end), checks)

    def _log(self, served: ReplayVersion, rows: pd.DataFrame, scored: Scored, start: datetime, end: datetime
             ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The window as the prediction log would hold it (one served, answered request per row), and the labelled
        rows the health check reads: the window's own with the labels received by ``end``, and the predictions of
        the ``health.label_lookback_days`` before it whose labels arrived in ``[start, end)`` (late feedback), as
        the version that served them logged them."""
        spec = self.spec
        n = len(rows)
        if spec.task is Task.REGRESSION or scored.probabilities is None:
            scores = np.asarray(scored.predictions, dtype=float) if spec.task is Task.REGRESSION else np.full(n, np.nan)
        elif scored.probabilities.shape[1] == 2:
            scores = scored.probabilities[:, -1]
        else:
            scores = scored.probabilities.max(axis=1)
        log = pd.DataFrame({
            "request_id": [f"backtest-{i}" for i in rows.index],
            "row": np.zeros(n, dtype="int32"),
            "time": rows[self.time_column].to_numpy(),
            "version": served.version,
            "arm": "champion",
            "served": True,
            "status": "ok",
            "prediction": [label_text(p) for p in scored.predictions],
            "score": scores,
            "latency_ms": np.nan,
        }, index=rows.index)
        for name in spec.feature_names:
            log[name] = rows[name].to_numpy()
        log = log.reset_index(drop=True)
        label_time = rows[LABEL_TIME]
        arrives = (label_time.notna() & rows[spec.target].notna()).to_numpy()
        answered = log[arrives].assign(
            label=[label_text(v) for v in rows[spec.target].to_numpy()[arrives]],
            label_time=label_time.to_numpy()[arrives],
        )
        known = (answered["label_time"] < end).to_numpy()
        lookback = timedelta(days=spec.health.label_lookback_days)
        self.awaiting = [(at, frame) for at, frame in self.awaiting if at >= start - lookback]
        late = [frame[((frame["label_time"] >= start) & (frame["label_time"] < end)).to_numpy()]
                for _, frame in self.awaiting]
        labelled_log = pd.concat([*late, answered[known]], ignore_index=True)
        if lookback > timedelta(0) and (~known).any():
            self.awaiting.append((start, answered[~known]))
        return log, labelled_log

    def _previous_result(self, served: ReplayVersion) -> DriftResult | None:
        previous = self.previous_drift
        return previous.result if previous is not None and previous.version == served.version else None

    def _measure_drift(self, served: ReplayVersion, rows: pd.DataFrame, start: datetime, end: datetime
                       ) -> DriftResult | None:
        """The drift engine on the window against the champion's training sample, seasonal features one season
        back (None: too few rows)."""
        spec = self.spec
        if len(rows) < MIN_DRIFT_ROWS:
            return None
        assert served.profile is not None
        column = served.profile.prediction_column  # the class, for a model that gives labels only
        current = rows[spec.feature_names].copy()
        current[column] = reference_outputs(served.estimator, current, spec)
        result = detect_drift(
            served.profile, current, numeric=list(spec.numeric_features), categorical=list(spec.categorical_features),
            prediction_column=column, importances=served.importances, report=False,
        )
        seasonal = spec.features_with_role(FeatureRole.SEASONAL)
        if seasonal:
            assert spec.drift.season_days is not None  # the spec refuses seasonal features without it
            season = timedelta(days=spec.drift.season_days)
            earlier = self._rows(start - season, end - season)
            season_back = None
            if len(earlier) >= MIN_DRIFT_ROWS:
                season_back = detect_drift(
                    earlier[seasonal].reset_index(drop=True), rows[seasonal].reset_index(drop=True),
                    numeric=[c for c in seasonal if c in spec.numeric_features],
                    categorical=[c for c in seasonal if c in spec.categorical_features], engine="profile",
                    report=False)
            result = compare_seasonal(result, season_back)
        return result

    def _drift(self, served: ReplayVersion, log: pd.DataFrame, labelled_log: pd.DataFrame,
               measured: DriftResult | None, start: datetime, end: datetime) -> _DriftCheck | None:
        """The drift report's verdict on the window: accuracy evidence for a drifting prediction, the retrain
        allowance at the window's end for a drift raised while retraining is blocked."""
        spec = self.spec
        if measured is None:
            return None
        served_labelled = labelled_log[labelled_log["version"] == served.version]  # not an earlier champion's
        accuracy = accuracy_evidence(spec, log, served_labelled, served.trained.metrics, served.calibration,
                                     served.validation_errors)
        allowance = decide_retrain(end, self.retrain_times, cooldown_hours=spec.retrain.cooldown_hours,
                                   max_per_week=spec.retrain.max_per_week)
        verdict = judge_drift(spec, served.version, measured, self.previous_drift, served.importances, end,
                              accuracy=accuracy, retrain=allowance)
        decision, announcement = verdict.decision, verdict.announcement
        record = DriftRecord(
            model=spec.name, version=served.version, window_start=start, window_end=end, current_rows=len(log),
            material=decision.material, announced=announcement.announce, reason=decision.reason,
            columns=decision.columns, result=measured.with_decision(decision),
            material_since=announcement.material_since, awaiting_retrain=announcement.awaiting_retrain,
        )
        self.previous_drift = record
        return _DriftCheck(record, announcement.why, decision.code.value)

    # ------------------------------------------------------------------ Steward's retrain
    def _trigger(self, report: HealthReport, drift: _DriftCheck | None) -> RetrainTrigger | None:
        """What asks for a retrain in this window (an announced drift, degraded accuracy), or None: what the
        drift and health events carry to the production retrain flow."""
        announced = drift is not None and drift.announced
        if not announced and Area.ACCURACY not in report.degraded_areas:
            return None
        health = health_trigger(report)
        columns = drift.record.columns if announced and drift is not None else ()
        return retrain_trigger(self.spec, drift_columns=columns, metric=health.metric,
                               primary_dropped=health.primary_dropped, also_fell=health.also_fell)

    def _steward_retrain(self, end: datetime, training: pd.DataFrame, actions: list[Action],
                         trigger: RetrainTrigger, readings: dict[str, Reading]) -> TrainedModel | None:
        """What the retrain trigger starts: whether it is needed, the allowance at ``end``, training (or a
        re-fitted threshold), the gate; a pass promotes, an inconclusive candidate expected to gain is kept."""
        spec = self.spec
        why = trigger.describe()
        directions = {m: higher_is_better(m) for m in readings}
        need = decide_retrain_need(trigger, end, pending=self.kept.pending if self.kept else None, tried=self.tried,
                                   readings=readings, limit=spec.health.max_accuracy_drop,
                                   higher_is_better=directions)
        if not need.go:
            actions.append(Action(ActionKind.RETRAIN_FOLDED, need.reason, need.code.value))
            return None
        if need.trigger is not None:  # a threshold re-fit instead of a second new model (RECALIBRATE)
            trigger, why = need.trigger, need.trigger.describe()
        allowance = decide_retrain(end, self.retrain_times, cooldown_hours=spec.retrain.cooldown_hours,
                                   max_per_week=spec.retrain.max_per_week)
        if not allowance.allowed:
            actions.append(Action(ActionKind.RETRAIN_SKIPPED, f"{why}: {allowance.reason}", allowance.code.value))
            return None
        kind = retrain_kind(spec, trigger)
        why = f"{why}; {allowance.reason}"  # the RETRAINED code says what was built; its detail says why it could run
        built = (self._refit_threshold(end, why, actions) if kind is RetrainKind.REFIT_THRESHOLD
                 else self._train_candidate(end, training, why, actions))
        if built is None:
            return None
        candidate, holdout, trained = built
        candidate.trigger = trigger
        self.retrain_times.append(end)
        gate = validate_candidate(spec, candidate.contender(), self.champion.contender(), holdout,
                                  trigger_metric=trigger.metric, refresh=trigger.refresh)
        self._record_gate(gate, candidate, holdout, trigger, end, readings, actions)
        return trained if kind is RetrainKind.TRAIN else None  # a re-fitted threshold trains no new model

    def _train_candidate(self, end: datetime, training: pd.DataFrame, why: str, actions: list[Action]
                         ) -> tuple[ReplayVersion, pd.DataFrame, TrainedModel] | None:
        spec = self.spec
        source = f"labels known by {end:%Y-%m-%d %H:%M} UTC"
        if len(spec.data.window_candidates) > 1:  # the retrain flow's choice of window, on the same rows
            longest = self._known(end - timedelta(days=max(spec.data.window_candidates)), end, end)
            try:
                choice = choose_training_window(spec, longest, end, self.champion.estimator)
            except ExpectedBelowFloor as error:
                actions.append(Action(ActionKind.RETRAIN_SKIPPED, f"{why}: {error}", RetrainSkip.EXPECTED_BELOW_FLOOR.value))
                return None
            except DataError as error:
                actions.append(Action(ActionKind.RETRAIN_FAILED, f"{why}: {error}", "training_data_rejected"))
                return None
            training, source = choice.frame, f"{source}; {choice.describe()}"
        data = validate_training_data(training, spec)
        if not data.passed:
            actions.append(Action(ActionKind.RETRAIN_FAILED, f"{why}: {data.summary()}", "training_data_rejected"))
            return None
        trained = self._train(training, source)
        candidate = self._version(trained, end)
        candidate.labels_through = pd.to_datetime(training[self.time_column], utc=True).max().to_pydatetime(warn=False)
        metric = spec.primary_metric
        actions.append(Action(
            ActionKind.RETRAINED,
            f"v{candidate.version} on {len(training)} labelled rows ({why}); held-out {metric} "
            f"{trained.metrics.get(metric, math.nan):.4f}", RetrainKind.TRAIN.value,
        ))
        return candidate, trained.holdout_frame, trained

    def _refit_threshold(self, end: datetime, why: str, actions: list[Action]
                         ) -> tuple[ReplayVersion, pd.DataFrame, TrainedModel] | None:
        """The champion with its threshold re-fitted on the older part of the most recent usable window; the
        newer part is the gate's hold-out (``refit_threshold``)."""
        spec = self.spec
        champion = self.champion
        try:
            refitted = refit_threshold(spec, champion.estimator, lambda days: self._known(end - timedelta(days=days),
                                                                                         end, end))
        except DataError as error:
            actions.append(Action(ActionKind.RETRAIN_FAILED, f"{why}: {error}", "training_data_rejected"))
            return None
        refit, fit, holdout = refitted.model, refitted.fit, refitted.holdout
        metrics = compute_metrics(spec.task, holdout[spec.target].to_numpy(),
                                  *predict_scores(refit, holdout[spec.feature_names], spec.task))
        trained = TrainedModel(refit, metrics, champion.trained.lineage, champion.trained.train_frame, holdout,
                               champion.trained.producer)
        candidate = self._version(trained, end, model_trained_at=champion.model_trained_at)
        actions.append(Action(
            ActionKind.RETRAINED, f"v{candidate.version}: v{champion.version} with its {fit.describe()} ({why})",
            RetrainKind.REFIT_THRESHOLD.value,
        ))
        return candidate, holdout, trained

    def _record_gate(self, gate: ValidationReport, candidate: ReplayVersion, holdout: pd.DataFrame,
                     trigger: RetrainTrigger, end: datetime, readings: dict[str, Reading],
                     actions: list[Action]) -> None:
        """Promote a pass; keep an inconclusive candidate expected to gain; remember a retrain without gain."""
        spec = self.spec
        if gate.passed:
            actions.append(Action(ActionKind.GATE_PASSED, gate.summary(), "passed"))
            actions.append(Action(ActionKind.PROMOTED, f"v{candidate.version} serves from the next window "
                                  "(canary not replayed)", candidate.version))
            self.champion, self.kept, self.tried = candidate, None, None
            return
        if gate.verdict is ValidationVerdict.INCONCLUSIVE:
            unsure = ",".join(c.name for c in gate.checks if c.inconclusive)
            actions.append(Action(ActionKind.GATE_INCONCLUSIVE, gate.summary(), unsure))
            if gate.expects_gain and gate.rows_needed is not None:
                pending = PendingCandidate(candidate.version, trigger, end, gate.rows_needed,
                                           pending_until(spec, end), trigger.metric)
                self.kept = KeptCandidate(pending, candidate, holdout)
                actions.append(Action(ActionKind.CANDIDATE_PENDING, pending.describe(), str(pending.rows_needed)))
                return
        else:
            failed = ",".join(c.name for c in gate.failures)
            actions.append(Action(ActionKind.GATE_FAILED, gate.summary(), failed))
        if not gate.expects_gain:  # a candidate better than the champion but held back (floor, slices) is not this
            judged = {m: r for m, r in readings.items() if m in (spec.primary_metric, trigger.metric)}
            tried = TriedRetrain(trigger, end, tried_until(spec, end), judged, retrain_kind(spec, trigger))
            self.tried = latest_tried([t for t in (self.tried, tried) if t is not None])  # as the registry reads it

    def _revalidate(self, end: datetime, actions: list[Action]) -> None:
        """Judge the pending candidate again on its hold-out plus the rows labelled since it was made, once
        there are as many as it needs; drop it when it expires first."""
        assert self.kept is not None
        spec, kept = self.spec, self.kept
        pending = kept.pending
        new = self._known(pending.created, end, end)
        new = labelled_frame(new, spec) if len(new) else new
        if len(new) < pending.rows_needed:
            if end >= pending.expires:
                actions.append(Action(ActionKind.PENDING_EXPIRED, f"{pending.describe()}: {len(new)} arrived; "
                                      "dropped", pending.version))
                self.kept = None
            return
        holdout = pd.concat([kept.holdout[spec.feature_names + [spec.target]], new[spec.feature_names + [spec.target]]],
                            ignore_index=True)
        gate = validate_candidate(spec, kept.version.contender(), self.champion.contender(), holdout,
                                  trigger_metric=pending.trigger_metric, refresh=pending.trigger.refresh)
        actions.append(Action(ActionKind.REVALIDATED, f"v{pending.version} on {len(holdout)} rows ({len(new)} "
                              f"labelled since it was made): {gate.verdict.value}", gate.verdict.value))
        self.kept = None
        if gate.verdict is ValidationVerdict.INCONCLUSIVE and end >= pending.expires:
            actions.append(Action(ActionKind.PENDING_EXPIRED, f"{pending.describe()}: still inconclusive; dropped",
                                  pending.version))
            return
        self._record_gate(gate, kept.version, holdout, pending.trigger, pending.created, {}, actions)
        if self.kept is not None:  # still inconclusive: keep the first deadline, count from the new hold-out
            self.kept = KeptCandidate(PendingCandidate(pending.version, pending.trigger, end, self.kept.pending.rows_needed,
                                               pending.expires, pending.trigger_metric), kept.version, holdout)

    # ------------------------------------------------------------------ the oracle
    def _oracle(self, index: int, start: datetime, rows: pd.DataFrame,
                labelled: np.ndarray) -> dict[str, float] | None:
        before = self._rows(start - self.training_window, start)
        return cross_fitted_oracle(self.spec, rows[labelled], before[before[self.spec.target].notna().to_numpy()],
                                   np.random.default_rng([self.config.seed, index]))
