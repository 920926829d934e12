"""One scan of a multi-day window against per-day summaries merged, in process and on a local Dask cluster.

The log is the tests' multi-day log (``tests/support/partitioned_log.py``: a champion, a canary from the
second day, a shadow, failures, labels), a part per flush. Dask is driven directly here (a LocalCluster of
processes and ``Client.map``), without Prefect, to time the engine itself: cluster start apart from the work.

    uv run python benchmarks/partition_summaries.py --days 4 --flushes-per-day 250
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import timedelta

from distributed import Client, LocalCluster

from steward.monitoring.summaries.partitions import (
    merge_summaries,
    summarize_by_partition,
    summarize_partition,
    window_partitions,
)
from steward.monitoring.summaries.window import summarize_window
from steward.store.reader import PredictionStore
from tests.support.partitioned_log import FENCES, FIRST_DAY, SPEC, write_days


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=4)
    parser.add_argument("--flushes-per-day", type=int, default=250)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    log = PredictionStore(tempfile.mkdtemp(prefix="steward-partitions-") + "/store")
    write_days(log, days=args.days, flushes_per_day=args.flushes_per_day)
    start, end = FIRST_DAY, FIRST_DAY + timedelta(days=args.days)
    options = {"fences": FENCES, "labels_window": (start, end)}

    began = time.perf_counter()
    one = summarize_window(log, SPEC, start, end, **options)
    one_scan = time.perf_counter() - began
    began = time.perf_counter()
    summarize_by_partition(log, SPEC, start, end, **options)
    by_day = time.perf_counter() - began
    files = len(log.fs.find(log.root))
    print(f"{one.rows:,} rows in {files:,} files over {args.days} days")
    print(f"one scan: {one_scan:.2f} s; a day at a time in process, merged: {by_day:.2f} s")

    began = time.perf_counter()
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        started = time.perf_counter() - began
        began = time.perf_counter()
        partitions = window_partitions(log, SPEC.name, start, end)
        futures = client.map(lambda partition: summarize_partition(log, SPEC, partition, **options), partitions)
        merged = merge_summaries(client.gather(futures), SPEC.name, start, end)
        on_dask = time.perf_counter() - began
    assert merged.rows == one.rows and merged.versions == one.versions
    print(f"Dask, {args.workers} worker processes: cluster start {started:.2f} s, summaries and merge {on_dask:.2f} s")


if __name__ == "__main__":
    main()
