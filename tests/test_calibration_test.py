"""Tests of the calibration test (lm_eval_semcal.core.consistency_resampling)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import relplot
import scipy.stats
from conftest import hand_ece, loop_debiased_squared_ce

from lm_eval_semcal.core.calibration import (
    binned_ece,
    calibration_test,
    debiased_l2_ce,
    smece,
)
from lm_eval_semcal.core.consistency_resampling import _TIE_TOLERANCE, _critical_value, _VerdictDraws


def grid_run(n, seed, grid=50, shift=0.0):
    """n questions on the k/grid grid (k = 1..grid), right with probability clip(conf - shift)."""
    rng = np.random.default_rng(seed)
    conf = rng.integers(1, grid + 1, n) / grid
    return conf, (rng.random(n) < np.clip(conf - shift, 0, 1)).astype(float)


def documented_calibrated_runs(conf, iters, seed):
    """The calibrated runs as calibration_test documents drawing them, each expanded back to
    one (confidence, correct) pair per question: per distinct confidence c (increasing) of
    n_c questions, binom.ppf(u, n_c, c) right ones, u uniform on (0, 1) from default_rng(seed)."""
    levels, questions = np.unique(conf, return_counts=True)
    uniforms = np.random.default_rng(seed).uniform(np.finfo(float).smallest_subnormal, 1.0, (iters, len(levels)))
    runs = []
    for right in scipy.stats.binom.ppf(uniforms, questions, levels).astype(int):
        run_conf = np.repeat(levels, questions)
        run_correct = np.concatenate([[1.0] * k + [0.0] * (n - k) for k, n in zip(right, questions)])
        runs.append((run_conf, run_correct))
    return runs


# Each metric question by question (relplot for smECE), on the scale the test compares:
# the debiased squared error before its root.
BY_HAND = {
    "smece": lambda c, y: float(relplot.smECE(c, y)),
    "ece": lambda c, y: hand_ece(list(zip(c, y))),
    "debiased_l2_ce": loop_debiased_squared_ce,
}
ON_METRIC_SCALE = {"smece": lambda v: v, "ece": lambda v: v, "debiased_l2_ce": lambda v: math.sqrt(max(v, 0.0))}


@pytest.mark.parametrize("metric", ["smece", "ece", "debiased_l2_ce"])
def test_the_test_follows_its_documented_draws_scored_on_the_questions(metric):
    # 300 questions on a k/20 grid, overconfident by 0.05; some levels are all right or all
    # wrong, so some atoms of the draws hold no question.
    conf, correct = grid_run(300, 2, grid=20, shift=0.05)
    iters, seed = 19, 3
    null = [BY_HAND[metric](c, y) for c, y in documented_calibrated_runs(conf, iters, seed)]
    levels, level_of = np.unique(conf, return_inverse=True)
    draws = _VerdictDraws(metric, levels, np.bincount(level_of))
    got_null = draws.draws(np.random.default_rng(seed), levels, iters)
    # Each draw scored on atom weights is the metric of its questions.
    assert got_null == pytest.approx(null, abs=1e-12, rel=0)
    observed = BY_HAND[metric](conf, correct)
    result = calibration_test(conf, correct, metric=metric, iters=iters, seed=seed)
    reported = [ON_METRIC_SCALE[metric](v) for v in null]
    assert result.metric == metric and result.iters == iters and result.n == 300
    assert result.observed == pytest.approx(ON_METRIC_SCALE[metric](observed), abs=1e-12)
    assert result.p_value == (1 + sum(v >= observed - 1e-12 for v in null)) / (iters + 1)
    assert result.median == pytest.approx(float(np.median(reported)), abs=1e-12)
    assert result.null_high == pytest.approx(float(np.percentile(reported, 95)), abs=1e-12)


def test_the_observed_value_is_the_metric():
    conf, correct = grid_run(2000, 5, shift=0.03)
    assert calibration_test(conf, correct, "smece", iters=20).observed == pytest.approx(smece(conf, correct), abs=1e-12)
    assert calibration_test(conf, correct, "ece", iters=20).observed == pytest.approx(binned_ece(conf, correct), abs=1e-15)
    debiased = calibration_test(conf, correct, "debiased_l2_ce", iters=20).observed
    assert debiased == pytest.approx(debiased_l2_ce(conf, correct), abs=1e-15)


def test_the_draws_are_binomial():
    # One level of 10 questions stated at confidence 0, right with probability 0.3: a
    # draw's ECE is its share of right answers, k/10. 20,000 draws against the pmf.
    draws = _VerdictDraws("ece", np.array([0.0]), np.array([10]))
    right = np.round(10 * draws.draws(np.random.default_rng(0), np.array([0.3]), 20_000)).astype(int)
    frequencies = np.bincount(right, minlength=11) / 20_000
    assert frequencies == pytest.approx(scipy.stats.binom.pmf(np.arange(11), 10, 0.3), abs=0.01)
    # Accuracy 0 and 1 give no right answer and all right, whatever the uniform.
    assert set(draws.draws(np.random.default_rng(1), np.array([0.0]), 500).tolist()) == {0.0}
    assert set(draws.draws(np.random.default_rng(1), np.array([1.0]), 500).tolist()) == {1.0}


@pytest.mark.parametrize("metric", ["ece", "debiased_l2_ce"])
def test_a_calibrated_model_is_rejected_about_alpha_of_the_time(metric):
    # 400 calibrated runs of 200 questions on a k/10 grid. A Monte Carlo p-value with the +1
    # satisfies P(p <= a) <= a; ties (a discrete metric) make it conservative.
    p_values = []
    for corpus in range(400):
        conf, correct = grid_run(200, corpus, grid=10)
        p_values.append(calibration_test(conf, correct, metric=metric, iters=199, seed=corpus).p_value)
    p_values = np.array(p_values)
    # Standard errors at 400 runs: 0.011 at 5%, 0.020 at 20%, 0.025 at 50%.
    assert 0.01 <= np.mean(p_values <= 0.05) <= 0.085
    assert 0.13 <= np.mean(p_values <= 0.2) <= 0.26
    assert 0.42 <= np.mean(p_values <= 0.5) <= 0.58


def test_an_overconfident_model_is_rejected():
    conf, correct = grid_run(3000, 1, shift=0.05)
    for metric in ("smece", "ece", "debiased_l2_ce"):
        result = calibration_test(conf, correct, metric=metric, iters=200)
        assert result.p_value == 1 / 201, metric
        assert result.observed > result.null_high, metric


def test_the_critical_value_rejects_exactly_where_the_p_value_reaches_alpha():
    rng = np.random.default_rng(0)
    for iters, alpha in [(19, 0.05), (199, 0.05), (99, 0.29), (1000, 0.01), (50, 0.1)]:
        # A discrete null (ties), observed values on it, beside it and within the tolerance.
        null = rng.integers(0, 30, iters) / 29
        critical = _critical_value(null, alpha)
        for observed in np.r_[null, null + 1e-13, null - 1e-13, rng.random(50)]:
            p_value = (1 + np.count_nonzero(null >= observed - _TIE_TOLERANCE)) / (iters + 1)
            assert (p_value <= alpha) == (observed > critical + _TIE_TOLERANCE), (iters, alpha, observed)
    assert _critical_value(np.zeros(9), 0.05) is None  # 1/10 > 0.05: never rejects


def test_the_test_of_17944_questions_takes_seconds():
    conf, correct = grid_run(17_944, 8)
    start = time.perf_counter()
    result = calibration_test(conf, correct, metric="smece", iters=1000)
    assert time.perf_counter() - start < 15.0
    assert result.median < result.null_high < 0.02 and result.n == 17_944


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"metric": "brier"}, "metric must be one of smece, ece, debiased_l2_ce"),
        ({"metric": binned_ece}, "metric must be one of smece, ece, debiased_l2_ce"),
        ({"iters": 0}, "iters must be an integer of at least 1"),
        ({"iters": 10.0}, "iters must be an integer of at least 1"),
        ({"seed": -1}, "seed must be an integer of at least 0"),
    ],
)
def test_the_test_rejects_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        calibration_test([0.5, 0.7], [1, 0], **kwargs)


def test_the_test_validates_its_input():
    with pytest.raises(ValueError, match="different lengths"):
        calibration_test([0.5, 0.7], [1])
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        calibration_test([0.5, 7], [1, 0])
