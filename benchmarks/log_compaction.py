"""Reading a day of the prediction log before and after compaction, in the same run.

One day of one model is written the way two gateway replicas write it: a part per replica every
2 s flush interval (``--parts`` parts of ``--rows-per-part`` rows, the example's 11 features). Then,
alternating so that background load hits both alike, the two reads the daily checks make are timed
on the parts as written (the baseline) and on the compacted copy of the same day:

  day     ``read_predictions`` of the whole day (health, drift and SLO read a day)
  hour    ``read_predictions`` of one hour (a canary step's window): row-group statistics let a
          compacted day skip what lies outside it

Also reported: the compaction's own wall time and the files before and after. Medians of ``--runs``.

    uv run python benchmarks/log_compaction.py                      # 4,000 parts, 800k rows: ~2 minutes
    uv run python benchmarks/log_compaction.py --parts 400 --runs 3  # a quick look
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from steward.store.compaction import compact_partition
from steward.store.reader import PredictionStore
from steward.store.records import prediction_rows

DAY = datetime(2026, 6, 1, tzinfo=UTC)
FEATURES = [f"x{i:02d}" for i in range(11)]


def write_day(store: PredictionStore, parts: int, rows_per_part: int, seed: int) -> None:
    """``parts`` flushes spread over the day, alternating between two replicas, as the gateway writes them."""
    generator = np.random.default_rng(seed)
    spacing = 86_400 / parts
    for index in range(parts):
        start = DAY + timedelta(seconds=index * spacing)
        times = [int((start + timedelta(milliseconds=int(ms))).timestamp() * 1e9)
                 for ms in np.sort(generator.uniform(0, spacing * 1000, rows_per_part))]
        block = generator.normal(size=(rows_per_part, len(FEATURES)))
        record = prediction_rows(
            "m", "1", "champion", served=True, status="ok",
            request_ids=[f"r{index}-{row}" for row in range(rows_per_part)], rows=[0] * rows_per_part,
            times_ns=times, latencies_ms=[2.0] * rows_per_part, features={}, numeric=FEATURES,
            numeric_values=block, predictions=["1"] * rows_per_part,
            scores=generator.uniform(size=rows_per_part).tolist(),
        )
        store.write_batches([record], f"replica{index % 2}-{index:06d}")


def timed(action) -> float:
    began = time.perf_counter()
    action()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", type=int, default=4000)
    parser.add_argument("--rows-per-part", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        parts_store = PredictionStore(str(Path(scratch) / "parts"))
        write_day(parts_store, args.parts, args.rows_per_part, args.seed)
        shutil.copytree(Path(scratch) / "parts", Path(scratch) / "compacted")
        compacted_store = PredictionStore(str(Path(scratch) / "compacted"))
        began = time.perf_counter()
        result = compact_partition(compacted_store, "predictions", "m", DAY.date().isoformat(), grace=timedelta(0))
        compaction_seconds = time.perf_counter() - began

        hour = (DAY + timedelta(hours=12), DAY + timedelta(hours=13))
        reads = {
            ("day", "parts"): lambda: parts_store.read_predictions("m", DAY, DAY + timedelta(days=1)),
            ("day", "compacted"): lambda: compacted_store.read_predictions("m", DAY, DAY + timedelta(days=1)),
            ("hour", "parts"): lambda: parts_store.read_predictions("m", *hour),
            ("hour", "compacted"): lambda: compacted_store.read_predictions("m", *hour),
        }
        for read in reads.values():  # warm the page cache for both alike
            read()
        seconds: dict[tuple[str, str], list[float]] = {key: [] for key in reads}
        for _ in range(args.runs):
            for key, read in reads.items():
                seconds[key].append(timed(read))

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"commit {commit}; {args.parts} parts x {args.rows_per_part} rows = {args.parts * args.rows_per_part:,} "
          f"rows, 11 features; medians of {args.runs}")
    print(f"compaction: {result.files_before} files -> {result.files_after} in {compaction_seconds:.1f} s "
          f"({result.bytes_before / 1e6:.1f} MB -> {result.bytes_after / 1e6:.1f} MB)")
    print("| read | parts as written (s) | compacted (s) | ratio |")
    print("| --- | --- | --- | --- |")
    for window in ("day", "hour"):
        before = statistics.median(seconds[(window, "parts")])
        after = statistics.median(seconds[(window, "compacted")])
        print(f"| {window} | {before:.3f} | {after:.3f} | {before / after:.1f}x |")


if __name__ == "__main__":
    main()
