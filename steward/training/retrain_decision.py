"""Whether a retrain trigger should train anything, and what: a new model or a re-fitted threshold.

A trigger (announced drift, degraded accuracy) asks for a retrain. Three things can make that
retrain useless, and each has its typed answer here:
- a candidate for the same trigger is still pending: its gate was inconclusive and it waits for
  the labelled rows it needs (``PendingCandidate``); a second candidate would repeat it;
- a retrain for the same trigger already found no expected gain (``TriedRetrain``) and nothing new
  has happened since: no new drifted column, and the served model's measured metrics did not fall
  significantly further; the trigger folds into the open ledger entry;
- the ranking still holds and only a threshold-dependent metric fell (accuracy at 0.5 while ROC
  AUC holds): the repair is the champion's threshold re-fitted on recent labelled rows
  (``steward.training.threshold``), not a model trained on a few days of the new world.
When a new model for a drop of the primary metric found no gain, and a threshold-dependent metric or
calibration fell with it, the ranking cannot be repaired from the rows there are, but the threshold
can: the folded trigger becomes the champion's threshold re-fit, once (``RetrainNeedCode.RECALIBRATE``).
Pure: the backtest and the flows hand in what they measured.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from steward.spec import ModelSpec, Task
from steward.training.gates import data_window_end

if TYPE_CHECKING:
    import pandas as pd

    from steward.monitoring.health.report import HealthReport, Issue

# Metrics that depend on the decision threshold, not only on the ranking of the scores.
THRESHOLD_METRICS = frozenset({"accuracy", "precision", "recall", "f1"})
CALIBRATION_METRIC = "brier"  # what a calibration drift alone is repaired on
SIGNIFICANT_Z = 2.326  # one-sided 1%, as the health check judges a drop


@dataclass(frozen=True)
class Reading:
    """A metric of the served model measured on a window's labelled rows, with its standard error."""

    metric: str
    value: float
    error: float
    rows: int


@dataclass(frozen=True)
class RetrainTrigger:
    """What asked for the retrain: announced drift on ``drift_columns``, a degraded ``metric``.

    ``primary_dropped``: the health check found the primary metric (or its label-free estimate)
    degraded, so the ranking itself is in question.
    """

    drift_columns: tuple[str, ...] = ()
    metric: str | None = None
    primary_dropped: bool = False
    input_drift: bool = False  # an announced drift names an input column, not only the model's output
    refresh: bool = False  # no alarm: the champion is older than retrain.refresh_after_days, or a catch-up
    catch_up: bool = False  # the refresh is the catch-up of a concept retrain on lagging labels
    also_fell: str | None = None  # beside the primary, a threshold metric or calibration fell (binary only)
    recalibration: bool = False  # the threshold re-fit after a new model for the primary drop found no gain

    def describe(self) -> str:
        if self.recalibration:
            return f"{self.metric} degraded beside the primary metric, which a new model did not repair"
        parts = [("catch-up on lagging labels" if self.catch_up else "scheduled refresh")] if self.refresh else []
        if self.drift_columns:
            parts.append(f"drift on {', '.join(self.drift_columns)}")
        if self.metric:
            parts.append(f"{self.metric} degraded")
        return " and ".join(parts) or "manual"

    def new_against(self, earlier: RetrainTrigger) -> tuple[str, ...]:
        """Drifted columns this trigger names that ``earlier`` did not (the drift spread)."""
        return tuple(c for c in self.drift_columns if c not in earlier.drift_columns)

    def as_recalibration(self) -> RetrainTrigger:
        """The champion's threshold re-fit for ``also_fell``: what is left to repair when a new model is not."""
        return RetrainTrigger(metric=self.also_fell, recalibration=True)


