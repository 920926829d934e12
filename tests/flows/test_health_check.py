"""The health-check flow against a real Prefect server, the real MLflow store, a real gateway, and a
prediction log replayed from the scenario simulator.

One model is trained for the module. Its log holds consecutive two-day periods, each with one
planted problem (or none), and each test judges its own period: the tests share the model without
sharing a finding. The gateway runs in this process, so the infrastructure check measures this
process, found by the gateway's listening port.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml

from flows.health_check import health_check
from steward import events
from steward.findings import CheckStatus, Priority
from steward.monitoring.health.report import Area, IssueCode, Severity, Verdict
from steward.monitoring.slo import Compliance, SLOStore
from steward.simulation.injections import DriftKind, Injection
from steward.simulation.replay import ReplayArm, replay_to_store
from steward.simulation.scenario import credit_default_scenario
from tests.support.gateway import free_port
from tests.support.models import register_champion, train_spec

pytestmark = pytest.mark.slow

MODEL = "health-flow-model"
START = pd.Timestamp("2026-10-01", tz="UTC")
PERIOD = pd.Timedelta(days=2)
QUIET, SLOW, FAILING, DRIFTING, SHIFTED = (START + i * PERIOD for i in range(5))
DRIFT_ONSET = DRIFTING + pd.Timedelta(days=1)
ROWS_PER_DAY = 2000
P95_LIMIT_MS = 100.0


@dataclass(frozen=True)
class Served:
    spec_path: str
    gateway_url: str
    defaults_spec_path: str  # the same model with every health, cost and drift setting left at its default


def _start_gateway(registry, models: tuple[str, ...], tmp: Path):
    import uvicorn

    from steward.serving import GatewayConfig, create_app

    config = GatewayConfig(models=models, log_mode="off", poll_interval=0.5, store_uri=str(tmp / "gateway-log"))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(config, registry=registry), host="127.0.0.1", port=port,
                                           log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, name=f"health-gateway-{port}", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the gateway did not become ready"
        time.sleep(0.1)
    return url, server, thread


@pytest.fixture(scope="module")
def served(registry, example_frame, tmp_path_factory) -> Iterator[Served]:
    from steward.simulation.examples import example_spec_text
    from steward.spec import load_spec
    from tasks.common import store

    tmp = tmp_path_factory.mktemp("health")
    document = yaml.safe_load(example_spec_text())
    document.update(name=MODEL, data={"kind": "file", "path": "train.parquet"})
    document["estimator"]["params"]["max_iter"] = 30
    document["slo"]["p95_latency_ms"] = P95_LIMIT_MS
    # Sized for the replayed traffic (about 0.03 requests/s at the busiest hour), so cost is healthy.
    document["cost"] = {"replica_capacity_rps": 0.034}
    example_frame.to_parquet(tmp / "train.parquet", index=False)
    spec_path = tmp / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(document, sort_keys=False))
    spec = load_spec(spec_path)

    trained = train_spec(spec, example_frame, str(spec_path))
    version = register_champion(registry, spec, trained, reason="health-check tests").version

    scenario = credit_default_scenario(
        rows_per_day=ROWS_PER_DAY, start=START, label_delay=pd.Timedelta(hours=1),
        injections=(Injection(DriftKind.CONCEPT_DRIFT, DRIFT_ONSET, None,
                              ("utilization", "num_late_payments", "debt_ratio"), 1.0),
                    # the most important input moves too: 1 of 11 columns, about 40% of the importance
                    Injection(DriftKind.COVARIATE_SHIFT, SHIFTED, None, ("utilization",), 1.0)),
    )
    estimator = trained.estimator
    # The slow period plants 1.2x the limit on top of the measured call latency: a warning, with 0.8x the
    # limit left before the critical line for a busy machine's slower calls.
    for start, planted in ((QUIET, {}), (SLOW, {"extra_latency_ms": 1.2 * P95_LIMIT_MS}),
                           (FAILING, {"error_rate": 0.2}), (DRIFTING, {}), (SHIFTED, {})):
        frame = scenario.generate(start, start + PERIOD)
        replay_to_store(store(), spec, frame, [ReplayArm("champion", version, estimator, **planted)])

    defaults = {k: v for k, v in document.items() if k not in ("cost", "health", "drift")}
    defaults_path = tmp / "defaults.yaml"
    defaults_path.write_text(yaml.safe_dump(defaults, sort_keys=False))

    url, server, thread = _start_gateway(registry, (MODEL,), tmp)
    yield Served(str(spec_path), url, str(defaults_path))
    server.should_exit = True
    thread.join(timeout=30)


def _degraded_events(model_events, window_end: pd.Timestamp, timeout: float = 20.0) -> list:
    """health-degraded events of the window ending at ``window_end`` (events arrive asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in model_events(MODEL, expected=1, timeout=timeout)
                 if e.event == events.HEALTH_DEGRADED and e.payload.get("window_end") == window_end.isoformat()]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def _run(served: Served, period_start: pd.Timestamp, **options):
    as_of = (period_start + PERIOD).to_pydatetime()
    return health_check(spec_path=served.spec_path, window_hours=PERIOD / pd.Timedelta(hours=1), as_of=as_of,
                        gateway_url=served.gateway_url, **options)


