"""The health checks on tiny hand-made log frames: each rule, its severity, and what must not raise an issue."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import yaml

from steward.findings import CheckStatus, MaintenanceKind, Priority
from steward.monitoring.drift.result import ColumnDrift, DriftResult
from steward.monitoring.health.accuracy import (
    MIN_LABELLED,
    Calibration,
    calibration_from,
    check_accuracy,
    holdout_figures,
)
from steward.monitoring.health.cost import check_cost
from steward.monitoring.health.data_quality import OutlierFences, check_data_quality
from steward.monitoring.health.infrastructure import (
    GatewayReading,
    InfrastructureSample,
    ProcessUsage,
    check_infrastructure,
)
from steward.monitoring.health.outcomes import (
    Outcomes,
    analytic_estimate,
    compare_halves,
    metric_value,
    outcomes,
)
from steward.monitoring.health.performance import check_performance
from steward.monitoring.health.report import (
    Area,
    CheckResult,
    HealthReport,
    HealthWindow,
    Issue,
    IssueCode,
    Severity,
    Verdict,
    exceeds,
    failed_check,
)
from steward.monitoring.infrastructure import (
    is_gateway_command,
    memory_limit_bytes,
    read_gateway,
    requests_by_status,
)
from steward.simulation.examples import example_spec_text
from steward.spec import ModelSpec, Task, parse_spec
from steward.training.data import prepare_features
from steward.training.evaluation import labelled_outputs

T0 = datetime(2026, 3, 1, tzinfo=UTC)
WINDOW = HealthWindow(T0, T0 + timedelta(hours=24))
CLEAN = {"age": 40.0, "income": 50_000.0, "debt_ratio": 0.3, "credit_limit": 10_000.0, "utilization": 0.4,
         "months_employed": 60.0, "num_late_payments": 0.0, "num_open_accounts": 3.0, "region": "north",
         "employment_type": "salaried", "education": "master"}


def make_spec(**sections) -> ModelSpec:
    document = yaml.safe_load(example_spec_text())
    document["data"] = {"kind": "file", "path": "train.parquet"}
    for name, values in sections.items():
        document[name] = {**document.get(name, {}), **values} if isinstance(values, dict) else values
    return parse_spec(document)


SPEC = make_spec()
IMPORTANCES = {name: 1.0 for name in SPEC.feature_names}  # the example's policy weighs columns by importance


def log(n: int, *, version: str = "1", latency=5.0, status="ok", served=True, prefix: str = "r",
        score=0.8, prediction="1", spread=timedelta(hours=20), **features) -> pd.DataFrame:
    """``n`` single-row requests spread over the window; feature columns default to one clean row."""
    frame = pd.DataFrame({
        "request_id": [f"{prefix}{i}" for i in range(n)],
        "row": np.zeros(n, dtype="int32"),
        "time": pd.date_range(T0, T0 + spread, periods=n),
        "version": version, "arm": "champion", "served": served, "status": status,
        "prediction": prediction, "score": score, "latency_ms": latency, "entity": None,
    })
    for name, value in {**CLEAN, **features}.items():
        frame[name] = value
    frame.loc[frame["status"] != "ok", ["prediction", "score"]] = None
    return frame


def codes(result: CheckResult) -> list[tuple[IssueCode, Severity, str | None]]:
    return [(i.code, i.severity, i.subject) for i in result.issues]


# ---------------------------------------------------------------------------------------------- rules


def test_exceeds_needs_more_than_chance():
    assert not exceeds(1, 20, 0.01)  # 5% observed, but one request proves little
    assert exceeds(30, 200, 0.05)
    assert not exceeds(5, 100, 0.05)  # at the limit is not above it
    assert exceeds(1, 10, 0.0) and not exceeds(0, 10, 0.0)
    assert not exceeds(0, 0, 0.01)


def test_window_ends_at_as_of_and_refuses_a_non_positive_length():
    naive = HealthWindow.ending(datetime(2026, 3, 2, 12), 6)
    assert naive.end == datetime(2026, 3, 2, 12, tzinfo=UTC) and naive.hours == 6
    with pytest.raises(ValueError, match="window_hours must be positive"):
        HealthWindow.ending(None, 0)


# ---------------------------------------------------------------------------------------------- performance


def test_quiet_traffic_passes_performance():
    result = check_performance(log(500), WINDOW, SPEC)
    assert result.status is CheckStatus.PASSED and result.metrics["p95_ms[v1]"] == 5.0


@pytest.mark.parametrize(("latency", "severity"), [(30.0, Severity.WARNING), (60.0, Severity.CRITICAL)])
def test_p95_above_the_slo_is_a_warning_and_at_twice_it_critical(latency, severity):
    frame = pd.concat([log(300), log(300, version="2", latency=latency, prefix="s")])  # SLO p95 25 ms
    result = check_performance(frame, WINDOW, SPEC)
    assert codes(result) == [(IssueCode.LATENCY, severity, "v2")]
    assert result.recommendations[0].startswith("consider optimization or caching")


def test_error_rate_severity_and_small_samples():
    assert codes(check_performance(pd.concat([log(370), log(30, status="error", prefix="e")]), WINDOW, SPEC)) == [
        (IssueCode.ERROR_RATE, Severity.CRITICAL, "v1")]  # 7.5% against a 1% limit: clearly above 3x
    assert codes(check_performance(pd.concat([log(970), log(30, status="error", prefix="e")]), WINDOW, SPEC)) == [
        (IssueCode.ERROR_RATE, Severity.WARNING, "v1")]
    assert check_performance(pd.concat([log(19), log(1, status="error", prefix="e")]), WINDOW, SPEC).issues == ()


def test_no_traffic_low_throughput_and_over_capacity():
    empty = check_performance(log(0), WINDOW, SPEC)
    assert codes(empty) == [(IssueCode.NO_TRAFFIC, Severity.WARNING, None)]
    spec = make_spec(health={"min_throughput_rps": 1.0}, cost={"replica_capacity_rps": 0.001})
    found = {code for code, *_ in codes(check_performance(log(100), WINDOW, spec))}
    assert found == {IssueCode.LOW_THROUGHPUT, IssueCode.OVER_CAPACITY}


def test_shadow_rows_and_batch_rows_are_not_requests():
    frame = pd.concat([log(100), log(100, served=False, version="2", latency=500.0)])
    batch = log(1).loc[[0, 0, 0]].assign(row=[0, 1, 2])
    result = check_performance(pd.concat([frame, batch.assign(request_id="b0")]), WINDOW, SPEC)
    assert result.metrics["requests"] == 101 and result.issues == ()


# ---------------------------------------------------------------------------------------------- data quality


def test_missing_values_by_share():
    frame = log(1000)
    frame.loc[:99, "income"] = None  # 10%: above 5%
    frame.loc[:399, "months_employed"] = None  # 40%: above 15%
    result = check_data_quality(frame, SPEC, None, None, fences_error="not loaded")
    assert codes(result) == [(IssueCode.MISSING_VALUES, Severity.CRITICAL, "months_employed"),
                             (IssueCode.MISSING_VALUES, Severity.WARNING, "income")]
    assert result.status is CheckStatus.CRITICAL
    assert any("outliers not measured: not loaded" in note for note in result.notes)


def test_without_a_reference_the_check_is_failed_not_passed():
    result = check_data_quality(log(100), SPEC, None, None, fences_error="no training sample")
    assert result.status is CheckStatus.FAILED_CHECK and result.issues == ()


def test_outliers_against_the_training_range():
    reference = pd.DataFrame({**{k: [v] * 200 for k, v in CLEAN.items()},
                              "income": np.linspace(20_000, 120_000, 200)})
    fences = OutlierFences.from_reference(reference, SPEC, "3")
    low, high = fences.bounds["income"]
    assert low < 20_000 and 120_000 < high < 250_000
    frame = log(100, income=60_000.0)
    frame.loc[:19, "income"] = 4_000_000.0  # inside the spec's range, far outside the training data
    result = check_data_quality(frame, SPEC, fences, None)
    assert codes(result) == [(IssueCode.OUTLIERS, Severity.WARNING, "income")]
    assert result.metrics["outlier_share"] == 0.2 and result.metrics["outlier_reference"] == "v3"


def test_a_calendar_feature_has_no_outlier_fence():
    """A month or day-of-month column leaves its training range by construction; that is not an outlier."""
    features = [f.model_dump() for f in SPEC.features]
    for feature in features:
        if feature["name"] == "income":
            feature["role"] = "calendar"
    calendar_spec = SPEC.model_copy(update={"features": tuple(type(SPEC.features[0])(**f) for f in features)})
    reference = pd.DataFrame({**{k: [v] * 200 for k, v in CLEAN.items()},
                              "income": np.linspace(20_000, 120_000, 200)})
    assert "income" not in OutlierFences.from_reference(reference, calendar_spec, "3").bounds
    assert "income" in OutlierFences.from_reference(reference, SPEC, "3").bounds


def test_schema_violations_among_accepted_rows():
    frame = log(100)
    frame.loc[:9, "region"] = "overseas"  # unseen category: the gateway accepts it
    frame.loc[10:14, "age"] = 130.0  # above max (possible with --out-of-range allow)
    fences = OutlierFences({}, "1", 0)
    result = check_data_quality(frame, SPEC, fences, None)
    (issue,) = result.issues
    assert (issue.code, issue.severity) == (IssueCode.SCHEMA_VIOLATIONS, Severity.CRITICAL)
    assert "region 10" in issue.detail and "age 5" in issue.detail
    assert result.metrics["schema_violation_share"] == 0.15
    assert any("rejected-request counts unavailable: no gateway URL" in note for note in result.notes)


def test_rejected_requests_from_the_gateway_counters():
    fences = OutlierFences({}, "1", 0)
    busy = GatewayReading("http://gw", {"200": 900, "422": 80, "400": 20, "429": 50})
    result = check_data_quality(log(100), SPEC, fences, busy)
    assert codes(result) == [(IssueCode.REJECTED_REQUESTS, Severity.CRITICAL, None)]
    assert result.metrics["rejected_requests"] == 100 and result.metrics["rate_limited_requests"] == 50
    down = check_data_quality(log(100), SPEC, fences, GatewayReading("http://gw", error="ConnectError: refused"))
    assert down.issues == () and any("ConnectError" in note for note in down.notes)


# ---------------------------------------------------------------------------------------------- accuracy


def labelled_log(n: int, accuracy: float, *, prefix="r", seed=0, spread=timedelta(hours=20)) -> pd.DataFrame:
    """Binary predictions with scores that rank correctly for about ``accuracy`` of the rows."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    right = rng.random(n) < accuracy
    predicted = np.where(right, y, 1 - y)
    score = np.where(predicted == 1, rng.uniform(0.6, 0.95, n), rng.uniform(0.05, 0.4, n))
    frame = log(n, prefix=prefix, spread=spread)
    frame["prediction"] = predicted.astype(str)
    frame["score"] = score
    frame["label"] = y.astype(str)
    return frame


