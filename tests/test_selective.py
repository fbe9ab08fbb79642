"""Tests of the risk-coverage curve, AURC and selective accuracy (lm_eval_semcal.core.selective)."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from conftest import reference_bootstrap

from lm_eval_semcal.core.calibration import (
    accuracy,
    aurc,
    bootstrap_ci,
    risk_coverage_curve,
    selective_accuracy,
)


def random_grid(n, seed, grid=20):
    """n questions on the k/grid grid (many ties), right with probability conf**2."""
    rng = np.random.default_rng(seed)
    conf = rng.integers(0, grid + 1, n) / grid
    return conf, (rng.random(n) < conf**2).astype(float)


def sorted_curve(pairs):
    """The risk-coverage points by sorting: each distinct confidence, highest first, with
    the share of questions at or above it and their error rate."""
    ordered = sorted(pairs, key=lambda pair: -pair[0])
    points = []
    for threshold in sorted({c for c, _ in pairs}, reverse=True):
        answered = [y for c, y in ordered if c >= threshold]
        points.append((len(answered) / len(pairs), sum(1 - y for y in answered) / len(answered)))
    return points


def sorted_aurc(pairs):
    """AURC by sorting: each point's risk times the coverage it adds."""
    total, previous = 0.0, 0.0
    for coverage, risk in sorted_curve(pairs):
        total += risk * (coverage - previous)
        previous = coverage
    return total


def test_the_curve_and_its_area_by_hand():
    # 0.9: right, wrong; 0.6: right; 0.3: wrong.
    conf, correct = [0.9, 0.3, 0.6, 0.9], [1, 0, 1, 0]
    coverage, risk = risk_coverage_curve(conf, correct)
    assert coverage.tolist() == [0.5, 0.75, 1.0]
    assert risk.tolist() == [0.5, 1 / 3, 0.5]
    exact = Fraction(1, 2) * Fraction(1, 2) + Fraction(1, 4) * Fraction(1, 3) + Fraction(1, 4) * Fraction(1, 2)
    assert aurc(conf, correct) == pytest.approx(float(exact), abs=1e-16)
    # Every right answer above every wrong one, at distinct levels: risks 0, 0, 1/3, 1/2.
    assert aurc([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0]) == pytest.approx(0.25 * (0 + 0 + 1 / 3 + 1 / 2))
    # One confidence level for all: one point at coverage 1, the error rate.
    assert aurc([0.7] * 5, [1, 1, 0, 1, 0]) == pytest.approx(0.4)
    assert aurc([1.0, 0.0], [1, 1]) == 0.0


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("grid", [4, 20, None])
def test_aurc_and_curve_match_sorting(seed, grid):
    if grid is None:
        rng = np.random.default_rng(seed)
        conf = rng.random(300)
        correct = (rng.random(300) < conf).astype(float)
    else:
        conf, correct = random_grid(300, seed, grid)
    pairs = list(zip(conf.tolist(), correct.tolist()))
    coverage, risk = risk_coverage_curve(conf, correct)
    expected = np.array(sorted_curve(pairs))
    assert coverage == pytest.approx(expected[:, 0], abs=1e-15, rel=0)
    assert risk == pytest.approx(expected[:, 1], abs=1e-15, rel=0)
    assert aurc(conf, correct) == pytest.approx(sorted_aurc(pairs), abs=1e-14, rel=0)
    # The order of the questions does not matter.
    order = np.random.default_rng(seed + 100).permutation(300)
    assert aurc(conf[order], correct[order]) == pytest.approx(aurc(conf, correct), abs=1e-15, rel=0)


def test_selective_accuracy_is_the_expectation_over_every_tie_break():
    # Ties at 0.8 (three questions, one right) and at 0.5 (two, one right).
    conf = [0.8, 0.5, 0.8, 0.9, 0.8, 0.5, 0.2]
    correct = [1, 0, 0, 1, 0, 1, 0]
    n = len(conf)
    for answered in range(1, n + 1):
        # Every order of the questions, stably sorted by decreasing confidence: each tie
        # broken every possible way, equally often.
        accuracies = []
        for order in itertools.permutations(range(n)):
            ranked = sorted(order, key=lambda i: -conf[i])
            accuracies.append(Fraction(sum(correct[i] for i in ranked[:answered]), answered))
        expected = sum(accuracies) / len(accuracies)
        got = selective_accuracy(conf, correct, answered / n)
        assert got == pytest.approx(float(expected), abs=1e-15), answered


def test_selective_accuracy_by_hand_and_against_the_curve():
    conf, correct = [0.9, 0.3, 0.6, 0.9], [1, 0, 1, 0]
    assert selective_accuracy(conf, correct, 0.25) == 0.5
    assert selective_accuracy(conf, correct, 0.75) == pytest.approx(2 / 3)
    # A share between points: 1.5 questions, both from the tie at 0.9, half right.
    assert selective_accuracy(conf, correct, 0.375) == pytest.approx(0.5)
    # 2.5 questions: the two at 0.9 (one right) and half of the one at 0.6 (right).
    assert selective_accuracy(conf, correct, 0.625) == pytest.approx((1 + 0.5) / 2.5)
    conf, correct = random_grid(500, 3)
    for coverage, risk in zip(*risk_coverage_curve(conf, correct)):
        assert selective_accuracy(conf, correct, coverage) == pytest.approx(1 - risk, abs=1e-12)
    assert selective_accuracy(conf, correct, 1.0) == pytest.approx(accuracy(conf, correct), abs=1e-15)


@pytest.mark.parametrize("coverage", [0, 0.0, -0.1, 1.5, math.nan, "0.5", True, None])
def test_selective_accuracy_rejects_a_coverage_outside_0_1(coverage):
    with pytest.raises(ValueError, match=r"coverage must be a share of the questions in \(0, 1\]"):
        selective_accuracy([0.5, 0.6], [1, 0], coverage)


@pytest.mark.parametrize("function", [aurc, risk_coverage_curve])
@pytest.mark.parametrize(
    "conf, correct, match",
    [([0.5], [1, 0], "different lengths"), ([0.5, 1.2], [1, 0], r"must lie in \[0, 1\]"), ([0.5], [2], "0/1")],
)
def test_the_curve_and_aurc_validate_their_input(function, conf, correct, match):
    with pytest.raises(ValueError, match=match):
        function(conf, correct)


def test_aurc_bootstrap_on_atoms_matches_resampling_the_questions():
    conf, correct = random_grid(200, 5, grid=10)
    expected = reference_bootstrap(sorted_aurc, conf.tolist(), correct.tolist(), iters=300, seed=4)
    got = bootstrap_ci(aurc, conf, correct, iters=300, seed=4)
    assert got == pytest.approx(expected, abs=1e-12, rel=0)
    # The generic path (a wrapper is not in the table of weighted formulas) agrees too.
    assert bootstrap_ci(lambda c, y: aurc(c, y), conf, correct, iters=300, seed=4) == pytest.approx(got, abs=1e-12)
