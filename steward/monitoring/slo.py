"""Service-level objectives per model: daily compliance from the prediction log, kept, and the error budget spent.

Three objectives from the spec's ``slo`` section: p95 latency, availability (the share of answered
requests that were not 5xx) and accuracy (the primary metric over labelled traffic). Each UTC day
is computed from the log into an ``SLODay`` and stored as one record of the record store,
``<store>/slo/model=<name>/date=<YYYY-MM-DD>.json``; computing a day again replaces its file, so a
day is recomputed as its labels arrive and the record is the same however often it runs. The day
keeps the targets it was judged against, so a later change of the spec does not rewrite history.
``summarize_slo`` turns stored days into compliance over time and the error budget spent.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

import numpy as np
import pandas as pd

from steward.monitoring.health.accuracy import MIN_LABELLED
from steward.monitoring.health.outcomes import metric_value, outcomes
from steward.monitoring.health.performance import SLOW_SHARE
from steward.monitoring.health.report import served_requests
from steward.monitoring.records import RecordStore, record_key
from steward.monitoring.summaries.traffic import TrafficSummary
from steward.spec import ModelSpec
from steward.training.evaluation import higher_is_better


class Compliance(StrEnum):
    MET = "met"
    MISSED = "missed"
    NO_DATA = "no_data"


@dataclass(frozen=True)
class SLOTargets:
    p95_latency_ms: float
    availability: float
    accuracy_metric: str
    min_accuracy: float | None
    higher_is_better: bool = True

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> SLOTargets:
        metric = spec.primary_metric
        return cls(spec.slo.p95_latency_ms, spec.slo.availability, metric, spec.slo.min_accuracy,
                   higher_is_better(metric))


@dataclass(frozen=True)
class SLODay:
    """One model's service levels over one UTC day, as measured from the log at ``as_of``."""

    model: str
    day: date
    complete: bool  # False while the day is still running when computed
    as_of: datetime
    targets: SLOTargets
    requests: int
    failed_requests: int  # answered 5xx (the model raised)
    slow_requests: int  # slower than the p95 target
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    labelled: int
    accuracy: float | None

    @property
    def availability(self) -> float | None:
        return 1 - self.failed_requests / self.requests if self.requests else None

    @property
    def latency_compliance(self) -> Compliance:
        if self.p95_ms is None:
            return Compliance.NO_DATA
        return Compliance.MET if self.p95_ms <= self.targets.p95_latency_ms else Compliance.MISSED

    @property
    def availability_compliance(self) -> Compliance:
        if self.availability is None:
            return Compliance.NO_DATA
        return Compliance.MET if self.availability >= self.targets.availability else Compliance.MISSED

    @property
    def accuracy_compliance(self) -> Compliance:
        target = self.targets.min_accuracy
        if target is None or self.accuracy is None or np.isnan(self.accuracy):
            return Compliance.NO_DATA
        met = self.accuracy >= target if self.targets.higher_is_better else self.accuracy <= target
        return Compliance.MET if met else Compliance.MISSED

    def to_json(self) -> str:
        record = asdict(self)
        record.update(day=self.day.isoformat(), as_of=self.as_of.isoformat(),
                      availability=self.availability,
                      compliance={"latency": self.latency_compliance.value,
                                  "availability": self.availability_compliance.value,
                                  "accuracy": self.accuracy_compliance.value})
        return json.dumps(record, indent=1)

    @classmethod
    def from_json(cls, text: str) -> SLODay:
        record = json.loads(text)
        record.pop("availability", None)
        record.pop("compliance", None)
        record["day"] = date.fromisoformat(record["day"])
        record["as_of"] = datetime.fromisoformat(record["as_of"])
        record["targets"] = SLOTargets(**record["targets"])
        return cls(**record)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def days_between(start: datetime, end: datetime) -> list[date]:
    """UTC days that overlap ``[start, end)``."""
    first, last = start.astimezone(UTC).date(), (end.astimezone(UTC) - timedelta(microseconds=1)).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def compute_slo_day(
    spec: ModelSpec, day: date, predictions: pd.DataFrame, labelled: pd.DataFrame, *, as_of: datetime,
) -> SLODay:
    """A day's service levels from its logged predictions and those of them labelled by ``as_of``.

    Latency and availability count requests the clients got an answer to (one per request id;
    shadow copies left out). Accuracy is judged once ``MIN_LABELLED`` served rows carry a label.
    """
    return slo_day_of(spec, day, TrafficSummary.of_requests(served_requests(predictions), spec), labelled, as_of=as_of)


