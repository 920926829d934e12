"""The backtest as one self-contained HTML page: metric over time per strategy, alarms and promotions
marked, what Steward did in each window and why, and the summary table. plotly.js is embedded, so the
page needs no network when it is opened."""

from __future__ import annotations

import html
import math
from pathlib import Path

from steward.backtest.result import ActionKind, BacktestResult, Strategy

COLOURS = {Strategy.STEWARD: "#1f77b4", Strategy.FROZEN: "#7f7f7f", Strategy.EVERY_WINDOW: "#ff7f0e",
           Strategy.ORACLE: "#2ca02c"}
MARKS = {ActionKind.DRIFT_ALARM: ("drift alarm", "triangle-up", "#d62728"),
         ActionKind.HEALTH_ALARM: ("health alarm", "diamond", "#9467bd"),
         ActionKind.RETRAIN_SKIPPED: ("retrain skipped", "x", "#8c564b"),
         ActionKind.GATE_FAILED: ("gate failed", "x-thin-open", "#e377c2"),
         ActionKind.PROMOTED: ("promoted", "star", "#17becf")}


def backtest_figure(result: BacktestResult):
    """Per window end: the primary metric and accuracy of each strategy; Steward's actions as markers."""
    from plotly.subplots import make_subplots

    metric = result.primary_metric
    has_accuracy = any("accuracy" in m for w in result.windows for m in w.metrics.values())
    rows = 2 if has_accuracy and metric != "accuracy" else 1
    figure = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                           subplot_titles=[metric, "accuracy"][:rows])
    ends = [w.end for w in result.windows]
    for row, name in enumerate([metric, "accuracy"][:rows], start=1):
        for strategy in result.config.strategies:
            values = [_value(w.metrics.get(strategy, {}).get(name)) for w in result.windows]
            figure.add_trace(dict(
                type="scatter", x=ends, y=values, mode="lines+markers", name=strategy.value,
                legendgroup=strategy.value, showlegend=row == 1,
                line={"color": COLOURS[strategy], "width": 3 if strategy is Strategy.STEWARD else 1.5},
            ), row=row, col=1)
        for kind, (label, symbol, colour) in MARKS.items():
            hits = [w for w in result.windows if w.did(kind)]
            if not hits:
                continue
            figure.add_trace(dict(
                type="scatter", x=[w.end for w in hits],
                y=[_value(w.metrics[Strategy.STEWARD].get(name)) for w in hits], mode="markers", name=label,
                legendgroup=label, showlegend=row == 1,
                marker={"symbol": symbol, "size": 13, "color": colour, "line": {"width": 1, "color": "black"}},
                text=["<br>".join(html.escape(a.detail[:160]) for a in w.actions if a.kind is kind) for w in hits],
                hovertemplate="%{x}<br>%{text}<extra>" + label + "</extra>",
            ), row=row, col=1)
    figure.update_layout(height=330 * rows + 80, margin={"l": 60, "r": 20, "t": 40, "b": 40},
                         hovermode="closest", legend={"orientation": "h", "y": -0.12})
    figure.update_xaxes(title_text="window end (UTC)", row=rows, col=1)
    return figure


def backtest_html(result: BacktestResult) -> str:
    summary = result.summary()
    metric = result.primary_metric
    figure = backtest_figure(result).to_html(include_plotlyjs=True, full_html=False)
    head = [f"<th>{html.escape(h)}</th>" for h in summary.rows()[0]] if summary.rows() else []
    summary_rows = "".join(
        "<tr>" + "".join(f"<td>{'' if v is None else html.escape(str(v))}</td>" for v in row.values()) + "</tr>"
        for row in summary.rows()
    )
    strategies = result.config.strategies
    window_head = ("<tr><th>#</th><th>window (UTC)</th><th>rows</th><th>labelled (known at end)</th>"
                   "<th>served</th>" + "".join(f"<th>{s.value} {html.escape(metric)}</th>" for s in strategies)
                   + "<th>drift</th><th>health</th><th>what Steward did and why</th></tr>")
    window_rows = []
    for w in result.windows:
        cells = [str(w.index), f"{w.start:%Y-%m-%d %H:%M} to {w.end:%Y-%m-%d %H:%M}", str(w.rows),
                 f"{w.labelled_rows} ({w.labels_known_at_end})", f"v{w.served_version}"]
        cells += [_fmt(w.metrics.get(s, {}).get(metric)) for s in strategies]
        drift = w.drift_code + (" (announced)" if w.drift_announced else "")
        if w.drift_columns:
            drift += ": " + ", ".join(w.drift_columns)
        cells += [drift, w.health_verdict + (": " + ", ".join(w.health_codes) if w.health_codes else "")]
        escaped = [html.escape(c) for c in cells]
        actions = "<br>".join(f"<b>{html.escape(a.kind.value)}</b>: {html.escape(a.detail)}" for a in w.actions)
        window_rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in escaped) + f"<td class='why'>{actions or '—'}</td></tr>")
    closed = summary.gap_closed
    gap = (f"<p>Steward closed <b>{closed:.0%}</b> of the {html.escape(metric)} gap between the frozen first model "
           "and the oracle.</p>") if closed is not None else ""
    config = result.config
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Backtest of {html.escape(result.model)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #222; }}
table {{ border-collapse: collapse; font-size: 13px; margin: 12px 0; }}
th, td {{ border: 1px solid #ccc; padding: 4px 6px; vertical-align: top; text-align: left; }}
th {{ background: #f3f3f3; }}
td.why {{ max-width: 640px; }}
.note {{ color: #555; font-size: 13px; }}
</style></head><body>
<h1>Backtest of {html.escape(result.model)}</h1>
<p class="note">{len(result.windows)} windows of {config.cadence}, first champion trained on
{result.initial_training_rows} labelled rows ({config.initial_training} before the first window); labels known
{html.escape('at ' + repr(config.label_time_column) if config.label_time_column else f'{config.label_delay} after each row')}.
Steward's health (data quality and accuracy), drift, retrain allowance and validation gate decide at each window's end
on the labels known by then; a promotion serves from the next window (the canary is not replayed).
Frozen: the first model forever. Every window: retrained on the same training window and promoted unconditionally.
Oracle: trained with the window's own labels (2-fold cross-fitted) plus the preceding training window.
Metrics are measured on each window's labelled rows. Replay took {result.seconds:.0f} s.</p>
<h2>Summary</h2>
<table><tr>{''.join(head)}</tr>{summary_rows}</table>
{gap}
<h2>{html.escape(metric)} over time</h2>
{figure}
<h2>Windows</h2>
<table>{window_head}{''.join(window_rows)}</table>
</body></html>
"""


def write_backtest_html(result: BacktestResult, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(backtest_html(result), encoding="utf-8")
    return path


def _value(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


def _fmt(value: float | None) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.4f}"
