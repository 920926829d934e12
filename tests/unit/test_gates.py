from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import yaml

from steward.estimators import build_estimator
from steward.findings import CheckStatus
from steward.simulation.examples import example_spec_text
from steward.spec import GateSpec, parse_spec
from steward.training.data import prepare_features
from steward.training.gates import (
    ComparisonCode,
    GateCheck,
    SliceComparison,
    ValidationReport,
    ValidationVerdict,
    check_edge_cases,
    check_primary_metric,
    check_signature,
    check_slices,
    check_speed,
    judge_training_duration,
)
from steward.training.paired import PairedInterval, judge_non_inferiority
from steward.training.probes import SpeedProfile, compare_speed, run_edge_cases

POLICY = GateSpec(tolerance=0.01, floor=0.7, slice_features=("region",), slice_tolerance=0.03, min_slice_rows=50)


def statuses(checks) -> dict[str, CheckStatus]:
    return {check.name: check.status for check in checks}


def interval(difference: float, half: float, metric: str = "roc_auc", rows: int = 1000) -> PairedInterval:
    return PairedInterval(metric, 0.8 + difference, 0.8, difference, difference - half, difference + half,
                          half / 1.96, 0.95, rows, "test")


def judged(difference: float, half: float, tolerance: float = 0.01, positives: int = 300):
    y = np.array([1] * positives + [0] * (1000 - positives))
    return judge_non_inferiority(interval(difference, half), tolerance, y)


def test_primary_metric_pass_fail_and_inconclusive_by_the_interval():
    passed = check_primary_metric("roc_auc", 0.82, judged(0.004, 0.006), POLICY)
    assert statuses(passed) == {"metric_floor": CheckStatus.PASSED, "metric_vs_champion": CheckStatus.PASSED}
    assert passed[1].code is ComparisonCode.NON_INFERIOR and "[-0.0020, +0.0100]" in passed[1].reason

    worse = check_primary_metric("roc_auc", 0.80, judged(-0.03, 0.01), POLICY)[1]
    assert worse.status is CheckStatus.FAILED and worse.code is ComparisonCode.INFERIOR

    noisy = check_primary_metric("roc_auc", 0.803, judged(0.003, 0.069), POLICY)[1]
    assert noisy.status is CheckStatus.INCONCLUSIVE and noisy.code is ComparisonCode.INCONCLUSIVE
    assert noisy.rows_needed is not None and noisy.rows_needed > 20_000
    assert f"need about {noisy.rows_needed} more labelled rows" in noisy.reason


def test_within_tolerance_but_expected_worse_is_no_gain_unless_allowed():
    slightly_worse = judged(-0.004, 0.003)
    check = check_primary_metric("roc_auc", 0.796, slightly_worse, POLICY)[1]
    assert check.status is CheckStatus.FAILED and check.code is ComparisonCode.NO_EXPECTED_GAIN
    lenient = GateSpec(tolerance=0.01, require_expected_gain=False)
    assert check_primary_metric("roc_auc", 0.796, slightly_worse, lenient)[0].status is CheckStatus.PASSED


def test_a_scheduled_refresh_passes_unless_shown_worse_than_the_older_champion():
    noisy = check_primary_metric("roc_auc", 0.803, judged(0.003, 0.069), POLICY, refresh=True)[1]
    assert noisy.status is CheckStatus.PASSED and noisy.code is ComparisonCode.FRESH_NOT_WORSE
    slightly_worse = check_primary_metric("roc_auc", 0.796, judged(-0.004, 0.003), POLICY, refresh=True)[1]
    assert slightly_worse.status is CheckStatus.PASSED and slightly_worse.code is ComparisonCode.FRESH_NOT_WORSE
    expected_worse = check_primary_metric("roc_auc", 0.79, judged(-0.015, 0.03), POLICY, refresh=True)[1]
    assert expected_worse.status is CheckStatus.FAILED and expected_worse.code is ComparisonCode.NO_EXPECTED_GAIN
    worse = check_primary_metric("roc_auc", 0.78, judged(-0.03, 0.01), POLICY, refresh=True)[1]
    assert worse.status is CheckStatus.FAILED and worse.code is ComparisonCode.INFERIOR


def test_floor_fails_even_without_champion():
    checks = statuses(check_primary_metric("roc_auc", 0.65, None, POLICY))
    assert checks == {"metric_floor": CheckStatus.FAILED, "metric_vs_champion": CheckStatus.SKIPPED}


