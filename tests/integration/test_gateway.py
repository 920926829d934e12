"""The gateway over real HTTP on 127.0.0.1, serving real versions from the session's MLflow store."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pandas as pd
import pyarrow as pa
import pytest

from steward.registry.history import CHALLENGER, CHAMPION, ChangeKind
from steward.registry.traffic import sticky_arm
from steward.store.reader import PredictionStore, join_labels
from steward.store.request_ids import request_times_ms

pytestmark = pytest.mark.slow

FEATURES = ["age", "income", "debt_ratio", "credit_limit", "utilization", "months_employed", "num_late_payments",
            "num_open_accounts", "region", "employment_type", "education"]
BEARER = {"authorization": "Bearer test-admin-token"}


def rows_of(frame: pd.DataFrame, n: int, start: int = 0, with_entity: bool = False) -> list[dict]:
    columns = FEATURES + (["entity_id"] if with_entity else [])
    part = frame.iloc[start:start + n][columns].astype(object)
    return part.where(part.notna(), None).to_dict(orient="records")


def split_payload(records: list[dict]) -> dict:
    columns = list(records[0])
    return {"dataframe_split": {"columns": columns, "data": [[r[c] for c in columns] for r in records]}}


def set_plan(gateway, model: str, plan: dict, reason: str = "test") -> httpx.Response:
    with gateway.admin() as admin:
        response = admin.put(f"/admin/models/{model}/traffic-plan", json={"plan": plan, "reason": reason})
    assert response.status_code == 200, response.text
    return response


def log_window() -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    return now - timedelta(hours=1), now + timedelta(hours=1)


def test_predict_answers_both_payload_formats_with_version_arm_and_request_id(start_gateway, two_versions,
                                                                              example_frame):
    name, champion, _ = two_versions
    gateway = start_gateway([name])
    records = rows_of(example_frame, 3)
    with gateway.client() as client:
        by_records = client.post(f"/v1/models/{name}/predict", json={"dataframe_records": records})
        by_split = client.post(f"/v1/models/{name}/predict", json=split_payload(records))
        unknown = client.post("/v1/models/no-such-model/predict", json={"dataframe_records": records})
        assert client.get("/healthz").json() == {"status": "alive"}
        ready = client.get("/readyz").json()
    assert by_records.status_code == by_split.status_code == 200
    body = by_records.json()
    assert body["version"] == champion and body["arm"] == CHAMPION and body["model"] == name
    assert len(body["predictions"]) == 3 and all(p in (0, 1) for p in body["predictions"])
    assert all(0 <= s <= 1 for s in body["scores"])
    assert by_records.headers["x-request-id"] == body["request_id"]
    assert by_split.json()["scores"] == body["scores"]  # same rows, same scores, whatever the format
    assert unknown.status_code == 404 and name in unknown.json()["error"]
    assert ready["ready"] and ready["models"][0]["champion"]["digest"]


def test_every_bad_input_is_a_4xx_naming_the_field(start_gateway, two_versions, example_frame):
    name, _, _ = two_versions
    gateway = start_gateway([name], max_batch_rows=5, max_body_bytes=20_000)
    good = rows_of(example_frame, 1)[0]
    cases = {
        "wrong type": ({"dataframe_records": [{**good, "age": "forty"}]}, 422, ["age", "expected a number"]),
        "missing column": ({"dataframe_records": [{k: v for k, v in good.items() if k != "debt_ratio"}]}, 422,
                           ["debt_ratio", "missing required column"]),
        "unknown column": ({"dataframe_records": [{**good, "shoe_size": 44}]}, 422, ["shoe_size", "unknown column"]),
        "out of range": ({"dataframe_records": [{**good, "age": 130, "utilization": -1}]}, 422,
                         ["age", "above the maximum 100", "utilization", "below the minimum 0"]),
        "null not nullable": ({"dataframe_records": [{**good, "region": None}]}, 422, ["region", "not nullable"]),
        "fractional integer": ({"dataframe_records": [{**good, "num_late_payments": 1.5}]}, 422, ["whole number"]),
        "category as number": ({"dataframe_records": [{**good, "education": 3}]}, 422, ["education", "string"]),
        "oversized batch": ({"dataframe_records": [good] * 6}, 413, ["at most 5"]),
        "empty batch": ({"dataframe_records": []}, 422, ["no rows"]),
        "unsupported format": ({"tensor": [good]}, 400, ["dataframe_split", "tensor"]),
        "rows without names": ({"instances": [[1, 2]]}, 400, ["instances", "column"]),
        "ragged split": ({"dataframe_split": {"columns": FEATURES, "data": [[1, 2]]}}, 422, ["one value per column"]),
        "not an object": ([good], 400, ["JSON object"]),
        "huge integer": ({"dataframe_records": [{**good, "credit_limit": 10**400}]}, 422, ["credit_limit", "finite"]),
    }
    with gateway.client() as client:
        for case, (payload, status, needles) in cases.items():
            response = client.post(f"/v1/models/{name}/predict", json=payload)
            assert response.status_code == status, (case, response.text)
            message = response.json()["error"]
            assert all(needle in message for needle in needles), (case, message)
        invalid_json = client.post(f"/v1/models/{name}/predict", content=b"{not json",
                                   headers={"content-type": "application/json"})
        huge = client.post(f"/v1/models/{name}/predict", content=b" " * 30_000)
        nested = client.post(f"/v1/models/{name}/predict", content=b"[" * 15_000)
        assert nested.status_code == 400, nested.text
        assert invalid_json.status_code == 400 and "not valid JSON" in invalid_json.json()["error"]
        assert huge.status_code == 413
        problems = client.post(f"/v1/models/{name}/predict",
                               json={"dataframe_records": [{**good, "age": "x", "region": 1}]}).json()["problems"]
        assert {p["field"] for p in problems} == {"age", "region"}
        assert client.post(f"/v1/models/{name}/predict", json={"dataframe_records": [good]}).status_code == 200
        metrics = client.get("/metrics").text
    assert f'steward_requests_total{{arm="",model="{name}",status="422",version=""}}' in metrics


def test_canary_split_proportions_follow_the_plan(start_gateway, two_versions, example_frame):
    name, champion, challenger = two_versions
    gateway = start_gateway([name])
    set_plan(gateway, name, {"mode": "canary", "challenger_percent": 30}, "canary step 30%")
    n = 400
    payload = {"dataframe_records": rows_of(example_frame, 1)}
    with gateway.client() as client:
        answers = [client.post(f"/v1/models/{name}/predict", json=payload).json() for _ in range(n)]
    arms = Counter(a["arm"] for a in answers)
    assert {a["version"] for a in answers if a["arm"] == CHALLENGER} == {challenger}
    assert {a["version"] for a in answers if a["arm"] == CHAMPION} == {champion}
    assert abs(arms[CHALLENGER] / n - 0.3) < 4 * math.sqrt(0.3 * 0.7 / n)


def test_ab_assignment_is_sticky_by_field_and_by_header(start_gateway, two_versions, example_frame):
    name, _, _ = two_versions
    gateway = start_gateway([name])
    set_plan(gateway, name, {"mode": "ab", "challenger_percent": 50, "sticky_key": "field:entity_id"})
    records = rows_of(example_frame, 40, with_entity=True)
    with gateway.client() as client:
        first = {r["entity_id"]: client.post(f"/v1/models/{name}/predict", json={"dataframe_records": [r]}).json()["arm"]
                 for r in records}
        again = {r["entity_id"]: client.post(f"/v1/models/{name}/predict", json={"dataframe_records": [r]}).json()["arm"]
                 for r in reversed(records)}
        mixed = client.post(f"/v1/models/{name}/predict", json={"dataframe_records": records}).json()
    assert first == again
    assert set(first.values()) == {CHAMPION, CHALLENGER}
    assert mixed["arm"] is None  # the batch's rows went to both arms: per-row answers
    assert mixed["arms"] == [first[r["entity_id"]] for r in records]

    set_plan(gateway, name, {"mode": "ab", "challenger_percent": 50, "sticky_key": "header:X-Customer"})
    plain = {"dataframe_records": rows_of(example_frame, 1)}
    with gateway.client() as client:
        by_customer = {
            customer: {client.post(f"/v1/models/{name}/predict", json=plain, headers={"x-customer": customer}).json()["arm"]
                       for _ in range(3)}
            for customer in (f"customer-{i}" for i in range(20))
        }
    assert all(len(arms) == 1 for arms in by_customer.values())
    assert {next(iter(a)) for a in by_customer.values()} == {CHAMPION, CHALLENGER}


def test_ab_by_header_assigns_by_the_header_even_when_the_payload_carries_the_entity_column(
    start_gateway, two_versions, example_frame
):
    name, _, _ = two_versions
    gateway = start_gateway([name])
    set_plan(gateway, name, {"mode": "ab", "challenger_percent": 50, "sticky_key": "header:X-Customer", "salt": "s1"})
    records = rows_of(example_frame, 12, with_entity=True)  # each row has its own entity_id
    customers = [f"customer-{i}" for i in range(16)]
    expected = {c: str(sticky_arm(c, 50, "s1")) for c in customers}
    assert set(expected.values()) == {CHAMPION, CHALLENGER}
    with gateway.client() as client:
        answers = {
            customer: [client.post(f"/v1/models/{name}/predict", json={"dataframe_records": [record]},
                                   headers={"x-customer": customer}).json() for record in records[:4]]
            for customer in customers
        }
        one_entity = [client.post(f"/v1/models/{name}/predict", json={"dataframe_records": [records[0]]},
                                  headers={"x-customer": customer}).json()["arm"] for customer in customers]
        many_rows = client.post(f"/v1/models/{name}/predict", json={"dataframe_records": records},
                                headers={"x-customer": customers[0]}).json()
        no_header = client.post(f"/v1/models/{name}/predict", json={"dataframe_records": records[:3]}).json()
    # Different entity_id values, one customer: one arm, the header's.
    assert {c: {a["arm"] for a in answers[c]} for c in customers} == {c: {expected[c]} for c in customers}
    # One entity_id, different customers: the arms follow the customers.
    assert one_entity == [expected[c] for c in customers]
    assert many_rows["arm"] == expected[customers[0]] and many_rows["predictions"]
    assert no_header["arm"] == CHAMPION  # no key: the champion, logged without an entity
    gateway.stop()
    log = PredictionStore(gateway.store_uri).read_predictions(name, *log_window())
    entities = log.set_index("request_id")["entity"]
    for customer in customers:  # the logged entity is the unit of assignment: the header
        for answer in answers[customer]:
            assert entities.loc[[answer["request_id"]]].tolist() == [customer]
    assert entities.loc[[many_rows["request_id"]]].tolist() == [customers[0]] * len(records)
    assert entities.loc[[no_header["request_id"]]].isna().all()


@pytest.mark.parametrize(("inline_max_ms", "where"), [(1000.0, "event loop"), (0.0, "shadow process")])
def test_shadow_logs_both_arms_and_answers_with_the_champion(start_gateway, two_versions, example_frame,
                                                             inline_max_ms, where):
    """Both places a challenger's copies can be scored: the event loop (quick) and the shadow process (slow)."""
    name, champion, challenger = two_versions
    gateway = start_gateway([name], shadow_collect_seconds=0.01, shadow_inline_max_ms=inline_max_ms)
    set_plan(gateway, name, {"mode": "shadow", "challenger_percent": 100})
    with gateway.admin() as admin:
        placement = admin.get("/admin/status").json()["shadow"][name]
    assert placement["where"] == where and f"v{challenger}" in placement["why"]
    with gateway.client() as client:
        answers = [client.post(f"/v1/models/{name}/predict", json={"dataframe_records": rows_of(example_frame, 2, i)}).json()
                   for i in range(20)]
        metrics = client.get("/metrics").text
    assert {(a["arm"], a["version"]) for a in answers} == {(CHAMPION, champion)}
    if where == "event loop":  # each copy is scored before the next request is answered
        copies = [line for line in metrics.splitlines() if line.startswith("steward_predicted_rows_total{")
                  and 'served="false"' in line and f'version="{challenger}"' in line]
        assert len(copies) == 1 and float(copies[0].split()[-1]) >= 38
    with gateway.admin() as admin:  # every copy scored and written now, while the gateway runs on
        assert admin.post("/admin/log/flush").json()["shadow_drained"] is True
    log = PredictionStore(gateway.store_uri).read_predictions(name, *log_window())
    served, shadow = log[log["served"]], log[~log["served"]]
    assert set(served["version"]) == {champion} and set(shadow["version"]) == {challenger}
    assert set(shadow["arm"]) == {CHALLENGER}
    assert set(shadow["status"]) == {"ok"} and shadow["score"].notna().all()  # scored, not logged as failed
    assert sorted(served["request_id"]) == sorted(shadow["request_id"]) == sorted(a["request_id"] for a in answers
                                                                                 for _ in range(2))
    gateway.stop()


