"""Tests of lm_eval_semcal.core.calibration: corpus metrics and their bootstrap intervals."""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from fractions import Fraction

import numpy as np
import pytest
import relplot
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from lm_eval_semcal.core import bootstrap, smece_kernel
from lm_eval_semcal.core.atoms import _atoms
from lm_eval_semcal.core.calibration import (
    accuracy,
    auroc,
    binned_ece,
    bootstrap_ci,
    brier,
    debiased_l2_ce,
    mean_confidence,
    smece,
)

FAST_METRICS = [accuracy, mean_confidence, binned_ece, brier, auroc]
ALL_METRICS = FAST_METRICS + [smece]


def grid_sample(n, M=50, seed=0, shift=0.0):
    """n questions with confidence k/M (k = 1..M), correct ~ Bernoulli(conf - shift)."""
    rng = np.random.default_rng(seed)
    conf = rng.integers(1, M + 1, n) / M
    correct = (rng.random(n) < np.clip(conf - shift, 0.0, 1.0)).astype(float)
    return conf, correct


def loop_binned_ece(conf, correct, n_bins=10):
    """The formula of docs/metrics.md, question by question."""
    members = defaultdict(list)
    for c, y in zip(conf, correct):
        members[min(math.floor(c * n_bins + 1e-9), n_bins - 1)].append((c, y))
    total = 0.0
    for pairs in members.values():
        mean_c = math.fsum(c for c, _ in pairs) / len(pairs)
        mean_y = math.fsum(y for _, y in pairs) / len(pairs)
        total += len(pairs) / len(conf) * abs(mean_c - mean_y)
    return total


# ---------------------------------------------------------------------------- binned ECE


def test_binned_ece_hand_example_with_bin_edges():
    # (confidence, correct); bins of width 0.1, [lo, hi), the last one holding 1.0.
    below_01 = 1 - 45 / 50  # 0.09999999999999998: lands in bin 1 only thanks to +1e-9
    below_02 = sum([1 / 50] * 10)  # 0.19999999999999998: bin 2, likewise
    assert below_01 < 0.1 and below_02 < 0.2
    pairs = [
        (0.0, 0), (0.05, 1),                              # bin 0
        (0.1, 0), (below_01, 1),                          # bin 1
        (below_02, 0),                                    # bin 2
        (3 / 10, 1), (15 / 50, 0), (0.1 + 0.2, 1),        # bin 3 (0.1+0.2 is 0.30000000000000004)
        (35 / 50, 1), (0.75, 1),                          # bin 7
        (1.0, 0), (0.9, 1),                               # bin 9
    ]
    conf = np.array([c for c, _ in pairs])
    correct = np.array([y for _, y in pairs])
    # n = 12; (n_b/n) * |mean conf - mean correct| = |sum conf - sum correct| / n per bin:
    #   bin 0: |0.05 - 1| = 0.95      bin 1: |0.2 - 1| = 0.8      bin 2: |0.2 - 0| = 0.2
    #   bin 3: |0.9 - 2|  = 1.1       bin 7: |1.45 - 2| = 0.55    bin 9: |1.9 - 1| = 0.9
    # ECE = (0.95 + 0.8 + 0.2 + 1.1 + 0.55 + 0.9) / 12 = 4.5 / 12 = 0.375.
    # Without +1e-9 the two sub-edge values fall one bin low: 4.7 / 12; with 1.0 in an
    # eleventh bin of its own: 4.7 / 12 as well; with (lo, hi] bins: yet another value.
    assert binned_ece(conf, correct) == pytest.approx(0.375, abs=1e-12)
    assert binned_ece(conf, correct.astype(bool)) == pytest.approx(0.375, abs=1e-12)


