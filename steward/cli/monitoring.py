"""Commands that watch a served model: health, drift, scheduled maintenance, model card and the ledger."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from steward.cli.common import (
    AsOfOption,
    HomeOption,
    SpecArgument,
    begin,
    console,
    exit_unless,
    fail,
    user_errors,
)
from steward.cli.models import ModelArgument
from steward.config import Settings

HEALTH_ERROR_EXIT = 3  # 0, 1 and 2 are the verdicts
CADENCES = ("daily", "weekly", "monthly", "quarterly")


def _errors_and_bad_values() -> tuple[type[Exception], ...]:
    return (*user_errors(), ValueError)


def _print_health(report: Any) -> None:
    from rich.markup import escape

    colours = {"passed": "green", "warning": "yellow", "critical": "red", "failed_check": "magenta",
               "healthy": "green"}
    table = Table(title=f"health of {report.model}, {report.window.describe()}")
    for column in ("area", "status", "metrics", "issues and notes", "recommendations"):
        table.add_column(column, overflow="fold")
    for row in report.to_table_rows():
        found = " | ".join(part for part in (row["issues"], row["notes"]) if part and part != "none") or "none"
        table.add_row(row["area"], f"[{colours[row['status']]}]{row['status']}[/]", escape(row["metrics"]),
                      escape(found), escape(row["recommendations"]))
    console.print(table)
    console.print(f"verdict: [bold {colours[report.verdict.value]}]{report.verdict.value}[/]")


def _print_slo(settings: Settings, model: str, as_of: datetime) -> None:
    from steward.monitoring.slo import SLOStore, summarize_slo

    last = as_of.date()
    first = last - timedelta(days=6)
    report = summarize_slo(model, SLOStore(settings.resolved_store_uri).read(model, first, last), first, last)
    if not report.days:
        return
    table = Table(title=f"SLO compliance of {model}, {first} to {last}")
    rows = report.to_table_rows()
    for column in rows[0]:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row.values())
    console.print(table)
    console.print(report.describe(), highlight=False)


def health(
    spec: SpecArgument,
    window_hours: Annotated[
        float | None, typer.Option(help="Hours of traffic to judge (default: the spec's health.window_hours).")
    ] = None,
    as_of: Annotated[datetime | None, typer.Option(help="End of the window, in UTC (default: now).")] = None,
    gateway_url: Annotated[
        str | None, typer.Option(help="URL of a gateway serving the model: read its refused requests and process.")
    ] = None,
    home: HomeOption = None,
) -> None:
    """Run the health check: exit 0 healthy, 1 warning, 2 critical, 3 when it cannot run."""
    invocation = begin(home, spec, error_exit=HEALTH_ERROR_EXIT)
    report = invocation.run_flow(
        "flows.health_check:health_check", status=f"checking the health of the model in {spec}",
        errors=_errors_and_bad_values, spec_path=str(spec), window_hours=window_hours, as_of=as_of,
        gateway_url=gateway_url,
    )
    _print_health(report)
    _print_slo(invocation.settings, report.model, report.window.end)
    raise typer.Exit(code=report.verdict.exit_code)


def ledger(
    model: Annotated[str | None, typer.Option("--model", help="Only this model's entries.")] = None,
    include_closed: Annotated[bool, typer.Option("--all", help="Include resolved and dismissed entries.")] = False,
    home: HomeOption = None,
) -> None:
    """The maintenance ledger: findings and incidents as tasks, critical first, then by due date."""
    from steward.monitoring.ledger import Ledger

    entries = Ledger.from_settings(begin(home).settings).entries(model, include_closed=include_closed)
    if not entries:
        console.print("no open entries" if not include_closed else "no entries")
        return
    for entry in entries:
        console.print(entry.describe(), highlight=False)
        if entry.detail:
            console.print(f"    {entry.detail}", style="dim", highlight=False)


def ledger_resolve(
    entry_id: Annotated[str, typer.Argument(help="Entry id, as `steward ledger` lists it.")],
    note: Annotated[str, typer.Option("--note", help="What was done about it; kept with the entry.")],
    home: HomeOption = None,
) -> None:
    """Mark a ledger entry resolved, with what was done."""
    from steward.monitoring.ledger import Ledger

    try:
        closed = Ledger.from_settings(begin(home).settings).close(entry_id, resolution=note)
    except (KeyError, ValueError) as error:
        fail(str(error.args[0]))
    console.print(closed.describe(), highlight=False)


def drift(
    spec: SpecArgument,
    window_hours: Annotated[
        float | None, typer.Option(help="Hours of traffic to check (default: the spec's drift.window_days).")
    ] = None,
    last_rows: Annotated[int | None, typer.Option(help="Check the last N served rows instead of a time window.")] = None,
    as_of: AsOfOption = None,
    home: HomeOption = None,
) -> None:
    """Compare the champion's recent traffic with its training data (the drift-report flow); exit 1 on material drift."""
    outcome = begin(home, spec).run_flow(
        "flows.drift_report:drift_report", status="checking drift", errors=_errors_and_bad_values,
        spec_path=str(spec), window_hours=window_hours, last_rows=last_rows, as_of=as_of,
    )
    if outcome.result is not None:
        table = Table(title=f"drift of {outcome.model} v{outcome.version}, {outcome.current_rows} rows")
        for column in ("column", "method", "score", "threshold", "state"):
            table.add_column(column)
        result = outcome.result
        for c in (*result.columns, *([result.prediction] if result.prediction else [])):
            state = "held" if c.column in outcome.held else "drifted" if c.column in outcome.columns else ""
            table.add_row(c.column, c.method, f"{c.score:.4g}", f"{c.threshold:.3g}", f"[red]{state}[/]" if state else "")
        console.print(table)
    console.print(outcome.reason, highlight=False)
    if outcome.report_uri:
        console.print(f"Evidently report: {outcome.report_uri}", highlight=False)
    exit_unless(not outcome.material)