def test_measured_drop_against_the_baseline_is_judged_with_its_severity():
    frame = labelled_log(1000, 0.75)
    auc = metric_value("roc_auc", outcomes(frame, Task.BINARY_CLASSIFICATION))
    for baseline, expected in ((auc + 0.08, Severity.WARNING), (auc + 0.2, Severity.CRITICAL)):
        result = check_accuracy(frame.drop(columns="label"), frame, SPEC, {"1": {"roc_auc": baseline}}, {}, None)
        assert (IssueCode.ACCURACY_DROP, expected, "v1") in codes(result)
        assert result.metrics["drop[v1]"] == pytest.approx(baseline - auc)
    same = check_accuracy(frame.drop(columns="label"), frame, SPEC, {"1": {"roc_auc": auc + 0.01}}, {}, None)
    assert not [c for c in codes(same) if c[0] is IssueCode.ACCURACY_DROP]


def test_a_drop_is_judged_against_the_validation_figures_own_error_too():
    frame = labelled_log(800, 0.75)
    auc = metric_value("roc_auc", outcomes(frame, Task.BINARY_CLASSIFICATION))
    baselines = {"1": {"roc_auc": auc + 0.065}}  # past the 0.05 limit and about 2.6 live standard errors
    exact = check_accuracy(frame.drop(columns="label"), frame, SPEC, baselines, {}, None)
    assert (IssueCode.ACCURACY_DROP, Severity.WARNING, "v1") in codes(exact)
    # the same figure from a 300-row hold-out (+/- 0.03): the drop is no longer clear of the two errors
    noisy = check_accuracy(frame.drop(columns="label"), frame, SPEC, baselines, {}, None,
                           baseline_errors={"1": {"roc_auc": 0.03}})
    assert not [c for c in codes(noisy) if c[0] is IssueCode.ACCURACY_DROP]
    assert noisy.metrics["baseline_roc_auc_error[v1]"] == 0.03
    issue = next(i for i in exact.issues if i.code is IssueCode.ACCURACY_DROP)
    assert "+/-" in issue.detail