def test_binned_ece_other_bin_counts():
    conf = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    correct = np.array([1, 0, 1, 0, 1])
    # One bin: |2.5 - 3| / 5 = 0.1.
    assert binned_ece(conf, correct, n_bins=1) == pytest.approx(0.1, abs=1e-12)
    # Two bins [0, 0.5) and [0.5, 1]: (|0.25 - 1| + |2.25 - 2|) / 5 = 1.0 / 5 = 0.2.
    assert binned_ece(conf, correct, n_bins=2) == pytest.approx(0.2, abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("n_bins", [10, 7, 15])
def test_binned_ece_matches_loop_on_grid(seed, n_bins):
    conf, correct = grid_sample(2000, M=50, seed=seed, shift=0.05 * seed)
    assert binned_ece(conf, correct, n_bins=n_bins) == pytest.approx(
        loop_binned_ece(conf, correct, n_bins), abs=1e-12
    )


# ---------------------------------------------------------------------------- other metrics


# smece's input validation (shape, empty, NaN, range, non-binary, dtype) is checked with
# every other metric in test_input_validation below.


@pytest.mark.parametrize(
    "conf, correct",
    [
        ([1.0] * 5, [1] * 5),
        ([0.0] * 4, [0] * 4),
        ([0.5] * 6, [1, 0] * 3),
        ([0.25] * 4, [1, 0, 0, 0]),
        ([0.0, 0.0, 1.0, 1.0, 1.0], [False, False, True, True, True]),
    ],
)
def test_smece_is_zero_when_every_confidence_level_is_exactly_right(conf, correct):
    # Accuracy at each confidence equals that confidence: the residual conf - correct
    # sums to 0 at every point, so every smoothed residual is 0.
    assert smece(conf, correct) == 0.0


@pytest.mark.parametrize("c", [0.0, 0.3, 0.8])
def test_smece_of_one_confidence_level_is_its_gap(c):
    # All questions at confidence c: E[conf - correct | conf = c] is c - acc wherever the
    # smoother puts mass, so smECE is |c - acc| (to within relplot's 1e-4 density floor).
    assert smece([c] * 10, [1] * 10) == pytest.approx(1.0 - c, abs=1e-4)
    assert smece([c] * 10, [0] * 10) == pytest.approx(c, abs=1e-4)
    assert smece([c] * 10, [1] * 5 + [0] * 5) == pytest.approx(abs(c - 0.5), abs=1e-4)


def test_smece_of_two_distant_levels_weighs_their_gaps():
    # Half the questions at 0.1 with 5/50 right (gap 0), half at 0.9 with 40/50 right
    # (gap 0.1); at a bandwidth near 0.05 the two levels, 0.8 apart, do not mix:
    # smECE = 0.5 * 0 + 0.5 * 0.1.
    conf = [0.1] * 50 + [0.9] * 50
    correct = [1] * 5 + [0] * 45 + [1] * 40 + [0] * 10
    assert smece(conf, correct) == pytest.approx(0.05, abs=1e-4)


def test_smece_takes_bools_ints_and_lists_alike():
    conf, correct = grid_sample(300, seed=4, shift=0.1)
    as_float = smece(conf, correct)
    assert 0.05 < as_float < 0.2  # over-confident by about 0.1 by construction
    assert smece(conf, correct.astype(bool)) == as_float
    assert smece(conf, correct.astype(np.int64)) == as_float
    assert smece(conf.tolist(), [bool(y) for y in correct]) == as_float
    assert smece(list(conf), correct.astype(int).tolist()) == as_float


def test_brier_by_hand():
    # ((0.2-0)^2 + (0.9-1)^2 + (0.5-1)^2 + (1-0)^2) / 4 = (0.04 + 0.01 + 0.25 + 1) / 4
    assert brier([0.2, 0.9, 0.5, 1.0], [0, 1, 1, 0]) == pytest.approx(0.325, abs=1e-15)


def test_accuracy_and_mean_confidence_by_hand():
    conf, correct = [0.2, 0.9, 0.5, 1.0], [False, True, True, False]
    assert accuracy(conf, correct) == pytest.approx(0.5, abs=1e-15)
    assert mean_confidence(conf, correct) == pytest.approx(2.6 / 4, abs=1e-15)


def test_auroc_by_hand_with_ties():
    # Correct at 0.8, 0.5; wrong at 0.5, 0.2. Pairs: (0.8 > 0.5) 1, (0.8 > 0.2) 1,
    # (0.5 = 0.5) 1/2, (0.5 > 0.2) 1 -> 3.5 / 4.
    assert auroc([0.8, 0.5, 0.5, 0.2], [1, 1, 0, 0]) == pytest.approx(0.875, abs=1e-15)


@pytest.mark.parametrize("seed", range(5))
def test_auroc_matches_sklearn_with_ties(seed):
    conf, correct = grid_sample(1500, M=10, seed=seed, shift=0.1 * seed)
    assert auroc(conf, correct) == pytest.approx(roc_auc_score(correct, conf), abs=1e-12)


@pytest.mark.parametrize("label, word", [(1, "correct"), (0, "wrong")])
def test_auroc_single_class_is_nan_with_warning(label, word):
    with pytest.warns(RuntimeWarning, match=f"undefined when every answer is {word}"):
        value = auroc([0.2, 0.5, 0.9], [label] * 3)
    assert math.isnan(value)


# ---------------------------------------------------------------------------- validation


@pytest.mark.parametrize("metric", ALL_METRICS)
@pytest.mark.parametrize(
    "conf, correct, match",
    [
        ([0.5, 0.5], [1], "different lengths"),
        ([], [], "empty input"),
        ([0.5, 1.2], [1, 0], r"must lie in \[0, 1\]"),
        ([0.5, -0.1], [1, 0], r"must lie in \[0, 1\]"),
        ([0.5, np.inf], [1, 0], r"must lie in \[0, 1\]"),
        ([0.5, np.nan], [1, 0], "confidence contains NaN"),
        ([0.5, 0.5], [1, np.nan], "correct contains NaN"),
        ([0.5, 0.5], [1, 2], "correct must be 0/1 or bool"),
        ([0.5, 0.5], [1, 0.5], "correct must be 0/1 or bool"),
        ([[0.5, 0.5]], [[1, 0]], "must be 1-D"),
        (["a", "b"], [1, 0], "confidence must be numeric"),
        ([0.5, 0.5], ["yes", "no"], "correct must be numeric or bool"),
    ],
)
def test_input_validation(metric, conf, correct, match):
    with pytest.raises(ValueError, match=match):
        metric(conf, correct)
    with pytest.raises(ValueError, match=match):
        bootstrap_ci(metric, conf, correct, iters=10)


@pytest.mark.parametrize("binned", [binned_ece, debiased_l2_ce])
@pytest.mark.parametrize("n_bins", [0, -3, 2.5, True])
def test_binned_errors_reject_bad_n_bins(binned, n_bins):
    with pytest.raises(ValueError, match="n_bins must be a positive integer"):
        binned([0.5], [1], n_bins=n_bins)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"level": 0.0}, "level must lie strictly between 0 and 1"),
        ({"level": 1.0}, "level must lie strictly between 0 and 1"),
        ({"level": 95}, "level must lie strictly between 0 and 1"),
        ({"level": "0.95"}, "level must lie strictly between 0 and 1"),
        ({"iters": -1}, "iters must be a non-negative integer"),
        ({"iters": 10.0}, "iters must be a non-negative integer"),
    ],
)
def test_bootstrap_rejects_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bootstrap_ci(brier, [0.5, 0.7], [1, 0], **kwargs)


