"""Tasks of the backtest flow: read the history, replay it, write the report."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from steward.backtest import BacktestConfig, BacktestResult, WindowOutcome, load_history, run_backtest
from steward.backtest.report import write_backtest_html
from steward.spec import ModelSpec


@task(name="load-history", retries=2, retry_delay_seconds=[2, 5], cache_policy=NO_CACHE)
def read_history(spec: ModelSpec, source: str, label_time_column: str | None) -> pd.DataFrame:
    return load_history(spec, source, label_time_column)


@task(name="replay-history", cache_policy=NO_CACHE)
def replay_history(spec: ModelSpec, history: pd.DataFrame, config: BacktestConfig) -> BacktestResult:
    """The whole replay in one task: windows depend on each other through the champion and the drift record."""
    logger = get_run_logger()

    def progress(window: WindowOutcome) -> None:
        logger.info("window %d ending %s: %s", window.index + 1, f"{window.end:%Y-%m-%d %H:%M}",
                    "; ".join(f"{a.kind.value}: {a.detail[:200]}" for a in window.actions) or "nothing to do")

    return run_backtest(spec, history, config, on_window=progress)


@task(name="write-backtest-report", cache_policy=NO_CACHE)
def write_report(result: BacktestResult, out: str) -> tuple[str, str]:
    """The HTML page and, beside it, the JSON of the result; returns both paths."""
    page = write_backtest_html(result, out)
    document = Path(page).with_suffix(".json")
    document.write_text(result.to_json())
    return str(page), str(document)
