"""Score what a strategy did in a scenario against the scenario's ground truth.

A strategy's run is reduced to a ``DecisionTrace``: per window, whether it raised an alarm, whether it
retrained, and the accuracy of the model it served beside the oracle's on the same labelled rows.  A
backtest gives one trace per strategy; an external alarm (Evidently's dataset drift, NannyML's
estimate) gives a trace of alarms on the same windows.  Every trace is scored by the same rules.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from steward.simulation.suite import ScenarioCase

if TYPE_CHECKING:  # pragma: no cover
    from steward.backtest.result import BacktestResult, Strategy

__all__ = ["CaseScore", "DecisionTrace", "WindowDecision", "alarm_trace", "score_case", "trace_from_backtest"]

RECOVERY_TOLERANCE = 0.01  # "within 1 point of the oracle"
RECOVERY_SPAN = 3  # windows averaged when judging recovery: one day's rows are too few on their own
ALARM_ACTIONS = frozenset({"drift_alarm", "health_alarm"})  # ActionKind values that reach a person


@dataclass(frozen=True)
class WindowDecision:
    start: datetime
    end: datetime
    alarm: bool
    retrained: bool
    accuracy: float | None  # of the model the strategy served in this window
    oracle_accuracy: float | None
    rows: int = 0
    promoted: bool = False  # a retrain of this window serves from the next one


@dataclass(frozen=True)
class DecisionTrace:
    strategy: str
    windows: tuple[WindowDecision, ...]


@dataclass(frozen=True)
class CaseScore:
    """One strategy on one case; accuracy figures are fractions (0.01 = 1 point)."""

    case: str
    strategy: str
    material: bool
    detected: bool | None  # None: nothing a monitor should detect
    delay_cycles: int | None  # from the first window holding material data; 0 = that window's check
    detect_within: int
    false_alarms: int
    quiet_days: float
    retrains: int  # models trained (a retrain the gate then rejected counts)
    promotions: int
    accuracy_lost: float | None  # mean of oracle minus served accuracy over the windows from the onset
    cycles_to_recover: int | None  # from the material window until within 1 point of the oracle
    windows: int

    @property
    def false_alarms_per_90_days(self) -> float | None:
        return None if self.quiet_days <= 0 else self.false_alarms * 90.0 / self.quiet_days

    @property
    def detected_in_time(self) -> bool | None:
        if self.detected is None:
            return None
        return bool(self.detected and self.delay_cycles is not None and self.delay_cycles <= self.detect_within)


def trace_from_backtest(result: BacktestResult, strategy: Strategy | str = "steward") -> DecisionTrace:
    """The trace of one strategy of a backtest; only STEWARD raises alarms."""
    from steward.backtest.result import ActionKind, Strategy

    strategy = Strategy(strategy)
    windows = []
    for window in result.windows:
        served = window.metrics.get(strategy, {})
        oracle = window.metrics.get(Strategy.ORACLE, {})
        if strategy is Strategy.STEWARD:
            alarm = any(a.kind.value in ALARM_ACTIONS for a in window.actions)
            retrained, promoted = window.did(ActionKind.RETRAINED), window.did(ActionKind.PROMOTED)
        else:
            alarm, retrained = False, strategy in window.baseline_retrains
            promoted = retrained and strategy is not Strategy.ORACLE
        windows.append(WindowDecision(
            start=window.start, end=window.end, alarm=alarm, retrained=retrained,
            accuracy=_finite(served.get("accuracy")), oracle_accuracy=_finite(oracle.get("accuracy")),
            rows=window.labelled_rows, promoted=promoted,
        ))
    return DecisionTrace(strategy.value, tuple(windows))


def alarm_trace(name: str, result: BacktestResult, alarms: Sequence[bool]) -> DecisionTrace:
    """An external monitor's alarms on the backtest's windows, serving what FROZEN served (it retrains nothing)."""
    if len(alarms) != len(result.windows):
        raise ValueError(f"alarm_trace: {len(alarms)} alarms for {len(result.windows)} windows; give one per window")
    frozen = trace_from_backtest(result, "frozen")
    windows = tuple(
        WindowDecision(w.start, w.end, bool(a), False, w.accuracy, w.oracle_accuracy, w.rows)
        for w, a in zip(frozen.windows, alarms, strict=True)
    )
    return DecisionTrace(name, windows)


def _index_of(windows: Sequence[WindowDecision], at: datetime | None) -> int | None:
    """The first window whose data reaches ``at`` (it ends after ``at``)."""
    if at is None:
        return None
    for index, window in enumerate(windows):
        if window.end > at:
            return index
    return None


def score_case(case: ScenarioCase, trace: DecisionTrace) -> CaseScore:
    """Detection, delay, false alarms, retrains and accuracy against the oracle, by the case's truth."""
    windows = trace.windows
    onset = _index_of(windows, case.onset)
    material = _index_of(windows, case.material_start)
    alarms = [i for i, w in enumerate(windows) if w.alarm]
    if case.material and onset is not None:
        quiet = windows[:onset]
        false_alarms = sum(1 for i in alarms if i < onset)
        after = [i for i in alarms if i >= onset]
        detected: bool | None = bool(after)
        delay = max(0, after[0] - (material if material is not None else onset)) if after else None
    else:
        quiet, false_alarms, detected, delay = windows, len(alarms), None, None
    quiet_days = sum((w.end - w.start).total_seconds() for w in quiet) / 86_400
    gaps = [_gap(w) for w in windows[onset:]] if onset is not None else []
    known = [g for g in gaps if g is not None]
    return CaseScore(
        case=case.name, strategy=trace.strategy, material=case.material, detected=detected, delay_cycles=delay,
        detect_within=case.detect_within, false_alarms=false_alarms, quiet_days=quiet_days,
        retrains=sum(w.retrained for w in windows), promotions=sum(w.promoted for w in windows),
        accuracy_lost=sum(known) / len(known) if known else None,
        cycles_to_recover=_recovery(windows, material) if case.material and material is not None else None,
        windows=len(windows),
    )


def _gap(window: WindowDecision) -> float | None:
    if window.accuracy is None or window.oracle_accuracy is None:
        return None
    return window.oracle_accuracy - window.accuracy


def _recovery(windows: Sequence[WindowDecision], material: int) -> int | None:
    """Cycles from the material window until the mean gap over the next RECOVERY_SPAN windows is within 1 point."""
    for index in range(material, len(windows)):
        span = [g for g in (_gap(w) for w in windows[index : index + RECOVERY_SPAN]) if g is not None]
        if len(span) == min(RECOVERY_SPAN, len(windows) - index) and span and sum(span) / len(span) <= RECOVERY_TOLERANCE:
            return index - material
    return None


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)
