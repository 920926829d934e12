"""The shipped Prometheus alert rules: valid, in step with the specs, and each firing on what it is for.

``promtool`` (Debian's prometheus package; `.ci/run` installs it) checks the file and runs the rules on
synthetic series, so an alert whose expression could never fire fails here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from steward.monitoring.alerts import (
    FAST_BURN,
    GATEWAY_JOB,
    AlertRuleError,
    RuleTiming,
    alert_rules,
    render_alert_rules,
)
from steward.monitoring.prometheus import PrometheusFiles, PrometheusSetupError, write_prometheus_files
from steward.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deployments" / "prometheus" / "alerts.yml"
EXAMPLE_SPEC = ROOT / "examples" / "credit_default" / "spec.yaml"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("STEWARD_REQUIRE_PROMETHEUS"):
            pytest.fail("promtool is not installed: apt-get install prometheus")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return found


def test_the_rule_file_agrees_with_the_example_spec():
    assert RULES.read_text() == render_alert_rules([load_spec(EXAMPLE_SPEC)]), (
        "deployments/prometheus/alerts.yml is out of date: uv run python -m steward.monitoring.alerts "
        "examples/credit_default/spec.yaml > deployments/prometheus/alerts.yml"
    )


def test_promtool_accepts_the_rules():
    result = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


SERIES = 'steward_requests_total{{model="credit-default",version="3",arm="champion",status="{status}",instance="gw:8080"}}'


def test_each_alert_fires_on_its_symptom_and_stays_quiet_without_it(tmp_path):
    spec = load_spec(EXAMPLE_SPEC)
    budget_share = FAST_BURN * (1 - spec.slo.availability)
    ok_per_minute = 1000
    errors_per_minute = int(ok_per_minute * budget_share * 3)  # three times the fast-burn threshold
    slow_bucket = 'steward_request_latency_seconds_bucket{{model="credit-default",version="3",arm="champion",' \
                  'instance="gw:8080",le="{le}"}}'
    tests = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {   # healthy for 10 minutes, then an error spike: quiet first, firing once it has lasted a minute
                "interval": "1m",
                "input_series": [
                    {"series": SERIES.format(status="200"), "values": f"0+{ok_per_minute}x30"},
                    {"series": SERIES.format(status="500"), "values": f"0+0x10 0+{errors_per_minute}x20"},
                    {"series": 'steward_champion_loaded{model="credit-default",instance="gw:8080"}',
                     "values": "1x10 0x20"},
                    {"series": 'up{job="steward-gateway",instance="gw:8080"}', "values": "1x20 0x10"},
                    {"series": 'steward_log_dropped_records_total{instance="gw:8080"}', "values": "0x15 0+50x15"},
                    {"series": 'steward_registry_view_stale{instance="gw:8080"}', "values": "0x20 1x10"},
                    # every request slower than the 25 ms objective from minute 10: all in the 0.05 s bucket
                    {"series": slow_bucket.format(le="0.025"), "values": f"0+{ok_per_minute}x10 {10 * ok_per_minute}x20"},
                    {"series": slow_bucket.format(le="0.05"), "values": f"0+{ok_per_minute}x30"},
                    {"series": slow_bucket.format(le="+Inf"), "values": f"0+{ok_per_minute}x30"},
                ],
                "alert_rule_test": [
                    {"eval_time": "8m", "alertname": name, "exp_alerts": []}
                    for name in ("StewardErrorRateHigh", "StewardNoChampionLoaded", "StewardGatewayDown",
                                 "StewardLogDropping", "StewardRegistryViewStale", "StewardLatencyP95AboveSLO")
                ] + [
                    {"eval_time": "14m", "alertname": "StewardErrorRateHigh",
                     "exp_alerts": [{"exp_labels": {"severity": "critical", "model": "credit-default"}}]},
                    {"eval_time": "14m", "alertname": "StewardNoChampionLoaded",
                     "exp_alerts": [{"exp_labels": {"severity": "critical", "model": "credit-default"}}]},
                    {"eval_time": "18m", "alertname": "StewardLogDropping",
                     "exp_alerts": [{"exp_labels": {"severity": "critical", "instance": "gw:8080"}}]},
                    {"eval_time": "23m", "alertname": "StewardGatewayDown",
                     "exp_alerts": [{"exp_labels": {"severity": "critical", "instance": "gw:8080",
                                                    "job": "steward-gateway"}}]},
                    {"eval_time": "23m", "alertname": "StewardRegistryViewStale",
                     "exp_alerts": [{"exp_labels": {"severity": "critical", "instance": "gw:8080"}}]},
                    {"eval_time": "25m", "alertname": "StewardLatencyP95AboveSLO",
                     "exp_alerts": [{"exp_labels": {"severity": "warning", "model": "credit-default"}}]},
                ],
            }
        ],
    }
    # promtool compares annotations too: take them from the rules, expanded for the instance where templated
    annotations = {rule["alert"]: rule["annotations"] for group in yaml.safe_load(RULES.read_text())["groups"]
                   for rule in group["rules"]}
    for case in tests["tests"][0]["alert_rule_test"]:
        for expected in case["exp_alerts"]:
            expected["exp_annotations"] = {key: value.replace("{{ $labels.instance }}", "gw:8080")
                                           for key, value in annotations[case["alertname"]].items()}
    path = tmp_path / "alerts_test.yml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    result = subprocess.run([promtool(), "test", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_render_with_a_shorter_window_and_hold_for_tests():
    spec = load_spec(EXAMPLE_SPEC)
    rules = [rule for group in alert_rules([spec], RuleTiming(window="15s", hold="3s"))["groups"]
             for rule in group["rules"]]
    assert {rule["for"] for rule in rules} == {"3s", "0m"}  # log drops fire at once in production too
    assert all("[5m]" not in rule["expr"] for rule in rules)
    with pytest.raises(AlertRuleError, match="not a Prometheus duration"):
        RuleTiming(hold="3 seconds")


def test_the_stack_writes_a_config_prometheus_accepts(tmp_path):
    files = PrometheusFiles(tmp_path / "prometheus")
    write_prometheus_files(files, [load_spec(EXAMPLE_SPEC)], ["127.0.0.1:8081", "127.0.0.1:8080", "127.0.0.1:8080"],
                           bearer_token="a-token")
    assert json.loads(files.targets.read_text()) == [{"targets": ["127.0.0.1:8080", "127.0.0.1:8081"], "labels": {}}]
    assert files.token.read_text() == "a-token" and (files.token.stat().st_mode & 0o777) == 0o600
    assert files.rules.read_text() == RULES.read_text()
    result = subprocess.run([promtool(), "check", "config", str(files.config)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    with pytest.raises(PrometheusSetupError, match="no gateway to scrape"):
        write_prometheus_files(files, [], [])


def test_the_compose_prometheus_config_is_valid(tmp_path):
    """deployments/prometheus/prometheus.yml, with the token file its container writes put somewhere that exists."""
    config = yaml.safe_load((RULES.parent / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["job_name"] == GATEWAY_JOB and config["rule_files"] == ["alerts.yml"]
    compose = yaml.safe_load((ROOT / "deployments" / "docker-compose.yml").read_text())["services"]["prometheus"]
    assert job["authorization"]["credentials_file"] in " ".join(compose["command"])
    job["authorization"]["credentials_file"] = str(tmp_path / "token")
    (tmp_path / "token").write_text("t")
    shutil.copy(RULES, tmp_path / "alerts.yml")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    result = subprocess.run([promtool(), "check", "config", str(tmp_path / "prometheus.yml")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_up_with_prometheus_plans_a_prometheus_service(tmp_path, settings):
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus is not installed (apt-get install prometheus)")
    from steward.stack import StackConfig, plan_services

    home = settings.model_copy(update={"home": tmp_path})
    config = StackConfig(spec_paths=(str(EXAMPLE_SPEC),), with_prometheus=True, prometheus_port=9191)
    (service,) = [s for s in plan_services(home, config) if s.name == "prometheus"]
    assert service.health_url == "http://127.0.0.1:9191/-/ready"
    assert f"--storage.tsdb.path={tmp_path / 'prometheus' / 'data'}" in service.command
    assert "--web.listen-address=127.0.0.1:9191" in service.command
    assert "prometheus" not in {s.name for s in plan_services(home, StackConfig(spec_paths=(str(EXAMPLE_SPEC),)))}
