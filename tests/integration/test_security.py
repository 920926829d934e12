"""The attacks of issue 17 as regression tests, against a real gateway over HTTP on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from steward.store.reader import PredictionStore
from steward.store.records import prediction_batch, prediction_rows
from steward.store.writer import LogMode
from tests.integration.test_gateway import FEATURES, log_window, rows_of, split_payload

pytestmark = pytest.mark.slow

SURROGATE = "\ud800"
JSON = {"content-type": "application/json"}


def escaped(body: object) -> str:
    """JSON as Python writes it by default: a lone surrogate as the escape ``\\ud800`` (valid JSON, as in the issue)."""
    return json.dumps(body)


# ---------------------------------------------------------------------- input (item 4)
def test_one_surrogate_request_among_400_is_refused_and_costs_no_other_row(start_gateway, two_versions,
                                                                             example_frame):
    name, _, _ = two_versions
    gateway = start_gateway([name], flush_interval=30)
    good = rows_of(example_frame, 400)
    acknowledged: list[str] = []
    with gateway.client() as client:
        def send(i: int) -> int:
            if i == 200:
                poisoned = {**good[0], "region": SURROGATE}
                return client.post(f"/v1/models/{name}/predict", content=escaped({"dataframe_records": [poisoned]}),
                                   headers=JSON).status_code
            response = client.post(f"/v1/models/{name}/predict", json={"dataframe_records": [good[i % 400]]})
            if response.status_code == 200:
                acknowledged.append(response.json()["request_id"])
            return response.status_code

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(send, range(401)))
        entity = client.post(f"/v1/models/{name}/predict", headers=JSON,
                             content=escaped({"dataframe_records": [{**good[0], "entity_id": "a" + SURROGATE}]}))
    assert statuses.count(422) == 1 and statuses[200] == 422
    assert statuses.count(200) == 400
    assert entity.status_code == 422 and "entity: text not valid Unicode" in entity.json()["error"]
    gateway.stop()
    log = PredictionStore(gateway.store_uri).read_predictions(name, *log_window())
    assert sorted(log["request_id"]) == sorted(acknowledged)


def test_the_writer_isolates_a_record_that_fails_conversion(tmp_path):
    """Defence in depth behind the door: one request's unstorable value in a shared record costs only its rows."""
    store = PredictionStore(str(tmp_path / "log"))
    writer = store.writer(LogMode.BATCHED, flush_interval=30).start()
    now = time.time_ns()

    ids = [f"r{i}" for i in range(5)]
    regions = ["north", "south", SURROGATE, "east", "west"]
    shared = prediction_rows(
        "m", "1", "champion", served=True, status="ok", request_ids=ids, rows=[0] * 5, times_ns=[now] * 5,
        latencies_ms=[1.0] * 5, features={"age": [30.0] * 5, "region": regions}, numeric=["age"],
        predictions=["0"] * 5, scores=[0.1] * 5,
    )
    alone = prediction_batch("r9", now, "m", "1", "champion", served=True, status="ok", rows=[0],
                             features={"age": [np.float64(40.0)], "region": ["west"]}, numeric=["age"],
                             predictions=["1"], scores=[0.9], latency_ms=1.0)
    writer.submit(shared)
    writer.submit(alone)
    writer.flush()
    writer.close()
    stats = writer.stats()
    start, end = datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC) + timedelta(hours=1)
    log = store.read_predictions("m", start, end)
    assert sorted(log["request_id"]) == ["r0", "r1", "r3", "r4", "r9"]
    assert stats.dropped == 1 and "surrogates not allowed" in stats.last_error