def test_quiet_period_is_healthy_and_keeps_daily_slo_records(served, model_events):
    from tasks.common import store

    report = _run(served, QUIET)

    assert report.verdict is Verdict.HEALTHY, report.to_table_rows()
    assert [c.status for c in report.checks] == [CheckStatus.PASSED] * 5
    performance = report.check(Area.PERFORMANCE).metrics
    assert 0.95 * 2 * ROWS_PER_DAY <= performance["requests"] <= 2 * ROWS_PER_DAY
    assert performance["p95_ms[v1]"] < P95_LIMIT_MS
    accuracy = report.check(Area.ACCURACY).metrics
    assert accuracy["labelled[v1]"] > 3000 and abs(accuracy["drop[v1]"]) < 0.05
    assert report.check(Area.INFRASTRUCTURE).metrics["gateway_processes"] == 1
    days = SLOStore(store().uri).read(MODEL, QUIET.date(), (QUIET + PERIOD).date())
    assert [d.day for d in days] == [QUIET.date(), (QUIET + pd.Timedelta(days=1)).date()]
    assert all(d.complete and d.availability_compliance is Compliance.MET for d in days)
    assert all(d.accuracy_compliance is Compliance.MET for d in days)
    assert _degraded_events(model_events, QUIET + PERIOD, timeout=3) == []


def test_latency_regression_is_a_warning_with_an_event_and_a_ledger_entry(served, model_events):
    from tasks.common import ledger

    report = _run(served, SLOW)

    latency = [i for i in report.issues if i.code is IssueCode.LATENCY]
    assert [(i.severity, i.subject) for i in latency] == [(Severity.WARNING, "v1")]
    assert report.verdict is Verdict.WARNING
    assert not [i for i in report.issues if i.code is IssueCode.ERROR_RATE]
    (event,) = _degraded_events(model_events, SLOW + PERIOD)
    assert event.payload["verdict"] == "warning" and event.resource[events.HEALTH_AREAS_LABEL] == "performance"
    assert event.resource[events.RETRAIN_LABEL] == "not-needed"
    assert [(i["code"], i["severity"], i["subject"]) for i in event.payload["issues"]] == [
        ("latency", "warning", "v1")]
    (entry,) = [e for e in ledger().entries(MODEL) if e.fingerprint == latency[0].fingerprint]
    assert entry.priority is Priority.HIGH and not entry.incident


def test_error_spike_is_critical_and_notifies(served, model_events, webhook):
    from tasks.common import ledger

    report = _run(served, FAILING)

    errors = [i for i in report.issues if i.code is IssueCode.ERROR_RATE]
    assert [(i.severity, i.subject) for i in errors] == [(Severity.CRITICAL, "v1")]
    assert report.verdict is Verdict.CRITICAL
    assert report.check(Area.PERFORMANCE).metrics["error_rate[v1]"] == pytest.approx(0.2, abs=0.03)
    (event,) = _degraded_events(model_events, FAILING + PERIOD)
    assert ("error_rate", "critical") in [(i["code"], i["severity"]) for i in event.payload["issues"]]
    (entry,) = [e for e in ledger().entries(MODEL) if e.fingerprint == errors[0].fingerprint]
    assert entry.priority is Priority.CRITICAL and entry.incident
    (message,) = webhook
    assert message["subject"] == f"Steward: {MODEL} health is critical" and "error rate of v1" in message["body"]


def test_concept_drift_is_found_on_labelled_traffic(served, model_events):
    report = _run(served, DRIFTING)

    found = {(i.code, i.severity) for i in report.issues if i.area is Area.ACCURACY}
    assert (IssueCode.ACCURACY_DROP, Severity.CRITICAL) in found
    assert (IssueCode.CONCEPT_DRIFT, Severity.WARNING) in found
    metrics = report.check(Area.ACCURACY).metrics
    assert metrics["roc_auc_late[v1]"] < metrics["roc_auc_early[v1]"] - 0.1
    drift = next(i for i in report.issues if i.code is IssueCode.CONCEPT_DRIFT)
    assert "inputs stable" in drift.detail
    assert report.check(Area.DATA_QUALITY).status is CheckStatus.PASSED  # inputs did not move
    (event,) = _degraded_events(model_events, DRIFTING + PERIOD)
    assert {"accuracy_drop", "concept_drift"} <= {i["code"] for i in event.payload["issues"]}
    assert event.resource[events.HEALTH_AREAS_LABEL] == "accuracy"
    assert event.resource[events.RETRAIN_LABEL] == "wanted"  # what the retrain trigger matches


