"""Retention: log partitions past their days, and temporary files (scratch, unfinished parts, replayed WAL segments)."""

from __future__ import annotations

import fcntl
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from steward.findings import Finding, MaintenanceKind, Priority
from steward.store.partition import PartitionView
from steward.store.records import LABELS, PREDICTIONS
from steward.store.wal import WAL_FOLDER, wal_line_parts


@dataclass(frozen=True)
class Partition:
    """One ``date=`` folder of the prediction log (``dataset`` is predictions or labels)."""

    dataset: str
    day: date
    path: str


_DATE_FOLDER = re.compile(r"date=(\d{4}-\d{2}-\d{2})/?$")


def partition_day(path: str) -> date | None:
    """The day of a ``.../date=YYYY-MM-DD`` folder, or None for anything else."""
    match = _DATE_FOLDER.search(path)
    return date.fromisoformat(match.group(1)) if match else None


def retention_cutoff(as_of: datetime, days: float) -> datetime:
    return as_of - timedelta(days=days)


def expired_partitions(partitions: Iterable[Partition], as_of: datetime, retention_days: int) -> list[Partition]:
    """Partitions whose every row is older than the retention: the day ended before ``as_of - days``.

    A partition that still holds one row within retention is kept whole (parts are never split).
    """
    cutoff = retention_cutoff(as_of, retention_days)
    return sorted(
        (p for p in partitions if datetime.combine(p.day + timedelta(days=1), datetime.min.time(), UTC) <= cutoff),
        key=lambda p: (p.dataset, p.day),
    )


class ScratchKind(StrEnum):
    SCRATCH = "scratch"  # <home>/tmp/<model>/...: Steward's own working files (reports, downloads)
    PARTIAL_PART = "partial part"  # .part-*.parquet.tmp in a log partition: a write that never finished
    WAL_SEGMENT = "replayed WAL segment"  # <store>/_wal/*.jsonl whose rows are all in Parquet already


@dataclass(frozen=True)
class ScratchEntry:
    path: str
    modified: datetime
    kind: ScratchKind
    size: int = 0


def expired_scratch(entries: Iterable[ScratchEntry], as_of: datetime, retention_days: int) -> list[ScratchEntry]:
    """Temporary files last modified before ``as_of - retention_days``."""
    cutoff = retention_cutoff(as_of, retention_days)
    return sorted((e for e in entries if e.modified < cutoff), key=lambda e: e.path)


def is_partial_part(leaf: str) -> bool:
    """The temporary name a log part has while it is written (``.part-<id>.parquet.tmp``)."""
    return leaf.startswith(".part-") and leaf.endswith(".tmp")


def wal_segment_parts(lines: Iterable[str]) -> set[tuple[str, str, str]]:
    """The (dataset, model, day) parts a WAL segment's complete lines write to.

    A torn last line (no newline) was never acknowledged and is not counted, as in replay.
    """
    parts: set[tuple[str, str, str]] = set()
    for line in lines:
        if line.endswith("\n"):
            parts |= wal_line_parts(line)
    return parts


def segment_written(stem: str, parts: Iterable[tuple[str, str, str]], listing: Mapping[tuple[str, str, str], Sequence[str]]) -> bool:
    """Whether every part a segment writes exists as ``part-<stem>.parquet`` (or ``-<i>``) in the log.

    Parts are renamed into place only when complete, so then the segment holds nothing the log
    lacks and may go; otherwise it must stay for the next durable writer to replay.
    """
    wanted = list(parts)
    return bool(wanted) and all(
        any(leaf == f"part-{stem}.parquet" or re.fullmatch(rf"part-{re.escape(stem)}-\d+\.parquet", leaf)
            for leaf in listing.get(key, ()))
        for key in wanted
    )


def cleanup_findings(unreplayed: Sequence[str], source: str) -> list[Finding]:
    if not unreplayed:
        return []
    return [
        Finding(
            f"{len(unreplayed)} write-ahead-log segment(s) hold rows that are not in the prediction log",
            f"Segments {', '.join(unreplayed[:5])}{' …' if len(unreplayed) > 5 else ''} were left by a gateway "
            "that stopped before writing them; they are kept. Start a gateway in durable mode on the same "
            "WAL folder (`steward serve --log-mode durable`), which replays them into Parquet.",
            MaintenanceKind.CORRECTIVE, Priority.HIGH, source, "cleanup:unreplayed-wal",
        )
    ]



SCRATCH_FOLDER = "tmp"


def scratch_folder(home: Path, model: str) -> Path:
    """Steward's working files for ``model`` (drift HTML, model cards) before they go to MLflow.

    Files normally live here for the seconds of an upload; the daily cleanup removes anything
    older than ``monitoring.temp_retention_days`` (left by a crashed run).
    """
    return home / SCRATCH_FOLDER / model


# ------------------------------------------------------------------------------------------ clean-up on the store