def test_a_candidate_below_the_floor_passes_when_the_champion_is_further_below_and_clearly_worse_and_waits_if_unsure():
    """After concept drift the champion can sit far below the floor; keeping it is the worse choice."""
    y = np.array([0, 1] * 200)
    gain = PairedInterval("roc_auc", 0.66, 0.35, 0.31, 0.2, 0.42, 0.05, 0.95, 400, "test")
    checks = statuses(check_primary_metric("roc_auc", 0.66, judge_non_inferiority(gain, 0.01, y), POLICY))
    assert checks == {"metric_floor": CheckStatus.PASSED, "metric_vs_champion": CheckStatus.PASSED}
    # better but not yet shown: it waits for the rows that would show it (kept pending), not failed
    unsure = PairedInterval("roc_auc", 0.66, 0.60, 0.06, -0.01, 0.13, 0.035, 0.95, 400, "test")
    floor = check_primary_metric("roc_auc", 0.66, judge_non_inferiority(unsure, 0.01, y), POLICY)[0]
    assert floor.status is CheckStatus.INCONCLUSIVE and floor.rows_needed and floor.rows_needed > 0
    assert "champion is below it too" in floor.reason
    worse = PairedInterval("roc_auc", 0.62, 0.64, -0.02, -0.09, 0.05, 0.035, 0.95, 400, "test")
    floor = check_primary_metric("roc_auc", 0.62, judge_non_inferiority(worse, 0.01, y), POLICY)[0]
    assert floor.status is CheckStatus.FAILED  # no better than a champion below the floor: the floor holds
    # better by less than the tolerance: the rows to show it would never come within the pending period
    tiny = PairedInterval("roc_auc", 0.643, 0.641, 0.002, -0.02, 0.024, 0.011, 0.95, 1600, "test")
    floor = check_primary_metric("roc_auc", 0.643, judge_non_inferiority(tiny, 0.01, y), POLICY)[0]
    assert floor.status is CheckStatus.FAILED and "by more than the tolerance" in floor.reason
    # the champion with its threshold re-fitted ranks every row as the champion does: with its gain judged on
    # another metric (a recalibration for accuracy), the floor cannot choose; judged on this one, it holds
    same = PairedInterval("roc_auc", 0.644, 0.644, 0.0, 0.0, 0.0, 0.0, 0.95, 400, "test")
    floor = check_primary_metric("roc_auc", 0.644, judge_non_inferiority(same, 0.01, y), POLICY, expect_gain=False)[0]
    assert floor.status is CheckStatus.PASSED and "ranks every row as the champion does" in floor.reason
    floor = check_primary_metric("roc_auc", 0.644, judge_non_inferiority(same, 0.01, y), POLICY)[0]
    assert floor.status is CheckStatus.FAILED


def test_report_verdict_failed_beats_inconclusive_and_inconclusive_is_not_a_pass():
    def report(*checks):
        return ValidationReport("m", "2", "1", "roc_auc", {}, {}, tuple(checks), holdout_rows=200)

    undecided = GateCheck("metric_vs_champion", CheckStatus.INCONCLUSIVE, "inconclusive", rows_needed=5000)
    ok = GateCheck("edge_cases", CheckStatus.PASSED, "ok")
    assert report(ok, undecided).verdict is ValidationVerdict.INCONCLUSIVE
    assert not report(ok, undecided).passed and report(ok, undecided).rows_needed == 5000
    assert "not a pass" in report(ok, undecided).summary()
    assert "**Inconclusive, not a pass**: the evidence needs about 5000 more labelled rows" in (
        report(ok, undecided).to_markdown())
    broken = GateCheck("edge_cases", CheckStatus.FAILED, "crashed")
    assert report(broken, undecided).verdict is ValidationVerdict.FAILED
    assert report(ok).passed


def slice_at(value: str, difference: float, half: float, rows: int) -> SliceComparison:
    return SliceComparison("region", value, interval(difference, half, rows=rows))


def test_slice_fails_only_on_a_significant_drop_beyond_its_tolerance():
    big_drop = slice_at("north", -0.08, 0.03, 500)  # upper -0.05 < -0.03
    noisy_drop = slice_at("west", -0.08, 0.12, 105)  # a small slice: the drop is within its noise
    check = check_slices([big_drop, noisy_drop], POLICY, has_champion=True)
    assert check.status is CheckStatus.FAILED and check.code is ComparisonCode.SIGNIFICANT_DROP
    assert "region=north" in check.reason and "west" not in check.reason
    fine = check_slices([noisy_drop, slice_at("east", 0.01, 0.02, 400)], POLICY, has_champion=True, too_small=1)
    assert fine.status is CheckStatus.PASSED and "west" in fine.reason and "1 slices under 50" in fine.reason
    assert check_slices([], POLICY, has_champion=False).status is CheckStatus.SKIPPED


def test_signature_change_fails_unless_allowed():
    champion = {"a": "float64", "b": "object"}
    assert check_signature(champion, champion, POLICY).status is CheckStatus.PASSED
    changed = {"a": "float64", "c": "object"}
    failed = check_signature(changed, champion, POLICY)
    assert failed.status is CheckStatus.FAILED and "allow_schema_change" in failed.reason
    allowed = check_signature(changed, champion, GateSpec(allow_schema_change=True))
    assert allowed.status is CheckStatus.PASSED


