"""The prediction log at an ``s3://bucket/prefix`` URI: written by the log writer, scanned, summarised per day,
compacted and expired, against an S3-compatible endpoint started here.

The endpoint is moto's server mode (``ThreadedMotoServer`` on 127.0.0.1): a mock of S3's HTTP API, not S3
itself. The store reaches it the way it would reach S3 or any S3-compatible service (MinIO, Ceph): through
s3fs, with the endpoint and credentials in the standard AWS variables only.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pandas as pd
import pytest

from steward.monitoring.health.report import HealthWindow
from steward.monitoring.maintenance.retention import remove_expired_partitions
from steward.monitoring.summaries.partitions import summarize_by_partition
from steward.monitoring.summaries.window import summarize_window
from steward.store.compaction import CompactionOutcome, compact_partition
from steward.store.reader import PredictionStore
from steward.store.writer import LogMode
from tests.support.partitioned_log import (
    FENCES,
    FIRST_DAY,
    SPEC,
    assert_same_summary,
    logged_days,
    write_days,
)

pytestmark = pytest.mark.slow

BUCKET = "steward-log"
START = FIRST_DAY + timedelta(hours=10)
END = FIRST_DAY + timedelta(days=2, hours=14)


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_env(s3_endpoint, monkeypatch) -> str:
    """The standard AWS variables pointing at the endpoint, and a fresh bucket; returns the bucket's name."""
    import boto3

    for name, value in {"AWS_ACCESS_KEY_ID": "steward-test", "AWS_SECRET_ACCESS_KEY": "steward-test",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": s3_endpoint}.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3")
    if BUCKET not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
        client.create_bucket(Bucket=BUCKET)
    return BUCKET


def _store(bucket: str, prefix: str) -> PredictionStore:
    store = PredictionStore(f"s3://{bucket}/{prefix}")
    assert not store.local and store.fs.protocol[0] in {"s3", "s3a"}
    return store


def _objects(store: PredictionStore, dataset: str, day: str) -> list[str]:
    return sorted(path.rsplit("/", 1)[-1] for path in store.fs.find(store.partition_path(dataset, "m", day)))


@pytest.mark.parametrize("mode", [LogMode.BATCHED, LogMode.DURABLE])
def test_the_log_writer_writes_parts_that_read_back(s3_env, mode, tmp_path):
    store = _store(s3_env, f"writer-{mode.value}")
    writer = store.writer(mode, flush_interval=60, wal_dir=tmp_path / "wal" if mode is LogMode.DURABLE else None)
    writer.start()
    flushes = 0
    for _, records in logged_days(days=2, flushes_per_day=3):
        for record in records:
            assert writer.submit(record)
        writer.flush()
        flushes += 1
    writer.close()
    stats = writer.stats()
    assert stats.last_error is None and stats.dropped == 0 and stats.flushes == flushes

    frame = store.read_predictions("m", FIRST_DAY, FIRST_DAY + timedelta(days=2))
    assert len(frame) == stats.written_rows - len(store.read_labels("m"))
    assert store.days("predictions", "m") == ["2026-03-01", "2026-03-02"]
    assert all(leaf.startswith("part-") for leaf in _objects(store, "predictions", "2026-03-01"))


def test_scan_summaries_compaction_and_retention_on_s3(s3_env, tmp_path):
    store = _store(s3_env, "lifecycle")
    local = PredictionStore(str(tmp_path / "log"))
    write_days(store)
    write_days(local)
    options = {"fences": FENCES, "labels_window": (START, END)}
    window = HealthWindow(START, END)

    # a scan of the object store gives what a scan of the same log on disk gives, and per-day summaries merge to it
    on_s3 = summarize_window(store, SPEC, START, END, **options)
    assert_same_summary(on_s3, summarize_window(local, SPEC, START, END, **options), window)
    assert_same_summary(summarize_by_partition(store, SPEC, START, END, **options), on_s3, window)
    before = store.read_predictions("m", START, END)
    pd.testing.assert_frame_equal(before, local.read_predictions("m", START, END))

    # compaction: the parts replaced by one committed file, the same rows read; the parts removed after the grace
    day = "2026-03-02"
    parts = _objects(store, "predictions", day)
    result = compact_partition(store, "predictions", "m", day, grace=timedelta(0))
    assert result.outcome is CompactionOutcome.COMPACTED and result.files_before == len(parts) > 1
    view = store.partition_view(store.partition_path("predictions", "m", day))
    assert len(view.readable) == 1 and view.readable[0].startswith("compacted-") and len(view.effective) == 1
    after = store.read_predictions("m", START, END)
    assert len(after) == len(before)
    key = ["request_id", "row", "version"]
    pd.testing.assert_frame_equal(after.sort_values(key).reset_index(drop=True),
                                  before.sort_values(key).reset_index(drop=True))
    compacted = summarize_window(store, SPEC, START, END, **options)  # rows re-ordered by time: counts compared
    assert (compacted.rows, compacted.versions, compacted.labelled_rows) == (on_s3.rows, on_s3.versions,
                                                                              on_s3.labelled_rows)
    assert compacted.traffic.requests == on_s3.traffic.requests and compacted.traffic.errors == on_s3.traffic.errors
    again = compact_partition(store, "predictions", "m", day, grace=timedelta(0))
    assert again.outcome is CompactionOutcome.ALREADY_COMPACT and set(again.deleted) == set(parts)
    assert [leaf for leaf in _objects(store, "predictions", day) if leaf.startswith("part-")] == []

    # retention on a compacted day: at noon of the 4th, one day of retention expires the first two days
    as_of = FIRST_DAY + timedelta(days=3, hours=12)
    cleanup = remove_expired_partitions(store, "m", as_of, retention_days=1)
    assert {"predictions/date=2026-03-01", "predictions/date=2026-03-02"} <= set(cleanup.removed)
    assert cleanup.bytes_freed > 0
    assert store.days("predictions", "m") == ["2026-03-03"]
    assert store.read_predictions("m", FIRST_DAY, FIRST_DAY + timedelta(days=2)).empty


def test_a_missing_bucket_is_a_clear_error(s3_env):
    store = PredictionStore("s3://no-such-bucket-here/log")
    assert store.days("predictions", "m") == []
    with pytest.raises(FileNotFoundError):
        write_days(store, days=1, flushes_per_day=1)
