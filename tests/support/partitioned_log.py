"""A prediction log over several days, written as gateways write it, and a comparison of two window summaries.

Used by the tests of per-partition summaries: in process, on a Dask cluster, and on an S3-compatible store.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from steward.monitoring.health.cost import judge_cost
from steward.monitoring.health.data_quality import OutlierFences, judge_data_quality
from steward.monitoring.health.performance import judge_performance
from steward.monitoring.health.report import HealthWindow
from steward.monitoring.summaries.window import WindowSummary
from steward.spec import parse_spec
from steward.store.reader import PredictionStore
from steward.store.records import Batch, LabelBatch, prediction_rows

FIRST_DAY = datetime(2026, 3, 1, tzinfo=UTC)
DAYS = 3
SPEC = parse_spec({
    "name": "m", "task": "binary_classification", "target": "y", "data": {"path": "x.parquet"},
    "features": [{"name": "x", "type": "numeric", "min": 0, "max": 10}, {"name": "z", "type": "numeric"},
                 {"name": "colour", "type": "categorical", "categories": ["red", "blue"]}],
    "gates": {"primary_metric": "roc_auc"}, "slo": {"p95_latency_ms": 25, "availability": 0.999, "min_accuracy": 0.7},
})
FENCES = OutlierFences({"x": (-1.0, 12.0), "z": (-3.0, 3.0)}, "1", 1000)


def write_days(store: PredictionStore, *, days: int = DAYS, flushes_per_day: int = 8, seed: int = 5) -> None:
    """``logged_days`` written as the log writer writes each flush: one part per model and day."""
    for flush_id, records in logged_days(days=days, flushes_per_day=flushes_per_day, seed=seed):
        store.write_batches(records, flush_id)


def logged_days(*, days: int = DAYS, flushes_per_day: int = 8, seed: int = 5) -> Iterator[tuple[str, list[Batch]]]:
    """The gateway's records, flush by flush. Each day: a champion (with failures), a shadow copying its
    requests, and from the second day a canary; labels arrive seconds later, the last flush's the next day
    (a label joined across partitions)."""
    rng = np.random.default_rng(seed)
    for day in range(days):
        for flush in range(flushes_per_day):
            at = FIRST_DAY + timedelta(days=day, minutes=7 + flush * (24 * 60 // flushes_per_day))
            at_ns = int(at.timestamp() * 1e9)
            arms = [("1", "champion", "ok", True, 3), ("1", "champion", "error", True, 1),
                    ("3", "shadow", "ok", False, 3)]
            if day >= 1:
                arms.insert(1, ("2", "canary", "ok", True, 1))
            records = []
            for version, arm, status, served, rows in arms:
                requests = int(rng.integers(2, 9))
                n = requests * rows
                ids = [f"{day}-{flush}-{version}-{status}-{r}" if served else f"{day}-{flush}-1-ok-{r}"
                       for r in range(requests) for _ in range(rows)]
                x = rng.normal(5, 2, n)
                x[rng.random(n) < 0.05] = np.nan
                x[rng.random(n) < 0.03] = 60.0
                ok = status == "ok"
                records.append(prediction_rows(
                    "m", version, arm, served=served, status=status, request_ids=ids,
                    rows=[r for _ in range(requests) for r in range(rows)],
                    times_ns=(at_ns + np.arange(n) * 1_000_000).tolist(),
                    latencies_ms=np.repeat(rng.lognormal(np.log(12), 0.6, requests), rows).tolist(),
                    features={"colour": rng.choice(["red", "blue", "green"], n, p=[0.6, 0.35, 0.05]).tolist()},
                    numeric=["x", "z"], numeric_values=np.column_stack([x, rng.normal(size=n)]),
                    predictions=rng.choice(["0", "1"], n).tolist() if ok else None,
                    scores=rng.uniform(size=n).tolist() if ok else None,
                ))
                if ok and served:
                    labelled = [i for i in range(n) if rng.random() < 0.6]
                    late = flush == flushes_per_day - 1
                    when = at_ns + (int(timedelta(hours=22).total_seconds() * 1e9) if late else 5_000_000_000)
                    records.append(LabelBatch("m", when, tuple(ids[i] for i in labelled),
                                              tuple(i % rows for i in labelled),
                                              tuple(rng.choice(["0", "1"], len(labelled)))))
            yield f"replica0-{day}-{flush:04d}", records


def assert_same_summary(merged: WindowSummary, single: WindowSummary, window: HealthWindow) -> None:
    """Two summaries of one window give the same counts, versions, rows and verdicts."""
    assert merged.rows == single.rows and merged.rows > 0
    assert merged.versions == single.versions
    assert merged.served_by_version == single.served_by_version
    assert merged.answered_rows == single.answered_rows
    assert merged.labelled_rows == single.labelled_rows
    assert merged.answered_labelled_by_day == single.answered_labelled_by_day
    assert merged.exact == single.exact
    for ours, theirs in ((merged.traffic, single.traffic), *((merged.days[d], single.days[d]) for d in single.days)):
        assert ours is not None and theirs is not None
        assert (ours.requests, ours.errors, ours.slow) == (theirs.requests, theirs.errors, theirs.slow)
        assert ours.hours == theirs.hours
        assert ours.latency().percentiles([50, 95, 99]) == theirs.latency().percentiles([50, 95, 99])
    assert set(merged.days) == set(single.days)
    for judge in (judge_performance, judge_cost):
        assert _verdict(judge(merged.traffic, window, SPEC)) == _verdict(judge(single.traffic, window, SPEC))
    if single.quality is not None:
        assert merged.quality is not None
        assert _verdict(judge_data_quality(merged.quality, SPEC, FENCES, None)) == _verdict(
            judge_data_quality(single.quality, SPEC, FENCES, None))
    pd.testing.assert_frame_equal(merged.predictions_frame(), single.predictions_frame())
    for version in single.versions.versions:
        pd.testing.assert_frame_equal(merged.answered_frame(version), single.answered_frame(version))
    if single.labelled is not None:
        assert merged.labelled is not None
        pd.testing.assert_frame_equal(merged.labelled.reset_index(drop=True), single.labelled.reset_index(drop=True))


def _verdict(check) -> tuple:
    return check.status, [issue.code for issue in check.issues], check.metrics
