"""Tests of the debiased calibration error and the bootstrap interval methods, single and paired."""

from __future__ import annotations

import math
import warnings
from statistics import NormalDist

import numpy as np
import pytest
from conftest import binned_l2_plug_in, loop_debiased_squared_ce

from lm_eval_semcal.core.calibration import (
    INTERVAL_METHODS,
    BootstrapDistribution,
    auroc,
    binned_ece,
    bootstrap_ci,
    bootstrap_distribution,
    brier,
    debiased_l2_ce,
    paired_bootstrap_ci,
    paired_bootstrap_distributions,
    smece,
)

FAST_METRICS = [binned_ece, debiased_l2_ce, brier, auroc]


def grid_corpus(n, slope, start):
    """n questions on the k/50 grid, correct when a fixed pseudo-random draw < slope * conf.

    Plain integer arithmetic, so that the same questions can be rebuilt anywhere (the
    reference numbers below were computed from them in another environment).
    """
    conf, correct = [], []
    for i in range(n):
        k = (37 * i + start) % 50 + 1
        conf.append(k / 50)
        correct.append(1 if (i * 7919 % 101) / 101 < slope * k / 50 else 0)
    return conf, correct


def random_grid(n, seed, slope=1.0, M=50):
    rng = np.random.default_rng(seed)
    conf = rng.integers(1, M + 1, n) / M
    return conf, (rng.random(n) < slope * conf).astype(float)


# ---------------------------------------------------------------------------- debiased CE


def test_debiased_l2_ce_hand_example_with_bin_edges():
    below_01 = 1 - 45 / 50  # 0.09999999999999998: bin 1 thanks to +1e-9
    below_02 = sum([1 / 50] * 10)  # 0.19999999999999998: bin 2, likewise
    assert below_01 < 0.1 and below_02 < 0.2
    pairs = [
        (below_01, 0), (0.1, 1),                 # bin 1: gap 0.1 - 1/2
        (below_02, 0), (0.25, 0), (0.2, 1),      # bin 2: gap 13/60 - 1/3
        (0.3, 1),                                # bin 3: one question, contributes 0
        (0.9, 0), (0.9, 0), (0.9, 0), (1.0, 1),  # bin 9: gap 0.925 - 1/4
    ]
    conf = [c for c, _ in pairs]
    correct = [y for _, y in pairs]
    # Per bin, (n_b / n) * [gap**2 - a (1 - a) / (n_b - 1)], n = 10:
    #   bin 1: 2 * (0.16 - 0.25 / 1)                  = 2 * -0.09    = -0.18
    #   bin 2: 3 * (49/3600 - (2/9) / 2)              = 3 * -0.0975  = -0.2925
    #   bin 9: 4 * (0.675**2 - 0.1875 / 3)            = 4 * 0.393125 =  1.5725
    # S = 1.1 / 10 = 0.11; the L2 error is sqrt(0.11). Without the +1e-9 the two sub-edge
    # values fall one bin low (bin 0 then holds one question, bins 1 and 2 two each) and
    # S = (2 * -0.1275 + 2 * -0.174375 + 1.5725) / 10 = 0.096875.
    squared = bootstrap_distribution(debiased_l2_ce, conf, correct, iters=0).estimate
    assert squared == pytest.approx(0.11, abs=1e-12)
    assert debiased_l2_ce(conf, correct) == pytest.approx(math.sqrt(0.11), abs=1e-12)
    assert debiased_l2_ce(conf, np.array(correct, dtype=bool)) == pytest.approx(
        math.sqrt(0.11), abs=1e-12
    )


