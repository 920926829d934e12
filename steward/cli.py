"""The ``steward`` command.

Flows are imported inside the commands that run them, after ``apply_environment()``
has pointed Prefect and MLflow at the Steward home: both libraries read their
settings when first imported.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from steward.config import Settings, apply_environment, reset_settings

app = typer.Typer(
    name="steward",
    help="Keep machine-learning models healthy in production.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)

HomeOption = Annotated[
    Path | None, typer.Option("--home", help="Steward home folder (default: $STEWARD_HOME or ./.steward).")
]


def _environment(home: Path | None) -> Settings:
    if home is not None:
        os.environ["STEWARD_HOME"] = str(home)
    reset_settings()
    return apply_environment()


def _registry(settings: Settings):
    from steward.registry.adapter import Registry

    return Registry.from_settings(settings)


def _fail(message: str) -> None:
    errors.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code=1)


@app.callback()
def _main() -> None:
    """Keep machine-learning models healthy in production."""


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Where to write the example.")] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing example.")] = False,
) -> None:
    """Write the example credit-default spec and its training data."""
    from steward.simulation.examples import write_example

    with console.status("generating example data with the scenario simulator"):
        try:
            spec_path = write_example(directory, overwrite=force)
        except FileExistsError as error:
            _fail(str(error))
    console.print(f"wrote [bold]{spec_path}[/] and its data; next: [bold]steward train {spec_path}[/]")


def _check_spec(spec: Path) -> None:
    """Fail fast on a bad spec, before a flow run (and an embedded Prefect server) starts."""
    from steward.spec import SpecError, load_spec

    try:
        load_spec(spec)
    except SpecError as error:
        _fail(str(error))


def _run_retrain(spec: Path, reason: str, force: bool) -> Any:
    from flows.retrain import retrain

    _check_spec(spec)

    with console.status(f"training a candidate from {spec}"):
        result = retrain(spec_path=str(spec), reason=reason, force=force)
    if not result.registered:
        _fail(f"retrain skipped: {result.skipped_because}; pass --force to retrain anyway")
    return result


def _run_validate(spec: Path, version: str | None) -> Any:
    from flows.validate import validate

    _check_spec(spec)

    with console.status("validating the candidate against the champion"):
        return validate(spec_path=str(spec), version=version)


def _user_errors() -> tuple[type[Exception], ...]:
    from steward.registry.adapter import RegistryError
    from steward.spec import SpecError
    from steward.training.data import DataError

    return (SpecError, DataError, RegistryError, FileNotFoundError)


@app.command()
def train(
    spec: Annotated[Path, typer.Argument(help="Path of the model spec (YAML).")],
    reason: Annotated[str, typer.Option(help="Why this retrain runs; recorded with the version.")] = "manual run",
    force: Annotated[bool, typer.Option("--force", help="Ignore the spec's retrain cooldown and budget.")] = False,
    home: HomeOption = None,
) -> None:
    """Train and register a candidate version (the retrain flow)."""
    _environment(home)
    try:
        result = _run_retrain(spec, reason, force)
    except _user_errors() as error:
        _fail(str(error))
    console.print(
        f"registered [bold]{result.model} v{result.version}[/] ({result.semver}) as candidate; "
        + ", ".join(f"{k}={v:.4f}" for k, v in sorted(result.metrics.items()))
    )
    if result.slow_training:
        console.print("[yellow]training was slow against earlier runs; see the version's tags[/]")


@app.command()
def validate(
    spec: Annotated[Path, typer.Argument(help="Path of the model spec (YAML).")],
    version: Annotated[str | None, typer.Option(help="Version to validate (default: newest candidate).")] = None,
    home: HomeOption = None,
) -> None:
    """Gate a candidate against the champion (the validate flow)."""
    _environment(home)
    try:
        outcome = _run_validate(spec, version)
    except _user_errors() as error:
        _fail(str(error))
    _print_report(outcome.report)
    if not outcome.passed:
        _fail(f"{outcome.model} v{outcome.version} was rejected; the registry's aliases are unchanged")
    console.print(f"[green]{outcome.model} v{outcome.version} passed[/] and is now [bold]{outcome.action}[/]")


def _print_report(report: Any) -> None:
    table = Table(title=f"validation of {report.model} v{report.candidate_version}")
    for column in ("check", "result", "reason"):
        table.add_column(column, overflow="fold")
    colours = {"passed": "green", "failed": "red", "skipped": "yellow"}
    for check in report.checks:
        table.add_row(check.name, f"[{colours[check.status.value]}]{check.status.value}[/]", check.reason)
    console.print(table)


@app.command()
def status(model: Annotated[str, typer.Argument(help="Model name.")], home: HomeOption = None) -> None:
    """Versions, aliases, lineage and the last validation of a model."""
    settings = _environment(home)
    registry = _registry(settings)
    if not registry.model_exists(model):
        _fail(f"no model named {model!r} in {settings.resolved_tracking_uri}; train one with `steward train`")
    _print_status(registry, model)


def _print_status(registry: Any, model: str) -> None:
    table = Table(title=f"{model}")
    for column in ("version", "semver", "aliases", "stage", "validation", "data sha256", "rows", "code", "created"):
        table.add_column(column, overflow="fold")
    for info in registry.list_versions(model):
        table.add_row(
            info.version,
            info.semver or "",
            ", ".join(info.aliases),
            "archived" if info.archived else (info.stage or ""),
            info.tags.get("steward.validation.status", ""),
            (info.tags.get("steward.data_sha256") or "")[:12],
            info.tags.get("steward.data_rows", ""),
            (info.tags.get("steward.code_version") or "")[:12],
            info.created.strftime("%Y-%m-%d %H:%M"),
        )
    console.print(table)
    champion = registry.champion(model)
    if champion:
        console.print(f"[bold]champion v{champion.version}[/] lineage:")
        for key in ("data_source", "data_sha256", "data_rows", "data_window_start", "data_window_end",
                    "code_version", "training_seconds", "schema_fingerprint", "artifact_digest"):
            console.print(f"  {key:<20} {champion.tags.get(f'steward.{key}', '')}")
        console.print("  metrics              " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(champion.metrics.items())))
        console.print(f"  last validation      {champion.tags.get('steward.validation.summary', '')}")
    target = registry.rollback_target(model)
    console.print(f"rollback target: {'v' + target if target else 'none'}")


@app.command()
def history(model: Annotated[str, typer.Argument(help="Model name.")], home: HomeOption = None) -> None:
    """Every alias change, rollback and archive of a model: when, who, what, why."""
    registry = _registry(_environment(home))
    entries = registry.history(model)
    if not entries:
        console.print(f"no recorded changes for {model!r}")
        return
    for entry in entries:
        console.print(entry.describe(), highlight=False)


@app.command()
def promote(
    model: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="Version to make champion.")],
    reason: Annotated[str, typer.Option(help="Why; recorded in the history.")],
    home: HomeOption = None,
) -> None:
    """Make a validated version the champion (the old one stays the rollback target)."""
    from steward.registry.adapter import RegistryError

    registry = _registry(_environment(home))
    try:
        entry = registry.promote(model, version, reason=reason)
    except RegistryError as error:
        _fail(str(error))
    console.print(entry.describe(), highlight=False)


@app.command()
def rollback(
    model: Annotated[str, typer.Argument(help="Model name.")],
    reason: Annotated[str, typer.Option(help="Why; recorded in the history, the event and the incident.")],
    home: HomeOption = None,
) -> None:
    """Return the champion to the previous champion in one step (the rollback flow): traffic plan reset,
    any rollout in progress stopped, event emitted, incident recorded."""
    from steward.registry.adapter import RegistryError

    settings = _environment(home)
    if not reason.strip():
        _fail("say why with --reason: it goes into the history, the event and the incident")
    from flows.rollback import rollback as run_rollback

    try:
        outcome = run_rollback(model=model, reason=reason, actor=settings.actor)
    except RegistryError as error:
        _fail(str(error))
    console.print(f"[bold]{outcome.model}[/] rolled back from v{outcome.from_version} to "
                  f"[bold]v{outcome.to_version}[/] by {outcome.actor}; incident {outcome.incident_id}")
    for stopped in outcome.stopped_rollouts:
        console.print(f"[yellow]stopped[/] {stopped}")


def _print_rollout(outcome: Any) -> None:
    from rich.markup import escape

    table = Table(title=f"{outcome.kind.value} of {outcome.model} v{outcome.version}")
    columns = ("step", "traffic", "seconds", "challenger", "champion", "decision", "reason")
    for column in columns:
        table.add_column(column, overflow="fold")
    for record in outcome.steps:
        row = record.row()
        table.add_row(*(escape(str(row[c])) for c in columns))
    console.print(table)
    colour = {"promoted": "green", "rolled_back": "red", "rejected": "red"}.get(outcome.result.value, "yellow")
    console.print(f"[{colour}]{outcome.result.value}[/]: {escape(outcome.reason)}")


@app.command()
def canary(
    spec: Annotated[Path, typer.Argument(help="Path of the model spec (YAML).")],
    version: Annotated[str | None, typer.Option(help="Version to roll out (default: the challenger).")] = None,
    poll_seconds: Annotated[float, typer.Option(help="Seconds between analyses of a step.")] = 5.0,
    home: HomeOption = None,
) -> None:
    """Ramp the challenger through the spec's canary steps; promote it, or roll it back on harm."""
    from steward.delivery.rollout import RolloutError, RolloutResult

    _environment(home)
    _check_spec(spec)
    from flows.canary_promote import canary_promote

    try:
        with console.status(f"canary of {spec}: analysing every {poll_seconds:g} s"):
            outcome = canary_promote(spec_path=str(spec), version=version, poll_seconds=poll_seconds)
    except (*_user_errors(), RolloutError) as error:
        _fail(str(error))
    _print_rollout(outcome)
    if outcome.result is not RolloutResult.PROMOTED:
        raise typer.Exit(code=1)