def retrain_trigger(spec: ModelSpec, *, drift_columns: Sequence[str] = (), metric: str | None = None,
                    primary_dropped: bool = False, also_fell: str | None = None) -> RetrainTrigger:
    """The trigger from what the checks found: the announced drift's columns, the metric that fell.

    A dropped primary metric with no other metric named is the primary; a drift of the model's own
    output (the score) is not input drift. ``also_fell`` (a threshold metric or calibration that fell
    beside the primary) is kept only where a threshold can be re-fitted: a binary classifier.
    """
    from steward.monitoring.drift.monitor import prediction_drift_column

    prediction, _ = prediction_drift_column(spec)
    metric = metric or (spec.primary_metric if primary_dropped else None)
    columns = tuple(dict.fromkeys(drift_columns))
    repairable = (primary_dropped and spec.task is Task.BINARY_CLASSIFICATION and also_fell != spec.primary_metric
                  and (also_fell in THRESHOLD_METRICS or also_fell == CALIBRATION_METRIC))
    return RetrainTrigger(columns, metric, primary_dropped, any(c != prediction for c in columns),
                          also_fell=also_fell if repairable else None)


@dataclass(frozen=True)
class RefreshCheck:
    """Whether the scheduled refresh is due: the champion's training event time against
    ``retrain.refresh_after_days``."""

    due: bool
    reason: str
    catch_up: bool = False

    @property
    def trigger(self) -> RetrainTrigger | None:
        return RetrainTrigger(refresh=True, catch_up=self.catch_up) if self.due else None


def refresh_check(spec: ModelSpec, champion_trained_at: datetime | None, as_of: datetime) -> RefreshCheck:
    """Due once the champion was trained at least ``retrain.refresh_after_days`` before ``as_of``."""
    days = spec.retrain.refresh_after_days
    if days is None:
        return RefreshCheck(False, "no scheduled refresh: retrain.refresh_after_days is not set")
    if champion_trained_at is None:
        return RefreshCheck(False, "no champion to refresh: train and validate a first version")
    age = (as_of - champion_trained_at).total_seconds() / 86400
    trained = f"the champion was trained on data up to {champion_trained_at:%Y-%m-%d %H:%M} UTC, {age:.1f} days"
    if age < days:
        return RefreshCheck(False, f"{trained} before {as_of:%Y-%m-%d %H:%M} UTC; refresh after {days:g}")
    return RefreshCheck(True, f"{trained} before {as_of:%Y-%m-%d %H:%M} UTC (refresh after {days:g})")


@dataclass(frozen=True)
class ChampionTraining:
    """What the champion was trained for and on: its trigger, its training event time, and the event time of
    the newest labelled row it learnt from (``labels_through``), which lags ``trained_at`` when labels come late."""

    trigger: RetrainTrigger | None
    trained_at: datetime
    labels_through: datetime | None


def catches_up(spec: ModelSpec) -> bool:
    """Whether a catch-up can ever be due: it is on, and the model trains on the labelled production log (a
    file's rows never lag a clock)."""
    return spec.retrain.catch_up_lagging_labels and spec.data.kind == "production"


def catch_up_check(spec: ModelSpec, champion: ChampionTraining | None, as_of: datetime) -> RefreshCheck:
    """Due when the champion was trained for a drop of the primary metric on labels that lagged its training by
    more than the retrain cooldown: it learnt the new concept only from the first labels of the change, and the
    rest arrive over the lag. One catch-up, between the cooldown's end and the lag's; its gate is the refresh's."""
    cooldown = timedelta(hours=spec.retrain.cooldown_hours)
    if not spec.retrain.catch_up_lagging_labels:
        return RefreshCheck(False, "no catch-up: retrain.catch_up_lagging_labels is off")
    trigger = champion.trigger if champion is not None else None
    if champion is None or trigger is None or not trigger.primary_dropped or trigger.refresh:
        return RefreshCheck(False, f"no catch-up: the champion was not trained for a drop of {spec.primary_metric}")
    if champion.labels_through is None:
        return RefreshCheck(False, "no catch-up: the champion was not trained on the labelled production log "
                                   "(a file source, or a version from before its lineage recorded the data's end)")
    lag = champion.trained_at - champion.labels_through
    behind = f"its newest training label is {lag.total_seconds() / 86400:.1f} days older than its training"
    if lag <= cooldown:
        return RefreshCheck(False, f"no catch-up: {behind}, within the retrain cooldown")
    if as_of < champion.trained_at + cooldown:
        return RefreshCheck(False, f"catch-up after the cooldown ({behind})")
    if as_of > champion.trained_at + lag + cooldown:
        return RefreshCheck(False, f"no catch-up: {behind}, and those labels have arrived since")
    return RefreshCheck(True, f"catch-up: the champion was trained for a drop of {spec.primary_metric} while labels "
                              f"lagged ({behind}); the change's labels that arrived since train a fresher model",
                        catch_up=True)


