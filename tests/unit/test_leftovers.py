"""A killed test session's processes and home are removed by the next session, and nothing of a live one."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil

from tests.support import leftovers

SLEEP = [sys.executable, "-c", "import time; time.sleep(120)"]


def _started_by(owner: int) -> subprocess.Popen:
    return subprocess.Popen(SLEEP, env={**os.environ, leftovers.OWNER_VARIABLE: str(owner)})


def test_a_dead_sessions_processes_and_home_are_swept_and_a_live_ones_are_kept(tmp_path):
    dead_owner = subprocess.Popen(SLEEP)
    dead_owner.kill()
    dead_owner.wait()
    orphan, ours = _started_by(dead_owner.pid), _started_by(os.getpid())
    dead_home, live_home, unmarked = (tmp_path / f"{leftovers.HOME_PREFIX}{n}" for n in ("a", "b", "c"))
    for home in (dead_home, live_home, unmarked):
        home.mkdir()
    (dead_home / leftovers.OWNER_FILE).write_text(str(dead_owner.pid))
    (live_home / leftovers.OWNER_FILE).write_text(str(os.getpid()))
    try:
        time.sleep(0.2)  # the children's environment is readable once they run
        swept = leftovers.sweep(tmp_path, grace_seconds=5)
        assert orphan.pid in swept.processes and ours.pid not in swept.processes
        assert orphan.wait(timeout=10) is not None
        assert psutil.Process(ours.pid).is_running() and ours.poll() is None
        assert swept.homes == [dead_home] and not dead_home.exists() and live_home.exists() and unmarked.exists()
        assert swept.describe().startswith("stopped")
    finally:
        for process in (orphan, ours):
            process.kill()
            process.wait()
