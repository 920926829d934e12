"""The prediction log on a temporary folder: layout, windowed reads, writer modes, labels, training frames."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import yaml

from steward.spec import parse_spec
from steward.store.reader import PredictionStore, join_labels, typed_labels
from steward.store.records import LabelBatch, PredictionBatch, StoreError, prediction_batch, prediction_rows
from steward.store.wal import WAL_VERSION, decode_line, encode_line, wal_line_parts
from steward.store.writer import LogMode
from steward.training.data import DataError, production_training_frame

DAY = datetime(2026, 3, 10, tzinfo=UTC)


def ns(moment: datetime) -> int:
    return int(moment.timestamp() * 1e9)


def batch(request_id: str, at: datetime, *, version: str = "1", arm: str = "champion", served: bool = True,
          rows: int = 2, features: dict | None = None, model: str = "m",
          numeric: tuple[str, ...] = ("age",)) -> PredictionBatch:
    features = features or {"age": [30.0 + i for i in range(rows)], "region": ["north"] * rows}
    return prediction_batch(
        request_id, ns(at), model, version, arm, served=served, status="ok", rows=range(rows), features=features,
        numeric=numeric, predictions=["1"] * rows, scores=[0.75] * rows, latency_ms=3.5,
        entities=[f"cust-{i}" for i in range(rows)],
    )


@pytest.fixture
def store(tmp_path) -> PredictionStore:
    return PredictionStore(str(tmp_path / "log"))


def test_layout_is_partitioned_by_model_and_date(store, tmp_path):
    store.write_batches([batch("a", DAY), batch("b", DAY + timedelta(days=1)), batch("c", DAY, model="other")], "f1")
    store.write_batches([LabelBatch("m", ns(DAY), ["a"], [0], ["1"])], "f2")
    files = sorted(p.relative_to(tmp_path / "log").as_posix() for p in (tmp_path / "log").rglob("*.parquet"))
    assert files == [
        "labels/model=m/date=2026-03-10/part-f2.parquet",
        "predictions/model=m/date=2026-03-10/part-f1.parquet",
        "predictions/model=m/date=2026-03-11/part-f1.parquet",
        "predictions/model=other/date=2026-03-10/part-f1.parquet",
    ]


def test_windowed_read_prunes_days_and_returns_real_feature_names(store):
    store.write_batches([batch("early", DAY), batch("late", DAY + timedelta(days=2))], "f1")
    assert len(store._files("predictions", "m", DAY, DAY + timedelta(hours=1))) == 1  # other days never opened
    frame = store.read_predictions("m", DAY, DAY + timedelta(days=1))
    assert set(frame["request_id"]) == {"early"}
    assert {"age", "region", "request_id", "row", "time", "version", "arm", "served", "prediction", "score",
            "latency_ms", "entity", "status", "model"} <= set(frame.columns)
    assert frame["age"].tolist() == [30.0, 31.0]
    assert str(frame["time"].dt.tz) == "UTC"
    # the end of the window is exclusive, the start inclusive
    assert store.read_predictions("m", DAY + timedelta(seconds=1), DAY + timedelta(days=2)).empty
    assert len(store.read_predictions("m", DAY + timedelta(days=2), DAY + timedelta(days=3))) == 2


def test_version_and_served_filters(store):
    store.write_batches([batch("r1", DAY, version="1"), batch("r1", DAY, version="2", arm="challenger", served=False),
                         batch("r2", DAY, version="2", arm="challenger")], "f1")
    window = (DAY - timedelta(hours=1), DAY + timedelta(hours=1))
    assert set(store.read_predictions("m", *window, version="2")["request_id"]) == {"r1", "r2"}
    served = store.read_predictions("m", *window, served_only=True)
    assert sorted(zip(served["request_id"], served["version"], strict=True)) == [("r1", "1"), ("r1", "1"),
                                                                               ("r2", "2"), ("r2", "2")]


def test_a_feature_added_later_reads_as_null_for_older_rows(store):
    store.write_batches([batch("old", DAY)], "f1")
    newer = batch("new", DAY + timedelta(hours=1), features={"age": [40.0, 41.0], "region": ["east"] * 2,
                                                             "income": [1.0, 2.0]}, numeric=("age", "income"))
    store.write_batches([newer], "f2")
    frame = store.read_predictions("m", DAY, DAY + timedelta(days=1)).set_index("request_id")
    assert frame.loc["old", "income"].isna().all()
    assert frame.loc["new", "income"].tolist() == [1.0, 2.0]


def test_unknown_model_reads_empty(store):
    assert store.read_predictions("nobody", DAY, DAY + timedelta(days=1)).empty
    assert store.read_labels("nobody").empty


def test_batched_writer_writes_everything_on_close(store):
    writer = store.writer(LogMode.BATCHED, flush_interval=60).start()
    for i in range(50):
        assert writer.submit(batch(f"r{i}", DAY))
    assert writer.pending == 50 or writer.stats().written_rows == 0
    writer.close()
    assert writer.stats().written_rows == 100
    assert len(store.read_predictions("m", DAY, DAY + timedelta(days=1))) == 100


def test_batched_writer_flushes_on_request_and_counts_drops_when_full(store):
    writer = store.writer(LogMode.BATCHED, flush_interval=60, max_pending=1)
    assert writer.submit(batch("kept", DAY))
    assert not writer.submit(batch("dropped", DAY))
    assert writer.stats().dropped == 2
    writer.start()
    writer.flush()
    assert set(store.read_predictions("m", DAY, DAY + timedelta(days=1))["request_id"]) == {"kept"}
    writer.close()


def test_durable_writer_acknowledges_after_the_wal_is_on_disk(store, tmp_path):
    wal = tmp_path / "wal"
    writer = store.writer(LogMode.DURABLE, flush_interval=60, wal_dir=wal).start()
    acknowledged = threading.Event()
    errors = []

    def ack(error):
        errors.append(error)
        acknowledged.set()

    writer.submit(batch("r1", DAY), ack)
    assert acknowledged.wait(10)
    assert errors == [None]
    segments = list(wal.glob("*.jsonl"))
    assert len(segments) == 1 and '"request_ids":["r1","r1"]' in segments[0].read_text()
    writer.close()
    assert list(wal.glob("*.jsonl")) == []  # in Parquet now, so the segment is gone
    assert len(store.read_predictions("m", DAY, DAY + timedelta(days=1))) == 2


def test_a_crashed_writers_wal_is_replayed_once_and_a_torn_line_ignored(store, tmp_path):
    wal = tmp_path / "wal"
    wal.mkdir()
    segment = wal / "dead-writer-000001.jsonl"
    segment.write_text(encode_line(batch("r1", DAY)) + "\n" + encode_line(batch("torn", DAY))[:40])
    writer = store.writer(LogMode.DURABLE, wal_dir=wal).start()
    writer.close()
    assert writer.stats().replayed_segments == 1
    assert not segment.exists()
    assert set(store.read_predictions("m", DAY, DAY + timedelta(days=1))["request_id"]) == {"r1"}


def test_one_record_holds_the_rows_of_many_requests_each_with_its_own_id_time_and_latency(store):
    """What the gateway writes for one model call that scored three one-row requests."""
    times = [ns(DAY + timedelta(seconds=s)) for s in (1, 2, 3)]
    record = prediction_rows(
        "m", "1", "champion", served=True, status="ok", request_ids=["a", "b", "c"], rows=[0, 0, 0],
        times_ns=times, latencies_ms=[1.0, 2.0, 3.0], features={"age": [30.0, 31.0, 32.0], "region": ["n", "s", None]},
        numeric=("age",), predictions=["1", "0", "1"], scores=[0.9, 0.1, 0.8], entities=["x", None, "z"],
    )
    store.write_batches([record, batch("d", DAY)], "f1")
    frame = store.read_predictions("m", DAY, DAY + timedelta(days=1)).sort_values(["time", "row"])
    assert frame["request_id"].tolist() == ["d", "d", "a", "b", "c"]
    by_id = frame.drop_duplicates("request_id").set_index("request_id")
    assert by_id.loc[["a", "b", "c"], "latency_ms"].tolist() == [1.0, 2.0, 3.0]
    assert by_id.loc[["a", "b", "c"], "age"].tolist() == [30.0, 31.0, 32.0]
    assert by_id.loc[["a", "b", "c"], "score"].tolist() == [0.9, 0.1, 0.8]
    assert by_id.loc["b", "entity"] is None and pd.isna(by_id.loc["c", "region"])


def test_a_record_whose_rows_straddle_midnight_is_written_to_both_days(store, tmp_path):
    late, early = ns(DAY + timedelta(hours=23, minutes=59)), ns(DAY + timedelta(days=1, minutes=1))
    record = prediction_rows(
        "m", "1", "champion", served=True, status="ok", request_ids=["late", "early"], rows=[0, 0],
        times_ns=[late, early], latencies_ms=[1.0, 1.0], features={"age": [1.0, 2.0]}, numeric=("age",),
        predictions=["1", "0"], scores=None,
    )
    store.write_batches([record], "f1")
    first = store.read_predictions("m", DAY, DAY + timedelta(days=1))
    second = store.read_predictions("m", DAY + timedelta(days=1), DAY + timedelta(days=2))
    assert first[["request_id", "age"]].values.tolist() == [["late", 1.0]]
    assert second[["request_id", "age"]].values.tolist() == [["early", 2.0]]
    assert (tmp_path / "log/predictions/model=m/date=2026-03-11").is_dir()


def test_a_record_with_a_field_of_the_wrong_length_is_refused():
    with pytest.raises(ValueError, match="one value per row"):
        prediction_rows("m", "1", "champion", served=True, status="ok", request_ids=["a"], rows=[0, 0],
                        times_ns=[1, 2], latencies_ms=[1.0, 1.0], features={"age": [1.0, 2.0]}, numeric=("age",),
                        predictions=None, scores=None)


def test_a_wal_line_written_by_the_per_request_format_is_still_replayed(store, tmp_path):
    """A gateway upgraded after a crash finds segments its predecessor wrote."""
    wal = tmp_path / "wal"
    wal.mkdir()
    legacy = {"kind": "predictions", "request_id": "old", "time_ns": ns(DAY), "model": "m", "version": "1",
              "arm": "champion", "served": True, "status": "ok", "rows": [0], "feature_names": ["age"],
              "feature_values": [40.0], "numeric": ["age"], "predictions": ["1"], "scores": [0.5],
              "latency_ms": 2.5, "entities": None}
    (wal / "dead-writer-000001.jsonl").write_text(json.dumps(legacy) + "\n")
    store.writer(LogMode.DURABLE, wal_dir=wal).start().close()
    frame = store.read_predictions("m", DAY, DAY + timedelta(days=1))
    assert frame[["request_id", "age", "latency_ms"]].values.tolist() == [["old", 40.0, 2.5]]


def test_durable_mode_on_an_object_store_needs_a_local_wal():
    with pytest.raises(StoreError, match="--wal-dir"):
        PredictionStore("memory://log").writer(LogMode.DURABLE)


def test_labels_join_their_predictions_and_the_latest_label_wins(store):
    store.write_batches([batch("r1", DAY), batch("r1", DAY, version="2", arm="challenger", served=False),
                         batch("r2", DAY)], "p")
    store.write_batches([LabelBatch("m", ns(DAY + timedelta(hours=1)), ["r1", "r1", "zz"], [0, 1, 0], ["0", "1", "1"]),
                         LabelBatch("m", ns(DAY + timedelta(hours=2)), ["r1"], [0], ["1"])], "l")
    joined = join_labels(store.read_predictions("m", DAY, DAY + timedelta(days=1)), store.read_labels("m"))
    assert sorted(zip(joined["version"], joined["row"], joined["label"], strict=True)) == [
        ("1", 0, "1"), ("1", 1, "1"), ("2", 0, "1"), ("2", 1, "1")
    ]


def test_typed_labels():
    assert typed_labels(pd.Series(["0", "1"]), classification=True).dtype == "int64"
    assert typed_labels(pd.Series(["0.5", "2"]), classification=False).tolist() == [0.5, 2.0]
    assert typed_labels(pd.Series(["yes", "no"]), classification=True).tolist() == ["yes", "no"]


@pytest.fixture
def production_spec():
    from steward.simulation.examples import example_spec_text

    document = yaml.safe_load(example_spec_text())
    document["data"] = {"kind": "production", "window_days": 7}
    document["features"] = [{"name": "age", "type": "numeric"}, {"name": "region", "type": "categorical"}]
    document["gates"]["slice_features"] = []
    document["name"] = "m"
    return parse_spec(document)


def test_production_training_frame_joins_served_rows_with_labels(store, production_spec):
    now = DAY + timedelta(days=1)
    store.write_batches([batch("r1", DAY), batch("r1", DAY, version="2", arm="challenger", served=False),
                         batch("r2", DAY, version="2", arm="challenger"), batch("too-old", DAY - timedelta(days=9))],
                        "p")
    store.write_batches([LabelBatch("m", ns(DAY + timedelta(hours=3)), ["r1", "r1", "r2", "too-old"], [0, 1, 0, 0],
                                    ["1", "0", "1", "1"])], "l")
    frame, source = production_training_frame(production_spec, store=store, now=now)
    assert list(frame.columns) == ["age", "region", "default", "event_time", "entity_id"]
    assert len(frame) == 3  # r1 rows 0 and 1 (served by the champion), r2 row 0; shadow and old rows left out
    assert frame["default"].dtype == "int64"
    assert "3 labelled of 4 served predictions" in source and store.uri in source


def test_production_training_frame_explains_what_is_missing(store, production_spec):
    with pytest.raises(DataError, match="no served predictions"):
        production_training_frame(production_spec, store=store, now=DAY)
    store.write_batches([batch("r1", DAY)], "p")
    with pytest.raises(DataError, match="none has a label yet: send labels to POST /v1/models/m/feedback"):
        production_training_frame(production_spec, store=store, now=DAY + timedelta(hours=1))
    unbounded = production_spec.model_copy(update={"data": production_spec.data.model_copy(update={"window_days": None})})
    with pytest.raises(DataError, match="set data.window_days"):
        production_training_frame(unbounded, store=store)


def assert_same_record(got: PredictionBatch, expected: PredictionBatch) -> None:
    """Records are equal field by field; the numeric block by value (NaN equal to NaN)."""
    assert got._replace(numeric_values=None) == expected._replace(numeric_values=None)
    assert got.numeric_values.shape == expected.numeric_values.shape
    assert np.array_equal(got.numeric_values, expected.numeric_values, equal_nan=True)


def test_wal_lines_round_trip(store):
    record = batch("r1", DAY, features={"age": [30.0, None], "region": ["north", None]})
    document = json.loads(encode_line(record))
    assert document["v"] == WAL_VERSION and document["kind"] == "predictions" and document["numeric_names"] == ["age"]
    assert document["text_names"] == ["region"]
    assert_same_record(decode_line(encode_line(record)), record)
    assert np.isnan(decode_line(encode_line(record)).numeric_values[1, 0])


def test_wal_lines_from_before_the_flat_feature_layout_still_replay():
    record = batch("r1", DAY)
    document = {"kind": "predictions", "request_id": "r1", "time_ns": ns(DAY), "model": "m", "version": "1",
                "arm": "champion", "served": True, "status": "ok", "rows": [0, 1],
                "features": [["age", [30.0, 31.0]], ["region", ["north", "north"]]], "numeric": ["age"],
                "predictions": ["1", "1"], "scores": [0.75, 0.75], "latency_ms": 3.5, "entities": ["cust-0", "cust-1"]}
    assert_same_record(decode_line(json.dumps(document)), record)
    assert_same_record(decode_line(encode_line(record)), record)


def test_wal_lines_from_before_the_numeric_block_still_replay():
    """Every feature's values in one flat tuple, row by row: what gateways wrote before the block."""
    record = batch("r1", DAY)
    document = {"kind": "predictions", "model": "m", "version": "1", "arm": "champion", "served": True,
                "status": "ok", "request_ids": ["r1", "r1"], "rows": [0, 1], "times_ns": [ns(DAY)] * 2,
                "latencies_ms": [3.5, 3.5], "feature_names": ["age", "region"],
                "feature_values": [30.0, "north", 31.0, "north"], "numeric": ["age"], "predictions": ["1", "1"],
                "scores": [0.75, 0.75], "entities": ["cust-0", "cust-1"]}
    assert_same_record(decode_line(json.dumps(document)), record)