@app.command(name="blue-green")
def blue_green(
    spec: Annotated[Path, typer.Argument(help="Path of the model spec (YAML).")],
    gateway: Annotated[str, typer.Option(help="Gateway URL for the smoke test (needs STEWARD_ADMIN_TOKEN).")],
    version: Annotated[str | None, typer.Option(help="Version to switch to (default: the challenger).")] = None,
    watch_seconds: Annotated[float | None, typer.Option(help="Watch window (default: canary.min_step_seconds).")] = None,
    poll_seconds: Annotated[float, typer.Option(help="Seconds between analyses of the watch.")] = 5.0,
    home: HomeOption = None,
) -> None:
    """Smoke-test the challenger as the idle colour, switch all traffic to it, watch, switch back on harm."""
    from steward.delivery.rollout import RolloutError, RolloutResult

    _environment(home)
    _check_spec(spec)
    from flows.blue_green import blue_green as run_blue_green

    try:
        with console.status(f"blue-green of {spec} behind {gateway}"):
            outcome = run_blue_green(spec_path=str(spec), gateway_url=gateway, version=version,
                                     watch_seconds=watch_seconds, poll_seconds=poll_seconds)
    except (*_user_errors(), RolloutError) as error:
        _fail(str(error))
    _print_rollout(outcome)
    if outcome.result is not RolloutResult.PROMOTED:
        raise typer.Exit(code=1)


