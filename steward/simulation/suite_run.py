"""Run one scenario case through the backtest and the baselines, and score every strategy the same way.

Steward, FROZEN and ORACLE come from one daily backtest; the weekly scheduled retrain is EVERY_WINDOW
in a second backtest at a weekly cadence (scored against that run's own oracle); Evidently's default
dataset-drift alarm runs on the same daily windows against the first champion's training rows.
Anything outside this process (NannyML in its own environment) gives its alarms to ``alarm_trace``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import pandas as pd

from steward.backtest import BacktestConfig, BacktestResult, Strategy, WindowOutcome, run_backtest
from steward.simulation.scoring import CaseScore, DecisionTrace, alarm_trace, score_case, trace_from_backtest
from steward.simulation.suite import START, ScenarioCase, SuiteSize, scenario_spec
from steward.spec import ModelSpec

__all__ = ["CaseRun", "EVIDENTLY", "WEEKLY", "evidently_alarms", "run_case"]

DAILY = timedelta(days=1)
WEEKLY = "weekly_retrain"
EVIDENTLY = "evidently_default"
EVIDENTLY_DRIFT_SHARE = 0.5  # DataDriftPreset's default: dataset drift when half the columns drift


@dataclass(frozen=True)
class CaseRun:
    """A case's history, backtests, traces and scores (by strategy name)."""

    case: ScenarioCase
    spec: ModelSpec
    history: pd.DataFrame = field(repr=False)
    daily: BacktestResult = field(repr=False)
    weekly: BacktestResult | None = field(repr=False)
    traces: dict[str, DecisionTrace]
    scores: dict[str, CaseScore]

    def with_trace(self, trace: DecisionTrace) -> CaseRun:
        """This run with one more (external) strategy scored."""
        return CaseRun(self.case, self.spec, self.history, self.daily, self.weekly,
                       {**self.traces, trace.strategy: trace}, {**self.scores, trace.strategy: score_case(self.case, trace)})


def case_history(case: ScenarioCase) -> pd.DataFrame:
    """Every row of the case's world, from the start of the first champion's training to the last window."""
    return case.scenario.generate(START, case.end)


def run_case(
    case: ScenarioCase, size: SuiteSize, seed: int = 0, *, weekly: bool = True, evidently: bool = True,
    spec: ModelSpec | None = None, on_window: Callable[[WindowOutcome], None] | None = None,
) -> CaseRun:
    """Backtest ``case`` daily (STEWARD, FROZEN, ORACLE), weekly (EVERY_WINDOW), and score the strategies."""
    spec = spec or scenario_spec(case.scenario, size.training_days, size.trees)
    history = case_history(case)
    training = timedelta(days=size.training_days)
    base = dict(initial_training=training, label_time_column="label_available_at",
                start=case.first_window.to_pydatetime(), end=case.end.to_pydatetime(), seed=seed)
    daily = run_backtest(spec, history, BacktestConfig(
        cadence=DAILY, strategies=(Strategy.STEWARD, Strategy.FROZEN, Strategy.ORACLE), **base), on_window=on_window)
    traces = {s.value: trace_from_backtest(daily, s) for s in (Strategy.STEWARD, Strategy.FROZEN)}
    weekly_result = None
    if weekly:
        weekly_result = run_backtest(spec, history, BacktestConfig(
            cadence=timedelta(days=7), strategies=(Strategy.EVERY_WINDOW, Strategy.ORACLE), **base))
        traces[WEEKLY] = _renamed(trace_from_backtest(weekly_result, Strategy.EVERY_WINDOW), WEEKLY)
    if evidently:
        traces[EVIDENTLY] = alarm_trace(EVIDENTLY, daily, evidently_alarms(spec, history, daily, case.first_window))
    return CaseRun(case, spec, history, daily, weekly_result, traces,
                   {name: score_case(case, trace) for name, trace in traces.items()})


def evidently_alarms(
    spec: ModelSpec, history: pd.DataFrame, result: BacktestResult, first_window: pd.Timestamp,
) -> list[bool]:
    """Evidently's DataDriftPreset with its defaults on each window against the first champion's training
    rows: True where it reports dataset drift (a window without rows raises no alarm)."""
    from steward.monitoring.drift.evidently_adapter import evidently_report, parse_snapshot

    assert spec.timestamp_column is not None
    times = pd.to_datetime(history[spec.timestamp_column], utc=True)
    start = first_window - pd.Timedelta(days=spec.data.window_days or 0)
    reference = history[(times >= start) & (times < first_window)]
    numeric, categorical = list(spec.numeric_features), list(spec.categorical_features)
    alarms = []
    for window in result.windows:
        current = history[(times >= pd.Timestamp(window.start)) & (times < pd.Timestamp(window.end))]
        if len(current) < 2:
            alarms.append(False)
            continue
        snapshot = evidently_report(reference, current, numeric, categorical, None, None, None,
                                    EVIDENTLY_DRIFT_SHARE)
        alarms.append(parse_snapshot(snapshot, numeric + categorical, None, EVIDENTLY_DRIFT_SHARE).dataset_drift)
    return alarms


def _renamed(trace: DecisionTrace, name: str) -> DecisionTrace:
    return DecisionTrace(name, trace.windows)


def quick_cases(cases: Sequence[ScenarioCase]) -> tuple[ScenarioCase, ...]:
    return tuple(c for c in cases if c.in_quick)
