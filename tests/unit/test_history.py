from __future__ import annotations

from datetime import UTC, datetime

from steward.registry.history import (
    CHALLENGER,
    CHAMPION,
    AuditEntry,
    ChangeKind,
    champion_lineage,
    next_semver,
    rollback_target,
    select_for_archive,
)


def entries(*moves: tuple[ChangeKind, str | None, str]) -> list[AuditEntry]:
    return [
        AuditEntry(datetime.now(UTC), "m", kind, "tester", "because", alias=CHAMPION,
                   from_version=from_version, to_version=to_version, sequence=i)
        for i, (kind, from_version, to_version) in enumerate(moves)
    ]


def test_rollback_target_is_the_previous_champion():
    history = entries((ChangeKind.BOOTSTRAP, None, "1"), (ChangeKind.PROMOTE, "1", "2"), (ChangeKind.PROMOTE, "2", "3"))
    assert champion_lineage(history) == ["1", "2", "3"]
    assert rollback_target(history) == "2"


def test_second_rollback_goes_further_back_not_forward():
    history = entries(
        (ChangeKind.BOOTSTRAP, None, "1"), (ChangeKind.PROMOTE, "1", "2"), (ChangeKind.PROMOTE, "2", "3"),
        (ChangeKind.ROLLBACK, "3", "2"),
    )
    assert champion_lineage(history) == ["1", "2"]
    assert rollback_target(history) == "1"


def test_no_target_for_a_single_champion_or_unavailable_ones():
    assert rollback_target(entries((ChangeKind.BOOTSTRAP, None, "1"))) is None
    history = entries((ChangeKind.BOOTSTRAP, None, "1"), (ChangeKind.PROMOTE, "1", "2"), (ChangeKind.PROMOTE, "2", "3"))
    assert rollback_target(history, unavailable={"2"}) == "1"


def test_challenger_moves_do_not_count_as_champions():
    history = entries((ChangeKind.BOOTSTRAP, None, "1"))
    history.append(AuditEntry(datetime.now(UTC), "m", ChangeKind.ASSIGN, "t", "r", alias=CHALLENGER,
                              to_version="2", sequence=9))
    assert rollback_target(history) is None


def test_retention_keeps_aliases_rollback_path_and_newest():
    history = entries(*[(ChangeKind.PROMOTE, str(v - 1) if v > 1 else None, str(v)) for v in range(1, 6)])
    versions = [str(v) for v in range(1, 11)]
    decision = select_for_archive(versions, history, protected={"5", "10"}, keep_champions=3, keep_recent=3)
    assert decision.archive == ("1", "2", "6", "7")
    assert {"3", "4", "5", "8", "9", "10"} == set(decision.keep)
    assert "rollback path" in decision.reasons["3"]


def test_semver():
    assert next_semver(None, schema_changed=False) == "1.0.0"
    assert next_semver("1.2.0", schema_changed=False) == "1.3.0"
    assert next_semver("1.2.0", schema_changed=True) == "2.0.0"
