"""Backtest: replay a labelled history through Steward's real decisions on an event-time clock, beside baselines."""

from steward.backtest.engine import run_backtest
from steward.backtest.history import BacktestError, check_history, load_history
from steward.backtest.result import (
    ALL_STRATEGIES,
    NOT_CHECKED,
    Action,
    ActionKind,
    BacktestConfig,
    BacktestResult,
    BacktestSummary,
    Strategy,
    StrategySummary,
    WindowOutcome,
)

__all__ = [
    "ALL_STRATEGIES", "NOT_CHECKED", "Action", "ActionKind", "BacktestConfig", "BacktestError", "BacktestResult",
    "BacktestSummary", "Strategy", "StrategySummary", "WindowOutcome", "check_history", "load_history",
    "run_backtest",
]