def refresh_due(spec: ModelSpec, champion: ChampionTraining | None, model_trained_at: datetime | None,
                as_of: datetime) -> RefreshCheck:
    """The scheduled refresh (by the champion's model age) or, if that is not due, the catch-up."""
    scheduled = refresh_check(spec, model_trained_at, as_of)
    if scheduled.due:
        return scheduled
    catch_up = catch_up_check(spec, champion, as_of)
    return catch_up if catch_up.due else RefreshCheck(False, f"{scheduled.reason}; {catch_up.reason}")


def champion_training_from_tags(tags: Mapping[str, str], trained_at: datetime, *, from_log: bool = True
                                ) -> ChampionTraining:
    """A registered version's ``ChampionTraining``: its recorded trigger and its lineage's data window end
    (the newest row of its training data, all labelled). ``from_log``: the spec trains on the production log
    (``data.kind: production``); a file's rows do not lag a clock, so they give no ``labels_through``."""
    return ChampionTraining(recorded_trigger(tags), trained_at, data_window_end(tags) if from_log else None)


@dataclass(frozen=True)
class HealthTrigger:
    """What a health report asks a retrain for: the metric that fell (None: the primary, when it dropped), and
    when the primary dropped, the threshold metric or calibration that fell with it (``also_fell``)."""

    metric: str | None
    primary_dropped: bool
    also_fell: str | None = None


def health_trigger(report: HealthReport) -> HealthTrigger:
    """The metric whose drop makes a degraded health report ask for a retrain.

    The primary metric (or its label-free estimate) when it dropped; else the secondary metric that
    fell furthest (accuracy while ROC AUC held); else calibration. The health event carries this, so
    the production retrain and the backtest judge the same metric. With a dropped primary, the secondary
    metric or calibration that fell too is ``also_fell``: a threshold re-fit's repair if a new model fails.
    """
    from steward.monitoring.health.report import Area, IssueCode

    issues = [i for i in report.issues if i.area is Area.ACCURACY]
    codes = {i.code for i in issues}
    primary = bool(codes & {IssueCode.ACCURACY_DROP, IssueCode.ACCURACY_BELOW_SLO, IssueCode.CONCEPT_DRIFT,
                            IssueCode.ESTIMATED_ACCURACY_DROP})
    secondary = _secondary_drop(report, issues)
    return HealthTrigger(None, True, secondary) if primary else HealthTrigger(secondary, False)


def _secondary_drop(report: HealthReport, issues: Sequence[Issue]) -> str | None:
    """Of the accuracy ``issues``, the secondary metric that fell furthest (accuracy while ROC AUC held); else
    calibration; else None."""
    from steward.monitoring.health.accuracy import SECONDARY_METRICS
    from steward.monitoring.health.report import Area, IssueCode

    codes = {i.code for i in issues}
    if IssueCode.SECONDARY_METRIC_DROP in codes:
        measured = {k: v for c in report.checks if c.area is Area.ACCURACY for k, v in c.metrics.items()}
        subjects = {i.subject for i in issues if i.code is IssueCode.SECONDARY_METRIC_DROP}
        drops = {m: measured.get(f"{m}_drop[{s}]") for m in SECONDARY_METRICS for s in subjects}
        found = {m: float(d) for m, d in drops.items() if isinstance(d, int | float) and not math.isnan(d)}
        if found:
            return max(found, key=lambda m: found[m])
    return CALIBRATION_METRIC if IssueCode.CALIBRATION_DRIFT in codes else None


