"""Tests of the calibration test's power analysis (lm_eval_semcal.core.power)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from lm_eval_semcal.core import power as power_module
from lm_eval_semcal.core.calibration import calibration_test, detectable_overconfidence, questions_needed


def grid_confidences(n, seed, grid=50):
    """n confidences on the k/grid grid (k = 1..grid)."""
    return np.random.default_rng(seed).integers(1, grid + 1, n) / grid


def exact_one_level_power(n, c, shift, alpha=0.05):
    """The power of an ECE test of n questions at one confidence c, from binomial
    distributions: the null's critical value is the least gap x with P(|c - K/n| > x) <=
    alpha, K ~ Binomial(n, c), and the power is P(|c - K'/n| > x), K' ~ Binomial(n, c - shift)."""
    k = np.arange(n + 1)
    gaps = np.abs(c - k / n)
    values, value_of = np.unique(gaps, return_inverse=True)
    mass = np.bincount(value_of, weights=scipy.stats.binom.pmf(k, n, c))
    beyond = mass[::-1].cumsum()[::-1] - mass  # P(gap > each value)
    critical = values[np.argmax(beyond <= alpha)]
    return scipy.stats.binom.pmf(k, n, c - shift)[gaps > critical].sum()


def exact_one_level_shift(n, c, wanted=0.8):
    low, high = 0.0, c
    for _ in range(40):
        middle = (low + high) / 2
        low, high = (low, middle) if exact_one_level_power(n, c, middle) >= wanted else (middle, high)
    return high


def test_the_detectable_shift_of_one_level_matches_the_binomial_calculation():
    exact = exact_one_level_shift(10_000, 0.8)  # 0.01129
    found = detectable_overconfidence([0.8] * 10_000, metric="ece", iters=999, tolerance=0.0001)
    assert found.overconfidence == pytest.approx(exact, abs=0.0006)
    assert found.achieved_power >= 0.8
    assert (found.metric, found.n, found.iters, found.power, found.alpha) == ("ece", 10_000, 999, 0.8, 0.05)


def test_the_detectable_shift_is_detected_as_often_as_it_says():
    # The shift found for 1,000 questions on the k/50 grid, checked by running the test itself
    # on 300 runs drawn question by question at that shift (and at half of it).
    conf = grid_confidences(1000, 4)
    found = detectable_overconfidence(conf, metric="ece", iters=399, tolerance=0.0005)
    rng = np.random.default_rng(99)

    def rejected_share(shift):
        rejections = 0
        for _ in range(300):
            correct = (rng.random(1000) < np.clip(conf - shift, 0, 1)).astype(float)
            rejections += calibration_test(conf, correct, metric="ece", iters=399, seed=0).p_value <= 0.05
        return rejections / 300

    # Standard errors of a share near 0.8: 0.020 over the 399 runs of the search, 0.023 here.
    assert rejected_share(found.overconfidence) == pytest.approx(0.8, abs=0.08)
    assert rejected_share(found.overconfidence / 2) < 0.5


def test_a_run_four_times_larger_detects_about_half_the_shift():
    conf = grid_confidences(1000, 6)
    small = detectable_overconfidence(conf, metric="debiased_l2_ce", iters=400).overconfidence
    large = detectable_overconfidence(np.tile(conf, 4), metric="debiased_l2_ce", iters=400).overconfidence
    assert 0.4 <= large / small <= 0.6


def test_a_shift_too_large_for_the_run_is_reported_as_none():
    found = detectable_overconfidence([0.1, 0.2], metric="ece", iters=99)
    assert found.overconfidence is None and found.achieved_power is None


def test_questions_needed_matches_the_binomial_calculation():
    # One level at 0.8, shift 0.02: the least n whose exact power reaches 0.8.
    low, high = 100, 20_000
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if exact_one_level_power(middle, 0.8, 0.02) >= 0.8 else (middle, high)
    needed = questions_needed([0.8] * 7, 0.02, metric="ece", iters=999)
    assert needed.questions == pytest.approx(high, rel=0.08)
    assert needed.achieved_power >= 0.8
    assert (needed.metric, needed.overconfidence, needed.tolerance) == ("ece", 0.02, 0.01)


def test_questions_needed_agrees_with_the_detectable_shift():
    # Both simulate with the same uniforms: a run of the questions needed for a shift of
    # 0.03, in the pilot's proportions, detects 0.03 (to the bisection's tolerance); a run
    # a tenth smaller does not.
    pilot = grid_confidences(500, 7)
    levels, counts = np.unique(pilot, return_counts=True)
    needed = questions_needed(pilot, 0.03, metric="ece", iters=400)
    enough = np.repeat(levels, power_module._apportioned(needed.questions, counts))
    fewer = np.repeat(levels, power_module._apportioned(int(0.9 * needed.questions), counts))
    assert detectable_overconfidence(enough, metric="ece", iters=400).overconfidence <= 0.03 + 0.001
    assert detectable_overconfidence(fewer, metric="ece", iters=400).overconfidence > 0.03
    assert questions_needed(pilot, 0.001, metric="ece", iters=99, max_questions=200).questions is None


def test_the_pilot_proportions_are_apportioned_by_largest_remainder():
    assert power_module._apportioned(7, np.array([1, 1, 1])).tolist() == [3, 2, 2]
    assert power_module._apportioned(10, np.array([5, 3, 2])).tolist() == [5, 3, 2]
    assert power_module._apportioned(4, np.array([6, 3, 1])).tolist() == [2, 1, 1]  # 2.4, 1.2, 0.4
    shares = np.random.default_rng(0).integers(1, 9, 50)
    assert all(power_module._apportioned(n, shares).sum() == n for n in (1, 17, 100, 12345))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"metric": "auroc"}, "metric must be one of"),
        ({"power": 0.04}, "power must lie strictly between 0.05 and 1"),
        ({"power": 1.0}, "power must lie strictly between 0.05 and 1"),
        ({"alpha": 0.0}, "alpha must lie strictly between 0 and 1"),
        ({"iters": 10}, r"with iters=10 calibrated draws no p-value reaches alpha=0.05; draw at least 19"),
        ({"tolerance": 0}, "tolerance must be a positive number"),
    ],
)
def test_the_power_functions_reject_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        detectable_overconfidence([0.5, 0.7], **kwargs)
    with pytest.raises(ValueError, match=match):
        questions_needed([0.5, 0.7], 0.05, **kwargs)


def test_the_power_functions_validate_their_confidences():
    with pytest.raises(ValueError, match="confidence must be 1-D"):
        detectable_overconfidence([[0.5, 0.7]])
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        questions_needed([0.5, 1.5], 0.05)
    with pytest.raises(ValueError, match=r"overconfidence must be a shift in \(0, 1\]"):
        questions_needed([0.5, 0.7], 0.0)