def test_validation_errors_are_the_hold_outs_own(quick_model, quick_spec):
    holdout = quick_model.holdout_frame
    figures = holdout_figures(quick_model.estimator, holdout, quick_spec)
    y, (predicted, probabilities) = labelled_outputs(quick_model.estimator, prepare_features(holdout, quick_spec),
                                                    holdout[quick_spec.target].to_numpy(), quick_spec)
    auc, method = analytic_estimate("roc_auc", Outcomes(y, predicted, probabilities[:, 1]))
    assert method == "DeLong" and figures.errors["roc_auc"] == pytest.approx(auc.error)
    accuracy = float(np.mean(y == predicted))
    assert figures.errors["accuracy"] == pytest.approx(np.sqrt(accuracy * (1 - accuracy) / len(holdout)))
    assert 0 < figures.errors["roc_auc"] < 0.1 and figures.calibration.rows == len(holdout)


def test_accuracy_below_the_slo_is_critical():
    frame = labelled_log(1000, 0.6)  # roc_auc about 0.6, SLO 0.70
    result = check_accuracy(frame.drop(columns="label"), frame, SPEC, {"1": {}}, {}, None)
    assert (IssueCode.ACCURACY_BELOW_SLO, Severity.CRITICAL, "v1") in codes(result)
    assert any("no validation roc_auc" in note for note in result.notes)


