"""The cost check: cost per request from the price per replica-hour and the observed volume; idle capacity."""

from __future__ import annotations

import math

import pandas as pd

from steward.monitoring.health.report import (
    Area,
    CheckResult,
    HealthWindow,
    Issue,
    IssueCode,
    Metric,
    Severity,
    served_requests,
)
from steward.monitoring.summaries.traffic import TrafficSummary
from steward.spec import ModelSpec


def check_cost(predictions: pd.DataFrame, window: HealthWindow, spec: ModelSpec) -> CheckResult:
    """Cost per request from the price per replica-hour and the observed volume; idle capacity at peak
    (a warning only when the capacity or a cost limit was declared, a note on the defaults)."""
    return judge_cost(TrafficSummary.of_requests(served_requests(predictions), spec), window, spec)


def judge_cost(traffic: TrafficSummary, window: HealthWindow, spec: ModelSpec) -> CheckResult:
    """The cost check on the window's answered requests, summarised (exact or streamed)."""
    area = Area.COST
    cost = spec.cost
    n = traffic.requests
    spent = cost.price_per_replica_hour * cost.replicas * window.hours
    capacity = cost.replicas * cost.replica_capacity_rps
    peak = traffic.peak_rps(window.seconds)
    idle = max(0.0, 1 - peak / capacity)
    per_1k = spent / n * 1000 if n else None
    metrics: dict[str, Metric] = {
        "requests": n, "cost": spent, "cost_per_1k_requests": per_1k,
        "mean_utilisation": n / window.seconds / capacity, "idle_share_at_peak": idle,
    }
    issues: list[Issue] = []
    limit = spec.health.max_cost_per_1k_requests
    if limit is not None and (per_1k is None or per_1k > limit):
        shown = f"{per_1k:.4g}" if per_1k is not None else "unbounded (no requests)"
        issues.append(Issue(
            area, IssueCode.COST_PER_REQUEST, Severity.WARNING, "cost per request above the limit",
            f"{shown} per 1000 requests ({spent:.4g} for {cost.replicas} replica(s) over {window.hours:g} h, "
            f"{n} requests), limit {limit:g}",
            "serve the model from fewer or smaller replicas, or share a gateway with other models",
        ))
    notes: list[str] = []
    if idle > spec.health.max_idle_share and not capacity_declared(spec):
        notes.append(f"{idle:.0%} of the default {capacity:g} requests/s capacity idle in the busiest hour "
                     f"({peak:.3g} requests/s); declare cost.replica_capacity_rps (what one replica serves at "
                     "its SLO) to have idle capacity judged")
    elif idle > spec.health.max_idle_share:
        needed = max(1, math.ceil(peak / (cost.replica_capacity_rps * (1 - spec.health.max_idle_share))))
        advice = (f"run {needed} replica(s) instead of {cost.replicas}" if needed < cost.replicas
                  else "use a smaller replica, or serve other models from the same gateway")
        issues.append(Issue(
            area, IssueCode.IDLE_CAPACITY, Severity.WARNING, "capacity idle even at peak",
            f"{idle:.0%} of {capacity:g} requests/s idle in the busiest hour ({peak:.3g} requests/s), "
            f"limit {spec.health.max_idle_share:.0%}",
            advice,
        ))
    return CheckResult.judged(area, metrics, issues, notes)


def capacity_declared(spec: ModelSpec) -> bool:
    """Whether the team said what a replica serves or what it may cost: idle capacity is judged only then.

    The default capacity (200 requests/s) is a placeholder, not a measurement; judged against it, a
    healthy model with modest traffic would be reported as wasteful on every run.
    """
    return "replica_capacity_rps" in spec.cost.model_fields_set or spec.health.max_cost_per_1k_requests is not None