def maintenance(
    cadence: Annotated[str, typer.Argument(help="daily, weekly, monthly or quarterly.")],
    spec: SpecArgument,
    as_of: AsOfOption = None,
    home: HomeOption = None,
) -> None:
    """Run one scheduled maintenance and print what it did; exit 1 if one of its tasks failed."""
    invocation = begin(home, spec)
    if cadence not in CADENCES:
        fail(f"unknown cadence {cadence!r}: choose one of {', '.join(CADENCES)}")
    summary = invocation.run_flow(f"flows.maintenance:{cadence}_maintenance",
                                  status=f"running the {cadence} maintenance", spec_path=str(spec), as_of=as_of)
    tasks = Table(title=f"{cadence} maintenance of {summary.model}")
    for column in ("task", "status", "detail"):
        tasks.add_column(column, overflow="fold")
    for record in summary.tasks_completed:
        colour = {"completed": "green", "failed": "red", "skipped": "yellow"}[record.status.value]
        tasks.add_row(record.name, f"[{colour}]{record.status.value}[/]", record.detail)
    console.print(tasks)
    for issue in summary.issues_found:
        console.print(f"{issue.entry_id}  {issue.priority.value:<8} {issue.kind.value:<10} {issue.title} ({issue.state})",
                      highlight=False)
    for action in summary.actions_taken:
        console.print(f"action: {action}", highlight=False)
    exit_unless(not summary.failed_tasks)


def model_card(
    spec: SpecArgument,
    out: Annotated[Path | None, typer.Option(help="Also write the Markdown to this file.")] = None,
    as_of: AsOfOption = None,
    home: HomeOption = None,
) -> None:
    """Evaluate the champion overall and per slice and regenerate its model card (stored with the version)."""
    outcome = begin(home, spec).run_flow("flows.maintenance:model_card",
                                         status="evaluating the champion and writing its model card",
                                         spec_path=str(spec), as_of=as_of)
    markdown = outcome.card.to_markdown()
    if out is not None:
        out.write_text(markdown)
        console.print(f"wrote {out}")
    else:
        console.print(markdown, highlight=False, markup=False)
    console.print(f"stored with {outcome.card.model} v{outcome.card.version}: {outcome.uri}", highlight=False)


def compact(
    model: ModelArgument,
    as_of: AsOfOption = None,
    grace_minutes: Annotated[float, typer.Option(help="Keep replaced files this long for readers that listed them.")] = 60,
    home: HomeOption = None,
) -> None:
    """Merge each finished day of the model's prediction log and labels into a few large files (the compact-log
    flow); safe while gateways write and checks read. Exit 1 if a day was left uncompacted."""
    report = begin(home).run_flow("flows.compaction:compact_log", errors=_errors_and_bad_values,
                                  status="compacting the prediction log", model=model, as_of=as_of,
                                  grace_minutes=grace_minutes)
    console.print(report.describe(), highlight=False)
    for partition in report.left_alone:
        console.print(f"[yellow]left[/] {partition.dataset}/date={partition.day}: {partition.detail}", highlight=False)
    exit_unless(not report.left_alone)