def test_hot_switch_under_concurrent_load_fails_no_request(start_gateway, two_versions, example_frame, registry):
    name, champion, challenger = two_versions
    gateway = start_gateway([name], poll_interval=0.1)
    payload = {"dataframe_records": rows_of(example_frame, 2)}
    stop = threading.Event()
    outcomes: list[tuple[int, str | None]] = []

    def hammer() -> None:
        with gateway.client() as client:
            for _ in range(2000):  # bounded; the switches below finish well before this runs out
                if stop.is_set():
                    return
                response = client.post(f"/v1/models/{name}/predict", json=payload)
                outcomes.append((response.status_code, response.json().get("version")))

    with ThreadPoolExecutor(6) as pool:
        workers = [pool.submit(hammer) for _ in range(6)]
        for plan in ({"mode": "canary", "challenger_percent": 50}, {"mode": "blue_green", "live": "challenger"},
                     {"mode": "shadow", "challenger_percent": 100}, {"mode": "blue_green", "live": "champion"}):
            set_plan(gateway, name, plan, "switch under load")
        registry.set_alias(name, CHAMPION, challenger, reason="switch under load", kind=ChangeKind.PROMOTE)
        gateway.wait_until(lambda: gateway.gateway.pool.get(name).champion.version == challenger, "the poll to swap")
        registry.set_alias(name, CHAMPION, champion, reason="back", kind=ChangeKind.ROLLBACK)
        gateway.wait_until(lambda: gateway.gateway.pool.get(name).champion.version == champion, "the swap back")
        stop.set()
        for worker in workers:
            worker.result()
    statuses = Counter(status for status, _ in outcomes)
    assert statuses == {200: len(outcomes)}, statuses
    assert {version for _, version in outcomes} == {champion, challenger}