def test_concept_drift_is_a_drop_in_the_later_half_with_stable_inputs():
    early = labelled_log(600, 0.9, spread=timedelta(hours=9))
    late = labelled_log(600, 0.55, prefix="s", seed=1, spread=timedelta(hours=9))
    late["time"] += timedelta(hours=12)
    frame = pd.concat([early, late], ignore_index=True)
    rng = np.random.default_rng(3)
    frame["income"] = rng.lognormal(11, 0.4, len(frame))  # same distribution in both halves
    result = check_accuracy(frame.drop(columns="label"), frame, SPEC, {}, {}, None, importances=IMPORTANCES)
    drift = [i for i in result.issues if i.code is IssueCode.CONCEPT_DRIFT]
    assert len(drift) == 1 and "inputs stable against the earlier half" in drift[0].detail

    assert "DeLong standard error" in drift[0].detail and "+/-" in drift[0].detail  # the uncertainty is shown

    moved = frame.copy()
    moved.loc[600:, "income"] = moved.loc[600:, "income"] * 5  # the inputs moved too: data drift, not concept
    moved.loc[600:, "utilization"] = 1.4
    moved.loc[600:, "region"] = "west"
    moved.loc[600:, "debt_ratio"] = 2.5
    explained = check_accuracy(moved.drop(columns="label"), moved, SPEC, {}, {}, None, importances=IMPORTANCES)
    assert not [i for i in explained.issues if i.code is IssueCode.CONCEPT_DRIFT]
    assert any("data drift explains the drop" in note for note in explained.notes)


def test_a_later_half_lower_within_sampling_error_is_not_concept_drift():
    """The suite's quiet worlds: ROC AUC 0.08 lower in the later half on 400 rows a half is inside sampling error
    for a check looked at every day (it passed the old one-sided 1% bootstrap rule)."""
    early = labelled_log(400, 0.82, seed=2, spread=timedelta(hours=9))
    late = labelled_log(400, 0.76, prefix="s", seed=102, spread=timedelta(hours=9))
    late["time"] += timedelta(hours=12)
    frame = pd.concat([early, late], ignore_index=True)
    frame["income"] = np.random.default_rng(3).lognormal(11, 0.4, len(frame))
    halves = compare_halves("roc_auc", outcomes(early, Task.BINARY_CLASSIFICATION),
                            outcomes(late, Task.BINARY_CLASSIFICATION))
    assert 0.08 < halves.drop < halves.needed and halves.method == "DeLong"
    assert halves.drop >= 2.326 * halves.error  # what the one-sided 1% rule let through
    result = check_accuracy(frame.drop(columns="label"), frame, SPEC, {}, {}, None, importances=IMPORTANCES)
    assert IssueCode.CONCEPT_DRIFT not in {c[0] for c in codes(result)}
    assert any("within sampling error" in note for note in result.notes)
    assert result.metrics["roc_auc_halves_error[v1]"] == pytest.approx(halves.error)


