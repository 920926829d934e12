"""The attacks of issue 17 as regression tests, against a real gateway over HTTP on 127.0.0.1."""

from __future__ import annotations

import json
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