@app.command()
def serve(
    models: Annotated[list[str], typer.Argument(help="Registered model names to serve (by their aliases).")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    poll_interval: Annotated[float, typer.Option(help="Seconds between registry polls.")] = 0.5,
    log_mode: Annotated[str, typer.Option(help="Prediction log: batched, durable or off.")] = "batched",
    flush_interval: Annotated[float, typer.Option(help="Seconds between Parquet flushes of the log.")] = 2.0,
    wal_dir: Annotated[Path | None, typer.Option(help="Durable mode: local write-ahead log folder.")] = None,
    store_uri: Annotated[str | None, typer.Option(help="Prediction log URL (default: the settings').")] = None,
    max_batch_rows: Annotated[int, typer.Option(help="Rows one predict request may carry.")] = 1000,
    rate_limit: Annotated[float | None, typer.Option(help="Predict requests/s per client (default: off).")] = None,
    rate_burst: Annotated[int | None, typer.Option(help="Rate-limit bucket size (default: 2x the rate).")] = None,
    out_of_range: Annotated[str, typer.Option(help="Values outside a feature's range: reject or allow.")] = "reject",
    shadow_inline_max_ms: Annotated[float, typer.Option(
        help="Shadow copies of a challenger whose 16-row model call takes at most this long are scored on the "
             "event loop; a slower one's in the shadow process (0: always there).")] = 0.5,
    log_level: Annotated[str, typer.Option(help="JSON log level.")] = "info",
    gc_tuning: Annotated[bool, typer.Option(
        help="Run the garbage collector's young generation less often (docs/gateway.md); --no-gc-tuning "
             "keeps Python's thresholds.")] = True,
    home: HomeOption = None,
) -> None:
    """Serve models by alias, split traffic by the registry's plan, log every prediction (docs/gateway.md)."""
    from pydantic import ValidationError

    from steward.serving import GatewayConfig
    from steward.serving import serve as run_gateway

    settings = _environment(home)
    try:
        config = GatewayConfig(
            models=tuple(models), poll_interval=poll_interval, log_mode=log_mode, flush_interval=flush_interval,
            wal_dir=wal_dir, store_uri=store_uri, max_batch_rows=max_batch_rows, rate_limit=rate_limit,
            rate_burst=rate_burst, out_of_range=out_of_range, shadow_inline_max_ms=shadow_inline_max_ms,
            admin_token=settings.admin_token,
        )
    except ValidationError as error:
        _fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()))
    registry = _registry(settings)
    missing = [name for name in config.models if not registry.model_exists(name)]
    if missing:
        _fail(f"no model named {missing} in {settings.resolved_tracking_uri}; train one with `steward train`")
    if settings.admin_token is None:
        errors.print("[yellow]no STEWARD_ADMIN_TOKEN: the admin API and forced arms are refused[/]")
    run_gateway(config, host=host, port=port, log_level=log_level, tune_gc=gc_tuning)


