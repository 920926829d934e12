"""What a backtest returns: per window, what each strategy scored and what Steward did and why."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any


class Strategy(StrEnum):
    STEWARD = "steward"  # Steward's own procedures decide: alarms, retrains, the gate, promotion
    FROZEN = "frozen"  # the first model serves forever
    EVERY_WINDOW = "every_window"  # retrain every window on the same training window, promote unconditionally
    ORACLE = "oracle"  # trained with the window's own labels (cross-fitted): the ceiling


class ActionKind(StrEnum):
    DRIFT_ALARM = "drift_alarm"  # the drift report announced material drift (the event)
    HEALTH_ALARM = "health_alarm"  # the health check was degraded (the event)
    # code: RetrainCode (cooldown, weekly_budget_spent) or RetrainSkip (expected_below_floor); a retrain that ran
    # was within the budget by construction, so its code says what it built instead
    RETRAIN_SKIPPED = "retrain_skipped"  # a retrain was wanted but the cooldown, the budget or the data said no
    RETRAIN_FAILED = "retrain_failed"  # the training data failed its checks
    RETRAINED = "retrained"  # code: RetrainKind (a new model, or the champion's threshold re-fitted)
    GATE_PASSED = "gate_passed"
    GATE_FAILED = "gate_failed"
    GATE_INCONCLUSIVE = "gate_inconclusive"
    PROMOTED = "promoted"  # serves from the next window (the canary is not replayed)
    RETRAIN_FOLDED = "retrain_folded"  # wanted, but a pending candidate or a no-gain retrain covers it (RetrainNeedCode)
    CANDIDATE_PENDING = "candidate_pending"  # inconclusive with an expected gain: kept for revalidation
    REVALIDATED = "revalidated"  # a pending candidate judged again with the labelled rows it needed
    PENDING_EXPIRED = "pending_expired"  # a pending candidate not decided in time, dropped


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    detail: str
    code: str | None = None  # the typed code behind it (DriftReason, RetrainKind, RetrainCode, failed gate checks)


ALL_STRATEGIES = (Strategy.STEWARD, Strategy.FROZEN, Strategy.EVERY_WINDOW, Strategy.ORACLE)


@dataclass(frozen=True)
class BacktestConfig:
    """How the history is replayed: window length, the first champion's training span, label delay."""

    cadence: timedelta = timedelta(days=7)
    initial_training: timedelta = timedelta(days=28)
    label_delay: timedelta = timedelta(0)
    label_time_column: str | None = None
    start: datetime | None = None  # the first window's start (default: first row + initial_training)
    end: datetime | None = None  # the last window ends here (default: after the last row)
    strategies: tuple[Strategy, ...] = ALL_STRATEGIES
    seed: int = 0
    # Rows a retrain trains on (default: the spec's data.window_days, else initial_training).
    training_window: timedelta | None = None

    def __post_init__(self) -> None:
        for name in ("cadence", "initial_training"):
            if getattr(self, name) <= timedelta(0):
                raise ValueError(f"BacktestConfig.{name} must be positive, got {getattr(self, name)}")
        if self.label_delay < timedelta(0):
            raise ValueError(f"BacktestConfig.label_delay must be >= 0, got {self.label_delay}")
        if self.training_window is not None and self.training_window <= timedelta(0):
            raise ValueError(f"BacktestConfig.training_window must be positive, got {self.training_window}")
        unknown = [s for s in self.strategies if not isinstance(s, Strategy)]
        if unknown or not self.strategies:
            raise ValueError(f"BacktestConfig.strategies: need some of {[s.value for s in Strategy]}, got {unknown}")
        object.__setattr__(self, "strategies", tuple(dict.fromkeys((Strategy.STEWARD, *self.strategies))))

    def to_dict(self) -> dict[str, Any]:
        return {
            "cadence_hours": self.cadence.total_seconds() / 3600,
            "initial_training_hours": self.initial_training.total_seconds() / 3600,
            "label_delay_hours": self.label_delay.total_seconds() / 3600,
            "label_time_column": self.label_time_column,
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "strategies": [s.value for s in self.strategies],
            "seed": self.seed,
            "training_window_hours": self.training_window.total_seconds() / 3600 if self.training_window else None,
        }


@dataclass(frozen=True)
class WindowOutcome:
    """One window ``[start, end)``: each strategy's metrics on its labels, and Steward's decisions at ``end``."""

    index: int
    start: datetime
    end: datetime
    rows: int
    labelled_rows: int  # rows with a label (all strategies are measured on these)
    served_version: str  # Steward's champion during the window
    metrics: dict[Strategy, dict[str, float]]
    drift_material: bool
    drift_code: str  # a DriftReason value, or NOT_CHECKED
    drift_announced: bool
    drift_columns: tuple[str, ...]
    health_codes: tuple[str, ...]  # IssueCode values of the health report at ``end``
    actions: tuple[Action, ...]
    health_verdict: str = "healthy"
    labels_known_at_end: int = 0  # the window's rows whose label was known by ``end``
    late_labels: int = 0  # earlier windows' predictions whose labels arrived in this one (health judged them too)
    baseline_retrains: tuple[Strategy, ...] = ()  # baselines that trained a model for this window

    def did(self, kind: ActionKind) -> bool:
        return any(a.kind is kind for a in self.actions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index, "start": self.start.isoformat(), "end": self.end.isoformat(), "rows": self.rows,
            "labelled_rows": self.labelled_rows, "labels_known_at_end": self.labels_known_at_end,
            "late_labels": self.late_labels,
            "served_version": self.served_version,
            "metrics": {s.value: {k: _finite(v) for k, v in m.items()} for s, m in self.metrics.items()},
            "drift_material": self.drift_material, "drift_code": self.drift_code,
            "drift_announced": self.drift_announced, "drift_columns": list(self.drift_columns),
            "health_verdict": self.health_verdict, "health_codes": list(self.health_codes),
            "actions": [{"kind": a.kind.value, "detail": a.detail, "code": a.code} for a in self.actions],
            "baseline_retrains": [s.value for s in self.baseline_retrains],
        }


