"""Prometheus for real: the stack's Prometheus scrapes a real gateway and fires the alert an error spike causes.

The gateway serves a model shipped without an imputer, so it fails on rows with a missing income (a
500, which the error-rate alert counts). ``steward.stack`` starts Debian's ``prometheus`` as ``steward up
--with-prometheus`` does, with a 1 s scrape and evaluation and the rules rendered with a short window and
hold time, so the alert fires within seconds instead of production's minutes.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from pydantic import SecretStr

from steward import stack
from steward.monitoring.alerts import GATEWAY_JOB, RuleTiming
from steward.monitoring.prometheus import ScrapeSettings
from steward.serving.arms import probe_row
from steward.spec import load_spec
from tests.integration.conftest import ADMIN_TOKEN
from tests.support.gateway import free_port
from tests.support.models import mark_validated, train_spec, with_estimator_params
from tests.support.polling import wait_until

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deployments" / "grafana" / "dashboards" / "steward-gateway.json"
FAST = ScrapeSettings(scrape_interval="1s", evaluation_interval="1s", rule_timing=RuleTiming(window="15s", hold="3s"))


def _require_prometheus() -> None:
    if shutil.which("prometheus") is None:
        if os.environ.get("STEWARD_REQUIRE_PROMETHEUS"):
            pytest.fail("prometheus is not installed: apt-get install prometheus")
        pytest.skip("prometheus is not installed (apt-get install prometheus)")


def _without_imputer(spec: Any, train_frame: Any) -> Any:
    """Scaling, one-hot encoding and a logistic regression, but no imputer: it raises on a missing income."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [f.name for f in spec.features if f.is_numeric]
    categorical = [f.name for f in spec.features if not f.is_numeric]
    encode = ColumnTransformer([("numeric", StandardScaler(), numeric),
                                ("categorical", OneHotEncoder(handle_unknown="ignore"), categorical)])
    # wrapped so the gateway scores through the pipeline itself (its compiled path replays a bare ColumnTransformer)
    pipeline = Pipeline([("prepare", Pipeline([("encode", encode)])), ("model", LogisticRegression(max_iter=300))])
    complete = train_frame.dropna(subset=spec.feature_names)
    return pipeline.fit(complete[spec.feature_names], complete[spec.target])


@pytest.fixture
def fails_on_missing_income(registry, write_spec, example_frame):
    """A champion that answers complete rows and fails on a row without income; returns its spec path and spec."""
    spec_path = write_spec()
    spec = with_estimator_params(load_spec(spec_path), max_iter=5)
    trained = train_spec(spec, example_frame, str(spec_path))
    trained = replace(trained, estimator=_without_imputer(spec, trained.train_frame))
    complete_holdout = trained.holdout_frame.dropna(subset=spec.feature_names)
    info = registry.register_version(
        spec.name, trained.estimator, lineage=trained.lineage, metrics=trained.metrics,
        input_example=complete_holdout[spec.feature_names].head(20),
        datasets={"holdout": trained.holdout_frame, "reference": trained.train_frame},
    )
    mark_validated(registry, spec.name, info.version)
    registry.promote(spec.name, info.version, reason="test champion without an imputer")
    return spec_path, spec


class PrometheusApi:
    def __init__(self, url: str) -> None:
        self.client = httpx.Client(base_url=f"{url}/api/v1", timeout=10)

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = self.client.get("/query", params={"query": expr}).json()
        assert answer["status"] == "success", f"{expr}: {answer}"
        return answer["data"]["result"]

    def alerts(self, name: str) -> list[dict[str, Any]]:
        return [a for a in self.client.get("/alerts").json()["data"]["alerts"] if a["labels"]["alertname"] == name]

    def rule(self, name: str) -> dict[str, Any]:
        groups = self.client.get("/rules").json()["data"]["groups"]
        (found,) = [rule for group in groups for rule in group["rules"] if rule["name"] == name]
        return found

    def firing(self, name: str) -> list[dict[str, Any]]:
        return [alert for alert in self.alerts(name) if alert["state"] == "firing"]


def _dashboard_expressions() -> list[str]:
    document = json.loads(DASHBOARD.read_text())
    panels = [p for panel in document["panels"] for p in (panel, *panel.get("panels", []))]
    return [target["expr"] for panel in panels for target in panel.get("targets", [])]


