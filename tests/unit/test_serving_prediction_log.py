"""Serving's write path: the records the gateway and the shadow process log, read back from the store."""

from __future__ import annotations

import asyncio
import time

import pytest
from test_serving_batcher import columns_of, logistic_arm  # tests/unit is on the path (no package)

from steward.serving.inference import Job, score_jobs
from steward.serving.prediction_log import LogContext, LogSettings, PredictionLog, labels_record
from steward.serving.schema import RequestError
from steward.store.reader import PredictionStore
from steward.store.records import LabelBatch
from steward.store.writer import LogMode

DAY_NS = 1_773_100_800 * 10**9  # 2026-03-10T00:00Z


@pytest.fixture(scope="module")
def arm(example_frame):
    return logistic_arm(example_frame.head(800), "1")


def opened(tmp_path, mode: LogMode = LogMode.BATCHED) -> PredictionLog:
    settings = LogSettings(mode, flush_interval=60, max_pending=10_000, wal_dir=None)
    return PredictionLog(PredictionStore(str(tmp_path / "log")), settings).start()


def read_back(prediction_log: PredictionLog):
    prediction_log.close()
    frame = prediction_log.store.read_predictions("credit-default", "2026-03-10", "2026-03-11")
    return frame.sort_values(["request_id", "row"]).reset_index(drop=True)


def served_jobs(arm, sizes: tuple[int, ...]) -> list[Job]:
    jobs = [Job(arm, columns_of(arm, size), size,
                context=LogContext(f"r{i}", DAY_NS + i, time.perf_counter(), None, "champion", True, list(range(size))))
            for i, size in enumerate(sizes)]
    score_jobs(jobs)
    return jobs


def test_one_model_calls_jobs_become_one_record_with_each_requests_id_and_rows(arm, tmp_path):
    prediction_log = opened(tmp_path)
    jobs = served_jobs(arm, (1, 2))
    prediction_log.record_jobs(jobs)
    assert prediction_log.stats().pending == 3 and jobs[0].logged is None  # batched: nothing to await
    frame = read_back(prediction_log)
    assert list(zip(frame["request_id"], frame["row"], strict=True)) == [("r0", 0), ("r1", 0), ("r1", 1)]
    assert set(frame["arm"]) == {"champion"} and frame["served"].all() and set(frame["status"]) == {"ok"}
    expected = [label for job in jobs for label in job.result.labels]
    assert frame["prediction"].tolist() == expected


def test_durable_jobs_await_their_records_acknowledgement(arm, tmp_path):
    prediction_log = opened(tmp_path, LogMode.DURABLE)

    async def run() -> list[bool]:
        jobs = served_jobs(arm, (1, 1))
        prediction_log.record_jobs(jobs)
        return [await job.logged for job in jobs]

    assert asyncio.run(run()) == [True, True]
    assert len(read_back(prediction_log)) == 2


def test_a_shadow_copy_is_logged_as_the_challengers_unserved_row_scored_or_failed(arm, tmp_path):
    prediction_log = opened(tmp_path)
    scored = arm.score(columns_of(arm, 2))
    prediction_log.record_copy(arm, "ok-copy", DAY_NS, columns_of(arm, 2), 2, ("a", "b"), time.monotonic(), scored)
    prediction_log.record_copy(arm, "failed-copy", DAY_NS, columns_of(arm, 1), 1, None, time.monotonic(), None)
    frame = read_back(prediction_log).set_index(["request_id", "row"])
    assert set(frame["arm"]) == {"challenger"} and not frame["served"].any()
    assert frame.loc[("ok-copy", 1), "status"] == "ok" and frame.loc[("ok-copy", 1), "entity"] == "b"
    assert frame.loc[("ok-copy", 0), "prediction"] == scored.labels[0]
    assert frame.loc[("failed-copy", 0), "status"] == "error" and frame.loc[("failed-copy", 0), "prediction"] is None


def test_nothing_is_logged_with_the_log_off(arm, tmp_path):
    prediction_log = opened(tmp_path, LogMode.OFF)
    prediction_log.record_jobs(served_jobs(arm, (1,)))
    prediction_log.record_copy(arm, "copy", DAY_NS, columns_of(arm, 1), 1, None, time.monotonic(), None)
    assert prediction_log.stats().pending == 0 and read_back(prediction_log).empty


def test_feedback_labels_become_one_record_and_bad_ones_are_named():
    record = labels_record("m", {"labels": [{"request_id": "r1", "row": 1, "label": True},
                                            {"request_id": "r2", "label": 2.0}]}, DAY_NS, max_labels=10)
    assert record == LabelBatch("m", DAY_NS, ("r1", "r2"), (1, 0), ("1", "2"))
    with pytest.raises(RequestError) as refused:
        labels_record("m", {"labels": [{"request_id": "", "row": -1, "label": float("nan"), "x": 1}]}, DAY_NS, 10)
    assert refused.value.status == 422
    assert {p.field for p in refused.value.problems} == {"labels[0]", "labels[0].request_id", "labels[0].row",
                                                        "labels[0].label"}
    with pytest.raises(RequestError) as too_many:
        labels_record("m", {"labels": [{"request_id": "r", "label": 1}] * 3}, DAY_NS, max_labels=2)
    assert too_many.value.status == 413