def served_readings(spec: ModelSpec, labelled: pd.DataFrame) -> dict[str, Reading]:
    """The served model's primary and secondary metrics on a window's labelled log rows (``label``,
    ``prediction``, ``score``, ``status``), with bootstrap standard errors."""
    from steward.monitoring.health.accuracy import secondary_metrics
    from steward.monitoring.health.outcomes import estimate_metric, outcomes

    rows = labelled[labelled["status"] == "ok"] if "status" in labelled.columns else labelled
    if len(rows) < 2:
        return {}
    o = outcomes(rows, spec.task, spec.positive_label)
    readings = {}
    for metric in (spec.primary_metric, *secondary_metrics(spec)):
        estimate = estimate_metric(metric, o)
        if not math.isnan(estimate.value):
            readings[metric] = Reading(metric, estimate.value, estimate.error, estimate.rows)
    return readings


class RetrainKind(StrEnum):
    TRAIN = "train"  # a new model on the chosen training window
    REFIT_THRESHOLD = "refit_threshold"  # the champion with its threshold re-fitted on recent labelled rows


def retrain_kind(spec: ModelSpec, trigger: RetrainTrigger) -> RetrainKind:
    """A re-fitted threshold when only a threshold-dependent metric (or calibration) of a binary classifier
    fell, the primary metric held and no input drifted; a new model otherwise."""
    threshold_only = (
        spec.task is Task.BINARY_CLASSIFICATION and trigger.metric is not None and not trigger.primary_dropped
        and not trigger.input_drift and trigger.metric != spec.primary_metric
        and (trigger.metric in THRESHOLD_METRICS or trigger.metric == CALIBRATION_METRIC)
    )
    return RetrainKind.REFIT_THRESHOLD if threshold_only else RetrainKind.TRAIN


@dataclass(frozen=True)
class PendingCandidate:
    """A candidate whose gate was inconclusive with an expected gain: kept, revalidated once ``rows_needed``
    more labelled rows exist, blocking a second retrain for the same trigger until decided or ``expires``."""

    version: str
    trigger: RetrainTrigger
    created: datetime  # the event time its data ends at: rows after it are new to it
    rows_needed: int
    expires: datetime
    trigger_metric: str | None = None  # the gate's triggering metric, judged again at revalidation
    new_rows_used: int = 0  # labelled rows since ``created`` already in its last gate (production revalidation)

    def describe(self) -> str:
        return (f"v{self.version} (for {self.trigger.describe()}) waits for {self.rows_needed} more labelled rows, "
                f"until {self.expires:%Y-%m-%d %H:%M} UTC")


@dataclass(frozen=True)
class TriedRetrain:
    """A retrain for ``trigger`` whose gate found no expected gain over keeping the champion, and the served
    model's measured metrics in the window that triggered it: those the gate judged (primary, triggering),
    since a later fall of one of them is what would make another retrain worth it."""

    trigger: RetrainTrigger
    at: datetime
    until: datetime  # forgotten after this: the world had time to give a retrain more rows
    readings: Mapping[str, Reading] = field(default_factory=dict)
    kind: RetrainKind = RetrainKind.TRAIN
    recalibrated: bool = False  # the threshold re-fit for what fell beside the primary was tried after it

    def answers(self, trigger: RetrainTrigger) -> bool:
        """Whether this retrain already tried what ``trigger`` asks: a refresh asks for a fresh model, which a
        re-fitted threshold (the same model) never tried."""
        return not (trigger.refresh and self.kind is RetrainKind.REFIT_THRESHOLD)


class RetrainNeedCode(StrEnum):
    GO = "go"
    CANDIDATE_PENDING = "candidate_pending"  # a kept candidate for the same trigger waits for its rows
    NO_NEW_EVIDENCE = "no_new_evidence"  # the same trigger found no gain, and nothing moved since
    RECALIBRATE = "recalibrate"  # a new model found no gain; re-fit the champion's threshold for what fell beside


@dataclass(frozen=True)
class RetrainNeed:
    code: RetrainNeedCode
    reason: str
    trigger: RetrainTrigger | None = None  # what to build for when it is not the asked trigger (RECALIBRATE)

    @property
    def go(self) -> bool:
        return self.code in (RetrainNeedCode.GO, RetrainNeedCode.RECALIBRATE)


