"""Where a scan's memory goes: one health scan (``summarize_window`` with labels) of a log written by
``benchmarks/scale_log.py``, printing the process's RSS (sampled every 50 ms) beside Arrow's memory pool
(``bytes_allocated``, ``max_memory``) before, during (every eighth batch) and after the scan.

    uv run python benchmarks/scan_memory.py /tmp/steward-scale/10M

Used for benchmarks/results/2026-12-04-monitoring-scale-2.md: RSS far above the summaries' state while the pool
held ~1 GiB during the scan and little after it pointed at the scanner's queue (decision 0032).
"""

from __future__ import annotations

import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
_peak = [0.0]


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return 0.0


def _sample() -> None:
    while True:
        _peak[0] = max(_peak[0], rss_mb())
        time.sleep(0.05)


def mark(label: str) -> None:
    pool = pa.default_memory_pool()
    print(f"{label:32s} rss={rss_mb():6.0f} MB  peak_rss={_peak[0]:6.0f} MB  arrow={pool.bytes_allocated() / 2**20:6.0f} MB"
          f"  arrow_max={pool.max_memory() / 2**20:6.0f} MB", flush=True)


def main(log: str) -> None:
    threading.Thread(target=_sample, daemon=True).start()
    mark(f"start ({pa.default_memory_pool().backend_name})")
    import steward.monitoring.summaries.window as window
    from steward.spec import load_spec
    from steward.store.reader import PredictionStore

    spec = load_spec(ROOT / "examples" / "credit_default" / "spec.yaml")
    store = PredictionStore(log)
    start, end = datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 6, 2, tzinfo=UTC)
    scan = window.scan_predictions

    def marked(*args, **options):
        for number, table in enumerate(scan(*args, **options), 1):
            if number == 1 or number % 8 == 0:
                mark(f"  batch {number}")
            yield table

    window.scan_predictions = marked
    mark("imported")
    began = time.perf_counter()
    window.summarize_window(store, spec, start, end, labels_window=(start, end))
    mark(f"done in {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1])
