"""Commands of the local stack: up, down, stack-status, the deployments process, and ``steward demo``."""

from __future__ import annotations

import logging
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from steward.cli.common import HomeOption, begin, console, fail, no_user_errors
from steward.config import Settings

DEMO_HOME = Path(".steward-demo")

HostOption = Annotated[str, typer.Option(help="Address every service listens on.")]
PrefectPortOption = Annotated[int, typer.Option(help="Prefect server (API and UI).")]
MlflowPortOption = Annotated[int, typer.Option(help="MLflow tracking server and UI.")]
GatewayPortOption = Annotated[int, typer.Option(help="The gateway.")]
DeploymentsPortOption = Annotated[int, typer.Option(help="Health endpoint of the deployments (or worker) process.")]
EvidentlyPortOption = Annotated[int, typer.Option(help="Evidently's UI over the drift checks' workspace.")]


class ProfileChoice(StrEnum):  # steward.stack.Profile, without importing the stack for --help
    embedded = "embedded"
    production = "production"


def _stack_config(specs: list[Path], models: list[str] | None, host: str, prefect_port: int, mlflow_port: int,
                  gateway_port: int, deployments_port: int, timeout: float, profile: str = "embedded",
                  replicas: int = 1, postgres_port: int = 5432, evidently_port: int = 8000,
                  with_prometheus: bool = False, prometheus_port: int = 9090):
    from steward.stack import Profile, StackConfig

    return StackConfig(
        spec_paths=tuple(str(spec.resolve()) for spec in specs), models=tuple(models or ()), host=host,
        prefect_port=prefect_port, mlflow_port=mlflow_port, gateway_port=gateway_port,
        deployments_port=deployments_port, startup_timeout=timeout, profile=Profile(profile), replicas=replicas,
        postgres_port=postgres_port, evidently_port=evidently_port,
        with_prometheus=with_prometheus, prometheus_port=prometheus_port,
    )


def up(
    specs: Annotated[list[Path], typer.Argument(help="Model specs whose deployments are served.")],
    model: Annotated[list[str] | None, typer.Option(help="Models the gateway serves (default: the specs').")] = None,
    host: HostOption = "127.0.0.1",
    prefect_port: PrefectPortOption = 4200,
    mlflow_port: MlflowPortOption = 5000,
    gateway_port: GatewayPortOption = 8080,
    deployments_port: DeploymentsPortOption = 8090,
    evidently_port: EvidentlyPortOption = 8000,
    timeout: Annotated[float, typer.Option(help="Seconds each service may take to become healthy.")] = 180.0,
    profile: Annotated[ProfileChoice, typer.Option(
        help="embedded: SQLite stores and one process serving the flows; production: PostgreSQL under the home "
             "behind MLflow and Prefect, a process worker, --replicas gateways (needs STEWARD_ADMIN_TOKEN).")
    ] = ProfileChoice.embedded,
    replicas: Annotated[int, typer.Option(help="Gateway replicas, on consecutive ports from --gateway-port "
                                               "(production profile).")] = 1,
    postgres_port: Annotated[int, typer.Option(help="PostgreSQL (production profile).")] = 5432,
    only: Annotated[list[str] | None, typer.Option(
        help="Start only this service (repeatable), e.g. the stores before the first champion exists.")] = None,
    with_prometheus: Annotated[bool, typer.Option(
        "--with-prometheus", help="Also run Prometheus (Debian's package) scraping the gateway, alert rules loaded.")] = False,
    prometheus_port: Annotated[int, typer.Option(help="Prometheus (with --with-prometheus).")] = 9090,
    watch: Annotated[bool, typer.Option("--watch", help="Stay in the foreground, restart crashed services, "
                                                         "stop everything on Ctrl-C.")] = False,
    home: HomeOption = None,
) -> None:
    """Start the local stack: Prefect server, MLflow server, gateway(s), the flows' runner and Evidently's UI (docs/operations.md)."""
    from steward import stack
    from steward.processes import log_dir

    settings = begin(home, *specs).settings
    try:
        config = _stack_config(specs, model, host, prefect_port, mlflow_port, gateway_port, deployments_port, timeout,
                               profile.value, replicas, postgres_port, evidently_port, with_prometheus,
                               prometheus_port)
        stack.start(settings, config, echo=console.print, only=only)
    except stack.StackError as error:
        fail(str(error))
    gateways = ", ".join(f"http://{host}:{port}" for port in config.gateway_ports)
    console.print(
        f"[green]stack up[/] ({config.profile}): Prefect UI http://{host}:{prefect_port}, MLflow UI "
        f"http://{host}:{mlflow_port}, gateway {gateways}, Evidently UI http://{host}:{evidently_port}"
        + (f", Prometheus http://{host}:{prometheus_port}" if with_prometheus else "")
        + f"; logs under {log_dir(settings)}; stop with `steward down`", highlight=False,
    )
    if config.profile is stack.Profile.PRODUCTION:
        exports = " ".join(f"{key}={value}" for key, value in stack.client_environment(settings, config).items()
                           if key.startswith(("STEWARD_", "PREFECT_")))
        console.print(f"commands use this stack with: export {exports}", highlight=False, soft_wrap=True)
        console.print(f"MLflow and Prefect accept only authenticated requests; commands with STEWARD_HOME={settings.home} "
                      f"read Steward's credentials from {settings.home / 'secrets'} (docs/security.md)",
                      highlight=False, soft_wrap=True)
    else:
        console.print("embedded profile: MLflow and Prefect accept unauthenticated requests on "
                      f"{host} (one machine; --profile production authenticates them)", highlight=False)
    if watch:
        try:
            stack.supervise(settings, config, echo=console.print)
        except KeyboardInterrupt:
            stack.stop(settings, echo=console.print)


