"""A synthetic day of the credit_default example's prediction log, written the way the gateway writes it.

One UTC day, a part per 2-second flush of ``ROWS_PER_PART`` rows (about 1,160 requests a second), through
``PredictionStore.write_batches`` with the numeric features as one float64 block, as the gateway's writer
does. A 10M-row log is the first tenth of the day's flushes spread over the whole day (the same parts, ten
times fewer), so the two sizes differ in rows and files alike. Inputs are rows of the example's training
data drawn with replacement (so the drift check compares like with like); the champion (v1) takes 95% of
the requests, a canary (v2) 5%, 0.5% of the requests fail, and 5% of the requests get a label.

    uv run python benchmarks/scale_log.py --rows 10000000 --out /tmp/steward-scale/10M
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from steward.store.reader import PredictionStore
from steward.store.records import FEATURE_PREFIX, LABELS, PREDICTIONS, LabelBatch, prediction_rows, to_tables
from steward.store.request_ids import new_request_ids

MODEL = "credit-default"  # the example spec's name
DAY = datetime(2026, 6, 1, tzinfo=UTC)
ROWS_PER_PART = 2_315  # a 2 s flush at ~1,160 requests/s: 100M rows are 43,200 parts, one day of flushes
NUMERIC = ["age", "income", "debt_ratio", "credit_limit", "utilization", "months_employed", "num_late_payments",
           "num_open_accounts"]
CATEGORICAL = ["region", "employment_type", "education"]
TRAIN = Path(__file__).resolve().parent.parent / "examples" / "credit_default" / "data" / "train.parquet"
CANARY_SHARE = 0.05
ERROR_SHARE = 0.005
LABEL_SHARE = 0.05


class Part:
    """One flush's rows, drawn from the seed and the part's number (so every writer of it draws the same)."""

    def __init__(self, part: int, parts: int, seed: int, numeric_pool: np.ndarray, text_pool: np.ndarray) -> None:
        generator = np.random.default_rng([seed, part])
        spacing_ns = 86_400 * 10**9 // parts
        self.times = np.sort(int(DAY.timestamp()) * 10**9 + part * spacing_ns
                             + generator.integers(0, spacing_ns, ROWS_PER_PART))
        self.drawn = generator.integers(0, len(numeric_pool), ROWS_PER_PART)
        self.latency = np.round(generator.lognormal(np.log(8.0), 0.45, ROWS_PER_PART), 3)
        self.scores = generator.uniform(size=ROWS_PER_PART)
        arm = np.where(generator.uniform(size=ROWS_PER_PART) < CANARY_SHARE, 1, 0)
        failed = generator.uniform(size=ROWS_PER_PART) < ERROR_SHARE
        self.labelled = np.flatnonzero(generator.uniform(size=ROWS_PER_PART) < LABEL_SHARE)
        self.labels = (generator.uniform(size=self.labelled.size) < 0.2).astype(int).astype(str)
        self.ids = new_request_ids(self.times, np.random.default_rng([seed, part, 1])).astype(object)  # the gateway's
        self.numeric_pool, self.text_pool = numeric_pool, text_pool
        # the gateway's records: one per version's arm and outcome, in this order
        self.records = [(version, arm_name, status, np.flatnonzero((arm == code) & (failed == (status == "error"))))
                        for version, arm_name, code in (("1", "champion", 0), ("2", "canary", 1))
                        for status in ("ok", "error")]
        self.records = [record for record in self.records if record[3].size]

    def batches(self) -> list:
        """The part as the gateway's records (``prediction_rows`` with a numeric block, and the labels)."""
        out = []
        for version, arm_name, status, chosen in self.records:
            ok = status == "ok"
            out.append(prediction_rows(
                MODEL, version, arm_name, served=True, status=status,
                request_ids=self.ids[chosen].tolist(), rows=[0] * chosen.size,
                times_ns=self.times[chosen].tolist(), latencies_ms=self.latency[chosen].tolist(),
                features={name: self.text_pool[self.drawn[chosen], k].tolist() for k, name in enumerate(CATEGORICAL)},
                numeric=NUMERIC, numeric_values=self.numeric_pool[self.drawn[chosen]],
                predictions=(self.scores[chosen] > 0.5).astype(int).astype(str).tolist() if ok else None,
                scores=self.scores[chosen].tolist() if ok else None,
            ))
        if self.labelled.size:
            out.append(LabelBatch(MODEL, int(self.times[-1]), tuple(self.ids[self.labelled]), (0,) * self.labelled.size,
                                  tuple(self.labels)))
        return out

    def tables(self) -> dict:
        """The same part as ``to_tables(self.batches())`` gives, built column-wise (no Python object per value)."""
        order = np.concatenate([chosen for *_, chosen in self.records])
        sizes = [chosen.size for *_, chosen in self.records]

        def per_record(values: list) -> pa.Array:
            return pa.array(np.repeat(np.array(values, dtype=object), sizes), pa.string())

        ok = np.repeat([status == "ok" for _, _, status, _ in self.records], sizes)
        scores = self.scores[order]
        columns = {
            "request_id": pa.array(self.ids[order], pa.string()),
            "row": pa.array(np.zeros(order.size, dtype=np.int32)),
            "time": pa.array(self.times[order] // 1000, pa.timestamp("us", tz="UTC")),
            "version": per_record([r[0] for r in self.records]),
            "arm": per_record([r[1] for r in self.records]),
            "served": pa.array(np.ones(order.size, dtype=bool)),
            "status": per_record([r[2] for r in self.records]),
            "prediction": pa.array(np.where(scores > 0.5, "1", "0").astype(object), pa.string(), mask=~ok),
            "score": pa.array(scores, pa.float64(), mask=~ok),
            "latency_ms": pa.array(self.latency[order], pa.float64()),
            "entity": pa.nulls(order.size, pa.string()),
            "compute_ms": pa.nulls(order.size, pa.float64()),  # the gateway logs it when the arm reports it
        }
        drawn = self.drawn[order]
        for k, name in enumerate(NUMERIC):
            columns[FEATURE_PREFIX + name] = pa.array(self.numeric_pool[drawn, k], pa.float64(), from_pandas=True)
        for k, name in enumerate(CATEGORICAL):
            columns[FEATURE_PREFIX + name] = pa.array(self.text_pool[drawn, k], pa.string())
        day = DAY.date().isoformat()
        tables = {(PREDICTIONS, MODEL, day): [pa.table(columns)]}
        if self.labelled.size:
            tables[(LABELS, MODEL, day)] = [pa.table({
                "request_id": pa.array(self.ids[self.labelled], pa.string()),
                "row": pa.array(np.zeros(self.labelled.size, dtype=np.int32)),
                "label": pa.array(self.labels, pa.string()),
                "time": pa.array(np.full(self.labelled.size, self.times[-1] // 1000), pa.timestamp("us", tz="UTC")),
            })]
        return tables


def write_log(root: str, rows: int, seed: int = 11, shard: int = 0, shards: int = 1, *, fast: bool = False) -> int:
    """Write ``rows`` rows (rounded to whole parts) into a store at ``root``; returns the parts written.

    ``fast`` builds each part's tables column-wise and writes them with ``write_tables`` (what
    ``write_batches`` calls); the first part is checked against the gateway's own conversion. With
    ``shards`` > 1 this process writes every ``shards``-th part from ``shard`` (run the shards at once).
    """
    store = PredictionStore(root)
    train = pd.read_parquet(TRAIN)
    numeric_pool = train[NUMERIC].to_numpy(dtype=np.float64)
    text_pool = train[CATEGORICAL].astype(str).to_numpy(dtype=object)
    parts = max(1, rows // ROWS_PER_PART)
    began = time.perf_counter()
    written = 0
    for part in range(shard, parts, shards):
        drawn = Part(part, parts, seed, numeric_pool, text_pool)
        if not fast:
            store.write_batches(drawn.batches(), f"replica0-{part:06d}")
        else:
            tables = drawn.tables()
            if written == 0:
                expected = {key: [table] for key, table in to_tables(drawn.batches()).items()}
                if expected.keys() != tables.keys() or any(not expected[k][0].equals(tables[k][0]) for k in tables):
                    raise AssertionError("the column-wise part differs from the gateway's conversion of its records")
            store.write_tables(tables, f"replica0-{part:06d}")
        written += 1
        if written % 2_000 == 0:
            print(f"{written} parts of {parts}, {time.perf_counter() - began:.0f} s", flush=True)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--shard", type=int, default=0)
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--fast", action="store_true", help="build parts column-wise (checked against the records)")
    args = parser.parse_args()
    began = time.perf_counter()
    parts = write_log(args.out, args.rows, args.seed, args.shard, args.shards, fast=args.fast)
    print(f"wrote {parts} parts ({parts * ROWS_PER_PART} rows) to {args.out} in {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
