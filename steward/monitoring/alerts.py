"""Prometheus alert rules for the gateways, written from the models' specs (their SLOs set the thresholds).

The rules read only what a gateway exports at ``/metrics`` (``steward.serving.metrics``): an alert on a
series nobody exports would never fire, so ``tests/unit/test_alert_rules.py`` checks every name against a
real gateway's scrape, and ``promtool test rules`` checks that each alert fires on the series it is for.

    uv run python -m steward.monitoring.alerts examples/credit_default/spec.yaml > deployments/prometheus/alerts.yml
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import Any

import yaml

from steward.spec import ModelSpec, load_spec

#: The scrape job that reads every gateway replica (deployments/prometheus/prometheus.yml, `steward up`).
GATEWAY_JOB = "steward-gateway"
#: Fast-burn factor of the multiwindow error-budget alert (Google SRE workbook): 2% of a 30-day budget in an hour.
FAST_BURN = 14.4
RULE_WINDOW = "5m"

#: Every metric name the rules read, as Prometheus stores it (counters with ``_total``, histograms by bucket).
METRICS_READ = (
    "up",
    "steward_requests_total",
    "steward_request_latency_seconds_bucket",
    "steward_log_dropped_records_total",
    "steward_champion_loaded",
    "steward_registry_view_stale",
)


def _alert(name: str, expr: str, duration: str, severity: str, summary: str, description: str,
           labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"alert": name, "expr": expr, "for": duration,
            "labels": {"severity": severity, **(labels or {})},
            "annotations": {"summary": summary, "description": description}}


def model_rules(spec: ModelSpec) -> list[dict[str, Any]]:
    """The alerts of one model: its error budget, its latency objectives, a champion to serve."""
    model, slo = spec.name, spec.slo
    selector = f'model="{model}"'
    budget = 1 - slo.availability
    error_ratio = (f'sum(rate(steward_requests_total{{{selector},status=~"5.."}}[{RULE_WINDOW}])) '
                   f'/ sum(rate(steward_requests_total{{{selector}}}[{RULE_WINDOW}]))')
    rules = [
        _alert("StewardErrorRateHigh", f"{error_ratio} > {FAST_BURN * budget:.6g}", "1m", "critical",
               f"{model}: errors burn the error budget {FAST_BURN:g}x too fast",
               f"More than {FAST_BURN * budget:.4%} of {model}'s predictions failed over {RULE_WINDOW} "
               f"(availability objective {slo.availability:.4%}). Check the gateway's logs and the serving "
               "versions; `steward rollback` if a new version caused it.", {"model": model}),
    ]
    quantiles = [(0.95, slo.p95_latency_ms)] + ([(0.99, slo.p99_latency_ms)] if slo.p99_latency_ms else [])
    for quantile, objective_ms in quantiles:
        percent = round(quantile * 100)
        rules.append(_alert(
            f"StewardLatencyP{percent}AboveSLO",
            f"histogram_quantile({quantile}, sum by (le) (rate(steward_request_latency_seconds_bucket{{{selector}}}"
            f"[{RULE_WINDOW}]))) > {objective_ms / 1000:.6g}",
            "10m", "warning", f"{model}: p{percent} latency above its {objective_ms:g} ms objective",
            f"The p{percent} of {model}'s predict latency inside the gateways has been above "
            f"slo.p{percent}_latency_ms ({objective_ms:g} ms) for 10 minutes.", {"model": model}))
    rules.append(_alert(
        "StewardNoChampionLoaded", f"max(steward_champion_loaded{{{selector}}}) == 0", "1m", "critical",
        f"{model}: no gateway has a champion loaded",
        f"Every gateway serving {model} answers 503: no version holds the champion alias, or it failed to load "
        "(see last_refresh_error in /admin/status).", {"model": model}))
    return rules


def fleet_rules() -> list[dict[str, Any]]:
    """Alerts about the gateways themselves, whatever they serve."""
    return [
        _alert("StewardGatewayDown", f'up{{job="{GATEWAY_JOB}"}} == 0', "1m", "critical",
               "a Steward gateway is not answering its scrape",
               "Prometheus could not scrape {{ $labels.instance }} for a minute: the replica is down or hung."),
        _alert("StewardLogDropping", f"increase(steward_log_dropped_records_total[{RULE_WINDOW}]) > 0", "0m",
               "critical", "a gateway is dropping prediction-log rows",
               "{{ $labels.instance }} dropped log rows (queue full or write failed): monitoring and retraining "
               "will miss them. Check the store's disk and the writer in /admin/status."),
        _alert("StewardRegistryViewStale", "max by (instance) (steward_registry_view_stale) == 1", "1m", "critical",
               "a gateway's view of the registry is stale",
               "{{ $labels.instance }} has not refreshed from MLflow past its staleness limit: a rollback would "
               "not reach it. Check MLflow and last_refresh_error in /admin/status."),
    ]


def alert_rules(specs: Iterable[ModelSpec]) -> dict[str, Any]:
    """The rule file: one group for the fleet, one per model."""
    groups = [{"name": "steward-gateways", "rules": fleet_rules()}]
    groups += [{"name": f"steward-model-{spec.name}", "rules": model_rules(spec)} for spec in specs]
    return {"groups": groups}


def render_alert_rules(specs: Iterable[ModelSpec]) -> str:
    header = ("# Generated by steward/monitoring/alerts.py from the model specs; do not edit by hand. Regenerate with\n"
              "#   uv run python -m steward.monitoring.alerts examples/credit_default/spec.yaml "
              "> deployments/prometheus/alerts.yml\n")
    return header + yaml.safe_dump(alert_rules(specs), sort_keys=False, width=120)


def main(argv: Sequence[str] | None = None) -> int:
    paths = list(sys.argv[1:] if argv is None else argv)
    if not paths:
        print("usage: python -m steward.monitoring.alerts SPEC.yaml [SPEC.yaml ...]", file=sys.stderr)
        return 2
    sys.stdout.write(render_alert_rules(load_spec(path) for path in paths))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