def test_pending_labels_give_a_marked_estimate_only_when_calibrated():
    pending = log(300, score=0.62)  # expected accuracy 0.62 per row
    calibrated = Calibration(1000, expected_accuracy=0.8, observed_accuracy=0.8, calibration_error=0.01)
    result = check_accuracy(pending, pending.iloc[0:0].assign(label=[]), SPEC, {"1": {"accuracy": 0.8}},
                            {"1": calibrated}, None)
    assert codes(result) == [(IssueCode.ESTIMATED_ACCURACY_DROP, Severity.WARNING, "v1")]
    assert "estimate" in result.issues[0].title and result.metrics["estimated_accuracy[v1]"] == pytest.approx(0.62)
    assert any("ESTIMATE" in note for note in result.notes)

    sloppy = Calibration(1000, 0.8, 0.7, calibration_error=0.1)
    result = check_accuracy(pending, pending.iloc[0:0].assign(label=[]), SPEC, {}, {"1": sloppy}, None)
    assert result.issues == () and any("not calibrated" in note for note in result.notes)
    result = check_accuracy(pending, pending.iloc[0:0].assign(label=[]), SPEC, {}, {"1": "holdout missing"}, None)
    assert result.issues == () and any("holdout missing" in note for note in result.notes)


def test_few_labels_are_not_judged_and_regression_has_no_estimate():
    frame = labelled_log(MIN_LABELLED - 1, 0.3)
    result = check_accuracy(frame.drop(columns="label"), frame, SPEC, {"1": {"roc_auc": 0.9}}, {}, None)
    assert result.issues == () and any(f"{MIN_LABELLED} needed" in note for note in result.notes)
    regression = make_spec(task="regression")
    result = check_accuracy(log(10, prediction="12.5"), log(0).assign(label=[]), regression, {}, {}, None)
    assert any("no label-free estimate" in note for note in result.notes)


def test_metric_names_outside_the_logged_ones_say_what_to_use():
    with pytest.raises(ValueError, match="set gates.primary_metric to one of"):
        metric_value("pr_auc", outcomes(labelled_log(10, 0.5), Task.BINARY_CLASSIFICATION))


def test_outcomes_map_text_labels_to_the_scored_class():
    frame = log(4).assign(label=["yes", "no", "yes", "no"], prediction=["yes", "yes", "no", "no"])
    o = outcomes(frame, Task.BINARY_CLASSIFICATION)
    assert o.y.tolist() == [1, 0, 1, 0] and o.prediction.tolist() == [1, 1, 0, 0]
    assert metric_value("accuracy", o) == 0.5


def test_calibration_error_of_honest_and_overconfident_probabilities():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 20_000)
    y = (rng.random(20_000) < p).astype(int)
    honest = calibration_from(np.column_stack([1 - p, p]), y, [0, 1])
    assert honest.calibrated and honest.expected_accuracy == pytest.approx(honest.observed_accuracy, abs=0.01)
    sharp = np.where(p > 0.5, 0.99, 0.01)
    overconfident = calibration_from(np.column_stack([1 - sharp, sharp]), y, [0, 1])
    assert not overconfident.calibrated and overconfident.calibration_error > 0.2


# ---------------------------------------------------------------------------------------------- infrastructure


def sample(*processes: ProcessUsage) -> InfrastructureSample:
    return InfrastructureSample("host", datetime.now(UTC), 1.0, "a test", processes, 0.5, 0.5)


def test_cpu_and_memory_limits_of_gateway_processes():
    window = HealthWindow.ending(None, 24)
    ok = check_infrastructure(sample(ProcessUsage(1, "steward serve m", 0.3, 2**30, 8 * 2**30)), SPEC, window, None)
    assert ok.status is CheckStatus.PASSED
    busy = check_infrastructure(sample(ProcessUsage(1, "a", 0.85, 7 * 2**30, 8 * 2**30),
                                       ProcessUsage(2, "b", 0.99, 2**30, 8 * 2**30)), SPEC, window, None)
    assert codes(busy) == [(IssueCode.CPU, Severity.CRITICAL, "pid 2"), (IssueCode.CPU, Severity.WARNING, "pid 1"),
                           (IssueCode.MEMORY, Severity.WARNING, "pid 1")]


def test_no_gateway_process_is_a_failed_check_and_a_dead_gateway_critical():
    window = HealthWindow.ending(None, 24)
    result = check_infrastructure(sample(), SPEC, window, None)
    assert result.status is CheckStatus.FAILED_CHECK and codes(result)[0][0] is IssueCode.CHECK_FAILED
    dead = check_infrastructure(sample(), SPEC, window, GatewayReading("http://gw", error="ConnectError"))
    assert dead.status is CheckStatus.CRITICAL and codes(dead)[0] == (IssueCode.GATEWAY_DOWN, Severity.CRITICAL,
                                                                      "http://gw")


