"""Client keys and roles (steward.serving.auth): pure, on a keys file in a temporary folder."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta

import pytest

from steward.serving.auth import (
    ADMIN_TOKEN_IDENTITY,
    ANONYMOUS,
    Action,
    AuthError,
    AuthFailure,
    KeyRing,
    KeysFile,
    KeysFileError,
    Role,
    authenticate,
    parse_roles,
)

NOW = datetime(2026, 12, 1, tzinfo=UTC)
TOKEN = "t" * 40


def bearer(secret: str) -> str:
    return f"Bearer {secret}"


def failure(authorization: str | None, keys: KeyRing, action: Action, *, token: str | None = TOKEN,
            now: datetime = NOW) -> AuthFailure:
    with pytest.raises(AuthError) as caught:
        authenticate(authorization, admin_token=token, keys=keys, action=action, now=now)
    return caught.value.failure


def test_roles_nest_and_a_key_without_roles_may_only_predict():
    ring = KeyRing()
    _, viewer = ring.create("dash", frozenset({Role.VIEWER}), NOW)
    _, operator = ring.create("labeller", frozenset({Role.OPERATOR}), NOW)
    _, admin = ring.create("alice", frozenset({Role.ADMIN}), NOW)
    _, client = ring.create("scorer", frozenset(), NOW)
    allowed = {
        name: {action for action in Action if _may(ring, key, action)}
        for name, key in {"viewer": viewer, "operator": operator, "admin": admin, "client": client}.items()
    }
    assert allowed["client"] == {Action.PREDICT}
    assert allowed["viewer"] == {Action.PREDICT, Action.VIEW}
    assert allowed["operator"] == {Action.PREDICT, Action.VIEW, Action.FEEDBACK, Action.OPERATE}
    assert allowed["admin"] == set(Action)
    assert failure(bearer(viewer), ring, Action.FEEDBACK) is AuthFailure.FORBIDDEN


def _may(ring: KeyRing, key: str, action: Action) -> bool:
    try:
        authenticate(bearer(key), admin_token=TOKEN, keys=ring, action=action, now=NOW)
    except AuthError:
        return False
    return True


def test_the_identity_is_the_key_name_or_the_admin_token_never_a_declared_name():
    ring = KeyRing()
    _, key = ring.create("alice", frozenset({Role.ADMIN}), NOW)
    assert authenticate(bearer(key), admin_token=TOKEN, keys=ring, action=Action.CONFIGURE, now=NOW).name == "alice"
    by_token = authenticate(bearer(TOKEN), admin_token=TOKEN, keys=ring, action=Action.CONFIGURE, now=NOW)
    assert by_token.name == ADMIN_TOKEN_IDENTITY


def test_wrong_missing_expired_and_revoked_keys_are_refused():
    ring = KeyRing()
    _, expiring = ring.create("temp", frozenset({Role.OPERATOR}), NOW, NOW + timedelta(days=1))
    record, revoked = ring.create("gone", frozenset({Role.OPERATOR}), NOW)
    ring.revoke(record.key_id, NOW)
    assert failure(None, ring, Action.PREDICT) is AuthFailure.MISSING
    assert failure(bearer("stw_00000000_nope"), ring, Action.PREDICT) is AuthFailure.INVALID
    assert failure(bearer(expiring[:-1] + ("A" if expiring[-1] != "A" else "B")), ring, Action.PREDICT) is AuthFailure.INVALID
    assert failure(f"Basic {expiring}", ring, Action.PREDICT) is AuthFailure.INVALID
    assert failure("Bearer ", ring, Action.PREDICT) is AuthFailure.INVALID
    assert failure(bearer(expiring), ring, Action.FEEDBACK, now=NOW + timedelta(days=2)) is AuthFailure.EXPIRED
    assert failure(bearer(revoked), ring, Action.FEEDBACK) is AuthFailure.REVOKED


def test_without_keys_predict_and_feedback_are_open_and_the_rest_needs_the_token():
    empty = KeyRing()
    assert authenticate(None, admin_token=TOKEN, keys=empty, action=Action.FEEDBACK, now=NOW) is ANONYMOUS
    assert failure(None, empty, Action.VIEW) is AuthFailure.MISSING
    assert failure(None, empty, Action.VIEW, token=None) is AuthFailure.DISABLED
    assert failure(bearer("wrong"), empty, Action.VIEW) is AuthFailure.INVALID


def test_revoking_the_last_key_does_not_open_the_gateway():
    ring = KeyRing()
    record, _ = ring.create("only", frozenset(), NOW)
    ring.revoke("only", NOW)
    assert ring.configured
    assert failure(None, ring, Action.PREDICT) is AuthFailure.MISSING


def test_the_keys_file_keeps_hashes_owner_only_and_is_reread_when_it_changes(tmp_path):
    path = tmp_path / "home" / "keys.json"
    ring = KeyRing.load(path)
    record, plaintext = ring.create("scorer", parse_roles(["Operator"]), NOW)
    ring.save(path)
    text = path.read_text()
    assert plaintext.split("_", 2)[2] not in text and record.secret_sha256 in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    watched = KeysFile(path)
    assert watched.current(0.0).identify(plaintext, NOW).name == "scorer"
    ring.revoke(record.key_id, NOW)
    ring.save(path)
    with pytest.raises(AuthError):
        watched.current(10.0).identify(plaintext, NOW)
    path.write_text("{not json")
    assert watched.current(20.0).configured  # an unreadable file keeps the last good keys
    assert "cannot be read" in watched.error
    with pytest.raises(KeysFileError):
        KeysFile(path).current(0.0)  # never readable: refused, not open


def test_bad_names_roles_and_expiries_are_refused():
    ring = KeyRing()
    ring.create("svc", frozenset(), NOW)
    with pytest.raises(KeysFileError, match="active key named"):
        ring.create("svc", frozenset(), NOW)
    with pytest.raises(KeysFileError, match="one word"):
        ring.create("two words", frozenset(), NOW)
    with pytest.raises(KeysFileError, match="unknown role"):
        parse_roles(["root"])
    with pytest.raises(KeysFileError, match="future"):
        ring.create("late", frozenset(), NOW, NOW - timedelta(days=1))
    with pytest.raises(KeysFileError, match="no key"):
        ring.revoke("nobody", NOW)