def test_bootstrap_rejects_non_callable_metric():
    with pytest.raises(ValueError, match="metric must be a callable"):
        bootstrap_ci("ece", [0.5, 0.7], [1, 0])


# ---------------------------------------------------------------------------- bootstrap


@pytest.mark.parametrize("metric", FAST_METRICS, ids=lambda f: f.__name__)
def test_bootstrap_fast_path_equals_generic_path(metric):
    conf, correct = grid_sample(400, seed=1, shift=0.1)
    generic = lambda c, y: metric(c, y)  # noqa: E731 - a wrapper is not in the fast table
    for seed in (0, 7):
        fast_ci = bootstrap_ci(metric, conf, correct, iters=300, seed=seed)
        slow_ci = bootstrap_ci(generic, conf, correct, iters=300, seed=seed)
        assert fast_ci == pytest.approx(slow_ci, abs=1e-12, rel=0)
        assert fast_ci[0] < fast_ci[1]


def test_bootstrap_paths_agree_when_resamples_are_nan():
    # One correct answer in 15: about (14/15)^15 = 35% of resamples have no correct one.
    conf = np.linspace(0.1, 0.9, 15)
    correct = np.zeros(15)
    correct[7] = 1
    with pytest.warns(RuntimeWarning, match=r"NaN on \d+ of 200 bootstrap resamples"):
        fast_ci = bootstrap_ci(auroc, conf, correct, iters=200, seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        slow_ci = bootstrap_ci(lambda c, y: auroc(c, y), conf, correct, iters=200, seed=4)
    assert fast_ci == pytest.approx(slow_ci, abs=1e-12, rel=0)
    assert 0.0 <= fast_ci[0] < fast_ci[1] <= 1.0


def test_bootstrap_paths_agree_across_blocks(monkeypatch):
    # Continuous confidences make one atom per question; a small block budget forces the
    # draws into several blocks, the last one partial.
    rng = np.random.default_rng(5)
    conf = rng.random(300)
    correct = (rng.random(300) < conf).astype(float)
    monkeypatch.setattr(bootstrap, "_MAX_BLOCK_CELLS", 300 * 7)
    # The budget is read where the draws are made: 7 rows a block, 50 rows in 8 blocks.
    blocks = list(bootstrap._resampled_counts(np.random.default_rng(0), np.ones(300), 50))
    assert [len(block) for block in blocks] == [7] * 7 + [1]
    for metric in (binned_ece, auroc):
        fast_ci = bootstrap_ci(metric, conf, correct, iters=50, seed=2)
        slow_ci = bootstrap_ci(lambda c, y: metric(c, y), conf, correct, iters=50, seed=2)
        assert fast_ci == pytest.approx(slow_ci, abs=1e-12, rel=0)


def test_bootstrap_generic_path_follows_documented_draws():
    # Documented contract: counts ~ multinomial(n, counts/n) over the distinct pairs sorted
    # by (confidence, correct), drawn with default_rng(seed); the metric sees the pairs
    # repeated by their counts; linear-interpolated percentiles.
    conf, correct = grid_sample(500, M=20, seed=3, shift=0.1)
    atoms, counts = np.unique(np.column_stack([conf, correct]), axis=0, return_counts=True)
    draws = np.random.default_rng(11).multinomial(500, counts / 500, size=20)
    stats = [
        float(relplot.smECE(np.repeat(atoms[:, 0], row), np.repeat(atoms[:, 1], row)))
        for row in draws
    ]
    expected = np.percentile(stats, [2.5, 97.5])
    got = bootstrap_ci(smece, conf, correct, iters=20, seed=11)
    assert got == pytest.approx(tuple(expected), abs=1e-12, rel=0)


@pytest.mark.parametrize("n, grid", [(37, 5), (2_000, 50), (3_000, None)])
def test_weighted_smece_equals_relplot_on_expanded_questions(n, grid):
    # The smECE bootstrap scores resamples on (pair, count) atoms; each must equal relplot
    # on the questions themselves, for grid and for continuous confidences.
    rng = np.random.default_rng(n)
    conf = rng.integers(1, grid + 1, n) / grid if grid else rng.random(n)
    correct = (rng.random(n) < conf**1.5).astype(float)
    atom_conf, atom_corr, counts = _atoms(conf, correct)
    # Grid atoms share one basis per bandwidth; continuous ones are smoothed row by row.
    assert (len(atom_conf) > smece_kernel._MAX_BASIS_ATOMS) == (grid is None)
    rows = np.vstack([counts, rng.multinomial(n, counts / n, size=3)]).astype(float)
    got = smece_kernel._weighted_smece(atom_conf, atom_corr, rows)
    expected = [
        relplot.smECE(np.repeat(atom_conf, row.astype(int)), np.repeat(atom_corr, row.astype(int)))
        for row in rows
    ]
    assert got == pytest.approx(expected, abs=1e-12, rel=0)
    assert got[0] == pytest.approx(smece(conf, correct), abs=1e-12, rel=0)


def test_bootstrap_accuracy_matches_normal_approximation():
    # For a proportion the 95% interval is about p +- 1.96 sqrt(p (1 - p) / n).
    n, p = 10_000, 0.3
    correct = np.zeros(n)
    correct[: int(n * p)] = 1
    conf = np.full(n, 0.5)
    low, high = bootstrap_ci(accuracy, conf, correct, iters=2000, seed=0)
    half = 1.96 * math.sqrt(p * (1 - p) / n)  # 0.00898
    assert (low + high) / 2 == pytest.approx(p, abs=0.1 * half)
    assert (high - low) / 2 == pytest.approx(half, rel=0.1)


@pytest.mark.parametrize("metric", ALL_METRICS, ids=lambda f: f.__name__)
def test_bootstrap_interval_contains_point_estimate(metric):
    conf, correct = grid_sample(2000, seed=8, shift=0.1)
    iters = 30 if metric is smece else 500
    low, high = bootstrap_ci(metric, conf, correct, iters=iters, seed=0)
    assert low < metric(conf, correct) < high


@pytest.mark.parametrize("metric", FAST_METRICS, ids=lambda f: f.__name__)
def test_bootstrap_interval_narrows_with_n(metric):
    small = bootstrap_ci(metric, *grid_sample(500, seed=2, shift=0.1), iters=500)
    large = bootstrap_ci(metric, *grid_sample(50_000, seed=2, shift=0.1), iters=500)
    # Width shrinks like 1/sqrt(n): a factor 10 here; ask for 4.
    assert (large[1] - large[0]) * 4 < small[1] - small[0]


def test_bootstrap_seed_reproducible_and_seed_dependent():
    conf, correct = grid_sample(1000, seed=6, shift=0.1)
    for metric in (binned_ece, lambda c, y: binned_ece(c, y)):
        a = bootstrap_ci(metric, conf, correct, iters=100, seed=1)
        assert bootstrap_ci(metric, conf, correct, iters=100, seed=1) == a
        assert bootstrap_ci(metric, conf, correct, iters=100, seed=2) != a


def test_bootstrap_zero_iters_is_nan():
    low, high = bootstrap_ci(brier, [0.5, 0.7], [1, 0], iters=0)
    assert math.isnan(low) and math.isnan(high)


def test_bootstrap_all_nan_is_nan_with_warning():
    with pytest.warns(RuntimeWarning, match="NaN on all 50 bootstrap resamples"):
        low, high = bootstrap_ci(auroc, [0.2, 0.5, 0.9], [1, 1, 1], iters=50)
    assert math.isnan(low) and math.isnan(high)


def test_bootstrap_level_sets_percentiles():
    conf, correct = grid_sample(1000, seed=9, shift=0.1)
    wide = bootstrap_ci(brier, conf, correct, iters=400, level=0.99)
    narrow = bootstrap_ci(brier, conf, correct, iters=400, level=0.5)
    assert wide[0] < narrow[0] < narrow[1] < wide[1]


# ---------------------------------------------------------------------------- properties

grid_data = st.integers(1, 50).flatmap(
    lambda M: st.lists(st.tuples(st.integers(1, M), st.booleans()), min_size=1, max_size=150).map(
        lambda pairs: (np.array([k / M for k, _ in pairs]), np.array([y for _, y in pairs]))
    )
)
float_data = st.lists(
    st.tuples(st.floats(0.0, 1.0), st.booleans()), min_size=1, max_size=150
).map(lambda pairs: (np.array([c for c, _ in pairs]), np.array([y for _, y in pairs])))
samples = st.one_of(grid_data, float_data)


@settings(max_examples=50, deadline=None)
@given(samples)
def test_metrics_within_bounds(sample):
    conf, correct = sample
    for metric in ALL_METRICS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            value = metric(conf, correct)
        if metric is auroc and correct.min() == correct.max():
            assert math.isnan(value)
        else:
            assert -1e-12 <= value <= 1.0 + 1e-12, metric.__name__


@settings(max_examples=50, deadline=None)
@given(samples, st.data())
def test_metrics_invariant_to_question_order(sample, data):
    conf, correct = sample
    order = np.array(data.draw(st.permutations(range(len(conf)))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for metric in ALL_METRICS:
            a, b = metric(conf, correct), metric(conf[order], correct[order])
            assert a == pytest.approx(b, abs=1e-9, nan_ok=True), metric.__name__
        a = bootstrap_ci(binned_ece, conf, correct, iters=50, seed=3)
        b = bootstrap_ci(binned_ece, conf[order], correct[order], iters=50, seed=3)
        assert a == pytest.approx(b, abs=1e-12, nan_ok=True)


@settings(max_examples=5, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_perfectly_calibrated_sample_has_small_ece(seed):
    conf, correct = grid_sample(200_000, M=20, seed=seed)
    assert binned_ece(conf, correct) < 0.01
    assert smece(conf, correct) < 0.02


# ---------------------------------------------------------------------------- a million


def test_million_questions_closed_forms():
    # 20,000 questions at each confidence k/50; a_k = 400 (k - 5) correct for k >= 5, else
    # 0: accuracy conf - 0.1 from k = 5 on, so the gap is 0.1 in bins 1..9 (k = 5..50) and
    # (1+2+3+4)/(4*50) - 0 = 0.05 in bin 0 (k = 1..4):
    # ECE = (80,000 * 0.05 + 920,000 * 0.1) / 1e6 = 0.096.
    per_k = 20_000
    a = {k: 400 * (k - 5) if k >= 5 else 0 for k in range(1, 51)}
    conf = np.repeat(np.arange(1, 51) / 50, per_k)
    correct = np.concatenate([np.r_[np.ones(a[k]), np.zeros(per_k - a[k])] for k in range(1, 51)])
    order = np.random.default_rng(0).permutation(len(conf))
    conf, correct = conf[order], correct[order]
    n = len(conf)
    assert n == 1_000_000

    assert binned_ece(conf, correct) == pytest.approx(0.096, abs=1e-12)

    exact_brier = sum(
        a[k] * (1 - Fraction(k, 50)) ** 2 + (per_k - a[k]) * Fraction(k, 50) ** 2 for k in a
    ) / n
    assert brier(conf, correct) == pytest.approx(float(exact_brier), abs=1e-12)

    # Mann-Whitney by groups: a correct answer at k beats every wrong one below k and ties
    # half of those at k.
    wrong_below, wins = 0, Fraction(0)
    for k in range(1, 51):
        wrong_k = per_k - a[k]
        wins += a[k] * (wrong_below + Fraction(wrong_k, 2))
        wrong_below += wrong_k
    positives = sum(a.values())
    exact_auroc = wins / (positives * (n - positives))
    assert auroc(conf, correct) == pytest.approx(float(exact_auroc), abs=1e-12)

    low, high = bootstrap_ci(binned_ece, conf, correct, iters=1000)
    # Standard error of this ECE is about sqrt(0.1 * 0.9 / 1e6) ~ 3e-4.
    assert low < 0.096 < high
    assert high - low < 0.003