NOT_CHECKED = "not_checked"
MIN_GAP = 0.005  # a frozen-to-oracle gap smaller than this is noise: no share of it is reported  # drift_code of a window with too few rows to measure drift


@dataclass(frozen=True)
class StrategySummary:
    strategy: Strategy
    windows: int
    primary_metric: str
    mean_primary: float  # weighted by each window's labelled rows
    mean_accuracy: float | None
    retrains: int
    promotions: int
    alarms: int


@dataclass(frozen=True)
class BacktestSummary:
    model: str
    primary_metric: str
    strategies: dict[Strategy, StrategySummary]

    @property
    def gap_closed(self) -> float | None:
        """Share of the FROZEN-to-ORACLE gap in the primary metric that Steward closed (None without both,
        or when the gap is under ``MIN_GAP``: nothing to close). Lower-is-better metrics work the same way."""
        s = self.strategies
        if not {Strategy.FROZEN, Strategy.ORACLE, Strategy.STEWARD} <= set(s):
            return None
        gap = s[Strategy.ORACLE].mean_primary - s[Strategy.FROZEN].mean_primary
        if not math.isfinite(gap) or abs(gap) < MIN_GAP:
            return None
        return (s[Strategy.STEWARD].mean_primary - s[Strategy.FROZEN].mean_primary) / gap

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "strategy": s.strategy.value, f"mean {self.primary_metric}": _round(s.mean_primary),
                "mean accuracy": _round(s.mean_accuracy), "retrains": s.retrains, "promotions": s.promotions,
                "alarms": s.alarms,
            }
            for s in self.strategies.values()
        ]

    def to_text(self) -> str:
        """A fixed-width table for a terminal."""
        header = ["strategy", f"mean {self.primary_metric}", "mean accuracy", "retrains", "promotions", "alarms"]
        body = [[str(v) if v is not None else "" for v in row.values()] for row in self.rows()]
        widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in body]
        closed = self.gap_closed
        if closed is not None:
            lines.append(f"Steward closed {closed:.0%} of the {self.primary_metric} gap between frozen and oracle.")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "primary_metric": self.primary_metric, "gap_closed": _finite(self.gap_closed),
                "strategies": self.rows()}


@dataclass(frozen=True)
class BacktestResult:
    model: str
    config: BacktestConfig
    windows: tuple[WindowOutcome, ...]
    primary_metric: str = "roc_auc"
    initial_training_rows: int = 0
    seconds: float = 0.0
    notes: tuple[str, ...] = field(default=())

    def summary(self) -> BacktestSummary:
        summaries = {}
        for strategy in self.config.strategies:
            scored = [w for w in self.windows if strategy in w.metrics and w.labelled_rows]
            summaries[strategy] = StrategySummary(
                strategy=strategy, windows=len(scored), primary_metric=self.primary_metric,
                mean_primary=_weighted(scored, strategy, self.primary_metric),
                mean_accuracy=(_weighted(scored, strategy, "accuracy")
                               if any("accuracy" in w.metrics[strategy] for w in scored) else None),
                retrains=sum(_count(w, strategy, "retrains") for w in self.windows),
                promotions=sum(_count(w, strategy, "promotions") for w in self.windows),
                alarms=sum(_count(w, strategy, "alarms") for w in self.windows),
            )
        return BacktestSummary(self.model, self.primary_metric, summaries)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "primary_metric": self.primary_metric, "config": self.config.to_dict(),
            "initial_training_rows": self.initial_training_rows, "seconds": round(self.seconds, 3),
            "notes": list(self.notes), "summary": self.summary().to_dict(),
            "windows": [w.to_dict() for w in self.windows],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def _count(window: WindowOutcome, strategy: Strategy, what: str) -> int:
    """Retrains, promotions and alarms per strategy in one window."""
    if strategy is Strategy.STEWARD:
        kinds = {"retrains": {ActionKind.RETRAINED}, "promotions": {ActionKind.PROMOTED},
                 "alarms": {ActionKind.DRIFT_ALARM, ActionKind.HEALTH_ALARM}}[what]
        return sum(a.kind in kinds for a in window.actions)
    if what == "alarms":
        return 0  # baselines watch nothing
    if what == "promotions" and strategy is Strategy.ORACLE:
        return 0  # the oracle's models never serve past their own window
    return int(strategy in window.baseline_retrains)


def _weighted(windows: list[WindowOutcome], strategy: Strategy, metric: str) -> float:
    pairs = [(w.metrics[strategy].get(metric, math.nan), w.labelled_rows) for w in windows]
    pairs = [(v, n) for v, n in pairs if math.isfinite(v) and n]
    total = sum(n for _, n in pairs)
    return sum(v * n for v, n in pairs) / total if total else math.nan


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _round(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 4)
