"""Prometheus alert rules for the gateways, written from the models' specs (their SLOs set the thresholds).

The rules read only what a gateway exports at ``/metrics`` (``steward.serving.metrics``): an alert on a
series nobody exports would never fire, so ``tests/unit/test_alert_rules.py`` checks every name against a
real gateway's scrape, and ``promtool test rules`` checks that each alert fires on the series it is for.

    uv run python -m steward.monitoring.alerts examples/credit_default/spec.yaml > deployments/prometheus/alerts.yml

``--window`` and ``--for`` render the same rules with shorter windows and hold times, so that a test against a real
Prometheus sees an alert fire in seconds instead of sleeping through production's minutes.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from steward.spec import ModelSpec, load_spec

#: The scrape job that reads every gateway replica (deployments/prometheus/prometheus.yml, `steward up`).
GATEWAY_JOB = "steward-gateway"
#: Fast-burn factor of the multiwindow error-budget alert (Google SRE workbook): 2% of a 30-day budget in an hour.
FAST_BURN = 14.4
RULE_WINDOW = "5m"
_DURATION = re.compile(r"^(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?$")


class AlertRuleError(ValueError):
    """Rules that cannot be rendered as asked (a duration Prometheus would not read)."""


def _check_duration(value: str, what: str) -> str:
    if not value or _DURATION.match(value) is None:
        raise AlertRuleError(f"{what} {value!r} is not a Prometheus duration: write it like 30s, 5m or 1h30m")
    return value


@dataclass(frozen=True)
class RuleTiming:
    """The window rates are read over and, when given, one hold time (``for:``) replacing every rule's own.

    Production keeps the defaults; a test renders a short window and hold to see an alert fire in seconds.
    """

    window: str = RULE_WINDOW
    hold: str | None = None

    def __post_init__(self) -> None:
        _check_duration(self.window, "the rate window")
        if self.hold is not None:
            _check_duration(self.hold, "the hold time (for:)")

    def held(self, default: str) -> str:
        return self.hold if self.hold is not None else default

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


def model_rules(spec: ModelSpec, timing: RuleTiming = RuleTiming()) -> list[dict[str, Any]]:
    """The alerts of one model: its error budget, its latency objectives, a champion to serve."""
    model, slo, window = spec.name, spec.slo, timing.window
    selector = f'model="{model}"'
    budget = 1 - slo.availability
    error_ratio = (f'sum(rate(steward_requests_total{{{selector},status=~"5.."}}[{window}])) '
                   f'/ sum(rate(steward_requests_total{{{selector}}}[{window}]))')
    rules = [
        _alert("StewardErrorRateHigh", f"{error_ratio} > {FAST_BURN * budget:.6g}", timing.held("1m"), "critical",
               f"{model}: errors burn the error budget {FAST_BURN:g}x too fast",
               f"More than {FAST_BURN * budget:.4%} of {model}'s predictions failed over {window} "
               f"(availability objective {slo.availability:.4%}). Check the gateway's logs and the serving "
               "versions; `steward rollback` if a new version caused it.", {"model": model}),
    ]
    quantiles = [(0.95, slo.p95_latency_ms)] + ([(0.99, slo.p99_latency_ms)] if slo.p99_latency_ms else [])
    latency_hold = timing.held("10m")
    for quantile, objective_ms in quantiles:
        percent = round(quantile * 100)
        rules.append(_alert(
            f"StewardLatencyP{percent}AboveSLO",
            f"histogram_quantile({quantile}, sum by (le) (rate(steward_request_latency_seconds_bucket{{{selector}}}"
            f"[{window}]))) > {objective_ms / 1000:.6g}",
            latency_hold, "warning", f"{model}: p{percent} latency above its {objective_ms:g} ms objective",
            f"The p{percent} of {model}'s predict latency inside the gateways has been above "
            f"slo.p{percent}_latency_ms ({objective_ms:g} ms) for {latency_hold}.", {"model": model}))
    rules.append(_alert(
        "StewardNoChampionLoaded", f"max(steward_champion_loaded{{{selector}}}) == 0", timing.held("1m"),
        "critical",
        f"{model}: no gateway has a champion loaded",
        f"Every gateway serving {model} answers 503: no version holds the champion alias, or it failed to load "
        "(see last_refresh_error in /admin/status).", {"model": model}))
    return rules


def fleet_rules(timing: RuleTiming = RuleTiming()) -> list[dict[str, Any]]:
    """Alerts about the gateways themselves, whatever they serve."""
    down_hold = timing.held("1m")
    return [
        _alert("StewardGatewayDown", f'up{{job="{GATEWAY_JOB}"}} == 0', down_hold, "critical",
               "a Steward gateway is not answering its scrape",
               f"Prometheus could not scrape {{{{ $labels.instance }}}} for {down_hold}: the replica is down or hung."),
        _alert("StewardLogDropping", f"increase(steward_log_dropped_records_total[{timing.window}]) > 0", "0m",
               "critical", "a gateway is dropping prediction-log rows",
               "{{ $labels.instance }} dropped log rows (queue full or write failed): monitoring and retraining "
               "will miss them. Check the store's disk and the writer in /admin/status."),
        _alert("StewardRegistryViewStale", "max by (instance) (steward_registry_view_stale) == 1", timing.held("1m"),
               "critical",
               "a gateway's view of the registry is stale",
               "{{ $labels.instance }} has not refreshed from MLflow past its staleness limit: a rollback would "
               "not reach it. Check MLflow and last_refresh_error in /admin/status."),
    ]


def alert_rules(specs: Iterable[ModelSpec], timing: RuleTiming = RuleTiming()) -> dict[str, Any]:
    """The rule file: one group for the fleet, one per model."""
    groups = [{"name": "steward-gateways", "rules": fleet_rules(timing)}]
    groups += [{"name": f"steward-model-{spec.name}", "rules": model_rules(spec, timing)} for spec in specs]
    return {"groups": groups}


def render_alert_rules(specs: Iterable[ModelSpec], timing: RuleTiming = RuleTiming()) -> str:
    header = ("# Generated by steward/monitoring/alerts.py from the model specs; do not edit by hand. Regenerate with\n"
              "#   uv run python -m steward.monitoring.alerts examples/credit_default/spec.yaml "
              "> deployments/prometheus/alerts.yml\n")
    return header + yaml.safe_dump(alert_rules(specs, timing), sort_keys=False, width=120)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m steward.monitoring.alerts",
                                     description="Print Prometheus alert rules written from model specs.")
    parser.add_argument("specs", nargs="+", metavar="SPEC.yaml")
    parser.add_argument("--window", default=RULE_WINDOW, help="range of the rate() windows (default %(default)s)")
    parser.add_argument("--for", dest="hold", default=None, help="one hold time for every alert (tests)")
    arguments = parser.parse_args(argv)
    try:
        timing = RuleTiming(arguments.window, arguments.hold)
    except AlertRuleError as error:
        parser.error(str(error))
    sys.stdout.write(render_alert_rules((load_spec(path) for path in arguments.specs), timing))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