def test_text_limits_content_type_and_feedback_text(start_gateway, two_versions, example_frame):
    name, _, _ = two_versions
    gateway = start_gateway([name], max_text_length=16)
    good = rows_of(example_frame, 1)[0]
    with gateway.client() as client:
        long = client.post(f"/v1/models/{name}/predict", json={"dataframe_records": [{**good, "region": "n" * 17}]})
        plain = client.post(f"/v1/models/{name}/predict", content=b'{"dataframe_records": []}',
                            headers={"content-type": "text/plain"})
        form = client.post(f"/v1/models/{name}/feedback", data={"labels": "1"})
        charset = client.post(f"/v1/models/{name}/predict", content=json.dumps(split_payload([good])),
                              headers={"content-type": "application/json; charset=utf-8"})
        request_id = charset.json()["request_id"]
        label = client.post(f"/v1/models/{name}/feedback", headers=JSON,
                            content=escaped({"labels": [{"request_id": request_id, "row": 0, "label": SURROGATE}]}))
        unknown_id = client.post(f"/v1/models/{name}/feedback",
                                 json={"labels": [{"request_id": "x" * 17, "row": 0, "label": 1}]})
    assert long.status_code == 422 and "region" in long.json()["error"] and "16 characters" in long.json()["error"]
    assert plain.status_code == 415 and form.status_code == 415
    assert charset.status_code == 200
    assert label.status_code == 422 and "labels[0].label" in label.text and "Unicode" in label.text
    assert unknown_id.status_code == 422 and "labels[0].request_id" in unknown_id.text


def test_invocations_takes_mlflow_request_shapes_and_answers_like_mlflow(start_gateway, two_versions,
                                                                          example_frame):
    name, _, _ = two_versions
    gateway = start_gateway([name])
    records = rows_of(example_frame, 4)
    columns = {feature: [r[feature] for r in records] for feature in FEATURES}
    shapes = {
        "dataframe_split": split_payload(records),
        "dataframe_records": {"dataframe_records": records},
        "inputs as rows": {"inputs": records},
        "inputs as columns": {"inputs": columns},
        "instances": {"instances": records},
    }
    with gateway.client() as client:
        expected = client.post(f"/v1/models/{name}/predict", json={"dataframe_records": records}).json()["predictions"]
        answers = {shape: client.post("/invocations", json=body) for shape, body in shapes.items()}
        on_predict = client.post(f"/v1/models/{name}/predict", json={"instances": records})
    for shape, response in answers.items():
        assert response.status_code == 200, (shape, response.text)
        assert response.json() == {"predictions": expected}, shape
    assert on_predict.status_code == 200 and on_predict.json()["predictions"] == expected


# ---------------------------------------------------------------------- files (item 7)
def test_the_home_and_everything_under_it_is_owner_only(tmp_path):
    """A fresh home with an MLflow store, a registered version's artifacts and a prediction log part."""
    import os
    import stat
    import subprocess
    import sys

    home = tmp_path / "home"
    script = (
        "from steward.config import apply_environment\n"
        "settings = apply_environment()\n"
        "from steward.registry.adapter import Registry\n"
        "from steward.store.reader import PredictionStore\n"
        "from steward.store.records import prediction_batch\n"
        "Registry.from_settings(settings)\n"
        "import mlflow; mlflow.set_experiment('files'); mlflow.start_run(); mlflow.log_dict({'a': 1}, 'a.json')\n"
        "mlflow.end_run()\n"
        "store = PredictionStore.from_settings(settings)\n"
        "import time\n"
        "store.write_batches([prediction_batch('r', time.time_ns(), 'm', '1', 'champion', served=True, status='ok',"
        " rows=[0], features={'x': [1.0]}, numeric=['x'], predictions=['1'], scores=[0.5], latency_ms=1.0)], 'f1')\n"
    )
    env = {**os.environ, "STEWARD_HOME": str(home)}
    for variable in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "PREFECT_HOME"):
        env.pop(variable, None)
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=300, umask=0o022)
    found = {path: stat.S_IMODE(path.stat().st_mode) for path in [home, *home.rglob("*")]}
    files = [p for p in found if p.is_file()]
    assert any(p.name == "mlflow.db" for p in files) and any(p.suffix == ".parquet" for p in files)
    loose = {str(p.relative_to(tmp_path)): oct(mode) for p, mode in found.items() if mode & 0o077}
    assert loose == {}


# ---------------------------------------------------------------------- liveness (item 5)
def _closed_by_server(sock: socket.socket) -> bool:
    """True once the gateway has closed this connection (EOF or reset), False while it is still open."""
    sock.settimeout(0.05)
    try:
        while True:
            if sock.recv(65536) == b"":
                return True
    except TimeoutError:
        return False
    except OSError:
        return True


