"""Client keys and roles: who may call the gateway, and for what.

A key is shown once, at creation, as ``stw_<key id>_<secret>``; the keys file keeps only the
SHA-256 of the secret (32 random bytes: a fast hash is enough, nothing to brute-force), with
the key's name, roles, expiry and revocation. The name is the identity recorded as the actor
of whatever the key does. Roles nest: an admin may do what an operator may, an operator what a
viewer may; a key without roles may only predict.

Pure: no web framework here. ``KeyRing`` reads and writes the keys file (owner-only, replaced
atomically); the gateway re-reads it when it changes, so a revocation takes effect without a restart.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

KEY_PREFIX = "stw"
ADMIN_TOKEN_IDENTITY = "admin-token"
KEYS_FILE_VERSION = 1


class Role(StrEnum):
    VIEWER = "viewer"  # status, history, metrics
    OPERATOR = "operator"  # feedback; refresh, log flush, smoke tests of an arm (canary, promote, rollback)
    ADMIN = "admin"  # keys, traffic plans, settings, replayed (back-dated) traffic


RANK = {Role.VIEWER: 1, Role.OPERATOR: 2, Role.ADMIN: 3}


class Action(StrEnum):
    PREDICT = "predict"
    VIEW = "view"
    FEEDBACK = "feedback"
    OPERATE = "operate"
    CONFIGURE = "configure"


REQUIRED_ROLE: dict[Action, Role | None] = {
    Action.PREDICT: None,  # any valid key
    Action.VIEW: Role.VIEWER,
    Action.FEEDBACK: Role.OPERATOR,
    Action.OPERATE: Role.OPERATOR,
    Action.CONFIGURE: Role.ADMIN,
}


class AuthFailure(StrEnum):
    MISSING = "missing"  # no credentials where they are required
    INVALID = "invalid"  # unknown key or token, or a malformed one
    EXPIRED = "expired"
    REVOKED = "revoked"
    FORBIDDEN = "forbidden"  # a valid identity without the role
    DISABLED = "disabled"  # nothing configured that could grant this


class AuthError(Exception):
    """A request refused for its credentials; ``failure`` says why, ``message`` what to do."""

    def __init__(self, failure: AuthFailure, message: str) -> None:
        super().__init__(message)
        self.failure = failure
        self.message = message

    @property
    def status(self) -> int:
        if self.failure in (AuthFailure.FORBIDDEN, AuthFailure.DISABLED):
            return 403
        return 401


class KeysFileError(ValueError):
    """A keys-file operation that cannot be done (unknown key, bad name, unreadable file)."""


@dataclass(frozen=True)
class Identity:
    """Who a request is: a key's name, or the admin token; the actor recorded for what it does."""

    name: str
    roles: frozenset[Role]
    key_id: str | None = None

    def may(self, action: Action) -> bool:
        needed = REQUIRED_ROLE[action]
        return needed is None or any(RANK[role] >= RANK[needed] for role in self.roles)