def moved_since(before: Mapping[str, Reading], now: Mapping[str, Reading], limit: float,
                higher_is_better: Mapping[str, bool]) -> Reading | None:
    """The first metric that fell by more than ``limit`` and significantly (both standard errors) since
    ``before``; None when none did."""
    for metric, then in before.items():
        current = now.get(metric)
        if current is None or math.isnan(current.value) or math.isnan(then.value):
            continue
        drop = (then.value - current.value) if higher_is_better.get(metric, True) else (current.value - then.value)
        if drop > limit and drop >= SIGNIFICANT_Z * math.hypot(then.error, current.error):
            return current
    return None


def decide_retrain_need(
    trigger: RetrainTrigger, now: datetime, *, pending: PendingCandidate | None, tried: TriedRetrain | None,
    readings: Mapping[str, Reading], limit: float, higher_is_better: Mapping[str, bool],
) -> RetrainNeed:
    """Train for ``trigger`` at ``now``, or fold it into the open entry (a pending candidate, a tried retrain)."""
    if pending is not None and now < pending.expires:
        spread = trigger.new_against(pending.trigger)
        if not spread:
            return RetrainNeed(RetrainNeedCode.CANDIDATE_PENDING,
                               f"{trigger.describe()}: candidate {pending.describe()}; no second retrain for the "
                               "same trigger")
    if tried is not None and now < tried.until and tried.answers(trigger):
        spread = trigger.new_against(tried.trigger)
        moved = moved_since(tried.readings, readings, limit, higher_is_better)
        if not spread and moved is None and trigger.also_fell and tried.kind is RetrainKind.TRAIN \
                and not tried.recalibrated:
            return RetrainNeed(RetrainNeedCode.RECALIBRATE,
                               f"{trigger.describe()}: the retrain for it at {tried.at:%Y-%m-%d %H:%M} UTC found no "
                               f"expected gain, and {trigger.also_fell} fell too: the champion's threshold is "
                               "re-fitted instead", trigger.as_recalibration())
        if not spread and moved is None:
            measured = ", ".join(f"{r.metric} {r.value:.3f} (then {tried.readings[m].value:.3f})"
                                 for m, r in readings.items() if m in tried.readings) or "no measured metric"
            return RetrainNeed(RetrainNeedCode.NO_NEW_EVIDENCE,
                               f"{trigger.describe()}: the retrain for it at {tried.at:%Y-%m-%d %H:%M} UTC found no "
                               f"expected gain, and nothing new since (no new drifted column; {measured}: not "
                               f"significantly lower by more than {limit:g}); folded into the open entry until "
                               f"{tried.until:%Y-%m-%d %H:%M} UTC")
    return RetrainNeed(RetrainNeedCode.GO, f"{trigger.describe()}: retrain")


def latest_tried(tried: Sequence[TriedRetrain]) -> TriedRetrain | None:
    """The memory a repeat trigger is judged by, from the live tried retrains oldest first: the newest one; but
    when that is the threshold re-fit a new model's failure led to, the new model's own memory, re-fit tried."""
    if not tried:
        return None
    newest = tried[-1]
    if not newest.trigger.recalibration:
        return newest
    behind = [t for t in tried[:-1] if t.kind is RetrainKind.TRAIN and t.at <= newest.at]
    return replace(behind[-1], recalibrated=True) if behind else newest


def pending_until(spec: ModelSpec, created: datetime) -> datetime:
    return created + timedelta(days=spec.retrain.pending_days)


def tried_until(spec: ModelSpec, at: datetime) -> datetime:
    return at + timedelta(days=spec.retrain.no_gain_days)


# --- the registry's record of a pending candidate -------------------------------------------------

TRIGGER_METRIC_TAG = "steward.retrain.trigger_metric"  # set by the retrain flow: the gate judges it too
PENDING_STAGE = "inconclusive"  # steward.stage of a candidate kept for revalidation
EXPIRED_STAGE = "expired"  # a pending candidate not decided within retrain.pending_days
ROWS_NEEDED_TAG = "steward.validation.rows_needed"
EXPECTS_GAIN_TAG = "steward.validation.expects_gain"
REVALIDATION_ROWS_TAG = "steward.revalidation.new_rows"  # new labelled rows in its last revalidation