def test_slow_clients_are_dropped_and_the_gateway_keeps_answering(start_gateway, two_versions, example_frame):
    name, _, _ = two_versions
    gateway = start_gateway([name], header_timeout=1.0, body_timeout=1.0)
    port = int(gateway.url.rsplit(":", 1)[1])
    silent, trickling_headers, trickling_body = [], [], []
    for _ in range(20):
        silent.append(socket.create_connection(("127.0.0.1", port)))
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(f"POST /v1/models/{name}/predict HTTP/1.1\r\nHost: x\r\n".encode())
        trickling_headers.append(sock)
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(f"POST /v1/models/{name}/predict HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
                     "content-length: 5000\r\n\r\n{\"dataframe_records\": [".encode())
        trickling_body.append(sock)
    every = silent + trickling_headers + trickling_body
    try:
        def all_closed() -> bool:
            for sock in trickling_headers:  # still trickling: one more valid header line, one more body byte
                with contextlib.suppress(OSError):
                    sock.sendall(b"x-slow: 1\r\n")
            for sock in trickling_body:
                with contextlib.suppress(OSError):
                    sock.sendall(b" ")
            return all(_closed_by_server(sock) for sock in every)

        gateway.wait_until(all_closed, "the gateway to drop every slow client", timeout=60)
        with gateway.client() as client:
            answer = client.post(f"/v1/models/{name}/predict", json={"dataframe_records": rows_of(example_frame, 1)})
            metrics = client.get("/metrics").text
    finally:
        for sock in every:
            sock.close()
    assert answer.status_code == 200
    dropped = {stage: _sample(metrics, "steward_slow_clients_dropped_total", stage=stage)
               for stage in ("headers", "body")}
    assert dropped["headers"] >= 40 and dropped["body"] >= 20


def test_connections_beyond_the_limit_are_answered_503(start_gateway, two_versions, example_frame):
    name, _, _ = two_versions
    gateway = start_gateway([name], max_connections=8, header_timeout=60)
    port = int(gateway.url.rsplit(":", 1)[1])
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(10)]
    try:
        gateway.wait_until(lambda: len(gateway.server.server_state.connections) >= 10, "the idle connections")
        with gateway.client() as client:
            refused = client.get("/healthz")
    finally:
        for sock in idle:
            sock.close()
    gateway.wait_until(lambda: len(gateway.server.server_state.connections) < 8, "the idle connections to close")
    with gateway.client() as client:
        accepted = client.get("/healthz")
    assert refused.status_code == 503 and accepted.status_code == 200


def _sample(metrics: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus exposition (0 when absent)."""
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    prefix = f"{name}{{{wanted}}} " if labels else f"{name} "
    for line in metrics.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix):])
    return 0.0


class StalledServer:
    """A TCP server that accepts connections and never answers: MLflow hung, as a client sees it."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self.accepted.append(self.listener.accept()[0])

    def close(self) -> None:
        self.listener.close()
        for sock in self.accepted:
            sock.close()


def test_a_stalled_registry_makes_the_view_stale_and_readyz_says_so(start_gateway, two_versions, registry,
                                                                    monkeypatch):
    from steward.registry.adapter import Registry

    name, _, _ = two_versions
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "600")
    gateway = start_gateway([name], registry_timeout=0.5, stale_after=2.0, unready_after=4.0)
    stalled = StalledServer()
    pool = gateway.gateway.pool
    try:
        with gateway.client() as client, gateway.admin() as admin:
            assert client.get("/readyz").json()["status"] == "ready"
            pool.registry = Registry(stalled.url, registry.artifact_root)
            gateway.wait_until(lambda: client.get("/readyz").json()["status"] == "degraded", "a degraded view")
            degraded = client.get("/readyz")
            status = admin.get("/admin/status").json()
            gateway.wait_until(lambda: client.get("/readyz").status_code == 503, "an unready gateway")
            unready = client.get("/readyz").json()
            metrics = client.get("/metrics").text
            pool.registry = registry
            stalled.close()  # the hung read fails at once; the next poll reads the real registry
            gateway.wait_until(lambda: client.get("/readyz").json()["status"] == "ready", "a fresh view again")
            recovered = admin.get("/admin/status").json()
    finally:
        pool.registry = registry
        stalled.close()
    assert degraded.status_code == 200 and degraded.json()["registry"]["stale"] is True
    assert "registry poll has run for more than 0.5s" in status["registry"]["last_error"]
    assert status["registry"]["stalled_polls"] >= 1 and status["last_refresh_error"] == status["registry"]["last_error"]
    assert unready["ready"] is False and unready["status"] == "unready"
    assert _sample(metrics, "steward_registry_view_age_seconds") > 4.0
    assert _sample(metrics, "steward_registry_view_stale") == 1.0
    assert _sample(metrics, "steward_registry_stalled_polls_total") >= 1
    assert recovered["registry"]["stale"] is False and recovered["registry"]["last_error"] is None


