from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from steward.findings import MaintenanceKind, Priority
from steward.monitoring.ledger import EntryStatus, Ledger


@pytest.fixture
def ledger(tmp_path):
    return Ledger(str(tmp_path / "store"))


def test_entries_are_ordered_critical_first_then_by_due(ledger):
    now = datetime(2026, 5, 1, tzinfo=UTC)
    ledger.record("m", "cost per request high", kind=MaintenanceKind.PERFECTIVE, priority=Priority.LOW,
                  source="cost", now=now)
    ledger.record("m", "p95 over SLO", kind=MaintenanceKind.CORRECTIVE, priority=Priority.HIGH, source="perf",
                  due=now + timedelta(days=2), now=now)
    ledger.record("m", "error spike", kind=MaintenanceKind.CORRECTIVE, priority=Priority.CRITICAL, source="perf",
                  incident=True, now=now)
    ledger.record("m", "drift on income", kind=MaintenanceKind.ADAPTIVE, priority=Priority.HIGH, source="drift",
                  due=now + timedelta(days=1), now=now)
    assert [e.title for e in ledger.entries("m")] == [
        "error spike", "drift on income", "p95 over SLO", "cost per request high",
    ]


def test_a_repeated_finding_updates_its_open_entry(ledger):
    first = ledger.record("m", "missing values", kind=MaintenanceKind.CORRECTIVE, priority=Priority.MEDIUM,
                          source="data_quality")
    again = ledger.record("m", "missing values", kind=MaintenanceKind.CORRECTIVE, priority=Priority.HIGH,
                          source="data_quality", detail="12% missing")
    assert again.id == first.id and again.occurrences == 2 and again.priority is Priority.HIGH
    assert len(ledger.entries("m")) == 1


def test_resolve_and_reopen_as_new(ledger):
    entry = ledger.record("m", "drift", kind=MaintenanceKind.ADAPTIVE, priority=Priority.HIGH, source="drift")
    closed = ledger.close(entry.id, resolution="retrained v4")
    assert closed.status is EntryStatus.RESOLVED and closed.resolved is not None
    with pytest.raises(ValueError, match="already resolved"):
        ledger.close(entry.id, resolution="again")
    fresh = ledger.record("m", "drift", kind=MaintenanceKind.ADAPTIVE, priority=Priority.HIGH, source="drift")
    assert fresh.id != entry.id
    assert [e.status for e in ledger.entries("m")] == [EntryStatus.RESOLVED, EntryStatus.OPEN] or [
        e.status for e in ledger.entries("m")
    ] == [EntryStatus.OPEN, EntryStatus.RESOLVED]
    assert [e.id for e in ledger.entries("m", include_closed=False)] == [fresh.id]


def test_state_survives_a_new_reader_and_models_are_separate(ledger, tmp_path):
    ledger.record("a", "x", kind=MaintenanceKind.PREVENTIVE, priority=Priority.LOW, source="s")
    ledger.record("b", "y", kind=MaintenanceKind.PREVENTIVE, priority=Priority.LOW, source="s")
    reread = Ledger(str(tmp_path / "store"))
    assert [e.model for e in reread.entries("a")] == ["a"] and len(reread.entries()) == 2
    with pytest.raises(KeyError, match="steward ledger"):
        reread.get("nope")


def test_a_drift_persisting_across_a_retrain_folds_into_its_open_entry(ledger):
    from steward.monitoring.drift.monitor import drift_finding
    from steward.monitoring.drift.policy import DriftReason, MaterialDriftDecision

    now = datetime(2026, 5, 1, tzinfo=UTC)
    decision = MaterialDriftDecision(True, DriftReason.WEIGHTED_SHARE_REACHED, "Material drift: ...", ("income",))
    first = ledger.record_finding("m", drift_finding("m", "3", decision, "material drift started"), now=now)
    again = ledger.record_finding("m", drift_finding("m", "4", decision, "persists after the change to v4"),
                                  now=now + timedelta(days=1))
    assert again.id == first.id and again.occurrences == 2
    assert [e.id for e in ledger.entries("m", status=EntryStatus.OPEN)] == [first.id]