def test_a_numeric_feature_holding_text_is_refused_when_the_record_is_made():
    with pytest.raises(ValueError, match="numeric features must hold numbers"):
        batch("r1", DAY, features={"age": ["old", 31.0], "region": ["north"] * 2})


def test_one_part_holds_batches_of_any_size_and_features_in_order(store):
    """One-row batches with the same features take a quick path; mixed ones the general one: same rows."""
    single = [batch(f"s{i}", DAY, rows=1, features={"age": [40.0 + i], "region": [None if i % 2 else "east"]})
              for i in range(4)]
    mixed = [batch("t", DAY, rows=1), batch("m", DAY, rows=3), batch("x", DAY, rows=1, features={"region": ["west"], "note": ["new"]})]
    for flush, batches in enumerate((single, mixed)):
        written = store.write_batches(batches, f"flush-{flush}")
        assert written == sum(b.size for b in batches)
    log = store.read_predictions("m", DAY - timedelta(hours=1), DAY + timedelta(hours=1))
    rows = log.set_index(["request_id", "row"]).sort_index()
    assert rows.loc[("s1", 0), "age"] == 41.0 and pd.isna(rows.loc[("s1", 0), "region"])
    assert rows.loc[("m", 2), "age"] == 32.0 and rows.loc[("m", 2), "region"] == "north"
    assert rows.loc[("x", 0), "region"] == "west" and pd.isna(rows.loc[("x", 0), "age"])
    assert rows.loc[("x", 0), "note"] == "new" and pd.isna(rows.loc[("m", 0), "note"])
    assert len(log) == 4 + 1 + 3 + 1 and set(log["entity"].dropna()) == {"cust-0", "cust-1", "cust-2"}
    with pytest.raises(ValueError, match="one value per row"):
        batch("bad", DAY, rows=2, features={"age": [1.0], "region": ["a", "b"]})