def test_gateway_processes_are_recognised_by_their_command_line():
    assert is_gateway_command(["/venv/bin/python", "/venv/bin/steward", "serve", "credit", "--port", "80"], "credit")
    assert is_gateway_command(["python", "-m", "steward", "serve", "a", "credit"], "credit")
    assert not is_gateway_command(["/venv/bin/steward", "serve", "fraud"], "credit")
    assert not is_gateway_command(["/venv/bin/steward", "health", "credit"], "credit")
    assert not is_gateway_command(["mlflow", "models", "serve", "credit"], "credit")


def test_process_sampling_measures_real_cpu():
    import psutil

    from steward.monitoring.infrastructure import sample_processes

    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.5)  # past the interpreters' start-up
        measured = sample_processes([psutil.Process(busy.pid), psutil.Process(idle.pid)], "test", seconds=1.0)
    finally:
        busy.kill()
        idle.kill()
    usage = {p.pid: p for p in measured.processes}
    # A spinning process gets a whole core on a quiet host and a fraction on a loaded one; a sleeping one none.
    assert usage[busy.pid].cpu_cores > 0.05 > usage[idle.pid].cpu_cores / 2
    assert 0 < usage[idle.pid].memory_share < 0.5
    assert memory_limit_bytes(idle.pid) <= psutil.virtual_memory().total


def test_request_counts_are_read_from_the_gateway_metrics_format():
    from steward.serving.metrics import GatewayMetrics
    from steward.store.writer import LogMode, WriterStats

    metrics = GatewayMetrics(lambda: WriterStats(LogMode.OFF, 0, 0, 0, 0, 0, 0, None, None))
    for model, status, times in (("credit", "200", 5), ("credit", "422", 2), ("fraud", "422", 7)):
        for _ in range(times):
            metrics.requests.labels(model, "", "", status).inc()
    assert requests_by_status(metrics.render().decode(), "credit") == {"200": 5, "422": 2}


def test_an_unreachable_gateway_is_a_reading_not_an_exception():
    reading = read_gateway("http://127.0.0.1:9", "credit", timeout=1.0)
    assert not reading.reachable and reading.total == 0


# ---------------------------------------------------------------------------------------------- cost


def test_idle_capacity_and_cost_per_request():
    spec = make_spec(cost={"replicas": 4, "replica_capacity_rps": 1.0, "price_per_replica_hour": 0.5},
                     health={"max_cost_per_1k_requests": 1.0})
    result = check_cost(log(3600, spread=timedelta(minutes=59)), WINDOW, spec)  # 1 request/s at the peak
    assert {c[0] for c in codes(result)} == {IssueCode.IDLE_CAPACITY, IssueCode.COST_PER_REQUEST}
    assert result.metrics["cost"] == pytest.approx(48.0) and result.metrics["cost_per_1k_requests"] == pytest.approx(
        48.0 / 3.6)
    assert result.metrics["idle_share_at_peak"] == pytest.approx(0.75)
    assert any("run 2 replica(s) instead of 4" in r for r in result.recommendations)
    busy = make_spec(cost={"replicas": 1, "replica_capacity_rps": 1.1})
    assert check_cost(log(3600, spread=timedelta(minutes=59)), WINDOW, busy).status is CheckStatus.PASSED


# ---------------------------------------------------------------------------------------------- the report


def issue(severity: Severity, area: Area = Area.PERFORMANCE, code: IssueCode = IssueCode.LATENCY) -> Issue:
    return Issue(area, code, severity, "title", "detail", "do something", subject="v1")


def test_verdict_rules():
    passed = CheckResult.judged(Area.COST, {}, [])
    warn = CheckResult.judged(Area.PERFORMANCE, {}, [issue(Severity.WARNING)])
    crit = CheckResult.judged(Area.ACCURACY, {}, [issue(Severity.CRITICAL, Area.ACCURACY)])
    failed = failed_check(Area.INFRASTRUCTURE, RuntimeError("psutil exploded"))
    assert HealthReport.combine("m", WINDOW, [passed, passed]).verdict is Verdict.HEALTHY
    assert HealthReport.combine("m", WINDOW, [passed, warn]).verdict is Verdict.WARNING
    assert HealthReport.combine("m", WINDOW, [passed, failed]).verdict is Verdict.WARNING
    assert HealthReport.combine("m", WINDOW, [warn, crit, failed]).verdict is Verdict.CRITICAL
    assert failed.status is CheckStatus.FAILED_CHECK and "RuntimeError: psutil exploded" in failed.issues[0].detail
    assert [v.exit_code for v in Verdict] == [0, 1, 2]