def down(home: HomeOption = None) -> None:
    """Stop what `steward up` started (and nothing else)."""
    from steward import stack

    stack.stop(begin(home).settings, echo=console.print)


def rotate_credentials(
    mlflow_url: Annotated[str | None, typer.Option(
        help="The stack's MLflow server, to change Steward's MLflow password there (default: STEWARD_TRACKING_URI).")
    ] = None,
    prefect: Annotated[bool, typer.Option("--prefect", help="Also replace the Prefect auth string.")] = False,
    home: HomeOption = None,
) -> None:
    """Replace Steward's MLflow password (in MLflow and the home) and optionally the Prefect auth string;
    then restart the stack (`steward down`, `steward up`) so every process holds the new ones."""
    from steward.credentials import ControlPlaneSecrets, CredentialsError

    settings = begin(home).settings
    secrets = ControlPlaneSecrets(settings.home)
    url = mlflow_url or settings.tracking_uri
    if not url or not url.startswith(("http://", "https://")):
        fail("name the stack's MLflow server with --mlflow-url or STEWARD_TRACKING_URI (`steward up` prints it)")
    try:
        secrets.rotate_mlflow_password(url)
        console.print(f"MLflow: Steward's password changed in {url} and in {secrets.mlflow_password_file}")
        if prefect:
            secrets.rotate_prefect_auth_string()
            console.print(f"Prefect: a new auth string in {secrets.prefect_auth_file}")
    except CredentialsError as error:
        fail(str(error))
    console.print("[yellow]restart the stack now[/] (`steward down`, then `steward up` as before): running "
                  "processes hold the old credentials and are refused until then")


def stack_status(home: HomeOption = None) -> None:
    """State and health of each service of the local stack."""
    from steward import stack

    states = stack.status(begin(home).settings)
    table = Table(title="local stack")
    for column in ("service", "state", "pid", "url", "detail"):
        table.add_column(column, overflow="fold")
    colours = {stack.ServiceState.HEALTHY: "green", stack.ServiceState.UNHEALTHY: "red",
               stack.ServiceState.STALE: "yellow", stack.ServiceState.NOT_RUNNING: "dim"}
    for state in states:
        table.add_row(state.name, f"[{colours[state.state]}]{state.state}[/]", str(state.pid or ""),
                      state.url or "", state.detail)
    console.print(table)
    views = [(state.name, view) for state in states for view in state.views]
    if views:
        replicas = Table(title="each gateway's view of the registry")
        for column in ("gateway", "model", "champion", "challenger", "traffic plan", "view age"):
            replicas.add_column(column, overflow="fold")
        for name, view in views:
            age = f"{view.view_age_seconds:.1f} s" if view.view_age_seconds is not None else "never read"
            replicas.add_row(name, view.model, f"v{view.champion}" if view.champion else "-",
                             f"v{view.challenger}" if view.challenger else "-", view.plan, age)
        console.print(replicas)
    if any(state.state in (stack.ServiceState.UNHEALTHY, stack.ServiceState.STALE) for state in states):
        raise typer.Exit(code=1)


