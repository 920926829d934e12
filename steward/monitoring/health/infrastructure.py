"""The infrastructure check: CPU and memory of the gateway processes, and whether the gateway answers.

The process sampling and the gateway's ``/metrics`` reading live in ``steward.monitoring.infrastructure``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from steward.monitoring.health.report import (
    Area,
    CheckResult,
    HealthWindow,
    Issue,
    IssueCode,
    Metric,
    Severity,
)
from steward.spec import ModelSpec

SATURATION = 0.95  # CPU or memory share of a gateway process at which it is critical
GATEWAY_CORES = 1.0  # a gateway scores and logs under one GIL: one core is its CPU capacity
INVALID_STATUSES = frozenset({"400", "413", "422"})  # refused because the request did not fit the schema
RATE_LIMITED_STATUS = "429"


@dataclass(frozen=True)
class GatewayReading:
    """What a gateway's ``/metrics`` counted for the model since the gateway started (counters are cumulative)."""

    url: str
    requests_by_status: dict[str, int] | None = None  # None when the gateway could not be read
    error: str | None = None

    @property
    def reachable(self) -> bool:
        return self.error is None

    @property
    def total(self) -> int:
        return sum((self.requests_by_status or {}).values())

    @property
    def invalid(self) -> int:
        return sum(n for status, n in (self.requests_by_status or {}).items() if status in INVALID_STATUSES)

    @property
    def rate_limited(self) -> int:
        return (self.requests_by_status or {}).get(RATE_LIMITED_STATUS, 0)



@dataclass(frozen=True)
class ProcessUsage:
    pid: int
    command: str
    cpu_cores: float  # CPU seconds used per second over the sample
    rss_bytes: int
    memory_limit_bytes: int  # the process's cgroup limit, or the host's memory

    @property
    def cpu_share(self) -> float:
        return self.cpu_cores / GATEWAY_CORES

    @property
    def memory_share(self) -> float:
        return self.rss_bytes / self.memory_limit_bytes


@dataclass(frozen=True)
class InfrastructureSample:
    """CPU and memory of the gateway processes serving a model, from the process table of one host."""

    host: str
    measured_at: datetime
    seconds: float
    searched: str  # how the processes were found (a listening port, a command line)
    processes: tuple[ProcessUsage, ...]
    host_cpu_share: float
    host_memory_share: float


def check_infrastructure(
    sample: InfrastructureSample, spec: ModelSpec, window: HealthWindow, gateway: GatewayReading | None
) -> CheckResult:
    """Gateway processes against the CPU and memory limits; an unreachable gateway is critical."""
    area = Area.INFRASTRUCTURE
    limits = spec.health
    metrics: dict[str, Metric] = {"gateway_processes": len(sample.processes),
                                  "host_cpu_share": sample.host_cpu_share,
                                  "host_memory_share": sample.host_memory_share}
    issues: list[Issue] = []
    notes = [f"measured on {sample.host} at {sample.measured_at:%Y-%m-%d %H:%M:%S} UTC over {sample.seconds:g} s"]
    if sample.measured_at - window.end > timedelta(hours=1):
        notes.append("the window is in the past: CPU and memory are as measured now, not during the window")
    if gateway is not None and not gateway.reachable:
        issues.append(Issue(
            area, IssueCode.GATEWAY_DOWN, Severity.CRITICAL, "gateway not answering",
            f"{gateway.url}: {gateway.error}", "restart the gateway (`steward serve`) or correct the gateway URL",
            subject=gateway.url,
        ))
    if not sample.processes:
        issue = Issue(
            area, IssueCode.CHECK_FAILED, Severity.WARNING, "no gateway process found to measure",
            f"no process serving {spec.name} on {sample.host} ({sample.searched})",
            "run the health check on the gateway's host with --gateway-url, or read CPU and memory from "
            "the platform that runs the gateways",
        )
        return CheckResult.judged(area, metrics, [*issues, issue], notes, failed=True)

    notes.append(f"found {len(sample.processes)} gateway process(es): {sample.searched}")
    metrics["max_cpu_share"] = max(p.cpu_share for p in sample.processes)
    metrics["max_memory_share"] = max(p.memory_share for p in sample.processes)
    metrics["rss_mb"] = sum(p.rss_bytes for p in sample.processes) / 2**20
    for process in sample.processes:
        subject = f"pid {process.pid}"
        for code, share, limit, what, advice in (
            (IssueCode.CPU, process.cpu_share, limits.max_cpu_share, "CPU",
             "add a replica or batch requests; profile the model's predict if one replica should cope"),
            (IssueCode.MEMORY, process.memory_share, limits.max_memory_share, "memory",
             "raise the memory limit or serve fewer warm versions per gateway; look for a leak if it keeps rising"),
        ):
            if share <= limit:
                continue
            severity = Severity.CRITICAL if share >= max(SATURATION, limit) else Severity.WARNING
            capacity = ("of one core" if code is IssueCode.CPU
                        else f"of {process.memory_limit_bytes / 2**30:.1f} GiB")
            issues.append(Issue(
                area, code, severity, f"gateway {what} above the limit",
                f"{subject} ({process.command}) uses {share:.0%} {capacity}, limit {limit:.0%}",
                advice, subject=subject,
            ))
    return CheckResult.judged(area, metrics, issues, notes)
