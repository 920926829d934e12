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
    peak_rps,
    served_requests,
)
from steward.spec import ModelSpec


def check_cost(predictions: pd.DataFrame, window: HealthWindow, spec: ModelSpec) -> CheckResult:
    """Cost per request from the price per replica-hour and the observed volume; idle capacity at peak."""
    area = Area.COST
    cost = spec.cost
    requests = served_requests(predictions)
    n = len(requests)
    spent = cost.price_per_replica_hour * cost.replicas * window.hours
    capacity = cost.replicas * cost.replica_capacity_rps
    peak = peak_rps(requests["time"], window)
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
    if idle > spec.health.max_idle_share:
        needed = max(1, math.ceil(peak / (cost.replica_capacity_rps * (1 - spec.health.max_idle_share))))
        advice = (f"run {needed} replica(s) instead of {cost.replicas}" if needed < cost.replicas
                  else "use a smaller replica, or serve other models from the same gateway")
        issues.append(Issue(
            area, IssueCode.IDLE_CAPACITY, Severity.WARNING, "capacity idle even at peak",
            f"{idle:.0%} of {capacity:g} requests/s idle in the busiest hour ({peak:.3g} requests/s), "
            f"limit {spec.health.max_idle_share:.0%}",
            advice,
        ))
    return CheckResult.judged(area, metrics, issues)
