"""Supervising a service's process: ports, pid files, launch in a session of its own, health, stop.

The primitives under :mod:`steward.stack`, which plans the services and starts them in waves. A pid
file records the pid and the process's start time, so a reused pid is never mistaken for ours.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from steward import postgres
from steward.config import Settings
from steward.credentials import CredentialsError


class StackError(RuntimeError):
    """Something the user can fix: a taken port, a service that did not become healthy."""


class PortTaken(StackError):
    pass


@dataclass(frozen=True)
class Service:
    name: str
    command: tuple[str, ...]
    port: int
    health_url: str  # http(s)://… answered 200, or postgresql://host:port accepting connections
    env: dict[str, str] = field(default_factory=dict)
    wave: int = 0  # started after every service of a lower wave is healthy; stopped in reverse
    port_option: str = ""  # the `steward up` option that moves the port
    user: str | None = None  # OS user the process runs as (PostgreSQL refuses root)
    stop_signal: int = signal.SIGTERM
    secret_env: Callable[[], dict[str, str]] | None = None  # added to env at launch; never written down

    @property
    def option(self) -> str:
        return self.port_option or f"--{self.name}-port"


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
    wave: int = 0
    stop_signal: int = signal.SIGTERM

    @classmethod
    def read(cls, path: Path) -> Record:
        data = json.loads(path.read_text())
        data["command"] = tuple(data["command"])
        return cls(**data)


def run_dir(settings: Settings) -> Path:
    return settings.home / "run"


def log_dir(settings: Settings) -> Path:
    return settings.home / "logs"


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
            f"stop that process or choose another with {s.option}"
            for s in taken
        ))


# --- pid files and processes ---------------------------------------------------------------------

def pid_file(settings: Settings, name: str) -> Path:
    return run_dir(settings) / f"{name}.json"


def recorded(settings: Settings) -> list[Record]:
    """Every service with a pid file, in start order."""
    records = [Record.read(path) for path in sorted(run_dir(settings).glob("*.json"))]
    return sorted(records, key=lambda record: record.wave)


def alive(record: Record) -> psutil.Process | None:
    """The recorded process if it is still the one we started (same pid and start time)."""
    try:
        process = psutil.Process(record.pid)
        if abs(process.create_time() - record.create_time) < 1.0 and process.status() != psutil.STATUS_ZOMBIE:
            return process
    except psutil.Error:
        pass
    return None


def healthy(url: str, timeout: float = 3.0) -> tuple[bool, str]:
    if url.startswith("postgresql://"):
        host, _, port = url.removeprefix("postgresql://").rpartition(":")
        try:
            ready = postgres.is_ready(host, int(port), timeout)
        except (postgres.PostgresError, OSError, subprocess.SubprocessError) as error:
            return False, f"{type(error).__name__}: {error}"
        return ready, "accepting connections" if ready else "not accepting connections"
    try:
        response = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as error:
        return False, f"{type(error).__name__}"
    return response.status_code == 200, f"HTTP {response.status_code}"


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def launch(settings: Settings, service: Service) -> Record:
    log_dir(settings).mkdir(parents=True, exist_ok=True)
    run_dir(settings).mkdir(parents=True, exist_ok=True)
    log_path = log_dir(settings) / f"{service.name}.log"
    identity: dict[str, Any] = {}
    if service.user is not None:
        account = pwd.getpwnam(service.user)
        identity = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    try:
        secret_env = service.secret_env() if service.secret_env else {}
    except CredentialsError as error:
        raise StackError(f"the {service.name} service cannot start: {error}") from None
    with log_path.open("ab") as log:
        log.write(f"\n=== {datetime.now(UTC).isoformat()} starting: {' '.join(service.command)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            service.command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**service.env, **secret_env}, cwd=os.getcwd() if service.user is None else "/",
            start_new_session=True, **identity,
        )
    record = Record(
        name=service.name, pid=process.pid, create_time=psutil.Process(process.pid).create_time(),
        port=service.port, health_url=service.health_url, log=str(log_path), command=service.command,
        started=datetime.now(UTC).isoformat(), wave=service.wave, stop_signal=int(service.stop_signal),
    )
    pid_file(settings, service.name).write_text(json.dumps(asdict(record), indent=2))
    return record


def wait_healthy(records: Sequence[Record], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = list(records)
    while pending:
        for record in list(pending):
            if alive(record) is None:
                raise StackError(
                    f"the {record.name} service exited during start-up; the end of {record.log}:\n{tail(Path(record.log))}"
                )
            if healthy(record.health_url)[0]:
                pending.remove(record)
        if pending and time.monotonic() > deadline:
            names = ", ".join(f"{r.name} ({r.health_url})" for r in pending)
            raise StackError(f"not healthy after {timeout:.0f} s: {names}; see the logs under {Path(pending[0].log).parent}")
        if pending:
            time.sleep(0.5)


def stop_record(settings: Settings, record: Record, timeout: float = 20.0) -> bool:
    """Stop the recorded process group; True if it was running."""
    process = alive(record)
    was_running = process is not None
    if process is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(record.pid, record.stop_signal)
        try:
            process.wait(timeout=timeout)
        except psutil.TimeoutExpired:
            os.killpg(record.pid, signal.SIGKILL)
            process.wait(timeout=5)
    if was_running:  # children left in the group after the leader exited
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(record.pid, signal.SIGKILL)
    pid_file(settings, record.name).unlink(missing_ok=True)
    return was_running
