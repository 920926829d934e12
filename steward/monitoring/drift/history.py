"""Drift checks as kept for the next one (hysteresis) and for the monthly trend: ``DriftRecord``, ``DriftHistory``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from steward.monitoring.drift.result import DriftResult
from steward.monitoring.records import RecordStore, key_time, record_key


@dataclass(frozen=True)
class DriftRecord:
    """One drift check as persisted for the next one: its result carrying the policy's state."""

    model: str
    version: str
    window_start: datetime | None
    window_end: datetime
    current_rows: int
    material: bool
    announced: bool
    reason: str
    columns: tuple[str, ...]
    result: DriftResult
    material_since: datetime | None = None
    report_uri: str | None = None
    flow_run_id: str | None = None
    awaiting_retrain: bool = False  # announced while retraining was not allowed: raised again once it is

    def to_json(self) -> str:
        return json.dumps(
            {
                "model": self.model,
                "version": self.version,
                "window_start": self.window_start.isoformat() if self.window_start else None,
                "window_end": self.window_end.isoformat(),
                "current_rows": self.current_rows,
                "material": self.material,
                "announced": self.announced,
                "reason": self.reason,
                "columns": list(self.columns),
                "material_since": self.material_since.isoformat() if self.material_since else None,
                "report_uri": self.report_uri,
                "flow_run_id": self.flow_run_id,
                "awaiting_retrain": self.awaiting_retrain,
                "result": self.result.to_dict(),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> DriftRecord:
        d = json.loads(text)
        when = (lambda v: datetime.fromisoformat(v) if v else None)  # noqa: E731
        return cls(
            model=d["model"], version=d["version"], window_start=when(d["window_start"]),
            window_end=datetime.fromisoformat(d["window_end"]), current_rows=int(d["current_rows"]),
            material=bool(d["material"]), announced=bool(d["announced"]), reason=d["reason"],
            columns=tuple(d["columns"]), result=DriftResult.from_dict(d["result"]),
            material_since=when(d.get("material_since")), report_uri=d.get("report_uri"),
            flow_run_id=d.get("flow_run_id"), awaiting_retrain=bool(d.get("awaiting_retrain", False)),
        )


class DriftHistory:
    """Drift checks in the record store, appended under ``<store>/drift/model=<name>/``.

    One record per check, keyed by the window's end, so the previous decision (hysteresis) and
    the month's drift trend are a listing away; nothing is rewritten, so concurrent runs are safe.
    """

    def __init__(self, store_uri: str) -> None:
        self._records = RecordStore(store_uri, "drift")
        self.root = self._records.root

    def append(self, record: DriftRecord) -> str:
        return self._records.append(record.model, record.window_end, record.to_json())

    def _ends(self, model: str) -> list[tuple[datetime, str]]:
        return [(key_time(record_key(path)), path) for path in self._records.paths(model)]

    def previous(self, model: str, before: datetime) -> DriftRecord | None:
        """The latest check whose window ended strictly before ``before`` (a rerun of a day is not its own past)."""
        earlier = [path for end, path in self._ends(model) if end < before]
        return DriftRecord.from_json(self._records.read(earlier[-1])) if earlier else None

    def records(self, model: str, start: datetime | None = None, end: datetime | None = None) -> list[DriftRecord]:
        """Checks whose window ended in ``(start, end]`` (the period up to and including ``end``), oldest first."""
        return [
            DriftRecord.from_json(self._records.read(path))
            for when, path in self._ends(model)
            if (start is None or when > start) and (end is None or when <= end)
        ]
