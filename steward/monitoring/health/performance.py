"""The performance check: latency per version against the SLO, error rate, throughput and peak load."""

from __future__ import annotations

import math

import pandas as pd

from steward.monitoring.health.cost import capacity_declared
from steward.monitoring.health.report import (
    Area,
    CheckResult,
    HealthWindow,
    Issue,
    IssueCode,
    Metric,
    Severity,
    exceeds,
    served_requests,
    share_severity,
    version_key,
)
from steward.monitoring.summaries.traffic import LATENCY_CRITICAL_FACTOR, TrafficSummary
from steward.spec import ModelSpec

__all__ = ["LATENCY_CRITICAL_FACTOR", "SLOW_SHARE", "check_performance", "judge_performance"]

SLOW_SHARE = 0.05  # p95 above a limit means more than 5% of requests slower than it


def check_performance(predictions: pd.DataFrame, window: HealthWindow, spec: ModelSpec) -> CheckResult:
    """p50/p95/p99 latency and error rate per version, throughput and peak load, from the log."""
    return judge_performance(TrafficSummary.of_requests(served_requests(predictions), spec), window, spec)


def judge_performance(traffic: TrafficSummary, window: HealthWindow, spec: ModelSpec) -> CheckResult:
    """The performance check on the window's answered requests, summarised (exact or streamed)."""
    area = Area.PERFORMANCE
    total = traffic.requests
    throughput = total / window.seconds
    metrics: dict[str, Metric] = {"requests": total, "throughput_rps": throughput}
    issues: list[Issue] = []
    if total == 0:
        issues.append(Issue(
            area, IssueCode.NO_TRAFFIC, Severity.WARNING, "no predictions logged",
            f"no served prediction of {spec.name} in {window.describe()}",
            "check that a gateway serves the model with its prediction log on (`steward serve`, log mode not off)",
        ))
        return CheckResult.judged(area, metrics, issues)

    floor = spec.health.min_throughput_rps
    if floor > 0 and throughput < floor:
        issues.append(Issue(
            area, IssueCode.LOW_THROUGHPUT, Severity.WARNING, "throughput below the floor",
            f"{throughput:.3g} requests/s, floor {floor:g}",
            "consider scaling or batching if clients are queueing; if demand fell, lower health.min_throughput_rps",
        ))
    peak = traffic.peak_rps(window.seconds)
    capacity = spec.cost.replicas * spec.cost.replica_capacity_rps
    metrics.update(peak_hour_rps=peak, capacity_rps=capacity)
    notes: list[str] = []
    if peak > capacity and not capacity_declared(spec):
        notes.append(f"busiest hour {peak:.3g} requests/s is above the default capacity of {capacity:g} requests/s; "
                     "declare cost.replica_capacity_rps to have the load judged (the latency SLO still is)")
    elif peak > capacity:
        issues.append(Issue(
            area, IssueCode.OVER_CAPACITY, Severity.WARNING, "peak load above the configured capacity",
            f"busiest hour {peak:.3g} requests/s, {spec.cost.replicas} replica(s) x "
            f"{spec.cost.replica_capacity_rps:g} = {capacity:g} requests/s",
            f"consider scaling out to {math.ceil(peak / spec.cost.replica_capacity_rps)} replicas, or batching",
        ))

    limit = spec.slo.p95_latency_ms
    for version, served in sorted(traffic.versions.items(), key=lambda item: version_key(item[0])):
        v = f"v{version}"
        n = served.requests
        p50, p95, p99 = served.latency.percentiles([50, 95, 99])
        errors = served.errors
        metrics.update({f"requests[{v}]": n, f"p50_ms[{v}]": p50, f"p95_ms[{v}]": p95, f"p99_ms[{v}]": p99,
                        f"error_rate[{v}]": errors / n})
        slow_critical, slow = served.slow_critical, served.slow
        severity = (Severity.CRITICAL if exceeds(slow_critical, n, SLOW_SHARE)
                    else Severity.WARNING if exceeds(slow, n, SLOW_SHARE) else None)
        if severity:
            issues.append(Issue(
                area, IssueCode.LATENCY, severity, f"p95 latency of {v} above the SLO",
                f"p95 {p95:.1f} ms (p50 {p50:.1f}, p99 {p99:.1f}) against {limit:g} ms; "
                f"{slow / n:.1%} of {n} requests slower",
                "consider optimization or caching; compare with the previous version and roll back if it regressed",
                subject=v,
            ))
        severity = share_severity(errors, n, spec.health.max_error_rate)
        if severity:
            issues.append(Issue(
                area, IssueCode.ERROR_RATE, severity, f"error rate of {v} above the limit",
                f"{errors} of {n} requests failed ({errors / n:.1%}), limit {spec.health.max_error_rate:.1%}",
                "read the gateway's model_error log lines; roll back if the version is new",
                subject=v,
            ))
    return CheckResult.judged(area, metrics, issues, notes)