def slo_day_of(
    spec: ModelSpec, day: date, traffic: TrafficSummary, labelled: pd.DataFrame, *, as_of: datetime,
    labelled_count: int | None = None,
) -> SLODay:
    """``compute_slo_day`` on the day's answered requests summarised (exact, or streamed at volume).

    ``labelled`` may be a uniform sample of the day's labelled rows; ``labelled_count`` then says how many
    served, answered rows had a label (the record keeps the count, the accuracy comes from the sample).
    """
    targets = SLOTargets.from_spec(spec)
    if traffic.latency_limit_ms != targets.p95_latency_ms:
        raise ValueError(f"the traffic was summarised against {traffic.latency_limit_ms} ms, the SLO's p95 target is "
                         f"{targets.p95_latency_ms} ms; summarise it with TrafficSummary.for_spec(spec)")
    p50 = p95 = p99 = None
    if traffic.requests:
        p50, p95, p99 = traffic.latency().percentiles([50, 95, 99])
    answered = labelled[labelled["served"].astype(bool) & (labelled["status"] == "ok")]
    accuracy = None
    if len(answered) >= MIN_LABELLED:
        accuracy = metric_value(targets.accuracy_metric, outcomes(answered, spec.task, spec.positive_label))
    return SLODay(
        model=spec.name, day=day, complete=as_of >= day_bounds(day)[1], as_of=as_of, targets=targets,
        requests=traffic.requests, failed_requests=traffic.errors, slow_requests=traffic.slow,
        p50_ms=p50, p95_ms=p95, p99_ms=p99, labelled=len(answered) if labelled_count is None else labelled_count,
        accuracy=accuracy,
    )


@dataclass(frozen=True)
class ErrorBudget:
    """Bad events allowed by an objective over a period, and how many happened."""

    objective: str
    allowed: float
    spent: int

    @property
    def spent_share(self) -> float | None:
        """1.0 = the whole budget gone; None when there was no traffic to allow anything."""
        if self.allowed <= 0:
            return None if self.spent == 0 else float("inf")
        return self.spent / self.allowed


@dataclass(frozen=True)
class ObjectiveCompliance:
    objective: str
    met: int
    missed: int
    no_data: int

    @property
    def share(self) -> float | None:
        judged = self.met + self.missed
        return self.met / judged if judged else None


@dataclass(frozen=True)
class SLOReport:
    model: str
    first_day: date
    last_day: date
    days: tuple[SLODay, ...]
    compliance: tuple[ObjectiveCompliance, ...]
    budgets: tuple[ErrorBudget, ...]

    def to_table_rows(self) -> list[dict[str, str]]:
        """One row per day, oldest first, for a Prefect table artifact or the CLI."""
        def number(value: float | None, pattern: str) -> str:
            return "n/a" if value is None else format(value, pattern)

        return [
            {
                "day": d.day.isoformat() + ("" if d.complete else " (partial)"),
                "requests": str(d.requests),
                "p95_ms": number(d.p95_ms, ".1f"),
                "latency": d.latency_compliance.value,
                "availability": number(d.availability, ".4%"),
                "availability_slo": d.availability_compliance.value,
                "accuracy": number(d.accuracy, ".3f") + (f" ({d.labelled} labelled)" if d.labelled else ""),
                "accuracy_slo": d.accuracy_compliance.value,
            }
            for d in self.days
        ]

    def describe(self) -> str:
        parts = []
        for c in self.compliance:
            share = "no data" if c.share is None else f"{c.share:.0%} of {c.met + c.missed} days met"
            parts.append(f"{c.objective}: {share}")
        for b in self.budgets:
            spent = "no traffic" if b.spent_share is None else f"{b.spent_share:.0%} of its error budget spent"
            parts.append(f"{b.objective} budget: {spent}")
        return f"{self.model} SLOs {self.first_day} to {self.last_day}: " + "; ".join(parts)


def summarize_slo(model: str, days: Iterable[SLODay], first_day: date, last_day: date) -> SLOReport:
    """Compliance per objective over the days, and the error budget spent.

    Budgets add up bad events against each day's own target: availability allows
    ``(1 - target) x requests`` failed requests; p95 latency allows 5% of requests over the limit.
    """
    days = tuple(sorted((d for d in days if first_day <= d.day <= last_day), key=lambda d: d.day))

    def tally(objective: str, states: list[Compliance]) -> ObjectiveCompliance:
        return ObjectiveCompliance(objective, states.count(Compliance.MET), states.count(Compliance.MISSED),
                                   states.count(Compliance.NO_DATA))

    compliance = (
        tally("latency", [d.latency_compliance for d in days]),
        tally("availability", [d.availability_compliance for d in days]),
        tally("accuracy", [d.accuracy_compliance for d in days]),
    )
    budgets = (
        ErrorBudget("availability", sum((1 - d.targets.availability) * d.requests for d in days),
                    sum(d.failed_requests for d in days)),
        ErrorBudget("latency", sum(SLOW_SHARE * d.requests for d in days), sum(d.slow_requests for d in days)),
    )
    return SLOReport(model, first_day, last_day, days, compliance, budgets)


class SLOStore:
    """Daily SLO records in the record store: ``<store>/slo/model=<name>/date=<day>.json``."""

    def __init__(self, store_uri: str) -> None:
        self._records = RecordStore(store_uri, "slo")
        self.root = self._records.root

    def write(self, record: SLODay) -> str:
        """Store the day, replacing an earlier record of it (one file per day, whole or not at all)."""
        return self._records.put(record.model, f"date={record.day.isoformat()}", record.to_json())

    def read(self, model: str, first_day: date, last_day: date) -> list[SLODay]:
        """Stored days of ``model`` from ``first_day`` to ``last_day`` (inclusive), oldest first."""
        days = []
        for path in self._records.paths(model):
            key = record_key(path)
            if not key.startswith("date="):
                continue
            if first_day <= date.fromisoformat(key.removeprefix("date=")) <= last_day:
                days.append(SLODay.from_json(self._records.read(path)))
        return days
