"""Machine load on purpose: busy processes that keep every core working, for tests and benchmarks that
must hold on a busy machine (the decisions they check may not depend on load)."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from contextlib import contextmanager


def _spin() -> None:
    while True:
        pass


@contextmanager
def cpu_hog(processes: int | None = None) -> Iterator[int]:
    """Keep ``processes`` (default: one per core) busy-looping until the block ends; yields their count.

    The processes are started with ``spawn`` (no copy of the caller's threads or locks) and are
    terminated, by their own ids, when the block ends, even on an error.
    """
    count = processes or os.cpu_count() or 1
    context = multiprocessing.get_context("spawn")
    hogs = [context.Process(target=_spin, name=f"steward-cpu-hog-{i}", daemon=True) for i in range(count)]
    for hog in hogs:
        hog.start()
    try:
        yield count
    finally:
        for hog in hogs:
            hog.terminate()
        for hog in hogs:
            hog.join(timeout=10)
