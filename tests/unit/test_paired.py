"""The statistics of the gate: DeLong, the paired bootstrap, non-inferiority and the rows it needs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from steward.spec import Task
from steward.training.paired import (
    ComparisonError,
    NonInferiority,
    PairedInterval,
    delong_covariance,
    delong_difference,
    judge_non_inferiority,
    paired_bootstrap_difference,
    paired_difference,
    z_value,
)

BINARY = Task.BINARY_CLASSIFICATION


def test_delong_matches_a_hand_computed_variance():
    # positives 0.9, 0.8, 0.4; negatives 0.7, 0.3: AUC 5/6; placements V10 = [1, 1, 1/2], V01 = [2/3, 1],
    # so var = var(V10)/3 + var(V01)/2 = (1/12)/3 + (1/18)/2 = 1/18.
    y = np.array([1, 1, 1, 0, 0])
    aucs, cov = delong_covariance(y, np.array([0.9, 0.8, 0.4, 0.7, 0.3]))
    assert aucs[0] == pytest.approx(5 / 6)
    assert cov[0, 0] == pytest.approx(1 / 18)


def test_delong_difference_matches_the_pairwise_definition_and_sklearn():
    rng = np.random.default_rng(3)
    y = (rng.random(600) < 0.3).astype(int)
    a = y + rng.normal(size=600)
    b = np.round(a + rng.normal(scale=0.7, size=600), 1)  # ties too

    def placements(scores):
        pos, neg = scores[y == 1], scores[y == 0]
        psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        return psi.mean(axis=1), psi.mean(axis=0)

    (a10, a01), (b10, b01) = placements(a), placements(b)
    variance = np.cov(a10 - b10) / len(a10) + np.cov(a01 - b01) / len(a01)
    result = delong_difference(y, a, b)
    assert result.difference == pytest.approx(skm.roc_auc_score(y, a) - skm.roc_auc_score(y, b))
    assert result.standard_error == pytest.approx(math.sqrt(variance))
    assert result.lower == pytest.approx(result.difference - 1.959964 * result.standard_error, abs=1e-6)


def correlated_correctness(rng, rows: int, accuracy: float, agreement: float) -> tuple[np.ndarray, np.ndarray]:
    """Two models with the same true accuracy whose per-row correctness agrees most of the time."""
    a = rng.random(rows) < accuracy
    b = np.where(rng.random(rows) < agreement, a, rng.random(rows) < accuracy)
    return a, b


def as_predictions(y: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, None]:
    return np.where(correct, y, 1 - y), None


def test_paired_bootstrap_covers_a_true_null_difference_at_its_confidence():
    rng = np.random.default_rng(11)
    covered = 0
    simulations = 300
    for index in range(simulations):
        y = (rng.random(400) < 0.3).astype(int)
        a, b = correlated_correctness(rng, 400, 0.8, 0.7)
        result = paired_bootstrap_difference("accuracy", BINARY, y, as_predictions(y, a), as_predictions(y, b),
                                             resamples=1000, seed=index)
        covered += result.lower <= 0 <= result.upper
    assert 0.92 <= covered / simulations <= 0.98


def test_delong_covers_a_true_null_difference_at_its_confidence():
    rng = np.random.default_rng(5)
    covered = 0
    for _ in range(300):
        y = (rng.random(300) < 0.4).astype(int)
        shared = rng.normal(size=300)
        a = y + shared + rng.normal(scale=0.6, size=300)
        b = y + shared + rng.normal(scale=0.6, size=300)
        result = delong_difference(y, a, b)
        covered += result.lower <= 0 <= result.upper
    assert 0.92 <= covered / 300 <= 0.98


def test_bootstrap_point_estimates_equal_sklearn_and_lower_is_better_flips_the_sign():
    rng = np.random.default_rng(2)
    y = rng.normal(size=500)
    good, bad = y + rng.normal(scale=0.5, size=500), y + rng.normal(scale=1.0, size=500)
    rmse = paired_bootstrap_difference("rmse", Task.REGRESSION, y, (good, None), (bad, None))
    assert rmse.candidate == pytest.approx(math.sqrt(skm.mean_squared_error(y, good)))
    assert rmse.difference > 0 and rmse.lower > 0  # smaller error is an improvement
    labels = (rng.random(500) < 0.4).astype(int)
    probability = np.clip(labels * 0.3 + rng.random(500) * 0.7, 0.01, 0.99)
    outputs = ((probability > 0.5).astype(int), np.column_stack([1 - probability, probability]))
    flipped = ((probability <= 0.5).astype(int), np.column_stack([probability, 1 - probability]))
    for metric, expected in (("f1", skm.f1_score(labels, outputs[0])),
                             ("brier", skm.brier_score_loss(labels, probability)),
                             ("log_loss", skm.log_loss(labels, outputs[1])),
                             ("f1_macro", skm.f1_score(labels, outputs[0], average="macro"))):
        result = paired_bootstrap_difference(metric, BINARY, labels, outputs, flipped)
        assert result.candidate == pytest.approx(expected), metric
        assert result.difference > 0, metric


def test_identical_models_are_non_inferior_with_a_zero_width_interval():
    rng = np.random.default_rng(0)
    y = (rng.random(1000) < 0.3).astype(int)
    scores = rng.random(1000)
    outputs = ((scores > 0.5).astype(int), np.column_stack([1 - scores, scores]))
    for metric in ("roc_auc", "accuracy"):
        result = judge_non_inferiority(paired_difference(metric, BINARY, y, outputs, outputs), 0.01, y)
        assert result.outcome is NonInferiority.NON_INFERIOR
        assert result.interval.lower == result.interval.upper == 0


def test_the_issue_case_a_small_gain_on_200_rows_is_inconclusive_not_a_pass():
    rng = np.random.default_rng(8)
    y = np.array([1] * 100 + [0] * 100)  # 100 of each class: the tolerance's resolution floor is met
    shared = rng.normal(size=200)
    champion = 1.4 * y + shared + rng.normal(scale=0.8, size=200)
    candidate = 1.4 * y + shared + rng.normal(scale=0.8, size=200)
    interval = delong_difference(y, candidate, champion)
    result = judge_non_inferiority(interval, 0.01, y)
    assert 0 < interval.difference < 0.005 and interval.lower < -0.01 < interval.upper
    assert result.outcome is NonInferiority.INCONCLUSIVE and result.rows_needed > 2000


def test_too_few_rows_of_the_smaller_class_for_the_tolerance_is_inconclusive_unless_the_gain_is_clear():
    y = np.array([1] * 40 + [0] * 160)
    near = PairedInterval("roc_auc", 0.802, 0.800, 0.002, -0.004, 0.008, 0.003, 0.95, 200, "test")
    result = judge_non_inferiority(near, 0.01, y)
    assert near.lower > -0.01  # non-inferior by the margin on these rows, yet 40 positives cannot resolve 0.01
    assert result.outcome is NonInferiority.INCONCLUSIVE
    assert result.resolution_rows == 100 and result.rows_needed == 500 - 200  # 100 positives at a 20% share

    scores = np.linspace(0, 1, 200)
    better = np.where(y == 1, scores + 0.5, scores)
    clear = judge_non_inferiority(delong_difference(y, better, scores), 0.01, y)
    assert clear.interval.lower > 0  # better than keeping the champion at the stated confidence
    assert clear.outcome is NonInferiority.NON_INFERIOR


def test_rows_needed_shrink_the_half_width_to_the_distance_from_the_tolerance():
    interval = PairedInterval("accuracy", 0.81, 0.80, 0.01, -0.03, 0.05, 0.02, 0.95, 400, "test")
    y = np.array([0, 1] * 200)
    result = judge_non_inferiority(interval, 0.01, y)
    half_width = z_value(0.95) * 0.02
    assert result.rows_needed == math.ceil(400 * (half_width / 0.02) ** 2) - 400


def test_inconclusive_row_count_is_what_the_interval_needs_to_resolve():
    # Per row: both right 72%, only the candidate 10%, only the champion 7%: a true gain of 0.03.
    tolerance, shares = 0.01, (0.72, 0.10, 0.07, 0.11)
    rng = np.random.default_rng(0)

    def judge(rows):
        kind = rng.choice(4, size=rows, p=shares)
        y = (rng.random(rows) < 0.5).astype(int)
        a, b = as_predictions(y, kind <= 1), as_predictions(y, (kind == 0) | (kind == 2))
        return judge_non_inferiority(paired_bootstrap_difference("accuracy", BINARY, y, a, b), tolerance, y)

    first = judge(300)
    assert first.outcome is NonInferiority.INCONCLUSIVE
    gain, variance = 0.10 - 0.07, 0.10 + 0.07 - 0.03**2
    theory = (z_value(0.95) * math.sqrt(variance) / (gain + tolerance)) ** 2  # about 406 rows
    predicted = 300 + first.rows_needed
    assert theory / 3 <= predicted <= theory * 3
    assert judge(2 * predicted).outcome is NonInferiority.NON_INFERIOR


def test_a_clearly_worse_candidate_is_inferior():
    rng = np.random.default_rng(4)
    y = (rng.random(2000) < 0.5).astype(int)
    good = rng.random(2000) < 0.85
    worse = good & (rng.random(2000) < 0.9)
    result = judge_non_inferiority(
        paired_bootstrap_difference("accuracy", BINARY, y, as_predictions(y, worse), as_predictions(y, good)), 0.01, y)
    assert result.outcome is NonInferiority.INFERIOR


def test_auc_needs_both_classes_and_probabilities():
    y = np.array([1, 0, 0, 0])
    with pytest.raises(ComparisonError, match="at least 2 rows of each class"):
        delong_difference(y, np.arange(4.0), np.arange(4.0))
    with pytest.raises(ComparisonError, match="predict_proba"):
        paired_difference("roc_auc", BINARY, y, (y, None), (y, None))
