"""The Grafana dashboard (deployments/grafana) reads only what a real gateway exports, in valid PromQL.

Grafana does not run here. What can be checked without it is checked: every expression parses
(``promtool check rules`` on the expressions as recording rules), every metric it names is in the
``/metrics`` scrape of a real gateway serving a real model (or is Prometheus's own ``up``), and the
dashboard points at the provisioned data source. The scrape trains and serves a model, so those two
tests are in the slow tier. tests/integration/test_prometheus.py also runs
each expression against a real Prometheus scraping a real gateway.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from steward.monitoring.alerts import METRICS_READ, alert_rules
from tests.support.gateway import start_gateway
from tests.support.models import register_champion
from tests.support.promql import PROMETHEUS_SERIES, exported_names, metric_names

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deployments" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "steward-gateway.json"
#: Grafana's variables, replaced by values Prometheus can parse.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$model": ".*", "$instance": ".*"}


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in document["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_expressions(document: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard: panel queries and annotation queries."""
    exprs = [target["expr"] for panel in panels(document) for target in panel.get("targets", [])]
    exprs += [annotation["expr"] for annotation in document["annotations"]["list"] if "expr" in annotation]
    return exprs


def variable_metrics(document: dict[str, Any]) -> set[str]:
    """The metrics the template variables list label values of (``label_values(metric, label)``)."""
    names = set()
    for variable in document["templating"]["list"]:
        if variable["type"] == "query":
            inner = variable["query"]["query"].removeprefix("label_values(").rsplit(",", 1)[0]
            names |= metric_names(inner)
    return names


def with_variables(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def test_the_dashboard_shows_what_the_issue_asks_for():
    document = dashboard()
    read = {name for expr in dashboard_expressions(document) for name in metric_names(expr)}
    assert {"steward_requests_total", "steward_request_latency_seconds_bucket", "steward_predicted_rows_total",
            "steward_log_written_records_total", "steward_log_dropped_records_total", "steward_log_queue_depth",
            "steward_registry_view_age_seconds", "steward_champion_loaded"} <= read
    latency = [t["expr"] for p in panels(document) for t in p.get("targets", []) if "latency" in t["expr"]]
    assert {"0.5", "0.95", "0.99"} <= {expr.split("(", 2)[1].split(",")[0] for expr in latency}
    assert all("by (le, arm)" in expr for expr in latency), "latency quantiles are per arm"
    ids = [panel["id"] for panel in panels(document)]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for panel in panels(document):
        position = panel["gridPos"]
        assert position["x"] + position["w"] <= 24, panel["title"]


def test_every_panel_uses_the_provisioned_prometheus():
    provisioned = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = provisioned["datasources"]
    document = dashboard()
    (chooser,) = [v for v in document["templating"]["list"] if v["type"] == "datasource"]
    assert chooser["query"] == source["type"] == "prometheus" and chooser["current"]["value"] == source["uid"]
    for panel in panels(document):
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "steward.yml").read_text())["providers"]
    compose = yaml.safe_load((ROOT / "deployments" / "docker-compose.yml").read_text())["services"]["grafana"]
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in compose["volumes"]}
    assert mounts[providers[0]["options"]["path"]] == "./grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "./grafana/provisioning"


def test_every_expression_is_valid_promql(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("STEWARD_REQUIRE_PROMETHEUS"):
            pytest.fail("promtool is not installed: apt-get install prometheus")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    rules = [{"record": f"dashboard:expr_{i}", "expr": with_variables(expr)}
             for i, expr in enumerate(dashboard_expressions(dashboard()))]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, sort_keys=False))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def gateway_exports(registry, quick_spec, quick_model, tmp_path_factory) -> set[str]:
    """The sample names a real gateway serving a real champion exports at /metrics after some traffic."""
    from steward.serving.arms import probe_row

    spec = quick_spec.model_copy(update={"name": "grafana-dashboard-model"})
    register_champion(registry, spec, quick_model)
    gateway = start_gateway(registry, [spec.name], store_uri=str(tmp_path_factory.mktemp("log")), admin_token=None)
    try:
        with gateway.client() as client:
            for _ in range(3):
                answer = client.post(f"/v1/models/{spec.name}/predict", json={"inputs": probe_row(spec)})
                assert answer.status_code == 200, answer.text
            gateway.wait_until(lambda: gateway.gateway.log_stats().written_rows >= 3, "the log writer to write")
            scrape = client.get("/metrics")
        assert scrape.status_code == 200
        return exported_names(scrape.text)
    finally:
        gateway.stop()


@pytest.mark.slow
def test_every_metric_the_dashboard_reads_is_exported_by_a_real_gateway(gateway_exports):
    document = dashboard()
    read = {name for expr in dashboard_expressions(document) for name in metric_names(expr)} | variable_metrics(document)
    missing = read - gateway_exports - PROMETHEUS_SERIES
    assert not missing, f"the dashboard reads metrics no gateway exports: {sorted(missing)}"


@pytest.mark.slow
def test_every_metric_the_alert_rules_read_is_exported_by_a_real_gateway(gateway_exports, quick_spec):
    rules = [rule for group in alert_rules([quick_spec])["groups"] for rule in group["rules"]]
    read = {name for rule in rules for name in metric_names(rule["expr"])}
    assert read == set(METRICS_READ)
    missing = read - gateway_exports - PROMETHEUS_SERIES
    assert not missing, f"the alert rules read metrics no gateway exports: {sorted(missing)}"