def test_registry_changes_reach_the_gateway_and_the_audit_history(start_gateway, two_versions, example_frame, registry):
    name, champion, challenger = two_versions
    gateway = start_gateway([name])
    payload = {"dataframe_records": rows_of(example_frame, 1)}
    registry.promote(name, challenger, reason="promoted from the CLI")
    gateway.wait_until(lambda: gateway.gateway.pool.get(name).champion.version == challenger, "the promotion")
    with gateway.client() as client:
        assert client.post(f"/v1/models/{name}/predict", json=payload).json()["version"] == challenger
    registry.rollback(name, reason="rolled back from the CLI")
    gateway.wait_until(lambda: gateway.gateway.pool.get(name).champion.version == champion, "the rollback")
    with gateway.admin() as admin:
        response = admin.put(f"/admin/models/{name}/traffic-plan",
                             json={"plan": {"mode": "canary", "challenger_percent": 5}, "reason": "needs a challenger"})
        assert response.status_code == 409 and "no challenger" in response.json()["error"]
        response = admin.put(f"/admin/models/{name}/traffic-plan", headers={"x-steward-actor": "alice"},
                             json={"plan": {"mode": "blue_green"}, "reason": "all blue"})
        assert response.status_code == 200
        assert admin.put(f"/admin/models/{name}/traffic-plan", json={"plan": {"mode": "ab"}, "reason": "x"}
                         ).status_code == 422
    plans = [e for e in registry.history(name) if e.kind is ChangeKind.TRAFFIC_PLAN]
    assert plans[-1].actor == "admin-token" and plans[-1].reason == "all blue"  # the identity, not the declared name
    assert '"mode":"blue_green"' in plans[-1].details["plan"]