def deployments(
    specs: Annotated[list[Path], typer.Argument(help="Model specs; every procedure gets a deployment per model.")],
    procedure: Annotated[list[str] | None, typer.Option(help="Serve only these procedures (repeatable).")] = None,
    limit: Annotated[int | None, typer.Option(help="Most flow runs at once.")] = None,
    gateway_url: Annotated[str | None, typer.Option(help="Default gateway_url of the procedures that use it.")] = None,
    home: HomeOption = None,
) -> None:
    """Register the deployments, schedules and triggers and run their flows in this process (prefect.serve)."""
    begin(home, *specs).run_flow("deployments.serve:serve", errors=no_user_errors,
                                 spec_paths=[str(spec) for spec in specs], procedures=procedure, limit=limit,
                                 gateway_url=gateway_url)


def worker(
    specs: Annotated[list[Path], typer.Argument(help="Model specs; every procedure gets a deployment per model.")],
    pool: Annotated[str, typer.Option(help="Process work pool (created if missing).")] = "steward-pool",
    limit: Annotated[int | None, typer.Option(help="Most flow runs at once.")] = None,
    gateway_url: Annotated[str | None, typer.Option(help="Default gateway_url of the procedures that use it.")] = None,
    home: HomeOption = None,
) -> None:
    """Register the deployments with a process work pool, then run a Prefect worker on it (production profile)."""
    begin(home, *specs).run_flow("deployments.process_worker:run", errors=no_user_errors,
                                 spec_paths=[str(spec) for spec in specs], pool=pool, gateway_url=gateway_url,
                                 limit=limit)


def demo(
    short: Annotated[bool, typer.Option("--short", help="Two days instead of four (what CI runs).")] = False,
    host: HostOption = "127.0.0.1",
    prefect_port: PrefectPortOption = 4200,
    mlflow_port: MlflowPortOption = 5000,
    gateway_port: GatewayPortOption = 8080,
    deployments_port: DeploymentsPortOption = 8090,
    evidently_port: EvidentlyPortOption = 8000,
    home: Annotated[Path | None, typer.Option(
        "--home", help=f"Home of the demo's state and stack (default: {DEMO_HOME}, replaced on each run; "
                       "a folder given here must be new or empty).")] = None,
) -> None:
    """The whole loop on the local stack: drift, a triggered retrain, a canary, a bad candidate rolled back.

    Starts the stack (`steward up`), which stays up afterwards; `steward down --home <home>` stops it.
    """
    import shutil

    from steward import stack
    from steward.simulation.demo import DemoConfig, DemoError

    target = (home or DEMO_HOME).resolve()
    if home is None and target.exists():
        console.print(f"replacing the previous demo in {target}")
        stack.stop(begin(target).settings, echo=console.print)
        shutil.rmtree(target)
    elif target.exists() and any(target.iterdir()):
        fail(f"{target} is not empty: give the demo a new folder with --home, or leave --home out to use "
             f"{DEMO_HOME} (replaced on each run)")
    config = _stack_config([], None, host, prefect_port, mlflow_port, gateway_port, deployments_port, 180.0,
                           evidently_port=evidently_port)
    os.environ["PREFECT_API_URL"] = config.prefect_api_url
    for handler in ("CONSOLE", "CONSOLE_FLOW_RUNS", "CONSOLE_TASK_RUNS"):  # the demo narrates; runs log to the UI
        os.environ.setdefault(f"PREFECT_LOGGING_HANDLERS_{handler}_LEVEL", "ERROR")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    settings = begin(target).settings
    from flows.demo import run_demo  # after begin: importing flows applies the home in use, not ./.steward

    try:
        outcome = run_demo(settings, config, DemoConfig.short() if short else DemoConfig(), echo=console.print)
    except (DemoError, stack.StackError) as error:
        fail(f"{error}\nthe stack is left up for a look; stop it with `steward down --home {target}`")
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
        f"the stack stays up; stop it with `steward down --home {settings.home}`\n"
        f"embedded profile: MLflow and Prefect accept unauthenticated requests on {config.host} (one machine; "
        "`steward up --profile production` authenticates them)",
        highlight=False,
    )