# Reference values from Kumar, Liang & Ma's own library (PyPI `uncertainty-calibration`
# 0.1.4, numpy 2.4.6), run once in a scratch venv on `grid_corpus(n, slope, start)`:
#
#     from calibration import utils
#     ours = [b / 10 - 1e-6 for b in range(1, 10)] + [1.0]
#     utils.lower_bound_scaling_ce(p, y, p=2, debias=True, num_bins=10,
#                                  binning_scheme=lambda probs, num_bins: ours)
#     utils.unbiased_square_ce(utils.bin(list(zip(p, y)), ours))
#
# Their equal-width bins are (lo, hi] (np.searchsorted on the upper edges), ours [lo, hi):
# a grid value on an edge (0.1, 0.2, ...) lands one bin apart. Moving their nine inner
# edges down by 1e-6 makes their bins ours on the k/50 grid (no value lies within 1e-6
# below an edge), so the numbers are comparable; each corpus has values on the edges.
KUMAR_REFERENCE = [
    # (n, slope, start, debiased L2 error, unbiased squared error)
    (200, 0.8, 11, 0.10141854280060734, 0.010285720823798625),
    (500, 1.0, 3, 0.0, -0.0031522459622701756),  # calibrated: negative S, clipped
    (60, 0.6, 7, 0.14528483244882287, 0.021107682539682537),
]


@pytest.mark.parametrize("n, slope, start, l2, squared", KUMAR_REFERENCE)
def test_debiased_l2_ce_matches_kumar_library(n, slope, start, l2, squared):
    conf, correct = grid_corpus(n, slope, start)
    assert debiased_l2_ce(conf, correct) == pytest.approx(l2, abs=1e-12)
    estimate = bootstrap_distribution(debiased_l2_ce, conf, correct, iters=0).estimate
    assert estimate == pytest.approx(squared, abs=1e-12)


