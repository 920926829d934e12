"""Backtest: replay a model's labelled history through Steward's decisions, beside frozen, every-window and
oracle baselines, and publish what Steward would have done."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prefect import flow, get_run_logger

from steward.backtest import ALL_STRATEGIES, BacktestConfig, BacktestResult, Strategy
from tasks.backtest import read_history, replay_history, write_report
from tasks.common import publish_markdown
from tasks.data import load_model_spec


def summary_markdown(result: BacktestResult, report: str | None) -> str:
    summary = result.summary()
    rows = summary.rows()
    head = list(rows[0]) if rows else []
    lines = [
        f"# Backtest of {result.model}: {len(result.windows)} windows of {result.config.cadence}",
        "",
        "| " + " | ".join(head) + " |",
        "| " + " | ".join("---" for _ in head) + " |",
        *("| " + " | ".join("" if v is None else str(v) for v in row.values()) + " |" for row in rows),
        "",
    ]
    if summary.gap_closed is not None:
        lines += [f"Steward closed {summary.gap_closed:.0%} of the {result.primary_metric} gap between the frozen "
                  "first model and the oracle.", ""]
    acted = [w for w in result.windows if w.actions]
    if acted:
        lines += ["| window end | what Steward did |", "| --- | --- |"]
        lines += [f"| {w.end:%Y-%m-%d %H:%M} | " + "; ".join(
            f"{a.kind.value}" + (f" ({a.code})" if a.code else "") for a in w.actions) + " |" for w in acted]
        lines.append("")
    if report:
        lines.append(f"HTML report: `{report}`")
    return "\n".join(lines)


@flow(name="backtest", description="Replay a labelled history through Steward's decisions beside baselines.")
def backtest(
    spec_path: str,
    data: str | None = None,
    cadence_hours: float = 168.0,
    initial_training_days: float = 28.0,
    label_delay_hours: float = 0.0,
    label_time_column: str | None = None,
    training_window_days: float | None = None,
    strategies: list[Strategy] | None = None,
    out: str | None = None,
    seed: int = 0,
) -> BacktestResult:
    """``data`` is the labelled history (default: the spec's data.path); ``out`` the HTML report (default:
    ``<STEWARD_HOME>/backtests/<model>-<time>.html``), written with a JSON of the result beside it."""
    from steward.config import get_settings

    logger = get_run_logger()
    spec = load_model_spec(spec_path)
    source = data or spec.data.path
    if not source:
        raise ValueError(f"{spec_path} has no data.path: pass the labelled history as 'data'")
    config = BacktestConfig(
        cadence=timedelta(hours=cadence_hours), initial_training=timedelta(days=initial_training_days),
        label_delay=timedelta(hours=label_delay_hours), label_time_column=label_time_column,
        training_window=timedelta(days=training_window_days) if training_window_days else None,
        strategies=tuple(strategies) if strategies else ALL_STRATEGIES, seed=seed,
    )
    history = read_history(spec, source, label_time_column)
    result = replay_history(spec, history, config)
    target = out or str(get_settings().home / "backtests" / f"{spec.name}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.html")
    page, _ = write_report(result, target)
    publish_markdown(summary_markdown(result, page), "backtest", spec.name,
                     description=f"backtest of {spec.name}: {len(result.windows)} windows")
    logger.info("backtest of %s:\n%s", spec.name, result.summary().to_text())
    return result
