"""Daily SLO compliance on tiny log frames, its records under the store, and the error budget."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from steward.monitoring.health.accuracy import MIN_LABELLED
from steward.monitoring.slo import (
    Compliance,
    SLODay,
    SLOStore,
    SLOTargets,
    compute_slo_day,
    days_between,
    summarize_slo,
)
from steward.spec import parse_spec

DAY = date(2026, 3, 1)
END_OF_DAY = datetime(2026, 3, 2, tzinfo=UTC)
SPEC = parse_spec({
    "name": "m", "task": "binary_classification", "target": "y", "data": {"path": "x.parquet"},
    "features": [{"name": "x", "type": "numeric"}],
    "gates": {"primary_metric": "roc_auc"}, "slo": {"p95_latency_ms": 25, "availability": 0.999, "min_accuracy": 0.7},
})


def log(n: int, *, latency: float = 5.0, status: str = "ok", served: bool = True, prefix: str = "r") -> pd.DataFrame:
    """``n`` single-row requests of one day, as the store reads them back."""
    start = datetime(2026, 3, 1, tzinfo=UTC)
    return pd.DataFrame({
        "request_id": [f"{prefix}{i}" for i in range(n)], "row": 0,
        "time": pd.date_range(start, start + timedelta(hours=23), periods=n), "version": "1", "arm": "champion",
        "served": served, "status": status, "prediction": None if status != "ok" else "1",
        "score": 0.8, "latency_ms": latency, "x": 1.0,
    })


def labelled_log(n: int, accuracy: float, seed: int = 0) -> pd.DataFrame:
    """Labelled binary predictions whose scores rank right for about ``accuracy`` of the rows."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    predicted = np.where(rng.random(n) < accuracy, y, 1 - y)
    frame = log(n)
    frame["prediction"] = predicted.astype(str)
    frame["score"] = np.where(predicted == 1, rng.uniform(0.6, 0.95, n), rng.uniform(0.05, 0.4, n))
    frame["label"] = y.astype(str)
    return frame


def test_a_day_from_the_log():
    frame = pd.concat([log(960, latency=10.0), log(30, latency=40.0, prefix="s"),
                       log(10, status="error", prefix="e"), log(50, served=False, latency=900.0, prefix="h")])
    day = compute_slo_day(SPEC, DAY, frame, frame.iloc[0:0].assign(label=[]), as_of=END_OF_DAY)
    assert (day.requests, day.failed_requests, day.slow_requests) == (1000, 10, 30)  # shadow rows left out
    assert day.availability == pytest.approx(0.99) and day.p50_ms == 10.0 and day.complete
    assert day.latency_compliance is Compliance.MET  # 3% slower than 25 ms: p95 is still 10 ms
    assert day.availability_compliance is Compliance.MISSED  # 99% against 99.9%
    assert day.accuracy_compliance is Compliance.NO_DATA and day.labelled == 0


def test_accuracy_is_judged_once_enough_rows_are_labelled():
    labelled = labelled_log(MIN_LABELLED + 100, 0.95)
    day = compute_slo_day(SPEC, DAY, labelled.drop(columns="label"), labelled, as_of=END_OF_DAY)
    assert day.accuracy > 0.9 and day.accuracy_compliance is Compliance.MET
    few = labelled.head(MIN_LABELLED - 1)
    assert compute_slo_day(SPEC, DAY, few, few, as_of=END_OF_DAY).accuracy is None
    poor = labelled_log(MIN_LABELLED, 0.55)
    assert compute_slo_day(SPEC, DAY, poor, poor, as_of=END_OF_DAY).accuracy_compliance is Compliance.MISSED


def test_a_day_still_running_is_partial_and_a_quiet_day_has_no_data():
    day = compute_slo_day(SPEC, DAY, log(0), log(0).assign(label=[]), as_of=END_OF_DAY - timedelta(hours=3))
    assert not day.complete and day.requests == 0 and day.availability is None
    assert {day.latency_compliance, day.availability_compliance} == {Compliance.NO_DATA}


def test_days_between_covers_every_touched_day_and_no_more():
    start = datetime(2026, 3, 1, 18, tzinfo=UTC)
    assert days_between(start, datetime(2026, 3, 3, tzinfo=UTC)) == [date(2026, 3, 1), date(2026, 3, 2)]
    assert days_between(start, datetime(2026, 3, 3, 0, 1, tzinfo=UTC))[-1] == date(2026, 3, 3)


def record(day: date, requests: int, failed: int, slow: int, p95: float | None = 10.0, **targets) -> SLODay:
    base = {"p95_latency_ms": 25.0, "availability": 0.999, "accuracy_metric": "roc_auc", "min_accuracy": 0.7}
    return SLODay("m", day, True, END_OF_DAY, SLOTargets(**{**base, **targets}), requests, failed, slow, 5.0, p95,
                  20.0, 0, None)


def test_records_are_kept_one_file_per_day_and_replaced_on_recompute(tmp_path):
    store = SLOStore(str(tmp_path / "store"))
    store.write(record(DAY, 100, 0, 0))
    path = store.write(record(DAY, 200, 1, 0))
    store.write(record(DAY + timedelta(days=1), 300, 0, 0))
    assert path.endswith("slo/model=m/date=2026-03-01.json")
    assert sorted(p.name for p in (tmp_path / "store/slo/model=m").iterdir()) == [
        "date=2026-03-01.json", "date=2026-03-02.json"]
    (day,) = store.read("m", DAY, DAY)
    assert day == record(DAY, 200, 1, 0)
    assert [d.requests for d in store.read("m", DAY, DAY + timedelta(days=6))] == [200, 300]
    assert store.read("other", DAY, DAY) == []


def test_stored_records_carry_their_compliance_for_other_readers(tmp_path):
    store = SLOStore(str(tmp_path))
    store.write(record(DAY, 1000, 5, 0))
    text = (tmp_path / "slo/model=m/date=2026-03-01.json").read_text()
    assert '"availability": "missed"' in text and '"latency": "met"' in text


def test_error_budget_and_compliance_over_a_week():
    days = [record(DAY + timedelta(days=i), requests, failed, slow, p95) for i, (requests, failed, slow, p95)
            in enumerate([(10_000, 2, 100, 10.0), (10_000, 15, 700, 30.0), (0, 0, 0, None)])]
    report = summarize_slo("m", days, DAY, DAY + timedelta(days=6))
    availability, latency = report.budgets
    assert availability.allowed == pytest.approx(20.0) and availability.spent == 17
    assert availability.spent_share == pytest.approx(0.85)
    assert latency.allowed == pytest.approx(1000.0) and latency.spent_share == pytest.approx(0.8)
    by_name = {c.objective: c for c in report.compliance}
    assert (by_name["latency"].met, by_name["latency"].missed, by_name["latency"].no_data) == (1, 1, 1)
    assert by_name["availability"].share == pytest.approx(0.5)
    assert by_name["accuracy"].share is None
    assert [row["latency"] for row in report.to_table_rows()] == ["met", "missed", "no_data"]
    assert "availability budget: 85% of its error budget spent" in report.describe()


def test_a_budget_without_traffic_is_not_spent():
    report = summarize_slo("m", [record(DAY, 0, 0, 0, p95=None)], DAY, DAY)
    assert [b.spent_share for b in report.budgets] == [None, None]
    assert np.isinf(summarize_slo("m", [record(DAY, 0, 1, 0, availability=1.0)], DAY, DAY).budgets[0].spent_share)