def test_metrics_carry_process_memory_cpu_and_open_files(start_gateway, two_versions):
    name, _, _ = two_versions
    gateway = start_gateway([name])
    with gateway.client() as client:
        metrics = client.get("/metrics").text
    assert _sample(metrics, "process_resident_memory_bytes") > 0
    assert _sample(metrics, "process_cpu_seconds_total") > 0
    assert _sample(metrics, "process_open_fds") > 0


# ---------------------------------------------------------------------- keys and roles (items 1, 2)
def test_keys_are_required_once_configured_and_roles_decide_what_each_may_do(start_gateway, two_versions,
                                                                              example_frame, registry, tmp_path):
    from steward.registry.history import ChangeKind
    from steward.serving.auth import KeyRing, Role, now_utc

    name, _, _ = two_versions
    keys_file = tmp_path / "keys.json"
    ring = KeyRing()
    _, client_key = ring.create("scorer", frozenset(), now_utc())
    _, viewer_key = ring.create("dashboard", frozenset({Role.VIEWER}), now_utc())
    _, operator_key = ring.create("labeller", frozenset({Role.OPERATOR}), now_utc())
    _, admin_key = ring.create("alice", frozenset({Role.ADMIN}), now_utc())
    ring.save(keys_file)
    gateway = start_gateway([name], keys_file=keys_file)
    payload = {"dataframe_records": rows_of(example_frame, 1)}

    def auth(key: str) -> dict[str, str]:
        return {"authorization": f"Bearer {key}"}

    with gateway.client() as client:
        anonymous = client.post(f"/v1/models/{name}/predict", json=payload)
        scored = client.post(f"/v1/models/{name}/predict", json=payload, headers=auth(client_key))
        request_id = scored.json()["request_id"]
        label = {"labels": [{"request_id": request_id, "row": 0, "label": 1}]}
        relabel_by_client = client.post(f"/v1/models/{name}/feedback", json=label, headers=auth(client_key))
        relabel_by_viewer = client.post(f"/v1/models/{name}/feedback", json=label, headers=auth(viewer_key))
        labelled = client.post(f"/v1/models/{name}/feedback", json=label, headers=auth(operator_key))
        relabelled = client.post(f"/v1/models/{name}/feedback", headers=auth(operator_key),
                                 json={"labels": [{"request_id": request_id, "row": 0, "label": 0}]})
        metrics_anonymous = client.get("/metrics")
        metrics = client.get("/metrics", headers=auth(viewer_key))
        status = client.get("/admin/status", headers=auth(viewer_key))
        refresh_by_viewer = client.post("/admin/refresh", headers=auth(viewer_key))
        refresh_by_operator = client.post("/admin/refresh", headers=auth(operator_key))
        plan = {"plan": {"mode": "canary", "challenger_percent": 10}, "reason": "keys test"}
        plan_by_operator = client.put(f"/admin/models/{name}/traffic-plan", json=plan, headers=auth(operator_key))
        plan_by_admin = client.put(f"/admin/models/{name}/traffic-plan", json=plan,
                                   headers={**auth(admin_key), "x-steward-actor": "mallory"})
        back_dated = client.post(f"/v1/models/{name}/predict", json=payload,
                                 headers={**auth(operator_key), "x-steward-event-time": "2026-01-01T00:00:00Z"})
    assert anonymous.status_code == 401 and "Authorization" in anonymous.json()["error"]
    assert scored.status_code == 200
    assert relabel_by_client.status_code == 403 and relabel_by_viewer.status_code == 403
    assert "operator" in relabel_by_viewer.json()["error"]
    assert labelled.json() == {"model": name, "accepted": 1, "relabelled": 0}
    assert relabelled.json() == {"model": name, "accepted": 1, "relabelled": 1}
    assert _sample(metrics.text, "steward_relabels_total", model=name) == 1.0
    assert metrics_anonymous.status_code == 401 and metrics.status_code == 200
    assert status.status_code == 200 and status.json()["client_auth"] == "keys"
    assert refresh_by_viewer.status_code == 403 and refresh_by_operator.status_code == 200
    assert plan_by_operator.status_code == 403 and plan_by_admin.status_code == 200
    assert back_dated.status_code == 403
    plans = [e for e in registry.history(name) if e.kind is ChangeKind.TRAFFIC_PLAN]
    assert plans[-1].actor == "alice"  # the key's identity, not the header the caller declared


