"""The audit history of a model and the decisions read from it.

MLflow keeps only the current alias of each name; Steward records every change (alias
moves, rollbacks, archiving, traffic plans) as an ``AuditEntry``. The functions here are
pure: they take entries and return what follows from them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

CHAMPION = "champion"
CHALLENGER = "challenger"


class ChangeKind(StrEnum):
    BOOTSTRAP = "bootstrap"  # first champion of a model
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    ASSIGN = "assign"  # an alias other than a champion move: challenger set or cleared
    ARCHIVE = "archive"
    TRAFFIC_PLAN = "traffic_plan"
    DELIVERY_DECISION = "delivery_decision"  # a canary step, blue-green watch or A/B verdict, with its evidence


@dataclass(frozen=True)
class AuditEntry:
    time: datetime
    model: str
    kind: ChangeKind
    actor: str
    reason: str
    alias: str | None = None
    from_version: str | None = None
    to_version: str | None = None
    details: dict[str, str] = field(default_factory=dict)
    sequence: int = 0

    def move(self) -> str:
        """What moved: ``champion: v1 -> v2`` for an alias, else the version concerned."""
        if self.alias:
            return f"{self.alias}: {_v(self.from_version)} -> {_v(self.to_version)}"
        return f"v{self.to_version}" if self.to_version else ""

    def describe(self) -> str:
        when = self.time.strftime("%Y-%m-%d %H:%M:%S")
        return f"{when}  {self.kind.value:<12} {self.move():<28} by {self.actor}: {self.reason}"


def _v(version: str | None) -> str:
    return f"v{version}" if version else "none"


def champion_lineage(entries: Iterable[AuditEntry]) -> list[str]:
    """The stack of champions that a rollback walks back through, oldest first.

    Promotions push a version; a rollback pops back to the version it restored, so a
    second rollback goes further back instead of returning to the version just removed.
    """
    stack: list[str] = []
    for entry in sorted(entries, key=lambda e: e.sequence):
        if entry.alias != CHAMPION or entry.to_version is None:
            continue
        if entry.kind is ChangeKind.ROLLBACK:
            while stack and stack[-1] != entry.to_version:
                stack.pop()
            if not stack:
                stack.append(entry.to_version)
        elif not stack or stack[-1] != entry.to_version:
            stack.append(entry.to_version)
    return stack


def rollback_target(entries: Iterable[AuditEntry], unavailable: set[str] = frozenset()) -> str | None:
    """The champion before the current one, skipping versions that can no longer serve."""
    stack = champion_lineage(entries)
    for version in reversed(stack[:-1]):
        if version not in unavailable and version != (stack[-1] if stack else None):
            return version
    return None


def ever_champions(entries: Iterable[AuditEntry]) -> list[str]:
    """Every version that was champion at some point, most recent reign first, without repeats."""
    seen: list[str] = []
    for entry in sorted(entries, key=lambda e: e.sequence, reverse=True):
        if entry.alias == CHAMPION and entry.to_version and entry.to_version not in seen:
            seen.append(entry.to_version)
    return seen


@dataclass(frozen=True)
class RetentionDecision:
    archive: tuple[str, ...]
    keep: tuple[str, ...]
    reasons: dict[str, str]


def select_for_archive(
    versions: Sequence[str],
    entries: Iterable[AuditEntry],
    protected: set[str],
    *,
    keep_champions: int = 3,
    keep_recent: int = 3,
) -> RetentionDecision:
    """Which versions to tag archived: never an aliased one, never the last ``keep_champions``
    former champions (they are the rollback path), never the ``keep_recent`` newest."""
    by_number = sorted(versions, key=int)
    recent = set(by_number[-keep_recent:]) if keep_recent else set()
    champions = set(ever_champions(entries)[:keep_champions])
    reasons, archive, keep = {}, [], []
    for version in by_number:
        if version in protected:
            reasons[version] = "holds an alias"
        elif version in champions:
            reasons[version] = f"one of the last {keep_champions} champions (rollback path)"
        elif version in recent:
            reasons[version] = f"one of the {keep_recent} newest versions"
        else:
            archive.append(version)
            reasons[version] = (
                f"older than the {keep_recent} newest versions and not among the last {keep_champions} champions"
            )
            continue
        keep.append(version)
    return RetentionDecision(tuple(archive), tuple(keep), reasons)


def next_semver(previous: str | None, schema_changed: bool) -> str:
    """Major when the input schema changes, minor for a retrain on the same schema."""
    if previous is None:
        return "1.0.0"
    major, minor, _patch = (int(part) for part in previous.split("."))
    return f"{major + 1}.0.0" if schema_changed else f"{major}.{minor + 1}.0"
