"""The compact-log flow on a real Prefect server: finished days merged, today left, run twice harmlessly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from steward.store.compaction import CompactionOutcome
from steward.store.reader import PredictionStore
from steward.store.records import prediction_batch


def test_the_flow_compacts_finished_days_and_a_second_run_changes_nothing(settings, model_name):
    from flows.compaction import compact_log

    store = PredictionStore.from_settings(settings)
    yesterday, today = datetime(2026, 5, 1, tzinfo=UTC), datetime(2026, 5, 2, tzinfo=UTC)
    for day in (yesterday, today):
        for index in range(6):
            at = day + timedelta(minutes=index)
            store.write_batches([prediction_batch(
                f"{day:%d}-{index}", int(at.timestamp() * 1e9), model_name, "1", "champion", served=True,
                status="ok", rows=range(2), features={"age": [1.0, 2.0]}, numeric=("age",), predictions=["1", "0"],
                scores=[0.9, 0.1], latency_ms=1.0, entities=None)], f"{day:%d}{index:02d}")
    before = store.read_predictions(model_name, yesterday, today + timedelta(days=1))

    report = compact_log(model_name, as_of=today + timedelta(hours=1), grace_minutes=0)
    assert [(p.day, p.outcome) for p in report.partitions] == [("2026-05-01", CompactionOutcome.COMPACTED)]
    assert report.partitions[0].files_before == 6 and report.partitions[0].files_after == 1
    after = store.read_predictions(model_name, yesterday, today + timedelta(days=1))
    assert sorted(after["request_id"]) == sorted(before["request_id"]) and len(after) == 24
    assert len(store.partition_view(store.partition_path("predictions", model_name, "2026-05-02")).readable) == 6

    again = compact_log(model_name, as_of=today + timedelta(hours=1), grace_minutes=0)
    assert [p.outcome for p in again.partitions] == [CompactionOutcome.ALREADY_COMPACT]
    assert len(again.partitions[0].deleted) == 6  # the replaced parts, past a grace of 0
    assert len(store.read_predictions(model_name, yesterday, today + timedelta(days=1))) == 24