def test_a_revoked_key_is_refused_without_a_restart(start_gateway, two_versions, example_frame, tmp_path):
    from steward.serving.auth import KeyRing, now_utc

    name, _, _ = two_versions
    keys_file = tmp_path / "keys.json"
    ring = KeyRing()
    record, key = ring.create("scorer", frozenset(), now_utc())
    ring.save(keys_file)
    gateway = start_gateway([name], keys_file=keys_file)
    payload = {"dataframe_records": rows_of(example_frame, 1)}
    with gateway.client(headers={"authorization": f"Bearer {key}"}) as client:
        before = client.post(f"/v1/models/{name}/predict", json=payload)
        ring.revoke(record.key_id, now_utc())
        ring.save(keys_file)
        gateway.wait_until(lambda: client.post(f"/v1/models/{name}/predict", json=payload).status_code == 401,
                           "the gateway to read the revocation")
        after = client.post(f"/v1/models/{name}/predict", json=payload)
    assert before.status_code == 200 and "revoked" in after.json()["error"]


def test_without_keys_the_gateway_is_open_for_predict_and_says_so(start_gateway, two_versions, example_frame):
    name, _, _ = two_versions
    gateway = start_gateway([name])
    with gateway.client() as client, gateway.admin() as admin:
        answer = client.post(f"/v1/models/{name}/predict", json={"dataframe_records": rows_of(example_frame, 1)})
        status = admin.get("/admin/status").json()
    assert answer.status_code == 200 and status["client_auth"].startswith("open")


# ---------------------------------------------------------------------- control plane (item 3)
CONTROL_KEY = "control-key-for-tests-" + "k" * 24