def test_admin_is_refused_without_a_token_or_with_a_wrong_one(start_gateway, two_versions, example_frame):
    name, _, challenger = two_versions
    payload = {"dataframe_records": rows_of(example_frame, 1)}
    gateway = start_gateway([name])
    with gateway.client() as client:
        assert client.get("/admin/status").status_code == 401
        wrong = client.get("/admin/status", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "not valid" in wrong.json()["error"]
        assert client.post("/admin/refresh", headers={"authorization": "Basic abc"}).status_code == 401
        forced = client.post(f"/v1/models/{name}/predict", json=payload, headers={"x-steward-arm": "challenger"})
        assert forced.status_code == 401
        smoke = client.post(f"/v1/models/{name}/predict", json=payload,
                            headers={"x-steward-arm": "challenger", **BEARER})
        assert smoke.status_code == 200 and smoke.json()["version"] == challenger
        assert client.post("/admin/refresh", headers=BEARER).json()["ready"]
        assert client.get("/admin/status", headers=BEARER).json()["models"][0]["model"] == name
    closed = start_gateway([name], admin_token=None)
    with closed.client() as client:
        refused = client.get("/admin/status", headers=BEARER)
        assert refused.status_code == 403 and "STEWARD_ADMIN_TOKEN" in refused.json()["error"]


def test_rate_limit_per_client(start_gateway, two_versions, example_frame):
    name, _, _ = two_versions
    gateway = start_gateway([name], rate_limit=0.5, rate_burst=3, client_header="x-client")
    payload = {"dataframe_records": rows_of(example_frame, 1)}
    with gateway.client() as client:
        first = [client.post(f"/v1/models/{name}/predict", json=payload, headers={"x-client": "a"}).status_code
                 for _ in range(4)]
        other = client.post(f"/v1/models/{name}/predict", json=payload, headers={"x-client": "b"})
        limited = client.post(f"/v1/models/{name}/predict", json=payload, headers={"x-client": "a"})
    assert first == [200, 200, 200, 429]
    assert other.status_code == 200
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1


@pytest.mark.parametrize("log_mode", ["batched", "durable"])
def test_log_holds_every_acknowledged_prediction_after_shutdown_and_feedback_joins(
    start_gateway, two_versions, example_frame, log_mode, tmp_path
):
    name, _, _ = two_versions
    gateway = start_gateway([name], log_mode=log_mode, flush_interval=30, wal_dir=tmp_path / "wal")
    set_plan(gateway, name, {"mode": "canary", "challenger_percent": 50})
    acknowledged: dict[str, int] = {}
    sent: dict[str, list[float]] = {}
    answered: dict[str, list[float]] = {}
    with gateway.client() as client:
        def send(i: int) -> None:
            size = 1 + i % 3
            records = rows_of(example_frame, size, i)
            response = client.post(f"/v1/models/{name}/predict", json={"dataframe_records": records})
            assert response.status_code == 200
            answer = response.json()
            acknowledged[answer["request_id"]] = size
            sent[answer["request_id"]] = [-1.0 if r["income"] is None else r["income"] for r in records]
            answered[answer["request_id"]] = answer["scores"]

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(send, range(60)))
        labelled = sorted(acknowledged)[:10]
        feedback = client.post(f"/v1/models/{name}/feedback",
                               json={"labels": [{"request_id": r, "row": 0, "label": 1} for r in labelled]})
        bad = client.post(f"/v1/models/{name}/feedback", json={"labels": [{"request_id": "", "row": -1}]})
    assert feedback.json() == {"model": name, "accepted": 10, "relabelled": 0}
    assert bad.status_code == 422 and "labels[0].row" in bad.text
    gateway.stop()
    store = PredictionStore(gateway.store_uri)
    log = store.read_predictions(name, *log_window())
    assert len(log) == sum(acknowledged.values())
    assert log.groupby("request_id").size().to_dict() == acknowledged
    assert set(log["arm"]) == {CHAMPION, CHALLENGER}
    # Requests scored in one model call share a log record: each row still carries its own request's values.
    ordered = log.sort_values(["request_id", "row"]).groupby("request_id")
    assert {rid: list(rows["income"].fillna(-1.0)) for rid, rows in ordered} == sent
    assert {rid: list(rows["score"]) for rid, rows in ordered} == answered
    assert (log["latency_ms"] > 0).all() and log.groupby("request_id")["latency_ms"].nunique().eq(1).all()
    joined = join_labels(log, store.read_labels(name))
    assert sorted(joined["request_id"]) == labelled and set(joined["label"]) == {"1"}
    assert set(joined["row"]) == {0}
    if log_mode == "durable":
        assert list((tmp_path / "wal").glob("*.jsonl")) == []