def pending_from_tags(spec: ModelSpec, version: str, tags: Mapping[str, str], created: datetime
                      ) -> PendingCandidate | None:
    """A registered version's pending state: inconclusive with the rows it needs (None otherwise).

    ``created`` is its training event time (``trained_as_of``): labelled rows after it are new to it.
    """
    if tags.get("steward.stage") != PENDING_STAGE or tags.get("steward.archived") == "true":
        return None
    if tags.get(EXPECTS_GAIN_TAG) == "false":  # inconclusive but expected worse than the champion: not kept
        return None
    needed = tags.get(ROWS_NEEDED_TAG)
    if not needed or not needed.isdigit():
        return None
    metric = tags.get(TRIGGER_METRIC_TAG) or None
    used = tags.get(REVALIDATION_ROWS_TAG, "0")
    trigger = recorded_trigger(tags) or RetrainTrigger(metric=metric)
    return PendingCandidate(version, trigger, created, int(needed), pending_until(spec, created),
                            metric, int(used) if used.isdigit() else 0)


# --- the registry's record of a retrain's trigger, and of a retrain with no expected gain ----------

TRIGGER_TAG = "steward.retrain.trigger"  # the trigger (columns, metric, primary) as JSON
READINGS_TAG = "steward.retrain.readings"  # the served model's judged metrics when it was triggered, as JSON


def trigger_tags(trigger: RetrainTrigger, readings: Mapping[str, Reading]) -> dict[str, str]:
    """The version tags that let a later trigger ask whether anything moved since this retrain."""
    return {
        TRIGGER_TAG: json.dumps({"drift_columns": list(trigger.drift_columns), "metric": trigger.metric,
                                 "primary_dropped": trigger.primary_dropped, "input_drift": trigger.input_drift,
                                 "refresh": trigger.refresh, "catch_up": trigger.catch_up,
                                 "also_fell": trigger.also_fell, "recalibration": trigger.recalibration}),
        READINGS_TAG: json.dumps({m: [r.value, r.error, r.rows] for m, r in readings.items()}),
    }


def trigger_from_json(raw: Mapping[str, Any]) -> RetrainTrigger:
    """A trigger as ``trigger_tags`` recorded it."""
    return RetrainTrigger(tuple(raw.get("drift_columns") or ()), raw.get("metric"), bool(raw.get("primary_dropped")),
                          bool(raw.get("input_drift")), bool(raw.get("refresh")), bool(raw.get("catch_up")),
                          raw.get("also_fell"), bool(raw.get("recalibration")))


def recorded_trigger(tags: Mapping[str, str]) -> RetrainTrigger | None:
    """The trigger a version was retrained for (its ``steward.retrain.trigger`` tag), None if it has none."""
    raw = _decoded(tags.get(TRIGGER_TAG))
    return trigger_from_json(raw) if isinstance(raw, dict) else None


def _decoded(text: str | None) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def tried_from_tags(spec: ModelSpec, tags: Mapping[str, str], at: datetime, champion_version: str | None
                    ) -> TriedRetrain | None:
    """A registered retrain whose gate against the current champion found no expected gain (None otherwise).

    ``at``: its training event time. Judged against another champion, it says nothing about this one.
    """
    if tags.get(EXPECTS_GAIN_TAG) != "false" or tags.get("steward.validation.status") == "passed":
        return None
    if champion_version is None or tags.get("steward.validation.against") != champion_version:
        return None
    trigger = recorded_trigger(tags)
    if trigger is None:
        return None
    measured = _decoded(tags.get(READINGS_TAG)) or {}
    judged = (spec.primary_metric, trigger.metric)
    readings = {m: Reading(m, float(v[0]), float(v[1]), int(v[2])) for m, v in measured.items()
                if m in judged and isinstance(v, list) and len(v) == 3}
    return TriedRetrain(trigger, at, tried_until(spec, at), readings, retrain_kind(spec, trigger))
