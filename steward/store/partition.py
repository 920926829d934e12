"""Which files of one ``date=`` partition a reader reads, once compaction has merged some of them.

Compaction never edits a part: it writes merged files (``compacted-<id>[-<i>].parquet``) and then,
as its one commit, a manifest (``_compaction/<id>.json``) naming them and the files they replace.
A reader takes the listing and the manifests and reads each row exactly once:

* a manifest counts (is *effective*) when all its outputs are listed, or were themselves replaced by
  an effective manifest (a later compaction merged them); of two that replace the same file (two
  compactions at once), the earlier counts and the other's outputs are never read;
* files named as sources of an effective manifest are *superseded*: never read, deleted later;
* a compacted file with no effective manifest is an unfinished or abandoned compaction: never read.

So whichever moment a listing is taken (before the outputs, between outputs and manifest, after it,
after the sources are gone), the same rows come back once. A part rewritten after compaction under
its old name (a write-ahead-log replay) is still superseded, and so is not counted twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

MANIFEST_FOLDER = "_compaction"
COMPACTED_PREFIX = "compacted-"


@dataclass(frozen=True)
class Manifest:
    """One compaction of one partition: the files it wrote and the files they replace."""

    id: str
    outputs: tuple[str, ...]
    sources: tuple[str, ...]
    rows: int
    created: datetime

    def to_json(self) -> str:
        return json.dumps({"id": self.id, "outputs": list(self.outputs), "sources": list(self.sources),
                           "rows": self.rows, "created": self.created.isoformat()}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        document = json.loads(text)
        return cls(id=str(document["id"]), outputs=tuple(document["outputs"]), sources=tuple(document["sources"]),
                   rows=int(document["rows"]), created=datetime.fromisoformat(document["created"]).astimezone(UTC))


@dataclass(frozen=True)
class PartitionView:
    """What a reader sees of one partition: the files to read, and what compaction replaced."""

    readable: tuple[str, ...]
    superseded: tuple[str, ...]
    effective: tuple[Manifest, ...]
    orphans: tuple[str, ...]  # compacted files no effective manifest names (a compaction that never committed)

    def superseded_by(self) -> dict[str, Manifest]:
        """For each superseded file, the effective manifest that replaced it."""
        return {source: manifest for manifest in self.effective for source in manifest.sources}


def is_log_file(leaf: str) -> bool:
    """A finished Parquet file of the log (parts and compacted files), not a temporary or a folder."""
    return leaf.endswith(".parquet") and not leaf.startswith((".", "_"))


def partition_view(leaves: Iterable[str], manifests: Iterable[Manifest]) -> PartitionView:
    """The files of one partition a reader reads, given its listing (leaf names) and its manifests."""
    listed = {leaf for leaf in leaves if is_log_file(leaf)}
    ordered = sorted(manifests, key=lambda m: m.id)
    effective: dict[str, Manifest] = {}
    superseded: set[str] = set()
    changed = True
    while changed:  # outputs merged again by an effective manifest count as committed even once deleted
        changed = False
        for manifest in ordered:
            outputs, sources = set(manifest.outputs), set(manifest.sources)
            if manifest.id in effective or not outputs or not outputs <= listed | superseded:
                continue
            if sources & superseded:  # two compactions of the same files: the earlier one counts
                continue
            effective[manifest.id] = manifest
            superseded |= sources
            changed = True
    committed_outputs = {output for m in effective.values() for output in m.outputs}
    readable, orphans = [], []
    for leaf in sorted(listed):
        if leaf in superseded:
            continue
        if leaf.startswith(COMPACTED_PREFIX) and leaf not in committed_outputs:
            orphans.append(leaf)
            continue
        readable.append(leaf)
    return PartitionView(tuple(readable), tuple(sorted(superseded & listed)),
                         tuple(sorted(effective.values(), key=lambda m: m.id)), tuple(orphans))


def compaction_id(now: datetime, token: str) -> str:
    """Sortable by time (hex microseconds first), unique by ``token``."""
    return f"{int(now.timestamp() * 1_000_000):x}-{token}"


def compaction_time(leaf_or_id: str) -> datetime | None:
    """When the compaction that named a file (or id) started, read back from the id; None if not one of ours."""
    stem = leaf_or_id.removeprefix(COMPACTED_PREFIX).removesuffix(".parquet")
    try:
        return datetime.fromtimestamp(int(stem.split("-", 1)[0], 16) / 1_000_000, UTC)
    except ValueError:
        return None
