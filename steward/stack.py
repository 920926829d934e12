"""The local stack: start, health-check, supervise and stop its processes.

``steward up`` starts each process in its own session (process group) so that ``steward down``
can stop a process together with its children and nothing else. Two profiles:

| service | embedded (default) | production | health check |
| --- | --- | --- | --- |
| ``postgres`` | | PostgreSQL under ``<home>/postgres`` (:mod:`steward.postgres`) | ``pg_isready`` |
| ``prefect`` | ``prefect server start`` on SQLite | the same on PostgreSQL (asyncpg), API auth string | ``GET /api/health`` |
| ``mlflow`` | ``mlflow server`` on SQLite | the same on PostgreSQL, basic-auth app | ``GET /health`` |
| ``gateway`` / ``gateway-<i>`` | one ``steward serve <models>`` | N replicas on consecutive ports | ``GET /readyz`` |
| ``deployments`` / ``worker`` | ``prefect.serve`` | a process worker of the work pool | ``GET /health`` |
| ``evidently`` | ``evidently ui`` on the drift checks' workspace ``<home>/evidently`` | the same | ``GET /api/version`` |
| ``prometheus`` | Debian's ``prometheus`` (``--with-prometheus`` only), scraping every gateway | the same | ``GET /-/ready`` |

A pid file per service under ``<home>/run`` records the pid, the process's start time, the port and the
log file (:mod:`steward.processes`); logs go to ``<home>/logs``; ``<home>/run/stack.profile`` names the
services of the last ``up``.
The embedded profile's MLflow and Prefect accept unauthenticated requests (one machine, 127.0.0.1);
the production profile's accept only Steward's credentials (:mod:`steward.credentials`), which reach
each process in its environment at launch.
No Prefect import here: this is plain process supervision.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from functools import partial
from pathlib import Path

import httpx

from steward import postgres
from steward.config import Settings, environment_for
from steward.credentials import MLFLOW_AUTH_APP, ControlPlaneSecrets
from steward.monitoring.drift.workspace import workspace_path
from steward.monitoring.prometheus import (
    PrometheusFiles,
    PrometheusSetupError,
    ScrapeSettings,
    prometheus_command,
    write_prometheus_files,
)
from steward.processes import (
    Record,
    Service,
    StackError,
    alive,
    check_ports,
    healthy,
    launch,
    recorded,
    run_dir,
    stop_record,
    wait_healthy,
)

SERVICE_ORDER = ("prefect", "mlflow", "gateway", "deployments", "evidently")  # the embedded profile's services
PROFILE_FILE = "stack.profile"  # JSON; not *.json, which are the pid files
WORK_POOL = "steward-pool"


class Profile(StrEnum):
    EMBEDDED = "embedded"
    PRODUCTION = "production"


class ServiceState(StrEnum):
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    NOT_RUNNING = "not running"
    STALE = "stale pid file"


@dataclass(frozen=True)
class StackConfig:
    """Ports and what to serve; every port can be chosen."""

    spec_paths: tuple[str, ...]
    models: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    prefect_port: int = 4200
    mlflow_port: int = 5000
    gateway_port: int = 8080
    deployments_port: int = 8090
    evidently_port: int = 8000
    startup_timeout: float = 180.0
    profile: Profile = Profile.EMBEDDED
    replicas: int = 1
    postgres_port: int = 5432
    work_pool: str = WORK_POOL
    with_prometheus: bool = False
    prometheus_port: int = 9090
    prometheus_scrape: ScrapeSettings = ScrapeSettings()  # tests scrape every second and hold alerts briefly

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise StackError(f"--replicas must be at least 1, not {self.replicas}")
        if self.replicas > 1 and self.profile is not Profile.PRODUCTION:
            raise StackError("several gateway replicas need the production profile: add --profile production")

    @property
    def prefect_api_url(self) -> str:
        return f"http://{self.host}:{self.prefect_port}/api"

    @property
    def mlflow_url(self) -> str:
        return f"http://{self.host}:{self.mlflow_port}"

    @property
    def gateway_ports(self) -> tuple[int, ...]:
        return tuple(range(self.gateway_port, self.gateway_port + self.replicas))

    def cluster(self, settings: Settings) -> postgres.Cluster:
        return postgres.Cluster(settings.home, self.postgres_port, self.host)


@dataclass(frozen=True)
class ReplicaView:
    """What one gateway replica serves of one model, from its ``/admin/status``."""

    model: str
    champion: str | None
    challenger: str | None
    plan: str
    view_age_seconds: float | None  # since the replica last read the registry


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    state: ServiceState
    pid: int | None = None
    port: int | None = None
    url: str | None = None
    detail: str = ""
    views: tuple[ReplicaView, ...] = ()


def _bin(name: str) -> str:
    """A console script of this environment (mlflow's server also needs its bin/ on PATH)."""
    return str(Path(sys.executable).parent / name)


def gateway_name(config: StackConfig, index: int) -> str:
    return "gateway" if config.profile is Profile.EMBEDDED else f"gateway-{index + 1}"


def _models(config: StackConfig) -> tuple[str, ...]:
    if config.models:
        return config.models
    from steward.spec import load_spec

    return tuple(load_spec(path).name for path in config.spec_paths)


def client_environment(settings: Settings, config: StackConfig) -> dict[str, str]:
    """What a process needs to use this stack: the services' and a user's shell (``steward up`` prints it)."""
    env = {"PREFECT_API_URL": config.prefect_api_url}
    if config.profile is Profile.PRODUCTION:  # every client goes through the MLflow server, never the database
        env.update({"STEWARD_TRACKING_URI": config.mlflow_url, "STEWARD_PREFECT_API_URL": config.prefect_api_url,
                    "MLFLOW_TRACKING_URI": config.mlflow_url, "MLFLOW_REGISTRY_URI": config.mlflow_url})
    return env


def _prefect_server_secrets(cluster: postgres.Cluster, secrets: ControlPlaneSecrets) -> dict[str, str]:
    return {"PREFECT_API_DATABASE_CONNECTION_URL": cluster.url("prefect", "asyncpg"),
            **secrets.load().prefect_server_environment()}


def _mlflow_server_secrets(cluster: postgres.Cluster, secrets: ControlPlaneSecrets) -> dict[str, str]:
    return {"MLFLOW_BACKEND_STORE_URI": cluster.url("mlflow", "psycopg2"),
            **secrets.mlflow_server_environment(secrets.load())}


def _client_secrets(secrets: ControlPlaneSecrets) -> dict[str, str]:
    return secrets.load().client_environment()


def plan_services(settings: Settings, config: StackConfig) -> list[Service]:
    """The services of the stack's profile, in start order."""
    if not config.spec_paths:
        raise StackError("name at least one model spec: `steward up path/to/spec.yaml`")
    production = config.profile is Profile.PRODUCTION
    if production and not settings.admin_token:
        raise StackError("the production profile tells every gateway replica of registry changes through their "
                         "admin API: set STEWARD_ADMIN_TOKEN (the same for `steward up` and every command that "
                         "promotes or rolls back)")
    base = {
        **{key: value for key, value in os.environ.items()  # admin token, webhook; not the database password
           if key.startswith("STEWARD_") and key != postgres.PASSWORD_ENV},
        **environment_for(settings),
        "STEWARD_HOME": str(settings.home),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
    }
    base.pop("PREFECT_API_URL", None)
    client = {**base, **client_environment(settings, config)}
    client_secrets = None
    models, host = _models(config), config.host
    wave = 1 if production else 0
    services: list[Service] = []
    prefect_env = {**base, "PREFECT_SERVER_API_HOST": host, "PREFECT_SERVER_API_PORT": str(config.prefect_port),
                   "PREFECT_UI_API_URL": config.prefect_api_url}
    mlflow_command = [_bin("mlflow"), "server", "--default-artifact-root", settings.resolved_artifact_root,
                      "--host", host, "--port", str(config.mlflow_port), "--workers", "1"]
    if production:
        cluster = config.cluster(settings)
        services.append(Service("postgres", cluster.server_command(), config.postgres_port,
                                f"postgresql://{host}:{config.postgres_port}", {"PATH": base["PATH"], "LC_ALL": "C"},
                                wave=0, user=postgres.server_user(), stop_signal=signal.SIGINT))  # fast shutdown
        # database URLs and control-plane credentials: read at launch (after initdb and the first `up` generated
        # them), passed in the environment, never on the command line or in the pid file
        secrets = ControlPlaneSecrets(settings.home)
        prefect_secrets = partial(_prefect_server_secrets, cluster, secrets)
        mlflow_secrets = partial(_mlflow_server_secrets, cluster, secrets)
        client_secrets = partial(_client_secrets, secrets)
        mlflow_command[1:2] = ["server", "--app-name", MLFLOW_AUTH_APP]
    else:
        prefect_secrets = mlflow_secrets = None
        mlflow_command[2:2] = ["--backend-store-uri", settings.resolved_tracking_uri]
    services += [
        Service("prefect", (_bin("prefect"), "server", "start", "--host", host, "--port", str(config.prefect_port)),
                config.prefect_port, f"http://{host}:{config.prefect_port}/api/health", prefect_env, wave=wave,
                secret_env=prefect_secrets),
        Service("mlflow", tuple(mlflow_command), config.mlflow_port, f"http://{host}:{config.mlflow_port}/health",
                base, wave=wave, secret_env=mlflow_secrets),
    ]
    for index, port in enumerate(config.gateway_ports):
        services.append(Service(
            gateway_name(config, index),
            (_bin("steward"), "serve", *models, "--host", host, "--port", str(port)),
            port, f"http://{host}:{port}/readyz", client, wave=wave + 1, port_option="--gateway-port",
            secret_env=client_secrets,
        ))
    gateway_url = f"http://{host}:{config.gateway_port}"
    if production:
        services.append(Service(
            "worker",
            (_bin("steward"), "worker", *config.spec_paths, "--pool", config.work_pool, "--gateway-url", gateway_url),
            config.deployments_port, f"http://{host}:{config.deployments_port}/health",
            {**client, "PREFECT_WORKER_WEBSERVER_HOST": host,
             "PREFECT_WORKER_WEBSERVER_PORT": str(config.deployments_port),
             # a triggered run starts within 2 s instead of 10
             "PREFECT_WORKER_QUERY_SECONDS": os.environ.get("PREFECT_WORKER_QUERY_SECONDS", "2")},
            wave=wave + 1, port_option="--deployments-port", secret_env=client_secrets,
        ))
    else:
        services.append(Service(
            "deployments",
            (_bin("steward"), "deployments", *config.spec_paths, "--gateway-url", gateway_url),
            config.deployments_port, f"http://{host}:{config.deployments_port}/health",
            {**client, "PREFECT_RUNNER_SERVER_ENABLE": "true", "PREFECT_RUNNER_SERVER_HOST": host,
             "PREFECT_RUNNER_SERVER_PORT": str(config.deployments_port),
             # a triggered run starts within 2 s instead of 10; one local process polling is cheap
             "PREFECT_RUNNER_POLL_FREQUENCY": os.environ.get("PREFECT_RUNNER_POLL_FREQUENCY", "2")},
            wave=wave + 1,
        ))
    services.append(Service(
        "evidently",
        (_bin("evidently"), "ui", "--workspace", str(workspace_path(settings.home)), "--host", host,
         "--port", str(config.evidently_port)),
        config.evidently_port, f"http://{host}:{config.evidently_port}/api/version",
        {**base, "DO_NOT_TRACK": "1"},  # no telemetry calls from a closed network
        wave=wave,
    ))
    if config.with_prometheus:
        services.append(_prometheus_service(settings, config, wave + 1))
    return services


def prometheus_files(settings: Settings) -> PrometheusFiles:
    return PrometheusFiles(settings.home / "prometheus")


def _prometheus_service(settings: Settings, config: StackConfig, wave: int) -> Service:
    try:
        command = prometheus_command(prometheus_files(settings), config.host, config.prometheus_port)
    except PrometheusSetupError as error:
        raise StackError(str(error)) from None
    return Service("prometheus", command, config.prometheus_port,
                   f"http://{config.host}:{config.prometheus_port}/-/ready", {"PATH": os.environ.get("PATH", "")},
                   wave=wave)


def _prepare_prometheus(settings: Settings, config: StackConfig, services: Sequence[Service]) -> None:
    """Write Prometheus's config, the specs' alert rules and every gateway replica of the stack as a target."""
    from steward.spec import load_spec

    scrape_host = "127.0.0.1" if config.host in ("0.0.0.0", "::") else config.host
    gateways = [f"{scrape_host}:{s.port}" for s in services if s.name.startswith("gateway")]  # every replica
    token = settings.admin_token.get_secret_value() if settings.admin_token else None
    write_prometheus_files(prometheus_files(settings), [load_spec(path) for path in config.spec_paths], gateways,
                           config.prometheus_scrape, bearer_token=token)


def _prepare(settings: Settings, config: StackConfig, names: set[str], echo: Callable[[str], None]) -> None:
    """Before the first wave: the PostgreSQL cluster exists (``initdb`` once); so do the control plane's credentials."""
    if config.profile is Profile.PRODUCTION:
        secrets = ControlPlaneSecrets(settings.home)
        generated = not secrets.mlflow_password_file.exists() and "MLFLOW_TRACKING_PASSWORD" not in os.environ
        secrets.ensure()
        if generated:
            echo(f"mlflow, prefect: credentials of Steward's processes generated under {secrets.folder} (owner-only)")
    if "prometheus" in names:
        _prepare_prometheus(settings, config, plan_services(settings, config))
    if "postgres" in names:
        cluster = config.cluster(settings)
        try:
            if cluster.initialise():
                echo(f"postgres: cluster initialised in {cluster.data_dir}")
        except postgres.PostgresError as error:
            raise StackError(str(error)) from None


def _after_wave(settings: Settings, config: StackConfig, names: set[str], echo: Callable[[str], None]) -> None:
    """Once PostgreSQL answers: the databases of MLflow and Prefect exist."""
    if "postgres" in names:
        try:
            created = config.cluster(settings).ensure_databases()
        except postgres.PostgresError as error:
            raise StackError(str(error)) from None
        if created:
            echo(f"postgres: created the databases {', '.join(created)}")


def start(settings: Settings, config: StackConfig, echo: Callable[[str], None] = print,
          only: Sequence[str] | None = None) -> list[Record]:
    """Start every service (or those named in ``only``) not already running; wait until each is healthy.

    The services start in waves (PostgreSQL; then Prefect and MLflow in parallel; then the
    gateways and the deployments or worker process), each once the one before is healthy. If
    anything fails, what this call started is stopped. The gateway needs a champion of each
    model it serves before it becomes ready.
    """
    planned = plan_services(settings, config)
    if only is not None:
        unknown = sorted(set(only) - {s.name for s in planned})
        if unknown:
            raise StackError(f"no service {', '.join(unknown)} in the {config.profile} profile; "
                             f"its services: {', '.join(s.name for s in planned)}")
    services = [s for s in planned if only is None or s.name in only]
    running = {s.name for s in status(settings) if s.state in (ServiceState.HEALTHY, ServiceState.UNHEALTHY)}
    to_start = [service for service in services if service.name not in running]
    for name in sorted(running & {s.name for s in services}):
        echo(f"{name}: already running (started by an earlier `steward up`)")
    check_ports(to_start, config.host)
    run_dir(settings).mkdir(parents=True, exist_ok=True)
    (run_dir(settings) / PROFILE_FILE).write_text(json.dumps(
        {"profile": str(config.profile), "services": [s.name for s in planned]}, indent=2))
    names = {s.name for s in to_start}
    started: list[Record] = []
    try:
        _prepare(settings, config, names, echo)
        for wave in sorted({s.wave for s in to_start}):
            records = [launch(settings, s) for s in to_start if s.wave == wave]
            started.extend(records)
            for record in records:
                echo(f"{record.name}: started (pid {record.pid}, port {record.port}); log {record.log}")
            wait_healthy(records, config.startup_timeout)
            for record in records:
                echo(f"{record.name}: healthy at {record.health_url}")
            _after_wave(settings, config, {r.name for r in records}, echo)
    except BaseException:
        for record in reversed(started):
            stop_record(settings, record)
        raise
    return started


def stop(settings: Settings, echo: Callable[[str], None] = print) -> list[str]:
    """Stop what ``steward up`` started (per the pid files), in reverse start order; returns the names stopped."""
    stopped = []
    for record in reversed(recorded(settings)):
        if stop_record(settings, record, timeout=60.0 if record.name == "postgres" else 20.0):
            stopped.append(record.name)
            echo(f"{record.name}: stopped (pid {record.pid})")
        else:
            echo(f"{record.name}: was not running; removed its stale pid file")
    if not stopped:
        echo(f"nothing to stop: no running service recorded under {run_dir(settings)}")
    return stopped


def _expected_services(settings: Settings) -> list[str]:
    try:
        return list(json.loads((run_dir(settings) / PROFILE_FILE).read_text())["services"])
    except (OSError, ValueError, KeyError):
        return list(SERVICE_ORDER)


def replica_views(base_url: str, token: str | None, timeout: float = 3.0) -> tuple[tuple[ReplicaView, ...], str]:
    """Each model's champion, challenger and view age as one gateway sees them; or why they cannot be read."""
    if not token:
        return (), "set STEWARD_ADMIN_TOKEN to read the replica's view (/admin/status)"
    try:
        response = httpx.get(f"{base_url}/admin/status", headers={"Authorization": f"Bearer {token}"},
                             timeout=timeout)
    except httpx.HTTPError as error:
        return (), f"/admin/status: {type(error).__name__}"
    if response.status_code != 200:
        return (), f"/admin/status: HTTP {response.status_code}"
    document = response.json()
    refreshed = document.get("last_refresh")
    age = (datetime.now(UTC) - datetime.fromisoformat(refreshed)).total_seconds() if refreshed else None
    views = tuple(
        ReplicaView(model=entry["model"], champion=(entry.get("champion") or {}).get("version"),
                    challenger=(entry.get("challenger") or {}).get("version"),
                    plan=entry.get("plan_summary", ""), view_age_seconds=age)
        for entry in document.get("models", [])
    )
    return views, ""


def status(settings: Settings) -> list[ServiceStatus]:
    """The state of each service, from its pid file and its health check; each gateway's view of the registry."""
    token = settings.admin_token.get_secret_value() if settings.admin_token else None
    records = {record.name: record for record in recorded(settings)}
    names = _expected_services(settings)
    states = []
    for name in [*names, *(n for n in records if n not in names)]:
        record = records.get(name)
        if record is None:
            states.append(ServiceStatus(name, ServiceState.NOT_RUNNING))
            continue
        url = record.health_url if record.health_url.startswith("postgresql://") else \
            record.health_url.rsplit("/", 1)[0].removesuffix("/api").removesuffix("/-")
        if alive(record) is None:
            states.append(ServiceStatus(name, ServiceState.STALE, record.pid, record.port, url,
                                        f"the process exited; see {record.log}"))
            continue
        ok, detail = healthy(record.health_url)
        views: tuple[ReplicaView, ...] = ()
        if name.startswith("gateway"):
            views, problem = replica_views(url, token)
            detail = f"{detail}; {problem}" if problem else detail
        states.append(ServiceStatus(name, ServiceState.HEALTHY if ok else ServiceState.UNHEALTHY, record.pid,
                                    record.port, url, detail, views))
    return states


def supervise(settings: Settings, config: StackConfig, *, interval: float = 5.0, max_restarts: int = 3,
              echo: Callable[[str], None] = print, should_stop: Callable[[], bool] = lambda: False) -> None:
    """Restart a service whose process exits (at most ``max_restarts`` times each) until told to stop."""
    services = {service.name: service for service in plan_services(settings, config)}
    restarts = dict.fromkeys(services, 0)
    while not should_stop():
        time.sleep(interval)
        for state in status(settings):
            if state.state is not ServiceState.STALE or state.name not in services:  # `down` removes pid files
                continue
            if restarts[state.name] >= max_restarts:
                continue
            restarts[state.name] += 1
            echo(f"{state.name}: {state.state}; restarting ({restarts[state.name]}/{max_restarts})")
            record = launch(settings, services[state.name])
            try:
                wait_healthy([record], config.startup_timeout)
                echo(f"{state.name}: healthy again")
            except StackError as error:
                echo(str(error))
