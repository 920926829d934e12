"""The prediction log writer's CPU per row, in process: current settings against the old ones.

A submitting thread plays the gateway's event loop: it holds the GIL in a busy Python loop and,
every 3.2 ms, submits one batch's records (14 champion rows and 2 challenger rows of the
20-feature model, about 5 000 rows/s, what the gateway logs at 16 connections). The batched
writer converts every 512 rows on the submitting thread and its own thread concatenates, sorts
and writes one Parquet part every 2 s. Printed per configuration, medians over runs:

  writer thread  CPU time of the writer thread per row (``LogWriter.stats().cpu_seconds``), with
                 the share spent in the kernel (page faults, allocation)
  submit         CPU time of the submitting thread inside ``submit`` per row (the loop's share)
  bytes/row      size of the Parquet parts written

Configurations (each run in a fresh process, since Arrow's memory pool is chosen per process;
runs of the two alternate so a change of background load hits both):

  current      jemalloc memory pool (``use_writer_memory_pool``), dictionaries for text columns
               only, parts not sorted, written through Arrow's own file
  python-file  the same, written through a Python file object (as before)
  mimalloc     current on pyarrow's default pool (mimalloc)
  baseline     as before all together: pyarrow's default pool, dictionaries on every column,
               each part sorted by version, arm and time, a Python file object

CPU time, not wall time: the figures hold on a shared machine better than any req/s difference.

Usage:
    uv run python benchmarks/log_writer.py            # 5 runs of each, about 4 minutes
    uv run python benchmarks/log_writer.py --runs 3 --seconds 5
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

CONFIGURATIONS = ("current", "python-file", "mimalloc", "baseline")
DISTINCT = 500  # distinct records per arm, so the parts compress like real traffic
FEATURES = [f"x{i}" for i in range(17)] + ["c1", "c2", "c3"]
NUMERIC = tuple(FEATURES[:17])
BATCH_SECONDS = 0.0032  # one batch of 16 one-row requests at 5 000 requests/s


def run_one(configuration: str, seconds: float) -> dict[str, float]:
    """One measurement in this process; prints nothing, returns the figures."""
    import pyarrow as pa

    import steward.store.reader as store_module
    from steward.store.reader import PredictionStore
    from steward.store.records import prediction_rows
    from steward.store.writer import LogMode, use_writer_memory_pool

    if configuration in ("current", "python-file"):
        use_writer_memory_pool()
    if configuration in ("python-file", "baseline"):
        import pyarrow.parquet as pq

        def python_file_part(self, folder, name, table, sync):  # as before: a Python file object
            self.fs.makedirs(folder, exist_ok=True)
            partial = f"{folder}/.{name}.tmp"
            with open(partial, "wb") as handle:
                pq.write_table(table, handle, compression="zstd",
                               use_dictionary=store_module.dictionary_columns(table.schema))
            Path(partial).replace(f"{folder}/{name}")

        store_module.PredictionStore._write_part = python_file_part
    if configuration == "baseline":
        store_module.dictionary_columns = lambda schema: True  # Parquet's default: a dictionary for every column
        unsorted = store_module.PredictionStore.write_tables

        def sorted_parts(self, tables, flush_id, *, sync=False):  # as before: each part sorted by version, arm, time
            order = [("version", "ascending"), ("arm", "ascending"), ("time", "ascending")]
            tables = {key: [pa.concat_tables(parts, promote_options="default").sort_by(order)]
                      if key[0] == store_module.PREDICTIONS else parts for key, parts in tables.items()}
            return unsorted(self, tables, flush_id, sync=sync)

        store_module.PredictionStore.write_tables = sorted_parts
    rng = random.Random(7)

    def record(size: int, arm: str, version: str):
        now = time.time_ns()
        features = {name: [rng.random() for _ in range(size)] for name in NUMERIC}
        features |= {name: [rng.choice("abcde") for _ in range(size)] for name in FEATURES[17:]}
        return prediction_rows(
            "bench", version, arm, served=True, status="ok", request_ids=[uuid.uuid4().hex for _ in range(size)],
            rows=[0] * size, times_ns=[now + i for i in range(size)], latencies_ms=[rng.random() for _ in range(size)],
            features=features, numeric=NUMERIC, predictions=[rng.choice("01") for _ in range(size)],
            scores=[rng.random() for _ in range(size)],
        )

    champion = [record(14, "champion", "1") for _ in range(DISTINCT)]
    challenger = [record(2, "challenger", "2") for _ in range(DISTINCT)]
    with tempfile.TemporaryDirectory(prefix="steward-log-writer-") as folder:
        store = PredictionStore(folder)
        writer = store.writer(LogMode.BATCHED, flush_interval=2.0).start()
        rows, submit_cpu, index = 0, 0.0, 0
        before = resource.getrusage(resource.RUSAGE_SELF)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.thread_time()
            writer.submit(champion[index % DISTINCT])
            writer.submit(challenger[index % DISTINCT])
            submit_cpu += time.thread_time() - started
            rows += 16
            index += 1
            until = time.perf_counter() + BATCH_SECONDS
            while time.perf_counter() < until:  # the loop's other work, holding the GIL
                pass
        writer.close()
        after = resource.getrusage(resource.RUSAGE_SELF)
        stats = writer.stats()
        written = sum(path.stat().st_size for path in Path(folder).rglob("*.parquet"))
    if stats.written_rows != rows:
        raise RuntimeError(f"the writer wrote {stats.written_rows} of {rows} rows")
    return {
        "writer_us": stats.cpu_seconds / rows * 1e6,
        "submit_us": submit_cpu / rows * 1e6,
        "process_system_us": (after.ru_stime - before.ru_stime) / rows * 1e6,
        "bytes_per_row": written / rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="Runs of each configuration (default 5).")
    parser.add_argument("--seconds", type=float, default=8.0, help="Seconds per run (default 8).")
    parser.add_argument("--one", choices=CONFIGURATIONS, help=argparse.SUPPRESS)  # a child run
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one, args.seconds)))
        return 0
    if not 1 <= args.runs <= 20 or not 1 <= args.seconds <= 60:
        print("keep --runs within 1..20 and --seconds within 1..60", file=sys.stderr)
        return 2
    figures: dict[str, list[dict[str, float]]] = {name: [] for name in CONFIGURATIONS}
    for run in range(args.runs):
        order = CONFIGURATIONS[run % len(CONFIGURATIONS):] + CONFIGURATIONS[:run % len(CONFIGURATIONS)]
        for name in order:
            output = subprocess.run([sys.executable, __file__, "--one", name, "--seconds", str(args.seconds)],
                                    capture_output=True, text=True, check=True).stdout
            figures[name].append(json.loads(output.strip().splitlines()[-1]))
        print(f"  run {run + 1}/{args.runs} done", flush=True)

    def median(name: str, key: str) -> float:
        return statistics.median(f[key] for f in figures[name])

    print(f"\nmedians of {args.runs} runs x {args.seconds:g} s, ~5 000 rows/s submitted by a GIL-holding thread")
    print(f"{'configuration':<14} {'writer us/row':>14} {'process sys us/row':>19} {'submit us/row':>14} {'bytes/row':>10}")
    for name in CONFIGURATIONS:
        print(f"{name:<14} {median(name, 'writer_us'):>14.2f} {median(name, 'process_system_us'):>19.2f}"
              f" {median(name, 'submit_us'):>14.2f} {median(name, 'bytes_per_row'):>10.1f}")
    print()
    for name in CONFIGURATIONS[:-1]:
        ratios = [c["writer_us"] / b["writer_us"] for c, b in zip(figures[name], figures["baseline"], strict=True)]
        print(f"writer thread, {name} / baseline: {statistics.median(ratios):.2f}x (median of per-run ratios; runs "
              f"{min(ratios):.2f}x to {max(ratios):.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