ANONYMOUS = Identity("anonymous", frozenset())


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    name: str
    roles: frozenset[Role]
    secret_sha256: str
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    def state(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"

    def to_json(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "name": self.name, "roles": sorted(self.roles),
                "secret_sha256": self.secret_sha256, "created_at": self.created_at.isoformat(),
                "expires_at": self.expires_at.isoformat() if self.expires_at else None,
                "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None}

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> ApiKey:
        def when(field: str) -> datetime | None:
            value = document.get(field)
            return datetime.fromisoformat(value) if value else None

        return cls(str(document["key_id"]), str(document["name"]), frozenset(Role(r) for r in document["roles"]),
                   str(document["secret_sha256"]), datetime.fromisoformat(document["created_at"]),
                   when("expires_at"), when("revoked_at"))

    def describe(self, now: datetime) -> dict[str, Any]:
        """What ``steward keys list`` shows: never the hash."""
        return {"key_id": self.key_id, "name": self.name, "roles": sorted(self.roles), "state": self.state(now),
                "created_at": self.created_at.isoformat(),
                "expires_at": self.expires_at.isoformat() if self.expires_at else None,
                "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None}


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_roles(names: Iterable[str]) -> frozenset[Role]:
    roles = set()
    for name in names:
        try:
            roles.add(Role(name.strip().lower()))
        except ValueError:
            raise KeysFileError(f"unknown role {name!r}: choose from {[r.value for r in Role]}") from None
    return frozenset(roles)


class KeyRing:
    """The keys in one keys file."""

    def __init__(self, keys: Iterable[ApiKey] = ()) -> None:
        self.keys: dict[str, ApiKey] = {key.key_id: key for key in keys}

    @property
    def configured(self) -> bool:
        """Keys are required once any key was ever created: revoking the last one must not open the gateway."""
        return bool(self.keys)

    # ------------------------------------------------------------------ file
    @classmethod
    def load(cls, path: Path) -> KeyRing:
        if not path.exists():
            return cls()
        try:
            document = json.loads(path.read_text())
            return cls(ApiKey.from_json(item) for item in document["keys"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise KeysFileError(f"the keys file {path} cannot be read ({type(error).__name__}: {error}); restore it "
                            "from a backup or move it away and create the keys again") from None

    def save(self, path: Path) -> None:
        """Write the file owner-only, replacing the old one at once (a reader never sees half a file)."""
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        document = {"version": KEYS_FILE_VERSION, "keys": [key.to_json() for key in self.keys.values()]}
        handle, temporary = tempfile.mkstemp(prefix=".keys-", dir=path.parent)
        try:
            with os.fdopen(handle, "w") as out:
                os.fchmod(out.fileno(), 0o600)
                json.dump(document, out, indent=1)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    # ------------------------------------------------------------------ changes
    def create(self, name: str, roles: frozenset[Role], now: datetime,
               expires_at: datetime | None = None) -> tuple[ApiKey, str]:
        """A new key and its plaintext, which is shown once and stored nowhere."""
        name = name.strip()
        if not name or any(c.isspace() for c in name) or len(name) > 64:
            raise KeysFileError("a key's name is one word of at most 64 characters, e.g. `scoring-service`")
        if any(key.name == name and key.state(now) == "active" for key in self.keys.values()):
            raise KeysFileError(f"an active key named {name!r} exists: revoke it first, or choose another name")
        if expires_at is not None and expires_at <= now:
            raise KeysFileError("the expiry must be in the future")
        key_id = secrets.token_hex(4)
        while key_id in self.keys:
            key_id = secrets.token_hex(4)
        secret = secrets.token_urlsafe(32)
        key = ApiKey(key_id, name, roles, _digest(secret), now, expires_at)
        self.keys[key_id] = key
        return key, f"{KEY_PREFIX}_{key_id}_{secret}"

    def revoke(self, which: str, now: datetime) -> ApiKey:
        """Revoke a key by id or by the name of its active key."""
        found = self.keys.get(which) or next(
            (key for key in self.keys.values() if key.name == which and key.state(now) == "active"), None)
        if found is None:
            raise KeysFileError(f"no key with id or active name {which!r}; `steward keys list` shows them")
        if found.revoked_at is None:
            found = self.keys[found.key_id] = replace(found, revoked_at=now)
        return found

    # ------------------------------------------------------------------ requests
    def identify(self, presented: str, now: datetime) -> Identity:
        """The identity of a presented key; AuthError when it is not a valid, current key."""
        prefix, _, rest = presented.partition("_")
        key_id, _, secret = rest.partition("_")
        key = self.keys.get(key_id) if prefix == KEY_PREFIX else None
        if key is None or not hmac.compare_digest(_digest(secret), key.secret_sha256):
            raise AuthError(AuthFailure.INVALID, "the key is not valid for this gateway")
        state = key.state(now)
        if state == "revoked":
            raise AuthError(AuthFailure.REVOKED, f"the key {key.name!r} was revoked: ask an admin for a new one")
        if state == "expired":
            raise AuthError(AuthFailure.EXPIRED, f"the key {key.name!r} expired at {key.expires_at}: ask for a new one")
        return Identity(key.name, key.roles, key.key_id)


def authenticate(authorization: str | None, *, admin_token: str | None, keys: KeyRing, action: Action,
                 now: datetime) -> Identity:
    """Who sent ``Authorization`` and whether they may do ``action``; AuthError otherwise.

    The admin token is Steward's own credential (its flows use it): it may do everything and is
    recorded as ``admin-token``. Without keys configured, predict and feedback are open (the
    embedded demo) and everything else needs the admin token, as before keys existed.
    """
    open_without_keys = action in (Action.PREDICT, Action.FEEDBACK) and not keys.configured
    if not authorization:
        if open_without_keys:
            return ANONYMOUS
        if not keys.configured and not admin_token:
            raise AuthError(AuthFailure.DISABLED, "the admin API is off because no admin token is configured: set "
                                                  "STEWARD_ADMIN_TOKEN for the gateway and restart it, or create keys "
                                                  "with `steward keys create`")
        raise AuthError(AuthFailure.MISSING, "this call needs the header `Authorization: Bearer <key>` "
                                             f"(a key with the {REQUIRED_ROLE[action] or 'any'} role, or the admin token)")
    scheme, _, given = authorization.partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        raise AuthError(AuthFailure.INVALID, "send the credentials as `Authorization: Bearer <key>`")
    if admin_token and hmac.compare_digest(given.encode(), admin_token.encode()):
        return Identity(ADMIN_TOKEN_IDENTITY, frozenset({Role.ADMIN}))
    if not keys.configured:
        if open_without_keys:
            raise AuthError(AuthFailure.INVALID, "this gateway has no client keys: send no Authorization header, "
                                                 "or the admin token")
        if not admin_token:
            raise AuthError(AuthFailure.DISABLED, "the admin API is off because no admin token is configured: set "
                                                  "STEWARD_ADMIN_TOKEN for the gateway and restart it")
        raise AuthError(AuthFailure.INVALID, "the admin token is not valid for this gateway")
    identity = keys.identify(given, now)
    if not identity.may(action):
        raise AuthError(AuthFailure.FORBIDDEN, f"the key {identity.name!r} ({', '.join(sorted(identity.roles)) or 'no role'}) "
                                               f"may not {action.value}: it needs the {REQUIRED_ROLE[action]} role")
    return identity


def now_utc() -> datetime:
    return datetime.now(UTC)


class KeysFile:
    """A gateway's view of its keys file, read again when the file changes (checked at most once a second)."""

    CHECK_SECONDS = 1.0

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._ring = KeyRing()
        self._signature: tuple[int, int] | None = None
        self._checked = -float("inf")
        self.error: str | None = None

    def current(self, monotonic: float) -> KeyRing:
        """The keys as of the last change; KeysFileError when the file has never been readable."""
        if self.path is None or monotonic - self._checked < self.CHECK_SECONDS:
            return self._current()
        self._checked = monotonic
        try:
            stat = self.path.stat()
            signature = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            signature = None
        if signature != self._signature:
            try:
                self._ring = KeyRing.load(self.path) if signature is not None else self._ring
                self._signature = signature
                self.error = None
            except KeysFileError as error:  # keep the last good keys: failing open would admit anyone
                self.error = str(error)
        return self._current()

    def _current(self) -> KeyRing:
        if self.error is not None and not self._ring.configured:
            raise KeysFileError(self.error)
        return self._ring
