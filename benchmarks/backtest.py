"""`steward backtest` on the example history: ~50k labelled rows, 26 weekly windows, all four strategies.

Writes the example spec and its history (steward.simulation.examples.example_history: an income shift
from week 6, a concept drift from week 12) to a temporary folder, runs the CLI end to end ``--repeats``
times in a subprocess (imports, replay, HTML and JSON included), and prints the wall times and their
median, the CPU time each run used (less dependent on other jobs), the host's load average around each
run, and the summary of the last run.

    uv run python benchmarks/backtest.py                 # 3 runs
    uv run python benchmarks/backtest.py --repeats 1 --weeks 8
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from steward.simulation.examples import (  # noqa: E402
    EXAMPLE_HISTORY_ROWS_PER_DAY,
    EXAMPLE_HISTORY_WEEKS,
    example_history,
    write_example,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--weeks", type=int, default=EXAMPLE_HISTORY_WEEKS)
    parser.add_argument("--rows-per-day", type=int, default=EXAMPLE_HISTORY_ROWS_PER_DAY)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="steward-backtest-bench-") as folder:
        spec = write_example(Path(folder))
        history = Path(folder) / "history.parquet"
        frame = example_history(weeks=args.weeks, rows_per_day=args.rows_per_day)
        frame.to_parquet(history, index=False)
        print(f"history: {len(frame)} rows, {args.weeks} weekly windows after 4 weeks of initial training")
        walls, replays, cpus = [], [], []
        for run in range(args.repeats):
            out = Path(folder) / f"report-{run}.html"
            load_before = os.getloadavg()[0]
            cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "steward", "backtest", str(spec), "--data", str(history),
                 "--label-time-column", "label_available_at", "--out", str(out)],
                check=True, stdout=subprocess.DEVNULL,
            )
            wall = time.perf_counter() - started
            cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
            cpus.append(cpu)
            result = json.loads(out.with_suffix(".json").read_text())
            walls.append(wall)
            replays.append(result["seconds"])
            print(f"run {run + 1}: {wall:.1f} s wall, {cpu:.1f} s CPU, replay {result['seconds']:.1f} s, "
                  f"load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}", flush=True)
        print(f"median wall {statistics.median(walls):.1f} s, median CPU {statistics.median(cpus):.1f} s, "
              f"median replay {statistics.median(replays):.1f} s "
              f"over {args.repeats} runs; {os.cpu_count()} CPUs")
        for row in result["summary"]["strategies"]:
            print(row)
        print(f"gap closed: {result['summary']['gap_closed']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
