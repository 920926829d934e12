"""The streamed checks against today's frame path: equal on a small log written as the gateway writes it (many
batches, parts and a compacted day), within the stated error at volume (latency sketch, sampled drift)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from steward.monitoring.drift.engine import detect_drift
from steward.monitoring.drift.profile import ReferenceProfile
from steward.monitoring.health.cost import check_cost, judge_cost
from steward.monitoring.health.data_quality import OutlierFences, check_data_quality, judge_data_quality
from steward.monitoring.health.performance import check_performance, judge_performance
from steward.monitoring.health.report import HealthWindow, VersionsInWindow
from steward.monitoring.slo import compute_slo_day, slo_day_of
from steward.monitoring.summaries.latency import RELATIVE_ACCURACY, LatencyDistribution
from steward.monitoring.summaries.sample import RowSample
from steward.monitoring.summaries.traffic import TrafficSummary
from steward.monitoring.summaries.window import summarize_window
from steward.spec import parse_spec
from steward.store.compaction import compact_partition
from steward.store.reader import PredictionStore, join_labels
from steward.store.records import LabelBatch, prediction_rows
from steward.store.scan import served_rows_by_version

DAY = date(2026, 3, 1)
START = datetime(2026, 3, 1, tzinfo=UTC)
END = START + timedelta(days=1)
SPEC = parse_spec({
    "name": "m", "task": "binary_classification", "target": "y", "data": {"path": "x.parquet"},
    "features": [{"name": "x", "type": "numeric", "min": 0, "max": 10}, {"name": "z", "type": "numeric"},
                 {"name": "colour", "type": "categorical", "categories": ["red", "blue"]}],
    "gates": {"primary_metric": "roc_auc"}, "slo": {"p95_latency_ms": 25, "availability": 0.999, "min_accuracy": 0.7},
})


def write_log(store: PredictionStore, flushes: int = 40, seed: int = 3) -> None:
    """Flushes of gateway records: two versions, failures, shadow copies, three-row requests, missing values,
    outliers and unknown categories, labels (some relabelled later, some after the window)."""
    rng = np.random.default_rng(seed)
    for flush in range(flushes):
        at = int((START + timedelta(minutes=30 * flush + 1)).timestamp() * 1e9)
        records = []
        for version, arm, status, served, rows in (("1", "champion", "ok", True, 3), ("2", "canary", "ok", True, 1),
                                                   ("1", "champion", "error", True, 1),
                                                   ("3", "shadow", "ok", False, 3)):
            requests = int(rng.integers(2, 9))
            n = requests * rows
            ids = [f"{flush}-{version}-{status}-{r}" if served else f"{flush}-1-ok-{r}"  # a shadow copies v1's ids
                   for r in range(requests) for _ in range(rows)]
            x = rng.normal(5, 2, n)
            x[rng.random(n) < 0.05] = np.nan
            x[rng.random(n) < 0.03] = 60.0  # outlier and out of the declared range
            colour = rng.choice(["red", "blue", "green"], n, p=[0.6, 0.35, 0.05]).tolist()
            ok = status == "ok"
            records.append(prediction_rows(
                "m", version, arm, served=served, status=status, request_ids=ids,
                rows=[r for _ in range(requests) for r in range(rows)],
                times_ns=(at + np.arange(n) * 1_000_000).tolist(),
                latencies_ms=np.repeat(rng.lognormal(np.log(12), 0.6, requests), rows).tolist(),
                features={"colour": colour}, numeric=["x", "z"], numeric_values=np.column_stack([x, rng.normal(size=n)]),
                predictions=rng.choice(["0", "1"], n).tolist() if ok else None,
                scores=rng.uniform(size=n).tolist() if ok else None,
            ))
            if ok and served:
                labelled = [i for i in range(n) if rng.random() < 0.6]
                when = at + 5_000_000_000 if flush < flushes - 2 else int(END.timestamp() * 1e9) + 1
                records.append(LabelBatch("m", when, tuple(ids[i] for i in labelled),
                                          tuple(i % rows for i in labelled), tuple(rng.choice(["0", "1"], len(labelled)))))
                if flush % 5 == 0 and labelled:  # a later label of the same row wins
                    records.append(LabelBatch("m", when + 1_000, (ids[labelled[0]],), (labelled[0] % rows,), ("1",)))
        store.write_batches(records, f"replica0-{flush:04d}")


@pytest.fixture
def store(tmp_path) -> PredictionStore:
    log = PredictionStore(str(tmp_path / "store"))
    write_log(log)
    return log


def fences() -> OutlierFences:
    return OutlierFences({"x": (-1.0, 12.0), "z": (-3.0, 3.0)}, "1", 1000)


def frames(store: PredictionStore) -> tuple[pd.DataFrame, pd.DataFrame]:
    predictions = store.read_predictions("m", START, END)
    return predictions, join_labels(predictions, store.read_labels("m", start=START, end=END))


def assert_same_check(streamed, framed) -> None:
    assert streamed.issues == framed.issues
    assert streamed.metrics == framed.metrics
    assert streamed.notes == framed.notes and streamed.status == framed.status


@pytest.mark.parametrize("compacted", [False, True])
def test_a_streamed_window_judges_as_the_frames_do(store, compacted):
    if compacted:
        compact_partition(store, "predictions", "m", DAY.isoformat(), grace=timedelta(0))
        compact_partition(store, "labels", "m", DAY.isoformat(), grace=timedelta(0))
    predictions, labelled = frames(store)
    window = HealthWindow(START, END)
    summary = summarize_window(store, SPEC, START, END, fences=fences(), labels_window=(START, END), batch_rows=17)

    assert summary.rows == len(predictions) and summary.exact
    assert summary.versions == VersionsInWindow.of(predictions)
    assert list(summary.versions.versions) == list(VersionsInWindow.of_counts(
        served_rows_by_version(store, "m", START, END)).versions)
    assert_same_check(judge_performance(summary.traffic, window, SPEC), check_performance(predictions, window, SPEC))
    assert_same_check(judge_cost(summary.traffic, window, SPEC), check_cost(predictions, window, SPEC))
    streamed_quality = judge_data_quality(summary.quality, SPEC, fences(), None)
    assert_same_check(streamed_quality, check_data_quality(predictions, SPEC, fences(), None))
    assert {issue.code for issue in streamed_quality.issues}  # the log's outliers and unknown colours are found

    ordered = ["request_id", "row", "version", "label", "label_time"]
    assert summary.labelled[ordered].reset_index(drop=True).equals(labelled[ordered].reset_index(drop=True))
    pd.testing.assert_frame_equal(summary.predictions_frame(), predictions.reset_index(drop=True))
    for version in ("1", "2"):
        answered = predictions[predictions["served"] & (predictions["status"] == "ok")
                               & (predictions["version"] == version)].reset_index(drop=True)
        pd.testing.assert_frame_equal(summary.answered_frame(version), answered)
        assert summary.answered_rows[version] == len(answered)

    slo_scan = summarize_window(store, SPEC, START, END, served_only=True, quality=False, samples=False,
                                all_rows=False, labels_window=(START, END), batch_rows=23)
    served = store.read_predictions("m", START, END, served_only=True)
    expected = compute_slo_day(SPEC, DAY, served, join_labels(served, store.read_labels("m", start=START, end=END)),
                               as_of=END)
    assert slo_day_of(SPEC, DAY, slo_scan.days[DAY], slo_scan.labelled, as_of=END) == expected
    assert slo_scan.answered_labelled_by_day[DAY] == expected.labelled and summary.labelled_rows == len(labelled)


def test_an_empty_window_is_summarised_as_empty(store):
    later = END + timedelta(days=3)
    summary = summarize_window(store, SPEC, later, later + timedelta(days=1), labels_window=(later, later))
    assert summary.rows == 0 and summary.versions.busiest is None and summary.traffic.requests == 0
    assert summary.predictions_frame().empty and summary.labelled.empty
    check = judge_performance(summary.traffic, HealthWindow(later, later + timedelta(days=1)), SPEC)
    assert [issue.code.value for issue in check.issues] == ["no_traffic"]


def test_latency_quantiles_stay_within_the_sketch_error_and_slow_counts_exact():
    rng = np.random.default_rng(0)
    values = rng.lognormal(np.log(10), 0.8, 300_000)
    streamed, exact = TrafficSummary(25.0), TrafficSummary(25.0, exact=True)
    for chunk in np.array_split(values, 7):
        part = TrafficSummary(25.0)
        part.add_version("1", np.ones(chunk.size, bool), chunk, np.zeros(chunk.size, np.int64))
        streamed.merge(part)
    exact.add_version("1", np.ones(values.size, bool), values, np.zeros(values.size, np.int64))
    sketch = streamed.versions["1"].latency
    assert not sketch.exact and exact.versions["1"].latency.exact
    for estimate, truth in zip(sketch.percentiles([50, 95, 99]), np.percentile(values, [50, 95, 99]), strict=True):
        assert abs(estimate - truth) <= RELATIVE_ACCURACY * truth * 1.0001
    assert streamed.versions["1"].slow == exact.versions["1"].slow == int((values > 25.0).sum())
    assert streamed.versions["1"].slow_critical == int((values > 50.0).sum())


def test_a_small_distribution_is_exact():
    latency = LatencyDistribution()
    latency.add(np.array([1.0, 2.0, 3.0, 100.0]))
    assert latency.exact and latency.percentiles([50, 95]) == list(np.percentile([1, 2, 3, 100], [50, 95]))


def test_samples_are_bounded_uniform_and_merge():
    rows = pa.table({"i": np.arange(50_000)})
    whole = RowSample(2_000, seed=1)
    halves = [RowSample(2_000, seed=2), RowSample(2_000, seed=3)]
    for start in range(0, 50_000, 3_000):
        batch = rows.slice(start, 3_000)
        whole.add(batch)
        halves[start // 3_000 % 2].add(batch)
    halves[0].merge(halves[1])
    assert np.all(np.diff(whole.table()["i"].to_numpy()) > 0)  # the stream's order (a merge appends the other's)
    for sample in (whole, halves[0]):
        kept = sample.table()["i"].to_numpy()
        assert kept.size == np.unique(kept).size == 2_000 and not sample.complete and sample.seen == 50_000
        assert abs(kept.mean() - 25_000) < 4 * 50_000 / np.sqrt(12 * 2_000)  # uniform: its mean within 4 sigma
    small = RowSample(10)
    small.add(rows.slice(0, 7))
    assert small.complete and small.table()["i"].to_pylist() == list(range(7))


def test_drift_on_a_sample_stays_within_the_stated_error():
    rng = np.random.default_rng(5)
    reference = pd.DataFrame({"a": rng.normal(size=20_000), "b": rng.choice(["p", "q", "r"], 20_000)})
    profile = ReferenceProfile.build(reference, numeric=["a"], categorical=["b"])
    current = pd.DataFrame({"a": rng.normal(0.15, 1.0, 400_000),
                            "b": rng.choice(["p", "q", "r"], 400_000, p=[0.3, 0.3, 0.4])})
    sample = RowSample(100_000, seed=9)
    for chunk in range(0, 400_000, 50_000):
        sample.add(pa.Table.from_pandas(current.iloc[chunk:chunk + 50_000], preserve_index=False))

    def measure(frame):
        return detect_drift(profile, frame, numeric=["a"], categorical=["b"], engine="profile", report=False)

    full, sampled = measure(current), measure(sample.table().to_pandas())
    for whole, part in zip(full.columns, sampled.columns, strict=True):
        assert abs(whole.score - part.score) < 0.01  # the sample's stated error: about 1/sqrt(100,000)
        assert whole.drifted == part.drifted


def test_labels_that_arrive_after_the_window_are_judged_by_the_next_windows_check(store):
    """Late feedback: the last two flushes' labels arrive just after the day; the next day's check has none of
    its own predictions, but its label look-back joins them (health.label_lookback_days)."""
    from steward.monitoring.summaries.checks import read_late_labelled
    from tasks.health import WindowLog

    next_day = (END, END + timedelta(days=1))
    own = summarize_window(store, SPEC, *next_day, labels_window=next_day)
    assert own.labelled is not None and own.labelled.empty  # what the check judged before: nothing
    late = read_late_labelled(store, SPEC, *next_day)
    assert late is not None and len(late) > 0
    assert (late["time"] < END).all() and late["served"].all()
    predictions = store.read_predictions("m", START, END)
    labels = store.read_labels("m", start=END, end=END + timedelta(days=1))
    expected = join_labels(predictions[predictions["served"]], labels)
    assert sorted(late["request_id"]) == sorted(expected["request_id"])
    assert len(WindowLog(own, None, None, late).labelled) == len(late)  # type: ignore[arg-type]
    blind = SPEC.model_copy(update={"health": SPEC.health.model_copy(update={"label_lookback_days": 0})})
    assert read_late_labelled(store, blind, *next_day) is None