HEALTH_ERROR_EXIT = 3  # 0, 1 and 2 are the verdicts


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


def _print_slo(settings: Settings, model: str, as_of: Any) -> None:
    from datetime import timedelta

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


@app.command()
def health(
    spec: Annotated[Path, typer.Argument(help="Path of the model spec (YAML).")],
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
    settings = _environment(home)
    try:
        from flows.health_check import health_check
        from steward.spec import load_spec

        load_spec(spec)
        with console.status(f"checking the health of the model in {spec}"):
            report = health_check(spec_path=str(spec), window_hours=window_hours, as_of=as_of,
                                  gateway_url=gateway_url)
    except (*_user_errors(), ValueError) as error:
        errors.print(f"[bold red]error:[/] {error}")
        raise typer.Exit(code=HEALTH_ERROR_EXIT) from None
    _print_health(report)
    _print_slo(settings, report.model, report.window.end)
    raise typer.Exit(code=report.verdict.exit_code)


@app.command()
def ledger(
    model: Annotated[str | None, typer.Option("--model", help="Only this model's entries.")] = None,
    include_closed: Annotated[bool, typer.Option("--all", help="Include resolved and dismissed entries.")] = False,
    home: HomeOption = None,
) -> None:
    """The maintenance ledger: findings and incidents as tasks, critical first, then by due date."""
    from steward.monitoring.ledger import Ledger

    entries = Ledger.from_settings(_environment(home)).entries(model, include_closed=include_closed)
    if not entries:
        console.print("no open entries" if not include_closed else "no entries")
        return
    for entry in entries:
        console.print(entry.describe(), highlight=False)
        if entry.detail:
            console.print(f"    {entry.detail}", style="dim", highlight=False)


@app.command("ledger-resolve")
def ledger_resolve(
    entry_id: Annotated[str, typer.Argument(help="Entry id, as `steward ledger` lists it.")],
    note: Annotated[str, typer.Option("--note", help="What was done about it; kept with the entry.")],
    home: HomeOption = None,
) -> None:
    """Mark a ledger entry resolved, with what was done."""
    from steward.monitoring.ledger import Ledger

    try:
        closed = Ledger.from_settings(_environment(home)).close(entry_id, resolution=note)
    except (KeyError, ValueError) as error:
        _fail(str(error.args[0]))
    console.print(closed.describe(), highlight=False)


AsOfOption = Annotated[
    datetime | None, typer.Option(help="End of the period looked at, in UTC (default: now).")
]


@app.command()
def drift(
    spec: Annotated[Path, typer.Argument(help="Path of the model spec (YAML).")],
    window_hours: Annotated[
        float | None, typer.Option(help="Hours of traffic to check (default: the spec's drift.window_days).")
    ] = None,
    last_rows: Annotated[int | None, typer.Option(help="Check the last N served rows instead of a time window.")] = None,
    as_of: AsOfOption = None,
    home: HomeOption = None,
) -> None:
    """Compare the champion's recent traffic with its training data (the drift-report flow); exit 1 on material drift."""
    _environment(home)
    _check_spec(spec)
    from flows.drift_report import drift_report

    try:
        with console.status("checking drift"):
            outcome = drift_report(spec_path=str(spec), window_hours=window_hours, last_rows=last_rows, as_of=as_of)
    except (*_user_errors(), ValueError) as error:
        _fail(str(error))
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
    if outcome.material:
        raise typer.Exit(code=1)


@app.command()
def maintenance(
    cadence: Annotated[str, typer.Argument(help="daily, weekly, monthly or quarterly.")],
    spec: Annotated[Path, typer.Argument(help="Path of the model spec (YAML).")],
    as_of: AsOfOption = None,
    home: HomeOption = None,
) -> None:
    """Run one scheduled maintenance and print what it did; exit 1 if one of its tasks failed."""
    _environment(home)
    _check_spec(spec)
    from flows import maintenance as flows

    runs = {"daily": flows.daily_maintenance, "weekly": flows.weekly_maintenance,
            "monthly": flows.monthly_maintenance, "quarterly": flows.quarterly_maintenance}
    if cadence not in runs:
        _fail(f"unknown cadence {cadence!r}: choose one of {', '.join(runs)}")
    try:
        with console.status(f"running the {cadence} maintenance"):
            summary = runs[cadence](spec_path=str(spec), as_of=as_of)
    except _user_errors() as error:
        _fail(str(error))
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
    if summary.failed_tasks:
        raise typer.Exit(code=1)


@app.command()
def model_card(
    spec: Annotated[Path, typer.Argument(help="Path of the model spec (YAML).")],
    out: Annotated[Path | None, typer.Option(help="Also write the Markdown to this file.")] = None,
    as_of: AsOfOption = None,
    home: HomeOption = None,
) -> None:
    """Evaluate the champion overall and per slice and regenerate its model card (stored with the version)."""
    _environment(home)
    _check_spec(spec)
    from flows.maintenance import model_card as run

    try:
        with console.status("evaluating the champion and writing its model card"):
            outcome = run(spec_path=str(spec), as_of=as_of)
    except _user_errors() as error:
        _fail(str(error))
    markdown = outcome.card.to_markdown()
    if out is not None:
        out.write_text(markdown)
        console.print(f"wrote {out}")
    else:
        console.print(markdown, highlight=False, markup=False)
    console.print(f"stored with {outcome.card.model} v{outcome.card.version}: {outcome.uri}", highlight=False)


def _stack_config(specs: list[Path], models: list[str] | None, host: str, prefect_port: int, mlflow_port: int,
                  gateway_port: int, deployments_port: int, timeout: float):
    from steward.stack import StackConfig

    return StackConfig(
        spec_paths=tuple(str(spec.resolve()) for spec in specs), models=tuple(models or ()), host=host,
        prefect_port=prefect_port, mlflow_port=mlflow_port, gateway_port=gateway_port,
        deployments_port=deployments_port, startup_timeout=timeout,
    )


@app.command()
def up(
    specs: Annotated[list[Path], typer.Argument(help="Model specs whose deployments are served.")],
    model: Annotated[list[str] | None, typer.Option(help="Models the gateway serves (default: the specs').")] = None,
    host: Annotated[str, typer.Option(help="Address every service listens on.")] = "127.0.0.1",
    prefect_port: Annotated[int, typer.Option(help="Prefect server (API and UI).")] = 4200,
    mlflow_port: Annotated[int, typer.Option(help="MLflow tracking server and UI.")] = 5000,
    gateway_port: Annotated[int, typer.Option(help="The gateway.")] = 8080,
    deployments_port: Annotated[int, typer.Option(help="Health endpoint of the deployments process.")] = 8090,
    timeout: Annotated[float, typer.Option(help="Seconds each service may take to become healthy.")] = 180.0,
    watch: Annotated[bool, typer.Option("--watch", help="Stay in the foreground, restart crashed services, "
                                                         "stop everything on Ctrl-C.")] = False,
    home: HomeOption = None,
) -> None:
    """Start the local stack: Prefect server, MLflow server, gateway and the deployments (docs/operations.md)."""
    from steward import stack

    settings = _environment(home)
    for spec in specs:
        _check_spec(spec)
    config = _stack_config(specs, model, host, prefect_port, mlflow_port, gateway_port, deployments_port, timeout)
    try:
        stack.start(settings, config, echo=console.print)
    except stack.StackError as error:
        _fail(str(error))
    console.print(
        f"[green]stack up[/]: Prefect UI http://{host}:{prefect_port}, MLflow UI http://{host}:{mlflow_port}, "
        f"gateway http://{host}:{gateway_port}; logs under {stack.log_dir(settings)}; stop with `steward down`"
    )
    if watch:
        try:
            stack.supervise(settings, config, echo=console.print)
        except KeyboardInterrupt:
            stack.stop(settings, echo=console.print)


@app.command()
def down(home: HomeOption = None) -> None:
    """Stop what `steward up` started (and nothing else)."""
    from steward import stack

    stack.stop(_environment(home), echo=console.print)


@app.command("stack-status")
def stack_status(home: HomeOption = None) -> None:
    """State and health of each service of the local stack."""
    from steward import stack

    states = stack.status(_environment(home))
    table = Table(title="local stack")
    for column in ("service", "state", "pid", "url", "detail"):
        table.add_column(column, overflow="fold")
    colours = {"healthy": "green", "unhealthy": "red", "stale pid file": "yellow", "not running": "dim"}
    for state in states:
        table.add_row(state.name, f"[{colours[state.state]}]{state.state}[/]", str(state.pid or ""),
                      state.url or "", state.detail)
    console.print(table)
    if any(state.state in ("unhealthy", "stale pid file") for state in states):
        raise typer.Exit(code=1)


@app.command()
def deployments(
    specs: Annotated[list[Path], typer.Argument(help="Model specs; every procedure gets a deployment per model.")],
    procedure: Annotated[list[str] | None, typer.Option(help="Serve only these procedures (repeatable).")] = None,
    limit: Annotated[int | None, typer.Option(help="Most flow runs at once.")] = None,
    gateway_url: Annotated[str | None, typer.Option(help="Default gateway_url of the procedures that use it.")] = None,
    home: HomeOption = None,
) -> None:
    """Register the deployments, schedules and triggers and run their flows in this process (prefect.serve)."""
    _environment(home)
    for spec in specs:
        _check_spec(spec)
    from deployments.serve import serve as serve_deployments

    serve_deployments([str(spec) for spec in specs], procedure, limit, gateway_url)


EXPERIMENT_ACTIONS = ("start", "analyse", "stop")


def _experiment_errors() -> tuple[type[Exception], ...]:
    from steward.delivery.experiments import ExperimentError
    from steward.delivery.traffic import TrafficError

    return (*_user_errors(), ExperimentError, TrafficError)


def _check_action(action: str) -> None:
    if action not in EXPERIMENT_ACTIONS:
        _fail(f"--action {action!r}: use one of {', '.join(EXPERIMENT_ACTIONS)}")


@app.command("ab-test")
def ab_test(
    spec: Annotated[Path, typer.Argument(help="Path of the model spec (YAML); its ab_test section is the design.")],
    action: Annotated[str, typer.Option(help="start, analyse or stop.")] = "analyse",
    percent: Annotated[float, typer.Option(help="start: share of entities sent to the challenger.")] = 50.0,
    settle_seconds: Annotated[float, typer.Option(help="start: traffic of the first seconds is left out, "
                                                        "while gateways apply the plan.")] = 5.0,
    as_of: AsOfOption = None,
    home: HomeOption = None,
) -> None:
    """A/B test the challenger against the champion by entity; a winner is a recommendation (docs/experiments.md)."""
    _environment(home)
    _check_spec(spec)
    _check_action(action)
    from flows.ab_test import ab_test as run

    try:
        outcome = run(spec_path=str(spec), action=action, challenger_percent=percent, settle_seconds=settle_seconds,
                      as_of=as_of)
    except _experiment_errors() as error:
        _fail(str(error))
    if outcome.report is not None:
        console.print(outcome.report.to_markdown(), highlight=False, markup=False)
    else:
        console.print(outcome.recommendation, highlight=False, markup=False)
    if outcome.stopped:
        console.print(f"test {outcome.experiment_id} stopped; all traffic goes to the champion", highlight=False)


@app.command()
def shadow(
    spec: Annotated[Path, typer.Argument(help="Path of the model spec (YAML).")],
    action: Annotated[str, typer.Option(help="start, analyse or stop.")] = "analyse",
    percent: Annotated[float, typer.Option(help="start: share of requests copied to the challenger.")] = 100.0,
    window_minutes: Annotated[float | None, typer.Option(help="start: wait this long, compare, and end the "
                                                                "shadow in one run.")] = None,
    tolerance: Annotated[float, typer.Option(help="Score difference still counted as agreement.")] = 0.05,
    settle_seconds: Annotated[float, typer.Option(help="start: seconds left out while gateways apply the "
                                                        "plan (and waited after the window).")] = 5.0,
    as_of: AsOfOption = None,
    home: HomeOption = None,
) -> None:
    """Shadow the challenger on live traffic: agreement, disagreement by slice, latency cost (docs/experiments.md)."""
    _environment(home)
    _check_spec(spec)
    _check_action(action)
    from flows.shadow import shadow_analysis

    try:
        outcome = shadow_analysis(spec_path=str(spec), action=action, challenger_percent=percent,
                                  window_minutes=window_minutes, tolerance=tolerance, settle_seconds=settle_seconds,
                                  as_of=as_of)
    except _experiment_errors() as error:
        _fail(str(error))
    console.print(outcome.report.to_markdown() if outcome.report is not None else outcome.summary,
                  highlight=False, markup=False)
    if outcome.stopped:
        console.print(f"shadow {outcome.experiment_id} ended; the champion alone serves", highlight=False)


@app.command()
def example(home: HomeOption = None) -> None:
    """No servers: the example model trained, validated, made champion, its lineage shown."""
    from steward.simulation.examples import write_example

    settings = _environment(home)
    spec_path = settings.home / "examples" / "credit_default" / "spec.yaml"
    if not spec_path.exists():
        with console.status("writing the example spec and generating its data"):
            spec_path = write_example(settings.home / "examples")
    console.rule("1. retrain")
    try:
        result = _run_retrain(spec_path, "steward example", force=True)
        console.print(f"candidate {result.model} v{result.version} ({result.semver})")
        console.rule("2. validate")
        outcome = _run_validate(spec_path, result.version)
    except _user_errors() as error:
        _fail(str(error))
    _print_report(outcome.report)
    console.print(f"{outcome.model} v{outcome.version}: {outcome.action}")
    console.rule("3. registry status and lineage")
    _print_status(_registry(settings), outcome.model)
    console.print(
        f"\nstate is under [bold]{settings.home}[/]; try `steward history {outcome.model}` "
        f"or `uv run mlflow ui --backend-store-uri {settings.resolved_tracking_uri}`"
    )


DEMO_HOME = Path(".steward-demo")


@app.command()
def demo(
    short: Annotated[bool, typer.Option("--short", help="Two days instead of four (what CI runs).")] = False,
    host: Annotated[str, typer.Option(help="Address every service listens on.")] = "127.0.0.1",
    prefect_port: Annotated[int, typer.Option(help="Prefect server (API and UI).")] = 4200,
    mlflow_port: Annotated[int, typer.Option(help="MLflow tracking server and UI.")] = 5000,
    gateway_port: Annotated[int, typer.Option(help="The gateway.")] = 8080,
    deployments_port: Annotated[int, typer.Option(help="Health endpoint of the deployments process.")] = 8090,
    home: Annotated[Path | None, typer.Option(
        "--home", help=f"Home of the demo's state and stack (default: {DEMO_HOME}, replaced on each run; "
                       "a folder given here must be new or empty).")] = None,
) -> None:
    """The whole loop on the local stack: drift, a triggered retrain, a canary, a bad candidate rolled back.

    Starts the stack (`steward up`), which stays up afterwards; `steward down --home <home>` stops it.
    """
    import shutil

    from flows.demo import run_demo
    from steward import stack
    from steward.simulation.demo import DemoConfig, DemoError

    target = (home or DEMO_HOME).resolve()
    if home is None and target.exists():
        console.print(f"replacing the previous demo in {target}")
        stack.stop(_environment(target), echo=console.print)
        shutil.rmtree(target)
    elif target.exists() and any(target.iterdir()):
        _fail(f"{target} is not empty: give the demo a new folder with --home, or leave --home out to use "
              f"{DEMO_HOME} (replaced on each run)")
    config = _stack_config([], None, host, prefect_port, mlflow_port, gateway_port, deployments_port, 180.0)
    os.environ["PREFECT_API_URL"] = config.prefect_api_url
    for handler in ("CONSOLE", "CONSOLE_FLOW_RUNS", "CONSOLE_TASK_RUNS"):  # the demo narrates; runs log to the UI
        os.environ.setdefault(f"PREFECT_LOGGING_HANDLERS_{handler}_LEVEL", "ERROR")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    settings = _environment(target)
    try:
        outcome = run_demo(settings, config, DemoConfig.short() if short else DemoConfig(), echo=console.print)
    except (DemoError, stack.StackError) as error:
        _fail(f"{error}\nthe stack is left up for a look; stop it with `steward down --home {target}`")
    _print_demo_end(outcome, settings, config)


def _print_demo_end(outcome: Any, settings: Settings, config: Any) -> None:
    from steward.simulation.demo import MODEL, brief

    console.rule("timeline (replayed days on the demo's clock, marked *; the rest on the wall clock)")
    for entry in outcome.timeline:
        when = f"{entry.time:%a %H:%M}*  " if entry.simulated else f"{entry.time:%a %H:%M:%S}"
        console.print(f"{when}  {brief(entry.what, 110)}" + (f" [dim]— {brief(entry.why, 110)}[/]" if entry.why else ""),
                      highlight=False)
    prefect = f"http://{config.host}:{config.prefect_port}"
    mlflow = f"http://{config.host}:{config.mlflow_port}"
    console.rule("result")
    console.print(
        f"drift found on day {outcome.drift_day} ({', '.join(outcome.drift_columns)}); retrain started by the "
        f"automation '{outcome.retrain_started_by}'; v{outcome.promoted_version} promoted through "
        f"{', '.join(f'{s:g}%' for s in outcome.promotion_steps)}; v{outcome.broken_version} (validation "
        f"{outcome.broken_validation}) {outcome.broken_result} at canary step {outcome.broken_stopped_at_step}; "
        f"champion v{outcome.champion}; {outcome.seconds:.0f} s\n"
        f"[bold]reports[/]: the drift report {outcome.drift_report}; maintenance, drift, validation and canary "
        f"reports are Prefect artifacts; the whole timeline as JSON in {settings.home / 'demo' / 'outcome.json'}\n"
        f"[bold]Prefect UI[/]: flow runs {prefect}/runs, events {prefect}/events, artifacts {prefect}/artifacts, "
        f"deployments {prefect}/deployments\n"
        f"[bold]MLflow UI[/]: versions and aliases {mlflow}/#/models/{MODEL}\n"
        f"the stack stays up; stop it with `steward down --home {settings.home}`",
        highlight=False,
    )


def main() -> None:  # pragma: no cover - console-script entry point
    sys.exit(app())
