"""The local stack of the embedded mode: start, health-check, supervise and stop its processes.

``steward up`` starts four processes, each in its own session (process group) so that
``steward down`` can stop a process together with its children and nothing else:

| service | command | health check |
| --- | --- | --- |
| ``prefect`` | ``prefect server start`` (SQLite under ``<home>/prefect``) | ``GET /api/health`` |
| ``mlflow`` | ``mlflow server`` on the home's tracking store, with its UI | ``GET /health`` |
| ``gateway`` | ``steward serve <models>`` | ``GET /readyz`` (every model loaded and verified) |
| ``deployments`` | ``steward deployments <specs>`` (``prefect.serve``) | the runner's ``GET /health`` |
| ``prometheus`` | Debian's ``prometheus`` (``--with-prometheus`` only), scraping every gateway | ``GET /-/ready`` |

A pid file per service under ``<home>/run`` records the pid, the process's start time (so a
reused pid is never mistaken for ours), the port and the log file; logs go to ``<home>/logs``.
No Prefect import here: this is plain process supervision.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil

from steward.config import Settings, environment_for
from steward.monitoring.prometheus import (
    PrometheusFiles,
    PrometheusSetupError,
    ScrapeSettings,
    prometheus_command,
    write_prometheus_files,
)

SERVICE_ORDER = ("prefect", "mlflow", "gateway", "deployments", "prometheus")


class StackError(RuntimeError):
    """Something the user can fix: a taken port, a service that did not become healthy."""


class PortTaken(StackError):
    pass


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
    startup_timeout: float = 180.0
    with_prometheus: bool = False
    prometheus_port: int = 9090
    prometheus_scrape: ScrapeSettings = ScrapeSettings()  # tests scrape every second and hold alerts briefly

    @property
    def prefect_api_url(self) -> str:
        return f"http://{self.host}:{self.prefect_port}/api"


@dataclass(frozen=True)
class Service:
    name: str
    command: tuple[str, ...]
    port: int
    health_url: str
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Record:
    """What the pid file of a running service says."""

    name: str
    pid: int
    create_time: float
    port: int
    health_url: str
    log: str
    command: tuple[str, ...]
    started: str

    @classmethod
    def read(cls, path: Path) -> Record:
        data = json.loads(path.read_text())
        data["command"] = tuple(data["command"])
        return cls(**data)


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    state: str  # "healthy", "unhealthy", "not running", "stale pid file"
    pid: int | None = None
    port: int | None = None
    url: str | None = None
    detail: str = ""


def run_dir(settings: Settings) -> Path:
    return settings.home / "run"


def log_dir(settings: Settings) -> Path:
    return settings.home / "logs"


def _bin(name: str) -> str:
    """A console script of this environment (mlflow's server also needs its bin/ on PATH)."""
    return str(Path(sys.executable).parent / name)


def plan_services(settings: Settings, config: StackConfig) -> list[Service]:
    """The four services of the stack, in start order."""
    if not config.spec_paths:
        raise StackError("name at least one model spec: `steward up path/to/spec.yaml`")
    base = {
        **{key: value for key, value in os.environ.items() if key.startswith("STEWARD_")},  # admin token, webhook
        **environment_for(settings),
        "STEWARD_HOME": str(settings.home),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
    }
    base.pop("PREFECT_API_URL", None)
    client = {**base, "PREFECT_API_URL": config.prefect_api_url}
    if not config.models:
        from steward.spec import load_spec

        models = tuple(load_spec(path).name for path in config.spec_paths)
    else:
        models = config.models
    host = config.host
    services = [
        Service(
            "prefect",
            (_bin("prefect"), "server", "start", "--host", host, "--port", str(config.prefect_port)),
            config.prefect_port, f"http://{host}:{config.prefect_port}/api/health",
            {**base, "PREFECT_SERVER_API_HOST": host, "PREFECT_SERVER_API_PORT": str(config.prefect_port),
             "PREFECT_UI_API_URL": config.prefect_api_url},
        ),
        Service(
            "mlflow",
            (_bin("mlflow"), "server", "--backend-store-uri", settings.resolved_tracking_uri,
             "--default-artifact-root", settings.resolved_artifact_root, "--host", host,
             "--port", str(config.mlflow_port), "--workers", "1"),
            config.mlflow_port, f"http://{host}:{config.mlflow_port}/health", base,
        ),
        Service(
            "gateway",
            (_bin("steward"), "serve", *models, "--host", host, "--port", str(config.gateway_port)),
            config.gateway_port, f"http://{host}:{config.gateway_port}/readyz", client,
        ),
        Service(
            "deployments",
            (_bin("steward"), "deployments", *config.spec_paths,
             "--gateway-url", f"http://{host}:{config.gateway_port}"),
            config.deployments_port, f"http://{host}:{config.deployments_port}/health",
            {**client, "PREFECT_RUNNER_SERVER_ENABLE": "true", "PREFECT_RUNNER_SERVER_HOST": host,
             "PREFECT_RUNNER_SERVER_PORT": str(config.deployments_port),
             # a triggered run starts within 2 s instead of 10; one local process polling is cheap
             "PREFECT_RUNNER_POLL_FREQUENCY": os.environ.get("PREFECT_RUNNER_POLL_FREQUENCY", "2")},
        ),
    ]
    if config.with_prometheus:
        services.append(_prometheus_service(settings, config))
    return services


def prometheus_files(settings: Settings) -> PrometheusFiles:
    return PrometheusFiles(settings.home / "prometheus")


def _prometheus_service(settings: Settings, config: StackConfig) -> Service:
    try:
        command = prometheus_command(prometheus_files(settings), config.host, config.prometheus_port)
    except PrometheusSetupError as error:
        raise StackError(str(error)) from None
    return Service("prometheus", command, config.prometheus_port,
                   f"http://{config.host}:{config.prometheus_port}/-/ready", {"PATH": os.environ.get("PATH", "")})


def _prepare_prometheus(settings: Settings, config: StackConfig, services: Sequence[Service]) -> None:
    """Write Prometheus's config, the specs' alert rules and every gateway replica of the stack as a target."""
    from steward.spec import load_spec

    scrape_host = "127.0.0.1" if config.host in ("0.0.0.0", "::") else config.host
    gateways = [f"{scrape_host}:{s.port}" for s in services if s.name.startswith("gateway")]  # every replica
    token = settings.admin_token.get_secret_value() if settings.admin_token else None
    write_prometheus_files(prometheus_files(settings), [load_spec(path) for path in config.spec_paths], gateways,
                           config.prometheus_scrape, bearer_token=token)


# --- ports ---------------------------------------------------------------------------------------

def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _listener(port: int) -> str:
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return f" by pid {conn.pid} ({' '.join(psutil.Process(conn.pid).cmdline()[:3])})"
    except (psutil.Error, OSError):
        pass
    return ""


def check_ports(services: Sequence[Service], host: str) -> None:
    """Raise :class:`PortTaken` naming every taken port, its service and the option that moves it."""
    ports = [service.port for service in services]
    clashes = sorted({p for p in ports if ports.count(p) > 1})
    if clashes:
        raise PortTaken(f"ports {clashes} are given to more than one service; choose a different port for each")
    taken = [service for service in services if not port_is_free(host, service.port)]
    if taken:
        raise PortTaken("; ".join(
            f"port {s.port} on {host} for the {s.name} service is already in use{_listener(s.port)}: "
            f"stop that process or choose another with --{s.name}-port"
            for s in taken
        ))


# --- pid files and processes ---------------------------------------------------------------------

def _pid_file(settings: Settings, name: str) -> Path:
    return run_dir(settings) / f"{name}.json"


def _alive(record: Record) -> psutil.Process | None:
    """The recorded process if it is still the one we started (same pid and start time)."""
    try:
        process = psutil.Process(record.pid)
        if abs(process.create_time() - record.create_time) < 1.0 and process.status() != psutil.STATUS_ZOMBIE:
            return process
    except psutil.Error:
        pass
    return None


def _healthy(url: str, timeout: float = 3.0) -> tuple[bool, str]:
    try:
        response = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as error:
        return False, f"{type(error).__name__}"
    return response.status_code == 200, f"HTTP {response.status_code}"


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _launch(settings: Settings, service: Service) -> Record:
    log_dir(settings).mkdir(parents=True, exist_ok=True)
    run_dir(settings).mkdir(parents=True, exist_ok=True)
    log_path = log_dir(settings) / f"{service.name}.log"
    with log_path.open("ab") as log:
        log.write(f"\n=== {datetime.now(UTC).isoformat()} starting: {' '.join(service.command)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            service.command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=service.env, cwd=os.getcwd(), start_new_session=True,
        )
    record = Record(
        name=service.name, pid=process.pid, create_time=psutil.Process(process.pid).create_time(),
        port=service.port, health_url=service.health_url, log=str(log_path), command=service.command,
        started=datetime.now(UTC).isoformat(),
    )
    _pid_file(settings, service.name).write_text(json.dumps(asdict(record), indent=2))
    return record


def _wait_healthy(records: Sequence[Record], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = list(records)
    while pending:
        for record in list(pending):
            if _alive(record) is None:
                raise StackError(
                    f"the {record.name} service exited during start-up; the end of {record.log}:\n{_tail(Path(record.log))}"
                )
            if _healthy(record.health_url)[0]:
                pending.remove(record)
        if pending and time.monotonic() > deadline:
            names = ", ".join(f"{r.name} ({r.health_url})" for r in pending)
            raise StackError(f"not healthy after {timeout:.0f} s: {names}; see the logs under {Path(pending[0].log).parent}")
        if pending:
            time.sleep(0.5)


def start(settings: Settings, config: StackConfig, echo: Callable[[str], None] = print,
          only: Sequence[str] | None = None) -> list[Record]:
    """Start every service (or those named in ``only``) not already running; wait until each is healthy.

    Prefect and MLflow start first (in parallel); the gateway and the deployments process
    follow once the Prefect API answers. If anything fails, what this call started is stopped.
    The gateway needs a champion of each model it serves before it becomes ready.
    """
    planned = plan_services(settings, config)
    services = [s for s in planned if only is None or s.name in only]
    running = {s.name for s in status(settings) if s.state in ("healthy", "unhealthy")}
    to_start = [service for service in services if service.name not in running]
    for name in sorted(running):
        echo(f"{name}: already running (started by an earlier `steward up`)")
    check_ports(to_start, config.host)
    if any(service.name == "prometheus" for service in to_start):
        _prepare_prometheus(settings, config, planned)
    started: list[Record] = []
    try:
        for wave in (("prefect", "mlflow"), ("gateway", "deployments", "prometheus")):
            records = [_launch(settings, s) for s in to_start if s.name in wave]
            started.extend(records)
            for record in records:
                echo(f"{record.name}: started (pid {record.pid}, port {record.port}); log {record.log}")
            _wait_healthy(records, config.startup_timeout)
            for record in records:
                echo(f"{record.name}: healthy at {record.health_url}")
    except BaseException:
        for record in reversed(started):
            _stop_record(settings, record)
        raise
    return started


def _stop_record(settings: Settings, record: Record, timeout: float = 20.0) -> bool:
    """Stop the recorded process group; True if it was running."""
    process = _alive(record)
    was_running = process is not None
    if process is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(record.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except psutil.TimeoutExpired:
            os.killpg(record.pid, signal.SIGKILL)
            process.wait(timeout=5)
    if was_running:  # children left in the group after the leader exited
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(record.pid, signal.SIGKILL)
    _pid_file(settings, record.name).unlink(missing_ok=True)
    return was_running


def stop(settings: Settings, echo: Callable[[str], None] = print) -> list[str]:
    """Stop what ``steward up`` started (per the pid files); returns the names stopped."""
    stopped = []
    for name in reversed(SERVICE_ORDER):
        path = _pid_file(settings, name)
        if not path.exists():
            continue
        record = Record.read(path)
        if _stop_record(settings, record):
            stopped.append(name)
            echo(f"{name}: stopped (pid {record.pid})")
        else:
            echo(f"{name}: was not running; removed its stale pid file")
    if not stopped:
        echo(f"nothing to stop: no running service recorded under {run_dir(settings)}")
    return stopped


def status(settings: Settings) -> list[ServiceStatus]:
    """The state of each service, from its pid file and its health check."""
    states = []
    for name in SERVICE_ORDER:
        path = _pid_file(settings, name)
        if not path.exists():
            states.append(ServiceStatus(name, "not running"))
            continue
        record = Record.read(path)
        url = record.health_url.rsplit("/", 1)[0].removesuffix("/api").removesuffix("/-")
        if _alive(record) is None:
            states.append(ServiceStatus(name, "stale pid file", record.pid, record.port, url,
                                        f"the process exited; see {record.log}"))
            continue
        ok, detail = _healthy(record.health_url)
        states.append(ServiceStatus(name, "healthy" if ok else "unhealthy", record.pid, record.port, url, detail))
    return states


def supervise(settings: Settings, config: StackConfig, *, interval: float = 5.0, max_restarts: int = 3,
              echo: Callable[[str], None] = print, should_stop: Callable[[], bool] = lambda: False) -> None:
    """Restart a service whose process exits (at most ``max_restarts`` times each) until told to stop."""
    services = {service.name: service for service in plan_services(settings, config)}
    restarts = dict.fromkeys(services, 0)
    while not should_stop():
        time.sleep(interval)
        for state in status(settings):
            if state.state != "stale pid file" or state.name not in services:  # `down` removes pid files
                continue
            if restarts[state.name] >= max_restarts:
                continue
            restarts[state.name] += 1
            echo(f"{state.name}: {state.state}; restarting ({restarts[state.name]}/{max_restarts})")
            record = _launch(settings, services[state.name])
            try:
                _wait_healthy([record], config.startup_timeout)
                echo(f"{state.name}: healthy again")
            except StackError as error:
                echo(str(error))