def test_a_healthy_window_on_default_settings_is_healthy_with_no_issue(served, model_events):
    """Issue 15: the default cost policy raised idle capacity on every run, so health was never healthy."""
    report = health_check(spec_path=served.defaults_spec_path, window_hours=24.0,
                          as_of=(QUIET + PERIOD).to_pydatetime(), gateway_url=served.gateway_url)

    assert report.verdict is Verdict.HEALTHY and report.issues == (), report.to_table_rows()
    cost = report.check(Area.COST)
    assert cost.metrics["idle_share_at_peak"] > 0.99  # 200 requests/s of default capacity, barely used
    assert any("declare cost.replica_capacity_rps" in note for note in cost.notes)
    assert "calibration_gap[v1]" in report.check(Area.ACCURACY).metrics  # calibration watched, and steady
    assert "accuracy_drop[v1]" in report.check(Area.ACCURACY).metrics  # the secondary metric too


def test_health_and_the_drift_report_agree_on_the_same_window(served):
    """Issue 15: health said "inputs stable" (1 of 11 columns) while the drift report, weighing the columns by
    importance, called the same inputs material. Both now judge the drift report's measurement one way."""
    from flows.drift_report import drift_report
    from steward.monitoring.drift.policy import DriftReason

    report = _run(served, SHIFTED)
    drift = drift_report(spec_path=served.spec_path, window_hours=PERIOD / pd.Timedelta(hours=1),
                         as_of=(SHIFTED + PERIOD).to_pydatetime())

    assert drift.material and "utilization" in drift.columns, drift.reason
    assert drift.verdict.decision.code is DriftReason.WEIGHTED_SHARE_REACHED
    assert drift.result.drift_share < 0.3  # by count, what health used to judge, it would be "stable"
    accuracy = report.check(Area.ACCURACY)
    assert IssueCode.ACCURACY_DROP in {i.code for i in accuracy.issues}
    assert accuracy.metrics["input_drift_share[v1]"] == drift.result.drift_share  # the same measurement
    assert not [i for i in accuracy.issues if i.code is IssueCode.CONCEPT_DRIFT and "training data" in i.detail]
    assert any("inputs drifted against the training data" in note for note in accuracy.notes)


def test_pending_labels_give_an_estimate_marked_as_such(served):
    report = health_check(spec_path=served.spec_path, window_hours=1.0,
                          as_of=(QUIET + PERIOD).to_pydatetime(), gateway_url=served.gateway_url)

    accuracy = report.check(Area.ACCURACY)
    assert accuracy.metrics["labelled[v1]"] < 200 and accuracy.metrics["pending[v1]"] > 0
    assert 0.5 < accuracy.metrics["estimated_accuracy[v1]"] <= 1.0
    assert "holdout_calibration_error[v1]" in accuracy.metrics
    assert any("estimate" in note.lower() for note in accuracy.notes)
    assert not [i for i in accuracy.issues if i.code is IssueCode.ACCURACY_DROP]


def test_rejected_requests_are_read_from_the_gateway(served, registry, tmp_path):
    url, server, thread = _start_gateway(registry, (MODEL,), tmp_path)
    try:
        row = {"age": 40, "income": 50000, "debt_ratio": 0.3, "credit_limit": 10000, "utilization": 0.4,
               "months_employed": 60, "num_late_payments": 0, "num_open_accounts": 3, "region": "north",
               "employment_type": "salaried", "education": "master"}
        with httpx.Client(base_url=url, timeout=30) as client:
            for bad in (False, True) * 10:
                body = {**row, "age": "forty"} if bad else row
                response = client.post(f"/v1/models/{MODEL}/predict", json={"dataframe_records": [body]})
                assert response.status_code == (422 if bad else 200)
        report = health_check(spec_path=served.spec_path, window_hours=48.0,
                              as_of=(QUIET + PERIOD).to_pydatetime(), gateway_url=url)
    finally:
        server.should_exit = True
        thread.join(timeout=30)

    quality = report.check(Area.DATA_QUALITY)
    assert quality.metrics["rejected_requests"] == 10 and quality.metrics["gateway_requests"] == 20
    rejected = [i for i in quality.issues if i.code is IssueCode.REJECTED_REQUESTS]
    assert [i.severity for i in rejected] == [Severity.CRITICAL]


@pytest.fixture
def webhook() -> Iterator[list[dict]]:
    """A notification block saved under the name the flow looks for, posting to a local HTTP server."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    from tasks.health import NOTIFICATION_BLOCK

    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    block = CustomWebhookNotificationBlock(
        name="steward tests", url=f"http://127.0.0.1:{server.server_address[1]}/hook",
        json_data={"subject": "{{subject}}", "body": "{{body}}"},
    )
    block.save(NOTIFICATION_BLOCK, overwrite=True)
    yield received
    CustomWebhookNotificationBlock.delete(NOTIFICATION_BLOCK)
    server.shutdown()