def test_a_plan_and_version_changed_through_mlflow_directly_are_ignored(start_gateway, two_versions, example_frame,
                                                                         registry):
    """The attack of issue 17: a copy of v1 with v1's tags made challenger and given 100% through MLflow's API."""
    import mlflow

    from steward.monitoring.ledger import Ledger
    from steward.registry.adapter import Registry
    from steward.registry.history import CHALLENGER, ChangeKind
    from steward.registry.traffic import parse_plan

    name, champion, challenger = two_versions
    steward_registry = Registry(registry.tracking_uri, registry.artifact_root, control_key=CONTROL_KEY)
    for version in (champion, challenger):  # Steward's own validation records, signed
        steward_registry.set_version_tags(name, version, {"steward.validation.status": "passed"})
    steward_registry.set_traffic_plan(name, parse_plan({"mode": "canary", "challenger_percent": 0}),
                                      reason="sealed by Steward")
    gateway = start_gateway([name], control_key=CONTROL_KEY, unverified_grace=1.0)
    payload = {"dataframe_records": rows_of(example_frame, 1)}

    attacker = mlflow.MlflowClient(tracking_uri=registry.tracking_uri, registry_uri=registry.tracking_uri)
    original = attacker.get_model_version(name, champion)
    copy = attacker.create_model_version(name, original.source, run_id=original.run_id, tags=dict(original.tags))
    attacker.set_registered_model_alias(name, CHALLENGER, copy.version)
    attacker.set_registered_model_tag(name, "steward.traffic_plan",
                                      '{"mode": "canary", "challenger_percent": 100}')

    with gateway.client() as client, gateway.admin() as admin:
        gateway.wait_until(lambda: _sample(client.get("/metrics").text, "steward_control_rejections_total",
                                           model=name, reason="mismatch") >= 1, "the refusal to be reported")
        versions = {client.post(f"/v1/models/{name}/predict", json=payload).json()["version"] for _ in range(20)}
        problems = admin.get("/admin/status").json()["models"][0]["problems"]
        # Steward's own change is still followed: a plan it signs now applies.
        steward_registry.set_alias(name, CHALLENGER, challenger, reason="restore the challenger",
                                   kind=ChangeKind.ASSIGN)
        steward_registry.set_traffic_plan(name, parse_plan({"mode": "canary", "challenger_percent": 100}),
                                          reason="Steward's own canary")
        gateway.wait_until(lambda: gateway.gateway.pool.get(name).plan.challenger_percent == 100, "Steward's plan")
        followed = client.post(f"/v1/models/{name}/predict", json=payload).json()["version"]
    assert versions == {champion}  # 20 of 20 on the verified champion, none on the attacker's copy
    assert any("ignored (mismatch seal)" in p for p in problems)
    findings = [e for e in Ledger(gateway.store_uri).entries(name) if e.source == "gateway-control"]
    assert findings and findings[0].priority.value == "critical"
    assert followed == challenger


def test_a_version_whose_validation_is_not_signed_is_not_served(start_gateway, two_versions, example_frame,
                                                                 registry):
    from steward.registry.adapter import Registry
    from steward.registry.traffic import parse_plan

    name, champion, challenger = two_versions
    steward_registry = Registry(registry.tracking_uri, registry.artifact_root, control_key=CONTROL_KEY)
    steward_registry.set_version_tags(name, champion, {"steward.validation.status": "passed"})  # v2: unsigned
    steward_registry.set_traffic_plan(name, parse_plan({"mode": "canary", "challenger_percent": 0}),
                                      reason="sealed, but v2's validation is not Steward's")
    gateway = start_gateway([name], control_key=CONTROL_KEY, unverified_grace=1.0)
    with gateway.client() as client:
        gateway.wait_until(lambda: _sample(client.get("/metrics").text, "steward_control_rejections_total",
                                           model=name, reason="validation") >= 1, "the refusal of v2")
        deployment = gateway.gateway.pool.get(name)
    assert deployment.champion.version == champion and deployment.challenger is None
    assert any("not signed with the control key" in p for p in deployment.problems)


# ---------------------------------------------------------------------- the published schema (items 6, 8)
EXAMPLES_PER_OPERATION = 40


def test_schemathesis_finds_no_server_error_and_no_schema_violation(start_gateway, two_versions, example_frame):
    """Every operation of /openapi.json fuzzed with bodies its schema describes; bounded, so minutes not hours."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    name, _, _ = two_versions
    gateway = start_gateway([name], max_batch_rows=50)
    schema = schemathesis.openapi.from_url(f"{gateway.url}/openapi.json")
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    failures: dict[str, str] = {}
    calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def exercise(case) -> None:
            nonlocal calls
            if "name" in (case.path_parameters or {}) and calls % 2 == 0:
                case.path_parameters["name"] = name  # half the calls reach the served model
            headers = {"authorization": "Bearer test-admin-token"} if calls % 3 == 0 else {}
            calls += 1
            response = case.call(base_url=gateway.url, headers=headers, timeout=30)
            case.validate_response(response, checks=checks)

        try:
            exercise()
        except Exception as error:  # one line per failing operation, then fail with all of them
            failures[operation.label] = f"{type(error).__name__}: {str(error)[:800]}"
    assert failures == {}
    assert calls >= EXAMPLES_PER_OPERATION * 5