def test_table_rows_name_every_check():
    report = HealthReport.combine("m", WINDOW, [CheckResult.judged(Area.COST, {"cost": 1.5, "n": None}, []),
                                               CheckResult.judged(Area.PERFORMANCE, {}, [issue(Severity.WARNING)])])
    rows = report.to_table_rows()
    assert [r["area"] for r in rows] == ["cost", "performance"]
    assert rows[0]["metrics"] == "cost=1.5, n=n/a" and rows[1]["issues"] == "warning: title: detail"
    assert set(rows[0]) == {"area", "status", "metrics", "issues", "recommendations", "notes", "skipped"}


def test_issue_becomes_a_ledger_task():
    critical = issue(Severity.CRITICAL)
    assert critical.priority is Priority.CRITICAL and critical.kind is MaintenanceKind.CORRECTIVE
    assert critical.fingerprint == "health:performance:latency:v1"
    assert issue(Severity.WARNING, Area.ACCURACY, IssueCode.CONCEPT_DRIFT).kind is MaintenanceKind.ADAPTIVE
    assert issue(Severity.WARNING, Area.COST, IssueCode.IDLE_CAPACITY).priority is Priority.LOW
    assert issue(Severity.WARNING, Area.DATA_QUALITY, IssueCode.OUTLIERS).priority is Priority.MEDIUM
    finding = critical.to_finding("health-check:performance")
    assert finding.due(T0) == T0 + timedelta(hours=4) and finding.incident
    assert (finding.fingerprint, finding.priority, finding.detail) == (critical.fingerprint, Priority.CRITICAL,
                                                                       critical.detail)


# ---------------------------------------------------------------------------------------------- judgment (issue 15)


def test_idle_capacity_on_the_default_cost_settings_is_a_note_not_a_warning():
    traffic = log(3600, spread=timedelta(minutes=59))  # 1 request/s at the peak against the default 200
    quiet = check_cost(traffic, WINDOW, SPEC)
    assert quiet.status is CheckStatus.PASSED and quiet.issues == ()
    assert quiet.metrics["idle_share_at_peak"] > 0.99
    assert any("declare cost.replica_capacity_rps" in note for note in quiet.notes)
    declared = make_spec(cost={"replica_capacity_rps": 200.0})  # the same number, said by the team: judged
    assert [c[0] for c in codes(check_cost(traffic, WINDOW, declared))] == [IssueCode.IDLE_CAPACITY]
    limited = make_spec(health={"max_cost_per_1k_requests": 100.0})  # a cost target also makes it judged
    assert [c[0] for c in codes(check_cost(traffic, WINDOW, limited))] == [IssueCode.IDLE_CAPACITY]
    busy = log(3600 * 250, spread=timedelta(minutes=59))  # above the default capacity: a note, latency judges
    over = check_performance(busy.iloc[::1000].assign(time=busy["time"].iloc[::1000]), WINDOW, SPEC)
    assert IssueCode.OVER_CAPACITY not in {c[0] for c in codes(over)}


def healthy_day(n: int = 2000, seed: int = 5) -> pd.DataFrame:
    """A day of a well-calibrated binary model: scores drawn first, labels drawn from them."""
    rng = np.random.default_rng(seed)
    frame = log(n, spread=timedelta(hours=23))
    score = rng.beta(1.2, 3.0, n)
    frame["score"] = score
    frame["prediction"] = (score >= 0.5).astype(int).astype(str)
    frame["label"] = (rng.random(n) < score).astype(int).astype(str)
    frame["income"] = rng.lognormal(11, 0.4, n)
    return frame


def test_a_healthy_day_on_default_settings_is_healthy_with_no_issue():
    day = healthy_day()
    o = outcomes(day, Task.BINARY_CLASSIFICATION)
    baselines = {"1": {"roc_auc": metric_value("roc_auc", o), "accuracy": metric_value("accuracy", o)}}
    confidence = np.maximum(o.score, 1 - o.score)
    holdout = Calibration(2000, float(confidence.mean()), float(np.mean(o.y == o.prediction)), 0.02)
    defaults = make_spec(slo={"min_accuracy": None})  # the example's own SLO aside, every threshold a default
    checks = [
        check_performance(day, WINDOW, defaults),
        check_data_quality(day, defaults, OutlierFences({}, "1", 0), None),
        check_accuracy(day.drop(columns="label"), day, defaults, baselines, {"1": holdout}, None,
                       importances=IMPORTANCES),
        check_cost(day, WINDOW, defaults),
    ]
    report = HealthReport.combine("m", WINDOW, checks)
    assert report.verdict is Verdict.HEALTHY and report.issues == (), report.to_table_rows()


