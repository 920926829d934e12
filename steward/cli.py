"""The ``steward`` command.

Flows are imported inside the commands that run them, after ``apply_environment()``
has pointed Prefect and MLflow at the Steward home: both libraries read their
settings when first imported.
"""

from __future__ import annotations

import os
import sys
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
    from steward.registry import Registry

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
    from steward.examples import write_example

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
    from steward.data import DataError
    from steward.registry import RegistryError
    from steward.spec import SpecError

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
    from steward.registry import RegistryError

    registry = _registry(_environment(home))
    try:
        entry = registry.promote(model, version, reason=reason)
    except RegistryError as error:
        _fail(str(error))
    console.print(entry.describe(), highlight=False)


@app.command()
def rollback(
    model: Annotated[str, typer.Argument(help="Model name.")],
    reason: Annotated[str, typer.Option(help="Why; recorded in the history.")],
    home: HomeOption = None,
) -> None:
    """Return the champion alias to the previous champion in one step."""
    from steward.registry import RegistryError

    registry = _registry(_environment(home))
    try:
        entry = registry.rollback(model, reason=reason)
    except RegistryError as error:
        _fail(str(error))
    console.print(entry.describe(), highlight=False)


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
    log_level: Annotated[str, typer.Option(help="JSON log level.")] = "info",
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
            rate_burst=rate_burst, out_of_range=out_of_range, admin_token=settings.admin_token,
        )
    except ValidationError as error:
        _fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()))
    registry = _registry(settings)
    missing = [name for name in config.models if not registry.model_exists(name)]
    if missing:
        _fail(f"no model named {missing} in {settings.resolved_tracking_uri}; train one with `steward train`")
    if settings.admin_token is None:
        errors.print("[yellow]no STEWARD_ADMIN_TOKEN: the admin API and forced arms are refused[/]")
    run_gateway(config, host=host, port=port, log_level=log_level)


@app.command()
def demo(home: HomeOption = None) -> None:
    """The main job on the embedded default: example model trained, validated, made champion, lineage shown."""
    from steward.examples import write_example

    settings = _environment(home)
    spec_path = settings.home / "examples" / "credit_default" / "spec.yaml"
    if not spec_path.exists():
        with console.status("writing the example spec and generating its data"):
            spec_path = write_example(settings.home / "examples")
    console.rule("1. retrain")
    try:
        result = _run_retrain(spec_path, "steward demo")
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


def main() -> None:  # pragma: no cover - console-script entry point
    sys.exit(app())