def test_parts_dictionary_encode_only_text_other_than_request_ids(store, tmp_path):
    """Dictionaries pay for versions, arms, classes and categories; for ids and floats they only cost CPU."""
    import pyarrow.parquet as pq

    store.write_batches([batch(f"r{i}", DAY) for i in range(20)], "f1")
    (part,) = (tmp_path / "log" / "predictions").rglob("*.parquet")
    metadata = pq.ParquetFile(part).metadata
    group = metadata.row_group(0)
    encodings = {group.column(i).path_in_schema: set(group.column(i).encodings) for i in range(group.num_columns)}
    dictionary = {name for name, used in encodings.items() if "RLE_DICTIONARY" in used}
    assert dictionary == {"version", "arm", "status", "prediction", "entity", "f_region"}


def test_the_writer_reports_its_threads_cpu_time(store):
    writer = store.writer(LogMode.BATCHED, flush_interval=60).start()
    for i in range(2_000):
        writer.submit(batch(f"r{i}", DAY))
    writer.flush()
    used = writer.stats().cpu_seconds
    assert used > 0.0
    writer.close()
    assert writer.stats().cpu_seconds >= used


def test_the_writer_memory_pool_is_jemalloc_unless_the_environment_names_one(monkeypatch):
    import pyarrow as pa

    from steward.store.writer import use_writer_memory_pool

    before = pa.default_memory_pool()
    try:
        monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "system")
        assert use_writer_memory_pool() == before.backend_name  # the operator's choice is left alone
        monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL")
        assert use_writer_memory_pool() == "jemalloc"
    finally:
        pa.set_memory_pool(before)