def _steward_serve(*arguments: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """`steward serve` in its own process, as an operator starts it; returns once /readyz says ready."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "steward", "serve", *arguments, "--port", str(port), "--log-level", "warning"]
    server = subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        if server.poll() is not None:
            raise AssertionError("the gateway exited during start-up")
        if time.monotonic() > deadline:
            server.kill()
            raise AssertionError("the gateway did not become ready")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return server, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)


def test_steward_serve_tunes_the_collector_and_freezes_the_loaded_heap(two_versions, tmp_path):
    """`steward serve` raises the collector's thresholds; what the models loaded is frozen out of its reach."""
    from steward.serving.server import GC_THRESHOLDS

    name, _, _ = two_versions
    server, url = _steward_serve(name, "--store-uri", str(tmp_path / "log"),
                                 env={"STEWARD_ADMIN_TOKEN": "test-admin-token"})
    try:
        collector = httpx.get(f"{url}/admin/status", headers=BEARER, timeout=10).json()["gc"]
        assert collector["thresholds"] == list(GC_THRESHOLDS)
        assert collector["frozen_objects"] > 10_000, collector  # the models and libraries, not a handful
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_a_killed_durable_gateway_loses_no_acknowledged_prediction(two_versions, example_frame, tmp_path):
    """SIGKILL mid-load: every prediction the client got an answer for is in the log after the WAL replay."""
    import signal

    from steward.store.writer import LogMode

    name, _, _ = two_versions
    log_uri, wal = str(tmp_path / "log"), tmp_path / "wal"
    server, url = _steward_serve(name, "--log-mode", "durable", "--store-uri", log_uri, "--wal-dir", str(wal),
                                 "--flush-interval", "60")
    acknowledged: list[str] = []
    try:
        stop = threading.Event()

        def send(offset: int) -> None:
            with httpx.Client(base_url=url, timeout=10) as client:
                for i in range(500):  # bounded; the kill below comes first
                    if stop.is_set():
                        return
                    try:
                        response = client.post(f"/v1/models/{name}/predict",
                                               json={"dataframe_records": rows_of(example_frame, 1, offset + i)})
                    except httpx.HTTPError:
                        return  # the kill cut this request: it was never acknowledged
                    if response.status_code == 200:
                        acknowledged.append(response.json()["request_id"])

        with ThreadPoolExecutor(4) as pool:
            senders = [pool.submit(send, 1000 * k) for k in range(4)]
            while len(acknowledged) < 100:
                time.sleep(0.05)
            server.send_signal(signal.SIGKILL)
            server.wait(timeout=30)
            stop.set()
            for sender in senders:
                sender.result()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    store = PredictionStore(log_uri)
    assert store.read_predictions(name, *log_window()).empty  # nothing reached Parquet before the kill
    store.writer(LogMode.DURABLE, wal_dir=wal).start().close()  # what the next gateway start does
    logged = set(store.read_predictions(name, *log_window(), served_only=True)["request_id"])
    assert set(acknowledged) <= logged
    assert len(acknowledged) >= 100


def test_replayed_traffic_is_logged_at_its_own_time_and_only_for_an_admin(start_gateway, two_versions, example_frame):
    """The event-time header puts a replayed request and its label in the day they happened."""
    name, _, _ = two_versions
    gateway = start_gateway([name], flush_interval=60)
    then = datetime.now(UTC) - timedelta(days=3, hours=2)
    stamp = {"x-steward-event-time": then.isoformat()}
    payload = {"dataframe_records": rows_of(example_frame, 2)}
    with gateway.client() as client:
        refused = client.post(f"/v1/models/{name}/predict", json=payload, headers=stamp)
        with gateway.admin() as admin:
            replayed = admin.post(f"/v1/models/{name}/predict", json=payload, headers=stamp)
            request_id = replayed.json()["request_id"]
            label = admin.post(f"/v1/models/{name}/feedback", headers=stamp,
                               json={"labels": [{"request_id": request_id, "row": 0, "label": 1}]})
            naive = admin.post(f"/v1/models/{name}/predict", json=payload,
                               headers={"x-steward-event-time": "2026-01-01T00:00:00"})
            future = admin.post(f"/v1/models/{name}/predict", json=payload,
                                headers={"x-steward-event-time": (datetime.now(UTC) + timedelta(hours=1)).isoformat()})
            flushed = admin.post("/admin/log/flush")  # written now, not at the next 0.5 s flush or shutdown
        assert client.post("/admin/log/flush").status_code == 401
        writer_cpu = [line for line in client.get("/metrics").text.splitlines()
                      if line.startswith("steward_log_writer_cpu_seconds_total ")]
    assert flushed.status_code == 200 and flushed.json()["pending"] == 0
    assert len(writer_cpu) == 1 and float(writer_cpu[0].split()[-1]) > 0  # the flush ran on the writer thread
    assert not PredictionStore(gateway.store_uri).read_labels(name).empty
    assert refused.status_code == 401
    assert replayed.status_code == 200 and label.status_code == 200
    assert naive.status_code == 400 and "UTC offset" in naive.text
    assert future.status_code == 400 and "future" in future.text
    gateway.stop()
    store = PredictionStore(gateway.store_uri)
    day = store.read_predictions(name, then - timedelta(minutes=1), then + timedelta(minutes=1))
    assert list(day["request_id"]) == [request_id, request_id]
    assert abs(day["time"].iloc[0] - pd.Timestamp(then)) < pd.Timedelta(milliseconds=1)
    assert abs(request_times_ms(pa.array([request_id]))[0] - then.timestamp() * 1000) <= 1  # it carries the replayed time
    labels = store.read_labels(name, end=then + timedelta(minutes=1))
    assert list(labels["request_id"]) == [request_id]
    assert store.read_predictions(name, *log_window()).empty


def test_a_gateway_joins_the_fleet_acknowledges_a_change_when_told_and_withdraws_at_stop(
    start_gateway, two_versions, example_frame, registry
):
    from pydantic import SecretStr

    from steward.serving.fleet import AckCode, Fleet, ServingTarget, tell_gateways

    name, champion, challenger = two_versions
    gateway = start_gateway([name], poll_interval=60)  # only the telling can move it within the test
    fleet = Fleet(gateway.store_uri)
    [member] = fleet.gateways(name)
    assert member.admin_url == gateway.url and member.models == (name,) and member.admin_api

    registry.promote(name, challenger, reason="promoted, then told")
    target = ServingTarget.of(registry.serving_state(name))
    reach = tell_gateways(fleet, name, target, SecretStr("test-admin-token"))
    assert [(a.gateway_id, a.code) for a in reach.acks] == [(member.gateway_id, AckCode.ACKNOWLEDGED)]
    with gateway.client() as client:
        answer = client.post(f"/v1/models/{name}/predict", json={"dataframe_records": rows_of(example_frame, 1)})
    assert answer.json()["version"] == challenger

    with gateway.admin() as admin:  # already serving what it is told to expect: answered without a registry read
        already = admin.post(f"/admin/models/{name}/refresh", json={"expect": target.to_document()})
        bad = admin.post(f"/admin/models/{name}/refresh", json={"expect": {"champion": 3}})
    assert already.status_code == 200 and already.json()["refreshed"] == []
    assert bad.status_code == 422 and "expect" in bad.json()["error"]
    wrong = tell_gateways(fleet, name, target, SecretStr("not-the-token"), deadline_seconds=2)
    assert [a.code for a in wrong.acks] == [AckCode.REFUSED]
    gateway.stop()
    assert fleet.gateways(name) == []
