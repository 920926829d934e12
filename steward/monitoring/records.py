"""One small record store for the JSON records monitoring keeps beside the prediction log.

Layout, through fsspec: ``<store>/<collection>/model=<name>/<key>.json``.  A record either has a
fixed key and is replaced as a whole (an SLO day: ``date=2026-03-01``), or is appended under a new
key that sorts by time (``20260301T000000000000Z-1a2b3c4d``: a drift check, a ledger event).

Every write is atomic: locally the JSON goes to a hidden temporary name in the same folder and is
renamed into place, so a reader never sees half a record; on an object store a single PUT is
already atomic.  Appended keys carry a random suffix, so concurrent writers never collide.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import fsspec
from fsspec.implementations.local import LocalFileSystem

SUFFIX = ".json"
_STAMP = "%Y%m%dT%H%M%S%f"


def time_key(when: datetime) -> str:
    """A key that sorts by ``when`` (UTC) and is unique among concurrent writers."""
    return f"{when.astimezone(UTC).strftime(_STAMP)}Z-{uuid.uuid4().hex[:8]}"


def key_time(key: str) -> datetime:
    """The time an appended key was made for (keys with or without the ``Z`` before the suffix)."""
    stamp = key.split("-", 1)[0].removesuffix("Z")
    return datetime.strptime(stamp, _STAMP).replace(tzinfo=UTC)


def leaf(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def record_key(path: str) -> str:
    return leaf(path).removesuffix(SUFFIX)


class RecordStore:
    """JSON records of one collection (``ledger``, ``slo``, ``drift``) under a store URI.

    ``legacy_model_folder``: also read records from ``<collection>/<name>/`` (the ledger's layout
    before ``model=<name>``), so data written by earlier versions stays visible.
    """

    def __init__(self, store_uri: str, collection: str, *, legacy_model_folder: bool = False) -> None:
        self.root = f"{store_uri.rstrip('/')}/{collection}"
        self._fs, self._path = fsspec.core.url_to_fs(self.root)
        self._local = isinstance(self._fs, LocalFileSystem)
        self._legacy = legacy_model_folder

    def folder(self, model: str) -> str:
        return f"{self._path}/model={model}"

    def put(self, model: str, key: str, text: str) -> str:
        """Write (or replace) the record ``key`` of ``model`` whole; returns its path."""
        folder = self.folder(model)
        final = f"{folder}/{key}{SUFFIX}"
        self._fs.makedirs(folder, exist_ok=True)
        if not self._local:  # an object store PUT is atomic
            with self._fs.open(final, "w") as handle:
                handle.write(text)
            return final
        partial = f"{folder}/.{key}-{uuid.uuid4().hex[:8]}.tmp"
        try:
            with self._fs.open(partial, "w") as handle:
                handle.write(text)
            self._fs.mv(partial, final)
        except BaseException:
            if self._fs.exists(partial):
                self._fs.rm(partial)
            raise
        return final

    def delete(self, model: str, key: str) -> None:
        """Remove the record ``key`` of ``model``; nothing happens if it is already gone."""
        path = f"{self.folder(model)}/{key}{SUFFIX}"
        with contextlib.suppress(FileNotFoundError):
            self._fs.rm(path)

    def append(self, model: str, when: datetime, text: str) -> str:
        """Add a record under a new key that sorts by ``when``; returns its path."""
        return self.put(model, time_key(when), text)

    def paths(self, model: str | None = None) -> list[str]:
        """Paths of the stored records (of ``model``, or of every model), ordered by key."""
        if model is None:
            patterns = [f"{self._path}/*/*{SUFFIX}"]
        else:
            patterns = [f"{self.folder(model)}/*{SUFFIX}"]
            if self._legacy:
                patterns.append(f"{self._path}/{model}/*{SUFFIX}")
        found = {p for pattern in patterns for p in self._fs.glob(pattern) if not leaf(p).startswith(".")}
        return sorted(found, key=leaf)

    def read(self, path: str) -> str:
        with self._fs.open(path, "r") as handle:
            return handle.read()

    def texts(self, model: str | None = None) -> Iterator[tuple[str, str]]:
        """(key, JSON text) of every record, ordered by key."""
        for path in self.paths(model):
            yield record_key(path), self.read(path)