# Lines as gateways wrote them before WAL lines carried a version, copied from their segments.
UNVERSIONED_BLOCK_LINE = (
    '{"kind":"predictions","model":"m","version":"1","arm":"champion","served":true,"status":"ok",'
    '"request_ids":["r1","r1"],"rows":[0,1],"times_ns":[1773100800000000000,1773100800000000000],'
    '"latencies_ms":[3.5,3.5],"numeric_names":["age"],"numeric_values":[[30.0],[NaN]],"text_names":["region"],'
    '"text_values":["north",null],"predictions":["1","1"],"scores":[0.75,0.75],"entities":["cust-0","cust-1"]}'
)
UNVERSIONED_LABELS_LINE = (
    '{"kind":"labels","model":"m","time_ns":1773100800000000000,"request_ids":["r1"],"rows":[0],"labels":["1"]}'
)


def test_unversioned_lines_of_the_numeric_block_layout_and_labels_still_decode():
    record = batch("r1", DAY, features={"age": [30.0, None], "region": ["north", None]})
    assert_same_record(decode_line(UNVERSIONED_BLOCK_LINE), record)
    assert decode_line(UNVERSIONED_LABELS_LINE) == LabelBatch("m", ns(DAY), ("r1",), (0,), ("1",))
    labels = LabelBatch("m", ns(DAY), ("r1",), (0,), ("1",))
    assert json.loads(encode_line(labels))["v"] == WAL_VERSION and decode_line(encode_line(labels)) == labels


