"""The record store behind the ledger, the SLO records and the drift history: atomic, one layout, old data read."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from steward.findings import MaintenanceKind, Priority
from steward.monitoring.drift.history import DriftHistory
from steward.monitoring.ledger import Ledger
from steward.monitoring.records import RecordStore, key_time, time_key
from steward.monitoring.slo import SLOStore

NOW = datetime(2026, 3, 8, tzinfo=UTC)


def test_a_record_is_replaced_whole_and_appended_keys_sort_by_time(tmp_path):
    store = RecordStore(str(tmp_path), "things")
    store.put("m", "date=2026-03-01", '{"v": 1}')
    store.put("m", "date=2026-03-01", '{"v": 2}')
    assert [(key, json.loads(text)) for key, text in store.texts("m")] == [("date=2026-03-01", {"v": 2})]
    later = store.append("m", NOW, "{}")
    earlier = store.append("m", NOW - timedelta(days=1), "{}")
    assert store.paths("m")[:2] == [earlier, later] and later.endswith(".json") and "/things/model=m/" in later
    assert key_time(time_key(NOW)) == NOW


def test_a_failed_write_leaves_no_record_and_no_partial_file(tmp_path, monkeypatch):
    store = RecordStore(str(tmp_path), "things")
    store.put("m", "a", '{"old": true}')

    def crash(source, target, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(store._fs, "mv", crash)
    with pytest.raises(OSError, match="disk full"):
        store.put("m", "a", '{"old": false}')
    with pytest.raises(OSError):
        store.put("m", "b", "{}")
    assert [json.loads(text) for _, text in store.texts("m")] == [{"old": True}]
    assert sorted(p.name for p in (tmp_path / "things" / "model=m").iterdir()) == ["a.json"]


def test_the_final_name_appears_only_when_the_record_is_complete(tmp_path, monkeypatch):
    store = RecordStore(str(tmp_path), "things")
    final = tmp_path / "things" / "model=m" / "a.json"
    real_mv = store._fs.mv
    seen = []

    def checked(source, target, **kwargs):
        seen.append((final.exists(), json.loads(Path(source).read_text())))
        assert store.paths("m") == []  # a reader listing now sees nothing, not half a record
        return real_mv(source, target, **kwargs)

    monkeypatch.setattr(store._fs, "mv", checked)
    store.put("m", "a", json.dumps({"rows": list(range(1000))}))
    assert seen == [(False, {"rows": list(range(1000))})] and final.exists()


def test_concurrent_appenders_do_not_clash(tmp_path):
    store = RecordStore(str(tmp_path), "things")

    def write(i: int) -> str:
        return store.append("m", NOW, json.dumps({"i": i}))  # the same time on purpose

    with ThreadPoolExecutor(max_workers=8) as pool:
        paths = list(pool.map(write, range(200)))
    assert len(set(paths)) == 200
    assert sorted(json.loads(text)["i"] for _, text in store.texts("m")) == list(range(200))


def test_the_ledger_reads_events_in_its_old_layout(tmp_path):
    old = tmp_path / "ledger" / "m"
    old.mkdir(parents=True)
    entry = {
        "id": "e1", "model": "m", "title": "drift on income", "detail": "", "kind": "adaptive", "priority": "high",
        "status": "open", "created": "2026-03-01T00:00:00+00:00", "updated": "2026-03-01T00:00:00+00:00",
        "source": "drift-report", "fingerprint": "drift:m", "occurrences": 1, "due": None, "resolved": None,
        "resolution": "", "flow_run_id": None, "incident": False,
    }
    (old / "20260301T000000000000-abcd1234.json").write_text(json.dumps({"event": "opened", "entry": entry}))
    ledger = Ledger(str(tmp_path))
    assert [(e.id, e.priority) for e in ledger.entries("m")] == [("e1", Priority.HIGH)]
    again = ledger.record("m", "drift on income", kind=MaintenanceKind.ADAPTIVE, priority=Priority.HIGH,
                          source="drift-report", fingerprint="drift:m", now=NOW)
    assert again.id == "e1" and again.occurrences == 2  # the old entry counts again, no duplicate opens
    assert [e.occurrences for e in Ledger(str(tmp_path)).entries()] == [2]
    assert (tmp_path / "ledger" / "model=m").is_dir()  # new events go to the one layout


def test_slo_and_drift_records_written_by_earlier_versions_are_read(tmp_path):
    slo_day = {
        "model": "m", "day": "2026-03-01", "complete": True, "as_of": "2026-03-02T00:00:00+00:00",
        "targets": {"p95_latency_ms": 25.0, "availability": 0.999, "accuracy_metric": "roc_auc",
                    "min_accuracy": 0.7, "higher_is_better": True},
        "requests": 10, "failed_requests": 0, "slow_requests": 0, "p50_ms": 5.0, "p95_ms": 6.0, "p99_ms": 7.0,
        "labelled": 0, "accuracy": None, "availability": 1.0,
        "compliance": {"latency": "met", "availability": "met", "accuracy": "no_data"},
    }
    folder = tmp_path / "slo" / "model=m"
    folder.mkdir(parents=True)
    (folder / "date=2026-03-01.json").write_text(json.dumps(slo_day, indent=1))
    (folder / ".2026-03-02-deadbeef.tmp").write_text("{half a rec")  # left by a crash: never read
    (day,) = SLOStore(str(tmp_path)).read("m", date(2026, 3, 1), date(2026, 3, 31))
    assert day.p95_ms == 6.0 and day.requests == 10

    result = {"columns": [], "prediction": None, "drift_share": 0.0, "dataset_drift": False, "reference_rows": 10,
              "current_rows": 5, "engine": "profile"}
    check = {"model": "m", "version": "3", "window_start": None, "window_end": "2026-03-01T00:00:00+00:00",
             "current_rows": 5, "material": True, "announced": True, "reason": "why", "columns": ["a"],
             "material_since": None, "report_uri": None, "flow_run_id": None, "result": result}
    folder = tmp_path / "drift" / "model=m"
    folder.mkdir(parents=True)
    (folder / "20260301T000000000000Z-abcd1234.json").write_text(json.dumps(check))
    previous = DriftHistory(str(tmp_path)).previous("m", NOW)
    assert previous is not None and previous.material and previous.columns == ("a",)
