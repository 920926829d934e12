"""``steward backtest``: replay a labelled history through Steward's decisions beside baselines."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from steward.cli.common import SpecArgument, console, fail

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([wdhm])\s*$")
_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes"}


def parse_duration(text: str, what: str) -> timedelta:
    """``7d``, ``12h``, ``2w``, ``30m`` (or ``0``) as a timedelta; a clear error otherwise."""
    if text.strip() == "0":
        return timedelta(0)
    match = _DURATION.match(text)
    if not match:
        fail(f"{what}: {text!r} is not a duration; write a number and a unit, e.g. 7d, 12h, 2w or 30m")
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


def backtest(
    spec: SpecArgument,
    data: Annotated[
        str | None,
        typer.Option(help="Labelled history: CSV or Parquet, a path or any fsspec URL (default: the spec's data.path)."),
    ] = None,
    cadence: Annotated[str, typer.Option(help="Window length: Steward decides at each window's end.")] = "7d",
    initial: Annotated[str, typer.Option(help="History before the first window the first champion trains on.")] = "28d",
    label_delay: Annotated[str, typer.Option(help="How long after each row its label became known.")] = "0",
    label_time_column: Annotated[
        str | None, typer.Option(help="Column saying when each label became known (overrides --label-delay).")
    ] = None,
    training_window: Annotated[
        str | None, typer.Option(help="Rows a retrain trains on (default: the spec's data.window_days, else --initial).")
    ] = None,
    out: Annotated[Path, typer.Option(help="The HTML report; the JSON of the result is written beside it.")] = Path(
        "backtest.html"
    ),
    seed: Annotated[int, typer.Option(help="Seed of the oracle's cross-fitting folds.")] = 0,
) -> None:
    """Replay a labelled history window by window: what Steward would have done, beside frozen,
    retrain-every-window and oracle baselines. Prints the summary; writes the HTML report and a JSON."""
    from steward.backtest import BacktestConfig, BacktestError, load_history, run_backtest
    from steward.backtest.report import write_backtest_html
    from steward.spec import SpecError, load_spec
    from steward.training.data import DataError

    try:
        model = load_spec(spec)
    except SpecError as error:
        fail(str(error))
    source = data or model.data.path
    if not source:
        fail(f"{spec} has no data.path: pass the labelled history with --data")
    config = BacktestConfig(
        cadence=parse_duration(cadence, "--cadence"), initial_training=parse_duration(initial, "--initial"),
        label_delay=parse_duration(label_delay, "--label-delay"), label_time_column=label_time_column,
        training_window=parse_duration(training_window, "--training-window") if training_window else None,
        seed=seed,
    )
    try:
        history = load_history(model, source, label_time_column)
        console.print(f"replaying {len(history)} rows of {source} in windows of {config.cadence}", highlight=False)
        with console.status("replaying") as status:
            result = run_backtest(model, history, config, on_window=lambda w: status.update(
                f"window {w.index + 1} ending {w.end:%Y-%m-%d %H:%M}: "
                + (", ".join(a.kind.value for a in w.actions) or "nothing to do")))
    except (BacktestError, DataError, ValueError) as error:
        fail(str(error))
    for window in result.windows:
        if window.actions:
            console.print(f"{window.end:%Y-%m-%d %H:%M} " + "; ".join(
                f"{a.kind.value}" + (f" ({a.code})" if a.code else "") for a in window.actions), highlight=False)
    console.print(result.summary().to_text(), highlight=False)
    for note in result.notes:
        console.print(f"note: {note}", style="dim", highlight=False)
    page = write_backtest_html(result, out)
    document = page.with_suffix(".json")
    document.write_text(result.to_json())
    console.print(f"report: {page}\nresult: {document}\n({result.seconds:.0f} s)", highlight=False)