def test_a_segment_mixing_every_old_layout_with_versioned_lines_replays_every_row(store, tmp_path):
    """A gateway upgraded over a crashed one's WAL: each line decodes by its own version and layout."""
    per_request_pairs = {"kind": "predictions", "request_id": "pairs", "time_ns": ns(DAY), "model": "m", "version": "1",
                         "arm": "champion", "served": True, "status": "ok", "rows": [0],
                         "features": [["age", [41.0]], ["region", ["east"]]], "numeric": ["age"],
                         "predictions": ["1"], "scores": [0.5], "latency_ms": 1.0, "entities": None}
    per_request_columns = {**{k: v for k, v in per_request_pairs.items() if k != "features"}, "request_id": "columns",
                           "feature_names": ["age", "region"], "feature_values": [42.0, "east"]}
    flat_rows = {"kind": "predictions", "model": "m", "version": "1", "arm": "champion", "served": True,
                 "status": "ok", "request_ids": ["flat"], "rows": [0], "times_ns": [ns(DAY)], "latencies_ms": [1.0],
                 "feature_names": ["age", "region"], "feature_values": [43.0, "east"], "numeric": ["age"],
                 "predictions": ["1"], "scores": [0.5], "entities": None}
    lines = [json.dumps(per_request_pairs), json.dumps(per_request_columns), json.dumps(flat_rows),
             UNVERSIONED_BLOCK_LINE, encode_line(batch("versioned", DAY)), UNVERSIONED_LABELS_LINE]
    assert set.union(*map(wal_line_parts, lines)) == {("predictions", "m", "2026-03-10"), ("labels", "m", "2026-03-10")}
    wal = tmp_path / "wal"
    wal.mkdir()
    (wal / "dead-writer-000001.jsonl").write_text("".join(line + "\n" for line in lines))
    writer = store.writer(LogMode.DURABLE, wal_dir=wal).start()
    writer.close()
    assert writer.stats().replayed_segments == 1 and writer.stats().written_rows == 1 + 1 + 1 + 2 + 2 + 1
    frame = store.read_predictions("m", DAY, DAY + timedelta(days=1)).set_index(["request_id", "row"]).sort_index()
    assert frame.loc[[("pairs", 0), ("columns", 0), ("flat", 0), ("r1", 0)], "age"].tolist() == [41.0, 42.0, 43.0, 30.0]
    assert np.isnan(frame.loc[("r1", 1), "age"]) and frame.loc[("versioned", 1), "region"] == "north"
    assert store.read_labels("m")["request_id"].tolist() == ["r1"]


def test_a_line_of_a_newer_format_is_refused_with_what_to_do():
    line = json.dumps({**json.loads(encode_line(batch("r1", DAY))), "v": WAL_VERSION + 1})
    with pytest.raises(StoreError, match="replay the segment with the Steward that wrote it"):
        decode_line(line)