def test_debiased_l2_ce_matches_kumar_library_with_their_own_bins():
    # Off the bin edges their `get_equal_prob_bins` (10 equal-width bins) and ours agree:
    # `utils.lower_bound_scaling_ce(p, y, p=2, debias=True, num_bins=10,
    # binning_scheme=utils.get_equal_prob_bins)` gave 0.14881166174228402 on these 297
    # questions (same library run as above).
    conf = [((13 * i) % 97 + 0.5) / 97.0 for i in range(300)]
    conf = [c for c in conf if abs(c * 10 - round(c * 10)) > 1e-3]
    correct = [1 if ((i * 31) % 17) / 17 < c**2 else 0 for i, c in enumerate(conf)]
    assert len(conf) == 297
    assert debiased_l2_ce(conf, correct) == pytest.approx(0.14881166174228402, abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n_bins", [10, 7, 15])
def test_debiased_l2_ce_matches_loop(seed, n_bins):
    conf, correct = random_grid(300 + 400 * seed, seed, slope=1.0 - 0.1 * seed)
    squared = loop_debiased_squared_ce(conf, correct, n_bins)
    assert debiased_l2_ce(conf, correct, n_bins=n_bins) == pytest.approx(
        math.sqrt(max(squared, 0.0)), abs=1e-12
    )


def test_debiased_squared_error_is_unbiased_where_plug_in_ece_is_not():
    # A calibrated world on the k/50 grid at n = 300: the squared binned error is 0. The
    # debiased S averages 0 over corpora (its standard error here is about 3e-4); the
    # plug-in ECE averages about 0.04.
    squared, plug_in = [], []
    for seed in range(200):
        conf, correct = random_grid(300, seed)
        squared.append(bootstrap_distribution(debiased_l2_ce, conf, correct, iters=0).estimate)
        plug_in.append(binned_ece(conf, correct))
    assert abs(np.mean(squared)) < 3 * np.std(squared) / math.sqrt(len(squared))
    assert np.mean(plug_in) > 0.03


@pytest.mark.parametrize(
    "conf, correct, match",
    [
        ([0.5, 0.5], [1], "different lengths"),
        ([], [], "empty input"),
        ([0.5, 1.2], [1, 0], r"must lie in \[0, 1\]"),
        ([0.5, 0.5], [1, 2], "correct must be 0/1 or bool"),
    ],
)
def test_debiased_l2_ce_validates_input(conf, correct, match):
    with pytest.raises(ValueError, match=match):
        debiased_l2_ce(conf, correct)


# ---------------------------------------------------------------------------- methods


def test_interval_formulas_on_a_known_distribution():
    # Resamples 1..101, target 51 (their median), estimate 50.
    resamples = np.arange(1.0, 102.0)
    dist = BootstrapDistribution(estimate=50.0, target=51.0, resamples=resamples)
    q_low, q_high = np.percentile(resamples, [2.5, 97.5])  # 3.5, 98.5
    assert dist.interval("percentile") == pytest.approx((q_low - 1, q_high - 1))
    # basic: estimate - (q(1-a) - target), estimate - (q(a) - target)
    assert dist.interval("basic") == pytest.approx((50 - (q_high - 51), 50 - (q_low - 51)))
    # bc: 50 of 101 below the target, 1 tie -> share 50.5/101 = 0.5, z0 = 0: percentile.
    assert dist.interval("bc") == pytest.approx(dist.interval("percentile"))


def test_bc_interval_moves_towards_the_side_resamples_undershoot():
    resamples = np.arange(1.0, 101.0)
    dist = BootstrapDistribution(estimate=80.0, target=80.0, resamples=resamples)
    share = (79 + 0.5) / 100  # 79 below 80, one tie
    normal = NormalDist()
    z0, z = normal.inv_cdf(share), normal.inv_cdf(0.025)
    levels = [100 * normal.cdf(2 * z0 + z), 100 * normal.cdf(2 * z0 - z)]
    assert dist.interval("bc") == pytest.approx(tuple(np.percentile(resamples, levels)))
    assert dist.interval("bc")[0] > dist.interval("percentile")[0]


def test_bc_share_is_clipped_when_every_resample_lies_above():
    dist = BootstrapDistribution(estimate=0.0, target=0.0, resamples=np.linspace(1, 2, 50))
    low, high = dist.interval("bc")
    assert 1.0 <= low <= high <= 2.0


def test_report_and_bounds_map_the_endpoints():
    dist = BootstrapDistribution(
        estimate=0.01, target=0.02, resamples=np.linspace(-0.03, 0.07, 11),
        report=lambda s: np.sqrt(np.maximum(s, 0.0)), bounds=(0.0, 1.0),
    )
    low, high = dist.interval("percentile")
    shifted = np.percentile(np.linspace(-0.03, 0.07, 11), [2.5, 97.5]) - 0.01
    assert (low, high) == pytest.approx((0.0, math.sqrt(shifted[1])))
    assert dist.value == pytest.approx(0.1)


def test_no_resamples_give_nan():
    dist = BootstrapDistribution(estimate=0.1, target=0.1, resamples=np.empty(0))
    for method in INTERVAL_METHODS:
        assert all(math.isnan(x) for x in dist.interval(method))


@pytest.mark.parametrize("method", ["bca", "Percentile", None])
def test_bootstrap_rejects_unknown_method(method):
    with pytest.raises(ValueError, match="method must be one of percentile, basic, bc"):
        bootstrap_ci(brier, [0.5, 0.7], [1, 0], method=method)
    with pytest.raises(ValueError, match="method must be one of percentile, basic, bc"):
        paired_bootstrap_ci(brier, [0.5, 0.7], [1, 0], [0.5, 0.7], [1, 0], method=method)


@pytest.mark.parametrize("metric", FAST_METRICS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("method", INTERVAL_METHODS)
def test_bootstrap_ci_is_the_distribution_interval(metric, method):
    conf, correct = random_grid(400, 1, slope=0.8)
    dist = bootstrap_distribution(metric, conf, correct, iters=300, seed=5)
    assert bootstrap_ci(metric, conf, correct, iters=300, seed=5, method=method) == dist.interval(
        method
    )
    assert dist.value == pytest.approx(metric(conf, correct), abs=1e-12)


def test_debiased_interval_follows_documented_construction():
    # The resamples of S scatter around the plug-in squared error of the observed
    # questions; the interval is their percentiles shifted by (S - plug-in), then rooted.
    conf, correct = random_grid(500, 3, slope=0.9)
    atoms, counts = np.unique(np.column_stack([conf, correct]), axis=0, return_counts=True)
    draws = np.random.default_rng(4).multinomial(500, counts / 500, size=200)
    resampled = [
        loop_debiased_squared_ce(np.repeat(atoms[:, 0], row), np.repeat(atoms[:, 1], row))
        for row in draws
    ]
    estimate = loop_debiased_squared_ce(conf, correct)
    plug_in = binned_l2_plug_in(conf, correct)
    low, high = np.percentile(resampled, [2.5, 97.5]) + estimate - plug_in
    expected = (math.sqrt(max(low, 0.0)), math.sqrt(max(high, 0.0)))
    got = bootstrap_ci(debiased_l2_ce, conf, correct, iters=200, seed=4)
    assert got == pytest.approx(expected, abs=1e-12)


def test_basic_interval_is_clipped_at_zero_for_calibration_error():
    conf, correct = random_grid(3000, 0)
    low, high = bootstrap_ci(binned_ece, conf, correct, method="basic")
    assert low == 0.0 < high


# ---------------------------------------------------------------------------- paired


def paired_sample(n, seed):
    """Two models on the same n questions, correct when a shared difficulty is low."""
    rng = np.random.default_rng(seed)
    difficulty = rng.random(n)
    conf_a = rng.integers(1, 51, n) / 50
    conf_b = rng.integers(1, 51, n) / 50
    correct_a = (difficulty < conf_a).astype(float)
    return conf_a, correct_a, conf_b, (difficulty < 0.8 * conf_b).astype(float)


@pytest.mark.parametrize("metric", FAST_METRICS, ids=lambda f: f.__name__)
def test_paired_difference_is_the_difference_of_metrics(metric):
    conf_a, correct_a, conf_b, correct_b = paired_sample(500, 1)
    difference, low, high = paired_bootstrap_ci(
        metric, conf_a, correct_a, conf_b, correct_b, iters=200
    )
    expected = metric(conf_a, correct_a) - metric(conf_b, correct_b)
    assert difference == pytest.approx(expected, abs=1e-12)
    assert low <= difference <= high


@pytest.mark.parametrize("metric", [binned_ece, brier, auroc], ids=lambda f: f.__name__)
def test_paired_fast_path_equals_generic_path(metric):
    sample = paired_sample(400, 2)
    generic = lambda c, y: metric(c, y)  # a wrapper is not in the fast table
    for method in INTERVAL_METHODS:
        fast = paired_bootstrap_ci(metric, *sample, iters=100, seed=3, method=method)
        slow = paired_bootstrap_ci(generic, *sample, iters=100, seed=3, method=method)
        assert fast == pytest.approx(slow, abs=1e-12, rel=0)


def test_paired_bootstrap_follows_documented_draws():
    # counts ~ multinomial(n, counts / n) over the distinct (conf_a, correct_a, conf_b,
    # correct_b) tuples sorted lexicographically; each model scored on its questions.
    conf_a, correct_a, conf_b, correct_b = paired_sample(300, 4)
    tuples, counts = np.unique(
        np.column_stack([conf_a, correct_a, conf_b, correct_b]), axis=0, return_counts=True
    )
    draws = np.random.default_rng(9).multinomial(300, counts / 300, size=50)
    differences = [
        brier(np.repeat(tuples[:, 0], row), np.repeat(tuples[:, 1], row))
        - brier(np.repeat(tuples[:, 2], row), np.repeat(tuples[:, 3], row))
        for row in draws
    ]
    paired = paired_bootstrap_distributions(brier, conf_a, correct_a, conf_b, correct_b, 50, 9)
    assert paired.difference.resamples == pytest.approx(differences, abs=1e-12)
    assert paired.a.value == pytest.approx(brier(conf_a, correct_a), abs=1e-12)
    assert paired.b.value == pytest.approx(brier(conf_b, correct_b), abs=1e-12)


def test_paired_interval_of_a_model_against_itself_is_zero():
    conf, correct, _, _ = paired_sample(300, 5)
    for metric in FAST_METRICS + [smece]:
        iters = 20 if metric is smece else 200
        assert paired_bootstrap_ci(metric, conf, correct, conf, correct, iters) == (0.0, 0.0, 0.0)


def test_pairing_narrows_the_interval_when_correctness_is_shared():
    # Same confidences, correctness driven by the same difficulty: the models differ by
    # a small shift, and the paired interval is much narrower than the two unpaired.
    rng = np.random.default_rng(6)
    conf = rng.integers(1, 51, 2000) / 50
    difficulty = rng.random(2000)
    correct_a = (difficulty < conf).astype(float)
    correct_b = (difficulty < conf - 0.05).astype(float)
    _, low, high = paired_bootstrap_ci(brier, conf, correct_a, conf, correct_b)
    low_a, high_a = bootstrap_ci(brier, conf, correct_a)
    low_b, high_b = bootstrap_ci(brier, conf, correct_b)
    assert 3 * (high - low) < (high_a - low_a) + (high_b - low_b)


def test_paired_resamples_with_nan_are_dropped_with_a_warning():
    conf = np.linspace(0.1, 0.9, 15)
    correct_a = np.zeros(15)
    correct_a[7] = 1
    correct_b = (conf > 0.5).astype(float)
    with pytest.warns(RuntimeWarning, match=r"NaN on \d+ of 200 bootstrap resamples"):
        difference, low, high = paired_bootstrap_ci(auroc, conf, correct_a, conf, correct_b, 200)
    assert low <= difference <= high


def test_paired_zero_iters_gives_the_difference_alone():
    a, b = ([0.5, 0.7], [1, 0]), ([0.5, 0.9], [1, 1])
    difference, low, high = paired_bootstrap_ci(brier, *a, *b, iters=0)
    assert difference == pytest.approx(brier(*a) - brier(*b), abs=1e-15)
    assert math.isnan(low) and math.isnan(high)


@pytest.mark.parametrize(
    "args, match",
    [
        (([0.5, 0.7], [1, 0], [0.5], [1]), "model a and model b have different numbers of"),
        (([0.5, 0.7], [1], [0.5, 0.7], [1, 0]), "different lengths"),
        (([0.5, 0.7], [1, 0], [0.5, 1.7], [1, 0]), r"must lie in \[0, 1\]"),
        (([], [], [], []), "empty input"),
    ],
)
def test_paired_validates_input(args, match):
    with pytest.raises(ValueError, match=match):
        paired_bootstrap_ci(brier, *args)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"level": 1.0}, "level must lie strictly between 0 and 1"),
        ({"iters": -1}, "iters must be a non-negative integer"),
        ({"iters": 2.0}, "iters must be a non-negative integer"),
    ],
)
def test_paired_rejects_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        paired_bootstrap_ci(brier, [0.5, 0.7], [1, 0], [0.5, 0.7], [1, 0], **kwargs)


