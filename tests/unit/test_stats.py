from __future__ import annotations

import numpy as np
import pytest

from steward.stats import (
    distribution_shift,
    proportion_difference,
    proportion_increase_test,
    quantile_ratio,
    sample_ratio_mismatch,
    samples_needed_for_means,
    samples_needed_for_proportions,
    sequential_means,
    sequential_proportions,
    welch_difference,
)


def test_error_rate_increase_is_detected_only_when_real():
    worse = proportion_increase_test(60, 1000, 10, 1000, margin=0.01)
    assert worse.p_value < 0.001 and worse.difference == pytest.approx(0.05)
    assert worse.ci_low > 0
    same = proportion_increase_test(11, 1000, 10, 1000, margin=0.01)
    assert same.p_value > 0.5


def test_two_sided_proportions_and_welch():
    result = proportion_difference(550, 1000, 500, 1000)
    assert result.p_value < 0.05 and result.ci_low > 0
    rng = np.random.default_rng(1)
    welch = welch_difference(rng.normal(1.2, 1, 400), rng.normal(1.0, 3, 400))
    assert welch.ci_low < 0.2 < welch.ci_high


def test_quantile_ratio_interval_covers_truth():
    rng = np.random.default_rng(2)
    control = rng.lognormal(1.0, 0.3, 3000)
    slower = control * 2 + rng.normal(0, 0.01, 3000)
    estimate = quantile_ratio(slower, control, resamples=500)
    assert 1.8 < estimate.ci_low <= estimate.ratio <= estimate.ci_high < 2.2


def test_distribution_shift():
    rng = np.random.default_rng(3)
    assert distribution_shift(rng.beta(2, 5, 2000), rng.beta(2, 5, 2000)).p_value > 0.001
    assert distribution_shift(rng.beta(5, 2, 2000), rng.beta(2, 5, 2000)).statistic > 0.3


def test_sample_ratio_mismatch():
    assert not sample_ratio_mismatch([5030, 4970], [0.5, 0.5]).mismatch
    broken = sample_ratio_mismatch([5400, 4600], [0.5, 0.5])
    assert broken.mismatch and "MISMATCH" in broken.describe()
    assert not sample_ratio_mismatch([9010, 990], [0.9, 0.1]).mismatch
    assert not sample_ratio_mismatch([0, 0], [0.5, 0.5]).mismatch


def test_sequential_test_keeps_its_error_rate_under_peeking():
    """A/A experiments analysed at 20 looks each: the always-valid p-value must not inflate false positives,
    while a naive fixed-sample test at every look does."""
    rng = np.random.default_rng(4)
    experiments, looks, per_look, alpha = 400, 20, 100, 0.05
    sequential_false, naive_false = 0, 0
    for _ in range(experiments):
        a = rng.binomial(1, 0.1, looks * per_look)
        b = rng.binomial(1, 0.1, looks * per_look)
        p_seq, naive_hit, seq_hit = 1.0, False, False
        for look in range(1, looks + 1):
            n = look * per_look
            result = sequential_proportions(int(b[:n].sum()), n, int(a[:n].sum()), n, minimum_effect=0.02,
                                            previous_p_value=p_seq)
            p_seq = result.p_value
            seq_hit |= result.significant
            naive_hit |= proportion_difference(int(b[:n].sum()), n, int(a[:n].sum()), n).p_value < alpha
        sequential_false += seq_hit
        naive_false += naive_hit
    assert sequential_false / experiments <= alpha
    assert naive_false / experiments > 2 * alpha  # peeking with a fixed-sample test inflates errors


def test_sequential_test_finds_a_real_difference():
    rng = np.random.default_rng(5)
    a, b = rng.binomial(1, 0.10, 6000), rng.binomial(1, 0.14, 6000)
    result = sequential_proportions(int(b.sum()), 6000, int(a.sum()), 6000, minimum_effect=0.02)
    assert result.significant and result.ci_low > 0
    means = sequential_means(rng.normal(0.3, 1, 3000), rng.normal(0, 1, 3000), minimum_effect=0.1)
    assert means.significant


def test_sample_size():
    assert 3000 < samples_needed_for_proportions(0.10, 0.02) < 4500
    assert samples_needed_for_means(1.0, 0.1) == pytest.approx(1570, rel=0.02)
    with pytest.raises(ValueError, match="non-zero"):
        samples_needed_for_proportions(0.1, 0.0)