def stale_threshold_day(n: int = 2000, seed: int = 7) -> pd.DataFrame:
    """The issue's miss: the scores still rank (ROC AUC about 0.96) but sit above 0.5 for most negatives."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    latent = 3.0 * y + rng.normal(0, 0.85, n)
    score = 1 / (1 + np.exp(-(latent + 0.5)))  # the positive rate of the world moved: 0.5 no longer splits it
    frame = log(n, spread=timedelta(hours=23))
    frame["score"] = score
    frame["prediction"] = (score >= 0.5).astype(int).astype(str)
    frame["label"] = y.astype(str)
    return frame


def test_accuracy_falling_while_roc_auc_holds_is_a_secondary_metric_drop_and_calibration_drift():
    day = stale_threshold_day()
    o = outcomes(day, Task.BINARY_CLASSIFICATION)
    auc, accuracy = metric_value("roc_auc", o), metric_value("accuracy", o)
    assert auc > 0.95 and accuracy < 0.8, (auc, accuracy)
    holdout = Calibration(2000, expected_accuracy=0.9, observed_accuracy=0.9, calibration_error=0.01)
    result = check_accuracy(day.drop(columns="label"), day, SPEC, {"1": {"roc_auc": auc + 0.005, "accuracy": 0.9}},
                            {"1": holdout}, None, importances=IMPORTANCES)
    found = {c[0]: c[1] for c in codes(result)}
    assert IssueCode.ACCURACY_DROP not in found  # the primary metric held
    assert found[IssueCode.SECONDARY_METRIC_DROP] is Severity.CRITICAL  # 0.9 -> under 0.8: over twice the limit
    assert found[IssueCode.CALIBRATION_DRIFT] is Severity.WARNING
    secondary = next(i for i in result.issues if i.code is IssueCode.SECONDARY_METRIC_DROP)
    assert "threshold" in secondary.recommendation and secondary.kind is MaintenanceKind.ADAPTIVE
    assert result.metrics["accuracy_drop[v1]"] == pytest.approx(0.9 - accuracy)

    steady = check_accuracy(day.drop(columns="label"), day, SPEC,
                            {"1": {"roc_auc": auc, "accuracy": accuracy + 0.01}}, {"1": holdout}, None)
    assert IssueCode.SECONDARY_METRIC_DROP not in {c[0] for c in codes(steady)}  # within noise and the limit
    unknown = check_accuracy(day.drop(columns="label"), day, SPEC, {"1": {"roc_auc": auc}}, {}, None)
    assert any("calibration not judged" in note for note in unknown.notes)


def test_health_and_the_drift_report_judge_the_same_window_the_same_way():
    """The issue's contradiction: 2 of 11 inputs drifted (18% < 30%) but they carry most of the importance."""
    from steward.monitoring.drift.monitor import judge_drift
    from steward.monitoring.health.accuracy import InputDrift

    importances = {"utilization": 0.40, "debt_ratio": 0.24, "num_late_payments": 0.23, "months_employed": 0.08,
                   "credit_limit": 0.04, "income": 0.01}
    drifted = {"utilization", "debt_ratio"}
    columns = tuple(
        ColumnDrift(name, "numeric", "Wasserstein distance (normed)", 0.3 if name in drifted else 0.01, 0.1,
                    name in drifted, importances.get(name, 0.0))
        for name in SPEC.feature_names
    )
    measured = DriftResult(columns, None, 2 / len(columns), False, 5000, 1000, "profile")
    assert measured.drift_share < SPEC.drift.share_threshold  # what health used to count: "inputs stable"

    report = judge_drift(SPEC, "1", measured, None, importances, T0 + timedelta(days=1))
    assert report.decision.material

    day = labelled_log(1000, 0.6)
    result = check_accuracy(day.drop(columns="label"), day, SPEC, {"1": {"roc_auc": 0.9}}, {}, None,
                            input_drift=InputDrift("1", measured, importances))
    assert (IssueCode.ACCURACY_DROP, Severity.CRITICAL, "v1") in codes(result)
    assert IssueCode.CONCEPT_DRIFT not in {c[0] for c in codes(result)}  # inputs drifted: not concept drift
    assert any("inputs drifted against the training data" in note and "data drift explains" in note
               for note in result.notes)
    assert result.metrics["input_drift_share[v1]"] == measured.drift_share