def test_speed_regression_fails():
    champion = SpeedProfile(1.0, 2.0, 1000, 100_000)
    assert statuses(check_speed(SpeedProfile(1.0, 3.0, 1000, 90_000), champion, POLICY)) == {
        "latency_p95": CheckStatus.PASSED, "batch_throughput": CheckStatus.PASSED,
    }
    slow = statuses(check_speed(SpeedProfile(5.0, 9.0, 1000, 20_000), champion, POLICY))
    assert slow == {"latency_p95": CheckStatus.FAILED, "batch_throughput": CheckStatus.FAILED}


def test_tiny_latencies_are_not_called_regressions():
    champion = SpeedProfile(0.1, 0.2, 1000, 100_000)
    check = check_speed(SpeedProfile(0.3, 0.6, 1000, 100_000), champion, GateSpec(min_latency_ms=1.0))
    assert check[0].status is CheckStatus.PASSED


def test_training_duration_flag():
    assert not judge_training_duration(5.0, [], 10).slow
    assert not judge_training_duration(5.0, [1.0, 2.0, 1.5], 10).slow
    verdict = judge_training_duration(50.0, [1.0, 2.0, 1.5], 10)
    assert verdict.slow and "33.3x the median" in verdict.reason


@pytest.fixture(scope="module")
def spec():
    return parse_spec(yaml.safe_load(example_spec_text()))


@pytest.fixture(scope="module")
def fitted(spec, example_frame):
    frame = example_frame.head(3000)
    model = build_estimator(spec).fit(prepare_features(frame, spec), frame[spec.target])
    return model, prepare_features(frame, spec)


class RefusesUnseen:
    """A model that crashes on categories it has not seen: the edge-case probe must catch it."""

    def __init__(self, model, known):
        self.model, self.known = model, known

    def predict(self, frame):
        if (~frame["region"].isin(self.known)).any():
            raise KeyError("unknown region")
        return self.model.predict(frame)


class Sluggish:
    def __init__(self, model, delay):
        self.model, self.delay = model, delay

    def predict(self, frame):
        time.sleep(self.delay)
        return self.model.predict(frame)


def test_edge_cases_pass_for_the_example_pipeline(spec, fitted):
    model, features = fitted
    outcomes = run_edge_cases(model, spec, features)
    assert {o.case for o in outcomes} >= {"empty_batch", "extreme_max_values", "missing_nullable_values",
                                         "unseen_category"}
    assert check_edge_cases(outcomes).status is CheckStatus.PASSED


def test_edge_case_failure_is_reported(spec, fitted):
    model, features = fitted
    check = check_edge_cases(run_edge_cases(RefusesUnseen(model, {"north", "south", "east", "west"}), spec, features))
    assert check.status is CheckStatus.FAILED and "unseen_category: raised KeyError" in check.reason


def test_invalid_output_fails_edge_cases(spec, fitted):
    _, features = fitted

    class NaNModel:
        def predict(self, frame):
            return np.full(len(frame), np.nan)

    assert check_edge_cases(run_edge_cases(NaNModel(), spec, features)).status is CheckStatus.FAILED


class Constant:
    def predict(self, frame):
        return np.zeros(len(frame))


def test_compare_speed_sees_a_slow_candidate(fitted):
    _, features = fitted
    slow, fast = compare_speed(Sluggish(Constant(), 0.02), Constant(), features, single_row_calls=20,
                               batch_rows=200, rounds=2)
    assert slow.single_row_p50_ms >= 20 > fast.single_row_p50_ms
    assert statuses(check_speed(slow, fast, GateSpec(max_latency_factor=1.5)))["latency_p95"] is CheckStatus.FAILED


def test_the_speed_checks_pass_a_model_against_itself_under_a_cpu_hog(fitted):
    """A busy neighbour must not fail a candidate as fast as its champion (it did: 32k vs 80k rows/s)."""
    from steward.simulation.load import cpu_hog

    model, features = fitted
    with cpu_hog():
        for _ in range(3):
            candidate, champion = compare_speed(model, model, features, single_row_calls=60, batch_rows=2000)
            assert statuses(check_speed(candidate, champion, GateSpec())) == {
                "latency_p95": CheckStatus.PASSED, "batch_throughput": CheckStatus.PASSED,
            }, (candidate, champion)
        slow, fast = compare_speed(Sluggish(model, 0.1), model, features, single_row_calls=20, batch_rows=2000)
    assert statuses(check_speed(slow, fast, GateSpec()))["batch_throughput"] is CheckStatus.FAILED


