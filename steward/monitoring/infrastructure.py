"""Measuring the gateways: CPU and memory from the process table, request counts from ``/metrics``.

CPU and memory come from the process table (psutil), not from ``/metrics``: the gateway's
metrics registry has no process collector, and Prometheus' process series would not say what
the process may use (cores, memory limit), so no share could be computed from them. The process
table gives both: CPU time over a short sample, and resident memory against the process's cgroup
limit (or the host's memory). The gateway's processes are the one listening on the port of the
gateway URL, when that URL is on this host, else every ``steward serve`` process naming the model.

``/metrics`` is read for what only the gateway knows: requests it refused (4xx never reach the log).
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

from steward.monitoring.health.infrastructure import GatewayReading, InfrastructureSample, ProcessUsage

REQUESTS_METRIC = "steward_requests"


def is_gateway_command(cmdline: Sequence[str], model: str) -> bool:
    """Whether a command line runs ``steward serve`` with ``model`` among the models it serves."""
    args = [a.rsplit("/", 1)[-1] for a in cmdline]
    if "serve" not in args:
        return False
    rest = args[args.index("serve") + 1:]
    runs_steward = any(a in ("steward", "__main__.py") or a.startswith("steward") for a in args[: args.index("serve")])
    return runs_steward and model in rest


def _is_local_host(host: str) -> bool:
    if host in ("localhost", socket.gethostname(), socket.getfqdn()):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        try:
            address = ipaddress.ip_address(socket.gethostbyname(host))
        except OSError:
            return False
    if address.is_loopback or address.is_unspecified:
        return True
    local = {a.address.split("%")[0] for addrs in psutil.net_if_addrs().values() for a in addrs}
    return str(address) in local


def _listening_pids(port: int) -> set[int]:
    return {
        c.pid for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid is not None
    }


def find_gateway_processes(model: str, gateway_url: str | None = None) -> tuple[list[psutil.Process], str]:
    """The gateway processes serving ``model`` on this host, and a sentence saying how they were looked for."""
    if gateway_url:
        parts = urlsplit(gateway_url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if parts.hostname and _is_local_host(parts.hostname):
            pids = _listening_pids(port)
            processes = [psutil.Process(pid) for pid in sorted(pids) if psutil.pid_exists(pid)]
            if processes:
                return processes, f"the process listening on port {port} of {gateway_url}"
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if is_gateway_command(process.info["cmdline"] or [], model):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    # `uv run steward serve …` matches twice: keep the process that serves, not the launcher.
    pids = {p.pid for p in found}
    found = [p for p in found if not any(child.pid in pids for child in _children(p))]
    looked = f"`steward serve` processes naming {model}"
    if gateway_url:
        looked = f"a local process listening for {gateway_url}, then {looked}"
    return found, looked


def _children(process: psutil.Process) -> list[psutil.Process]:
    try:
        return process.children(recursive=True)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def memory_limit_bytes(pid: int) -> int:
    """The memory a process may use: its cgroup's limit (v2 or v1) when one is set, else the host's memory."""
    total = psutil.virtual_memory().total
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return total
    candidates = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            candidates += [Path("/sys/fs/cgroup") / path.lstrip("/") / "memory.max", Path("/sys/fs/cgroup/memory.max")]
        elif "memory" in controllers.split(","):
            base = Path("/sys/fs/cgroup/memory")
            candidates += [base / path.lstrip("/") / "memory.limit_in_bytes", base / "memory.limit_in_bytes"]
    for candidate in candidates:
        try:
            text = candidate.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < total:
            return int(text)
    return total


def _command(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())[:120] or process.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "?"


def sample_processes(processes: Sequence[psutil.Process], searched: str, seconds: float = 1.0) -> InfrastructureSample:
    """CPU (CPU seconds per second over ``seconds``) and resident memory of each process."""
    started = {}
    for process in processes:
        try:
            started[process.pid] = (process, process.cpu_times())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    psutil.cpu_percent(None)
    begin = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - begin
    host_cpu = psutil.cpu_percent(None) / 100
    usage = []
    for pid, (process, before) in started.items():
        try:
            after = process.cpu_times()
            rss = process.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        cores = (after.user + after.system - before.user - before.system) / elapsed
        usage.append(ProcessUsage(pid, _command(process), cores, rss, memory_limit_bytes(pid)))
    memory = psutil.virtual_memory()
    return InfrastructureSample(
        host=socket.gethostname(), measured_at=datetime.now(UTC), seconds=round(elapsed, 2), searched=searched,
        processes=tuple(usage), host_cpu_share=host_cpu, host_memory_share=(memory.total - memory.available) / memory.total,
    )


def requests_by_status(metrics_text: str, model: str) -> dict[str, int]:
    """``steward_requests_total`` of one model, summed over versions and arms, by HTTP status."""
    counts: dict[str, int] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name != REQUESTS_METRIC:
            continue
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels.get("model") == model:
                status = sample.labels.get("status", "")
                counts[status] = counts.get(status, 0) + int(sample.value)
    return counts


def read_gateway(gateway_url: str, model: str, timeout: float = 5.0) -> GatewayReading:
    """Whether the gateway answers, and its request counts for ``model``; never raises for a dead gateway."""
    url = gateway_url.rstrip("/")
    try:
        with httpx.Client(base_url=url, timeout=timeout) as client:
            client.get("/healthz").raise_for_status()
            response = client.get("/metrics")
            response.raise_for_status()
    except httpx.HTTPError as error:
        return GatewayReading(url, error=f"{type(error).__name__}: {error}")
    return GatewayReading(url, requests_by_status(response.text, model))
