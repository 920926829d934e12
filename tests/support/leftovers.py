"""What a killed test session leaves behind, found and removed by the next one.

A session killed before its teardown (a timeout, Ctrl-C twice, an OOM kill) leaves the Prefect
test servers, gateways and workers it started, and its home under the temp folder: on a 2-core
machine a few such servers slow every later run. Each session marks what it starts: its pid in
the environment its subprocesses inherit (``OWNER_VARIABLE``) and in its home (``OWNER_FILE``).
The next session stops the processes, and removes the homes, whose owner is no longer alive.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import psutil

OWNER_VARIABLE = "STEWARD_TEST_SESSION_PID"
OWNER_FILE = "owner.pid"
HOME_PREFIX = "steward-tests-"


@dataclass
class Swept:
    processes: list[int] = field(default_factory=list)
    homes: list[Path] = field(default_factory=list)

    def describe(self) -> str:
        return (f"stopped {len(self.processes)} processes and removed {len(self.homes)} homes left by killed "
                "test sessions") if self.processes or self.homes else ""


def claim(home: Path) -> None:
    """Mark what this session starts from now on, and its home, as this process's."""
    os.environ[OWNER_VARIABLE] = str(os.getpid())
    (home / OWNER_FILE).write_text(str(os.getpid()))


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _owner(text: str | None) -> int | None:
    return int(text) if text and text.strip().isdigit() else None


def orphaned_processes() -> list[psutil.Process]:
    """Processes started by a test session that is no longer alive (their inherited owner pid is dead)."""
    found = []
    for process in psutil.process_iter():
        try:
            owner = _owner(process.environ().get(OWNER_VARIABLE))
        except psutil.Error:  # another user's process, or gone meanwhile
            continue
        if owner is not None and process.pid != os.getpid() and not _alive(owner):
            found.append(process)
    return found


def orphaned_homes(temp: Path) -> list[Path]:
    """Session homes under ``temp`` whose owner is no longer alive (a home without an owner file is left)."""
    homes = []
    for home in temp.glob(f"{HOME_PREFIX}*"):
        try:
            owner = _owner((home / OWNER_FILE).read_text())
        except OSError:
            continue
        if owner is not None and not _alive(owner):
            homes.append(home)
    return homes


def sweep(temp: Path, *, grace_seconds: float = 5.0) -> Swept:
    """Stop the orphaned processes (SIGTERM, then SIGKILL after ``grace_seconds``) and remove orphaned homes."""
    processes = orphaned_processes()
    for process in processes:
        with contextlib.suppress(psutil.Error):  # gone meanwhile
            process.terminate()
    _, alive = psutil.wait_procs(processes, timeout=grace_seconds)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    homes = orphaned_homes(temp)
    for home in homes:
        shutil.rmtree(home, ignore_errors=True)
    return Swept([p.pid for p in processes], homes)