def test_paired_rejects_non_callable_metric():
    with pytest.raises(ValueError, match="metric must be a callable"):
        paired_bootstrap_ci("ece", [0.5], [1], [0.5], [1])


def test_paired_bootstrap_is_fast_on_the_fast_path():
    # 3000 questions, 1000 resamples, both models: the joint atoms are at most n.
    import time

    conf_a, correct_a, conf_b, correct_b = paired_sample(3000, 7)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paired_bootstrap_ci(binned_ece, conf_a, correct_a, conf_b, correct_b, iters=1000)
    assert time.perf_counter() - start < 5.0


def test_smece_resamples_follow_relplots_option_as_it_is_when_called(monkeypatch):
    # The weighted smECE mirrors relplot's default smoother; with relplot's logit scaling
    # switched on after import, bootstrap_ci must resample relplot's own estimator, as the
    # generic path (a metric it does not know) does, not the mirror of the default.
    import relplot

    conf, correct = grid_corpus(60, 0.9, 3)
    monkeypatch.setattr(relplot.config, "use_logit_scaling", True)
    through_relplot = bootstrap_ci(lambda c, y: smece(c, y), conf, correct, iters=40, seed=3)
    assert bootstrap_ci(smece, conf, correct, iters=40, seed=3) == pytest.approx(through_relplot, abs=1e-12)
    assert paired_bootstrap_ci(smece, conf, correct, conf[::-1], correct[::-1], iters=40, seed=3) == pytest.approx(
        paired_bootstrap_ci(lambda c, y: smece(c, y), conf, correct, conf[::-1], correct[::-1], iters=40, seed=3),
        abs=1e-12,
    )
