"""Shadow scoring in a child process, so the challenger's copies never compete with the
request path for the GIL.

In a thread, each shadow batch held the GIL for ~10 ms at a time and raised the champion's
p99 by about half at 16 connections on two cores. The child gets the challenger once per
version (pickled ``LoadedArm``: estimator, spec, schema) and then only columns of rows; it
answers with the scores. If it dies, the batch in hand is reported as failed and the next
batch starts a new child.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from steward.serving.inference import Job, _deliver, score_jobs
from steward.serving.pool import LoadedArm

log = logging.getLogger(__name__)

KEPT_ARMS = 4  # versions the child keeps loaded
RETRY_SECONDS = 30.0  # after a failure, shadow copies are skipped this long before a restart


def _key(arm: LoadedArm) -> tuple[str, str, str]:
    return (arm.model, arm.version, arm.digest)


class ShadowProcess:
    """Scores shadow jobs in a child process; used by the shadow worker thread only.

    The child is ``python -m steward.serving.shadow`` talking over a socket pair, not a
    ``multiprocessing`` process: that would re-import the embedding program's main module,
    which breaks any program without a ``__main__`` guard.
    """

    def __init__(self) -> None:
        self._process: subprocess.Popen | None = None
        self._conn: Connection | None = None
        self._sent: collections.OrderedDict[tuple[str, str, str], None] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._failed_at = -RETRY_SECONDS
        self.starts = 0

    def score(self, jobs: list[Job]) -> int:
        """Score jobs in the child, grouped by version; returns the number of model calls."""
        groups: dict[int, list[Job]] = {}
        for job in jobs:
            groups.setdefault(id(job.arm), []).append(job)
        with self._lock:
            for group in groups.values():
                self._score_group(group)
        return len(groups)

    def _score_group(self, group: list[Job]) -> None:
        arm = group[0].arm
        names = group[0].columns.keys()
        columns = {name: [value for job in group for value in job.columns[name]] for name in names}
        try:
            conn = self._ensure(arm)
            conn.send(("score", _key(arm), columns))
            status, payload = conn.recv()
        except (OSError, EOFError, subprocess.SubprocessError) as error:
            self._stop_child()
            self._failed_at = time.monotonic()
            log.error("the shadow process failed (%s); retrying in %.0f s", error, RETRY_SECONDS,
                      extra={"event": "shadow_process_failed"})
            for job in group:
                _deliver(job, RuntimeError(f"shadow process failed: {error}"))
            return
        if status != "ok":
            for job in group:
                _deliver(job, RuntimeError(payload))
            return
        start = 0
        for job in group:
            _deliver(job, payload.slice(start, start + job.rows))
            start += job.rows

    def _ensure(self, arm: LoadedArm) -> Connection:
        if self._process is None or self._process.poll() is not None:
            self._stop_child()
            if time.monotonic() - self._failed_at < RETRY_SECONDS:
                raise OSError("the shadow process failed recently; copies are skipped until it can restart")
            parent, child = socket.socketpair()
            with child:
                self._process = subprocess.Popen(
                    [sys.executable, "-m", "steward.serving.shadow", str(child.fileno())],
                    pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL,
                )
            self._conn = Connection(parent.detach())
            self.starts += 1
        key = _key(arm)
        if key not in self._sent:
            self._conn.send(("arm", key, arm))
            self._sent[key] = None
            while len(self._sent) > KEPT_ARMS:
                self._sent.popitem(last=False)
        else:
            self._sent.move_to_end(key)
        return self._conn

    def _stop_child(self) -> None:
        conn, process = self._conn, self._process
        self._conn, self._process = None, None
        self._sent.clear()
        if conn is not None:
            with contextlib.suppress(OSError):  # the child may be gone already
                conn.send(("stop",))
            conn.close()
        if process is not None:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def close(self) -> None:
        with self._lock:
            self._stop_child()


def _child_main(conn: Connection) -> None:
    arms: collections.OrderedDict[Any, LoadedArm] = collections.OrderedDict()
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message[0] == "stop":
            return
        if message[0] == "arm":
            _, key, arm = message
            arms[key] = arm
            while len(arms) > KEPT_ARMS:
                arms.popitem(last=False)
            continue
        _, key, columns = message
        results: list[Any] = []
        rows = len(next(iter(columns.values()))) if columns else 0
        job = Job(arms[key], columns, rows, results.append)
        score_jobs([job])
        result = results[0]
        if isinstance(result, BaseException):
            conn.send(("error", f"{type(result).__name__}: {result}"))
        else:
            conn.send(("ok", result))


if __name__ == "__main__":
    _child_main(Connection(int(sys.argv[1])))