class LogStore(Protocol):
    """What the clean-up needs of the prediction log (``steward.store.reader.PredictionStore``)."""

    fs: Any
    root: str
    local: bool

    def partition_path(self, dataset: str, model: str, day: str) -> str: ...

    def partition_view(self, folder: str) -> PartitionView: ...


@dataclass(frozen=True)
class Cleanup:
    removed: tuple[str, ...]
    bytes_freed: int
    kept_unreplayed: tuple[str, ...] = ()


def _size(fs: Any, path: str) -> int:
    try:
        return int(fs.du(path))
    except (FileNotFoundError, OSError):
        return 0


def log_partitions(log: LogStore, model: str) -> list[Partition]:
    """Every ``date=`` folder of ``model``'s predictions and labels."""
    partitions = []
    for dataset in (PREDICTIONS, LABELS):
        try:
            folders = log.fs.ls(f"{log.root}/{dataset}/model={model}", detail=False)
        except FileNotFoundError:
            continue
        partitions += [Partition(dataset, day, folder) for folder in folders if (day := partition_day(folder))]
    return partitions


def remove_expired_partitions(log: LogStore, model: str, as_of: datetime, retention_days: int) -> Cleanup:
    """Delete the partitions whose every row is past ``retention_days``."""
    removed, freed = [], 0
    for partition in expired_partitions(log_partitions(log, model), as_of, retention_days):
        freed += _size(log.fs, partition.path)
        log.fs.rm(partition.path, recursive=True)
        removed.append(f"{partition.dataset}/date={partition.day}")
    return Cleanup(tuple(removed), freed)


def _local_entries(root: Path, kind: ScratchKind) -> list[ScratchEntry]:
    if not root.is_dir():
        return []
    return [
        ScratchEntry(str(p), datetime.fromtimestamp(p.stat().st_mtime, UTC), kind,
                     sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size)
        for p in root.iterdir()
    ]


def _partial_parts(log: LogStore, model: str) -> list[ScratchEntry]:
    entries = []
    for dataset in (PREDICTIONS, LABELS):
        for path in log.fs.glob(f"{log.root}/{dataset}/model={model}/date=*/.part-*"):
            if is_partial_part(path.rsplit("/", 1)[-1]):
                info = log.fs.info(path)
                modified = info.get("mtime") or info.get("LastModified") or info.get("created")
                when = modified if isinstance(modified, datetime) else datetime.fromtimestamp(float(modified), UTC)
                entries.append(ScratchEntry(path, when.astimezone(UTC), ScratchKind.PARTIAL_PART, int(info.get("size", 0))))
    return entries


def _wal_segments(log: LogStore) -> tuple[list[ScratchEntry], list[str]]:
    """Replayed WAL segments (removable) and the names of those whose rows are not all in Parquet yet."""
    replayed, unreplayed = [], []
    wal = Path(log.root) / WAL_FOLDER
    if not (log.local and wal.is_dir()):
        return replayed, unreplayed
    for segment in sorted(wal.glob("*.jsonl")):
        with segment.open("r", encoding="utf-8") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live writer's segment
            parts = wal_segment_parts(handle)
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        listing = {key: _parts_written(log, log.partition_path(*key), segment.stem) for key in parts}
        if segment_written(segment.stem, parts, listing) or not parts:
            stat = segment.stat()
            replayed.append(ScratchEntry(str(segment), datetime.fromtimestamp(stat.st_mtime, UTC),
                                         ScratchKind.WAL_SEGMENT, stat.st_size))
        else:
            unreplayed.append(segment.name)
    return replayed, unreplayed


def _parts_written(log: LogStore, folder: str, stem: str) -> list[str]:
    """The parts of one flush in a partition: those listed, and those compaction merged (and may have deleted)."""
    try:
        view = log.partition_view(folder)
    except FileNotFoundError:
        return []
    return [leaf for leaf in (*view.readable, *view.superseded_by()) if leaf.startswith(f"part-{stem}")]


def remove_expired_scratch(
    log: LogStore, model: str, scratch: Path, as_of: datetime, retention_days: int
) -> Cleanup:
    """Steward's scratch files, unfinished log parts and replayed WAL segments past ``retention_days``.

    A WAL segment whose rows are not all in Parquet, or that a live writer holds, is never removed.
    """
    replayed, unreplayed = _wal_segments(log)
    entries = [*_local_entries(scratch, ScratchKind.SCRATCH), *_partial_parts(log, model), *replayed]
    removed, freed = [], 0
    for entry in expired_scratch(entries, as_of, retention_days):
        if entry.kind is ScratchKind.PARTIAL_PART:
            log.fs.rm(entry.path)
        elif Path(entry.path).is_dir():
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            Path(entry.path).unlink(missing_ok=True)
        removed.append(f"{entry.kind.value}: {entry.path}")
        freed += entry.size
    return Cleanup(tuple(removed), freed, tuple(unreplayed))
