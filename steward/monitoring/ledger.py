"""The maintenance ledger: every finding and incident as a task with a kind, priority and status.

Entries are kept as an append-only series of small JSON events in the record store
(``<store>/ledger/model=<name>/<time>Z-<id>.json``; events of earlier versions under
``<store>/ledger/<name>/`` are still read). No record is ever rewritten, so any number of
processes, on a local disk or an object store, can record at once; an entry's state is the
fold of its events. A finding seen again while its entry is still open updates that entry
(``occurrences``) instead of opening a second one.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum

from steward.findings import Finding, MaintenanceKind, Priority
from steward.monitoring.records import RecordStore


class EntryStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"
    DISMISSED = "dismissed"


@dataclass(frozen=True)
class LedgerEntry:
    id: str
    model: str
    title: str
    detail: str
    kind: MaintenanceKind
    priority: Priority
    status: EntryStatus
    created: datetime
    updated: datetime
    source: str
    fingerprint: str
    occurrences: int = 1
    due: datetime | None = None
    resolved: datetime | None = None
    resolution: str = ""
    flow_run_id: str | None = None
    incident: bool = False

    @property
    def is_open(self) -> bool:
        return self.status is EntryStatus.OPEN

    def describe(self) -> str:
        due = f" due {self.due:%Y-%m-%d}" if self.due else ""
        seen = f" (seen {self.occurrences}x)" if self.occurrences > 1 else ""
        tag = "INCIDENT " if self.incident else ""
        return (
            f"{self.id}  {self.priority.value:<8} {self.status.value:<9} {self.kind.value:<10} "
            f"{tag}{self.model}: {self.title}{seen}{due}"
        )


def _encode(value):
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, StrEnum):
        return value.value
    return value


def _entry_from(record: dict) -> LedgerEntry:
    fields = dict(record)
    for name in ("created", "updated", "due", "resolved"):
        if fields.get(name):
            fields[name] = datetime.fromisoformat(fields[name])
    fields["kind"] = MaintenanceKind(fields["kind"])
    fields["priority"] = Priority(fields["priority"])
    fields["status"] = EntryStatus(fields["status"])
    return LedgerEntry(**fields)


class Ledger:
    """Read and append ledger events under ``<root>/ledger``."""

    def __init__(self, store_uri: str) -> None:
        self._records = RecordStore(store_uri, "ledger", legacy_model_folder=True)
        self.root = self._records.root

    @classmethod
    def from_settings(cls, settings) -> Ledger:
        return cls(settings.resolved_store_uri)

    def _append(self, entry: LedgerEntry, event: str, now: datetime) -> None:
        record = {"event": event, "entry": {k: _encode(v) for k, v in asdict(entry).items()}}
        self._records.append(entry.model, now, json.dumps(record))

    def _events(self, model: str | None) -> list[dict]:
        return [json.loads(text) for _key, text in self._records.texts(model)]

    def entries(
        self, model: str | None = None, *, status: EntryStatus | None = None, include_closed: bool = True
    ) -> list[LedgerEntry]:
        """Current state of every entry, critical first, then by due date, then oldest first."""
        latest: dict[str, LedgerEntry] = {}
        for event in self._events(model):
            entry = _entry_from(event["entry"])
            latest[entry.id] = entry
        found = [
            e for e in latest.values()
            if (status is None or e.status is status) and (include_closed or e.is_open)
        ]
        far = datetime.max.replace(tzinfo=UTC)
        return sorted(found, key=lambda e: (e.priority.rank, e.due or far, e.created))

    def get(self, entry_id: str) -> LedgerEntry:
        for entry in self.entries():
            if entry.id == entry_id:
                return entry
        raise KeyError(f"no ledger entry {entry_id!r}; `steward ledger --all` lists them")

    def record(
        self,
        model: str,
        title: str,
        *,
        detail: str = "",
        kind: MaintenanceKind,
        priority: Priority,
        source: str,
        fingerprint: str | None = None,
        due: datetime | None = None,
        flow_run_id: str | None = None,
        incident: bool = False,
        now: datetime | None = None,
    ) -> LedgerEntry:
        """Open an entry, or count another occurrence of the open entry with the same fingerprint."""
        now = now or datetime.now(UTC)
        fingerprint = fingerprint or f"{source}:{title}"
        for existing in self.entries(model, status=EntryStatus.OPEN):
            if existing.fingerprint == fingerprint:
                raised = priority if priority.rank < existing.priority.rank else existing.priority
                updated = replace(
                    existing, occurrences=existing.occurrences + 1, updated=now, detail=detail or existing.detail,
                    priority=raised, flow_run_id=flow_run_id or existing.flow_run_id,
                )
                self._append(updated, "seen-again", now)
                return updated
        entry = LedgerEntry(
            id=uuid.uuid4().hex[:10], model=model, title=title, detail=detail, kind=kind, priority=priority,
            status=EntryStatus.OPEN, created=now, updated=now, source=source, fingerprint=fingerprint, due=due,
            flow_run_id=flow_run_id, incident=incident,
        )
        self._append(entry, "opened", now)
        return entry

    def record_finding(
        self, model: str, finding: Finding, *, flow_run_id: str | None = None, now: datetime | None = None
    ) -> LedgerEntry:
        """``record`` a finding, due after its priority's delay."""
        now = now or datetime.now(UTC)
        return self.record(
            model, finding.title, detail=finding.detail, kind=finding.kind, priority=finding.priority,
            source=finding.source, fingerprint=finding.fingerprint, due=finding.due(now), flow_run_id=flow_run_id,
            incident=finding.incident, now=now,
        )

    def close(
        self, entry_id: str, *, resolution: str, status: EntryStatus = EntryStatus.RESOLVED,
        now: datetime | None = None,
    ) -> LedgerEntry:
        if status is EntryStatus.OPEN:
            raise ValueError("close() takes resolved or dismissed")
        entry = self.get(entry_id)
        if not entry.is_open:
            raise ValueError(f"ledger entry {entry_id} is already {entry.status.value}")
        now = now or datetime.now(UTC)
        closed = replace(entry, status=status, resolved=now, updated=now, resolution=resolution)
        self._append(closed, status.value, now)
        return closed