@pytest.mark.slow
def test_prometheus_scrapes_the_gateway_and_fires_the_error_alert_on_a_spike(
    fails_on_missing_income, start_gateway, settings, tmp_path
):
    _require_prometheus()
    spec_path, spec = fails_on_missing_income
    gateway = start_gateway([spec.name])
    home = settings.model_copy(update={"home": tmp_path / "home", "admin_token": SecretStr(ADMIN_TOKEN)})
    port = free_port()
    config = stack.StackConfig(spec_paths=(str(spec_path),), gateway_port=int(gateway.url.rsplit(":", 1)[1]),
                               with_prometheus=True, prometheus_port=port, prometheus_scrape=FAST,
                               startup_timeout=120)
    good = {"inputs": probe_row(spec)}
    bad = {"inputs": {**probe_row(spec), "income": [None]}}
    selector = f'model="{spec.name}"'

    (record,) = stack.start(home, config, echo=lambda _: None, only=["prometheus"])
    try:
        files = stack.prometheus_files(home)
        assert (files.token.stat().st_mode & 0o777) == 0o600
        assert json.loads(files.targets.read_text())[0]["targets"] == [gateway.url.removeprefix("http://")]
        (state,) = [s for s in stack.status(home) if s.name == "prometheus"]
        assert (state.state, state.url) == ("healthy", f"http://127.0.0.1:{port}")

        api = PrometheusApi(f"http://127.0.0.1:{port}")
        with gateway.client() as client:
            def predict(payload: dict[str, Any], expected: int) -> None:
                answer = client.post(f"/v1/models/{spec.name}/predict", json=payload)
                assert answer.status_code == expected, answer.text

            def healthy_traffic() -> list[dict[str, Any]]:
                for _ in range(5):
                    predict(good, 200)
                return api.query(f'steward_requests_total{{{selector},status="200"}}')

            refused = client.post(f"/v1/models/{spec.name}/predict", json={"inputs": {"no_such_feature": [1]}})
            assert 400 <= refused.status_code < 500, refused.text  # a caller's fault: counted, not an error of ours
            # the gateway's series arrive, with the job and instance the rules select on
            wait_until(healthy_traffic, "Prometheus to scrape the gateway's request counter", 60, every=0.5)
            (up,) = api.query(f'up{{job="{GATEWAY_JOB}"}}')
            assert up["value"][1] == "1" and up["metric"]["instance"] == gateway.url.removeprefix("http://")
            (loaded,) = api.query(f"steward_champion_loaded{{{selector}}}")
            assert loaded["value"][1] == "1"

            # healthy traffic through several evaluations: the error alert stays quiet
            evaluations: set[str] = set()

            def evaluated_on_healthy_traffic() -> bool:
                healthy_traffic()
                evaluations.add(api.rule("StewardErrorRateHigh")["lastEvaluation"])
                return len(evaluations) >= 3

            wait_until(evaluated_on_healthy_traffic, "the rules to be evaluated on the healthy traffic", 30, every=0.5)
            for name in ("StewardErrorRateHigh", "StewardNoChampionLoaded", "StewardGatewayDown", "StewardLogDropping"):
                rule = api.rule(name)
                assert (rule["health"], rule["state"]) == ("ok", "inactive"), rule

            # the spike: one request in six hits the model's missing-value bug
            def spike() -> list[dict[str, Any]]:
                healthy_traffic()
                predict(bad, 500)
                return api.firing("StewardErrorRateHigh")

            wait_until(spike, "StewardErrorRateHigh to fire", 90, every=0.5)
            (alert,) = api.firing("StewardErrorRateHigh")
            assert alert["labels"]["model"] == spec.name and alert["labels"]["severity"] == "critical"
            assert float(alert["value"]) > 14.4 * (1 - spec.slo.availability)
            assert not api.firing("StewardNoChampionLoaded")

            # every expression of the Grafana dashboard runs on the real series (Grafana's variables filled in)
            for expr in _dashboard_expressions():
                filled = expr.replace("$__rate_interval", "15s").replace("$model", spec.name).replace("$instance", ".*")
                assert api.query(filled), f"no data for the dashboard's {expr}"

        # the replica goes away: its scrape fails and the gateway-down alert fires
        gateway.stop()
        wait_until(lambda: api.firing("StewardGatewayDown"), "StewardGatewayDown to fire", 60, every=0.5)
    finally:
        stack.stop(home, echo=lambda _: None)
    assert not psutil.pid_exists(record.pid) or psutil.Process(record.pid).status() == psutil.STATUS_ZOMBIE
    assert not (home.home / "run" / "prometheus.json").exists()
