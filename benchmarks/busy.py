"""Run a command while busy-loop processes keep every core busy: how the suite is checked on a loaded machine.

    uv run python benchmarks/busy.py --hogs 4 -- bash .ci/run

Prints the command's exit code, wall time and the load average seen while it ran, and exits with the
command's code.  The hogs are plain Python loops at normal priority, so they compete with the command
for the CPU as other tenants of a shared CI runner would.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hogs", type=int, default=os.cpu_count() or 2, help="busy processes (default: one per core)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --, e.g. busy.py -- bash .ci/run")

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs before the project's venv exists
    from steward.simulation.load import cpu_hog

    loads: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(5.0):
            loads.append(os.getloadavg()[0])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    try:
        with cpu_hog(args.hogs):
            code = subprocess.call(command)
    finally:
        done.set()
    minutes = (time.monotonic() - started) / 60
    if loads:
        ordered = sorted(loads)
        load = f"load average median {ordered[len(ordered) // 2]:.1f}, max {ordered[-1]:.1f}"
    else:
        load = "load average not sampled (finished within 5 s)"
    print(f"busy.py: {' '.join(command)} exited {code} after {minutes:.1f} min with {args.hogs} hogs; {load}",
          file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