def test_edge_case_batches_use_declared_bounds(spec, fitted):
    from steward.training.probes import edge_case_batches

    _, features = fitted
    batches = edge_case_batches(spec, features)
    assert batches["extreme_max_values"][0]["age"].iloc[0] == 100
    assert len(batches["empty_batch"][0]) == 0 and not batches["empty_batch"][1]
    assert pd.isna(batches["missing_nullable_values"][0]["income"]).all()


def test_retrain_cooldown_and_budget():
    from datetime import UTC, datetime, timedelta

    from steward.training.gates import RetrainCode, decide_retrain

    now = datetime(2026, 3, 10, 12, tzinfo=UTC)
    assert decide_retrain(now, [], cooldown_hours=24, max_per_week=3).allowed
    recent = decide_retrain(now, [now - timedelta(hours=2)], cooldown_hours=24, max_per_week=3)
    assert recent.code is RetrainCode.COOLDOWN and not recent.allowed
    busy_week = [now - timedelta(days=d) for d in (1.5, 3, 5)]
    spent = decide_retrain(now, busy_week, cooldown_hours=24, max_per_week=3)
    assert spent.code is RetrainCode.WEEKLY_BUDGET_SPENT and not spent.allowed
    assert decide_retrain(now, [now - timedelta(days=8)] * 5, cooldown_hours=24, max_per_week=3).allowed


@pytest.mark.slow
def test_a_retrain_on_fewer_rows_is_as_fast_as_a_champion_on_many():
    """Early stopping is on at every size, so 4k and 20k rows give models of comparable size and speed."""
    from steward.simulation.examples import example_training_frame

    spec = parse_spec(yaml.safe_load(example_spec_text()))
    history = example_training_frame(days=80, rows_per_day=300)
    champion_rows, retrain_rows = history.head(20_000), history.tail(4_000)
    champion = build_estimator(spec).fit(prepare_features(champion_rows, spec), champion_rows[spec.target])
    retrain = build_estimator(spec).fit(prepare_features(retrain_rows, spec), retrain_rows[spec.target])
    assert champion[-1].early_stopping is True and retrain[-1].early_stopping is True
    assert retrain[-1].n_iter_ <= 2 * champion[-1].n_iter_  # under "auto": 150 trees against 64
    features = prepare_features(history.tail(2_000), spec)
    fast, slow = compare_speed(retrain, champion, features, single_row_calls=60, batch_rows=1000, rounds=3)
    assert statuses(check_speed(fast, slow, spec.gates)) == {
        "latency_p95": CheckStatus.PASSED, "batch_throughput": CheckStatus.PASSED,
    }


def test_early_stopping_set_in_the_spec_is_kept():
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    from steward.estimators import explicit_early_stopping

    assert explicit_early_stopping(HistGradientBoostingClassifier, {})["early_stopping"] is True
    assert explicit_early_stopping(HistGradientBoostingClassifier, {"early_stopping": False}) == {"early_stopping": False}
    assert explicit_early_stopping(LogisticRegression, {"C": 1.0}) == {"C": 1.0}


def test_a_hold_out_with_one_class_is_inconclusive_not_a_crash(spec, fitted, example_frame):
    from steward.training.validation import Contender, validate_candidate

    model, _ = fitted
    frame = example_frame.head(3000)
    holdout = prepare_features(frame, spec)
    holdout[spec.target] = frame[spec.target].to_numpy()
    negatives = holdout[holdout[spec.target] == 0].head(300)
    report = validate_candidate(spec, Contender(model, "2", {}), Contender(model, "1", {}), negatives)
    check = next(c for c in report.checks if c.name == "metric_vs_champion")
    assert check.status is CheckStatus.INCONCLUSIVE and "at least 2 rows of each class" in check.reason
    assert not report.passed  # the floor fails too: ROC AUC is undefined on one class


def test_a_candidate_that_raises_on_its_hold_out_fails_the_gate_with_the_error(spec, fitted, example_frame):
    """The team's model code may raise (a lookup table missing a region): a failed check, not a crashed flow."""
    from steward.training.validation import Contender, validate_candidate

    class RaisesOnEast:
        def predict(self, frame):
            raise KeyError("no entry for region in ['east']")

        predict_proba = predict

    model, _ = fitted
    frame = example_frame.head(1000)
    holdout = prepare_features(frame, spec)
    holdout[spec.target] = frame[spec.target].to_numpy()
    report = validate_candidate(spec, Contender(RaisesOnEast(), "2", {}), Contender(model, "1", {}), holdout)
    (check,) = report.checks
    assert report.verdict is ValidationVerdict.FAILED and check.code is ComparisonCode.SCORING_ERROR
    assert "KeyError" in check.reason and "east" in check.reason and "failed against champion v1" in report.summary()
    assert "holdout_scoring" in report.to_markdown()
