"""Tests of the CORP Brier decomposition (lm_eval_semcal.core.brier_decomposition)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression

from lm_eval_semcal.core.calibration import brier, brier_decomposition


def tied_sample(n, seed, grid):
    """n questions on the k/grid grid, right with a probability that is not monotone in
    confidence, so that the isotonic fit has violators to pool."""
    rng = np.random.default_rng(seed)
    conf = rng.integers(0, grid + 1, n) / grid
    truth = np.clip(0.5 + 0.4 * np.sin(9 * conf), 0, 1)
    return conf, (rng.random(n) < truth).astype(float)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("n, grid", [(40, 5), (500, 20), (3000, 50), (300, None)])
def test_the_isotonic_fit_and_the_parts_match_sklearn(seed, n, grid):
    if grid is None:
        rng = np.random.default_rng(seed)
        conf = rng.random(n)
        correct = (rng.random(n) < conf).astype(float)
    else:
        conf, correct = tied_sample(n, seed, grid)
    parts = brier_decomposition(conf, correct)
    # sklearn pools tied confidences into one point (weighted by their number) before PAV.
    iso = IsotonicRegression(increasing=True, out_of_bounds="clip").fit(conf, correct)
    assert parts.confidence_levels.tolist() == sorted(set(conf.tolist()))
    assert parts.recalibrated == pytest.approx(iso.predict(parts.confidence_levels), abs=1e-12, rel=0)
    assert np.all(np.diff(parts.recalibrated) >= 0)
    recalibrated_brier = np.mean((iso.predict(conf) - correct) ** 2)
    base_rate = correct.mean()
    assert parts.brier == brier(conf, correct)
    assert parts.miscalibration == pytest.approx(brier(conf, correct) - recalibrated_brier, abs=1e-12)
    assert parts.uncertainty == pytest.approx(base_rate * (1 - base_rate), abs=1e-12)
    assert parts.discrimination == pytest.approx(base_rate * (1 - base_rate) - recalibrated_brier, abs=1e-12)
    # The identity holds to rounding, and neither miscalibration nor discrimination is negative.
    assert parts.miscalibration - parts.discrimination + parts.uncertainty == pytest.approx(parts.brier, abs=1e-15, rel=0)
    assert parts.miscalibration >= -1e-15 and parts.discrimination >= -1e-15


def test_the_decomposition_in_exact_arithmetic():
    # Shares right by level: 0.1 -> 1/3, 0.4 -> 1, 0.5 -> 0, 0.9 -> 3/4. PAV pools 0.4 and
    # 0.5 into 1 right in 2 (1/2); then 1/3 <= 1/2 <= 3/4 holds.
    conf = [0.1] * 3 + [0.4] + [0.5] + [0.9] * 4
    correct = [1, 0, 0] + [1] + [0] + [1, 1, 1, 0]
    fitted = {Fraction(1, 10): Fraction(1, 3), Fraction(2, 5): Fraction(1, 2), Fraction(1, 2): Fraction(1, 2),
              Fraction(9, 10): Fraction(3, 4)}  # fmt: skip
    exact = [Fraction(c).limit_denominator(100) for c in conf]
    n = len(conf)
    bs = sum((c - y) ** 2 for c, y in zip(exact, correct)) / n
    bs_recalibrated = sum((fitted[c] - y) ** 2 for c, y in zip(exact, correct)) / n
    base = Fraction(sum(correct), n)
    parts = brier_decomposition(conf, correct)
    assert parts.recalibrated.tolist() == [1 / 3, 0.5, 0.5, 0.75]
    assert parts.brier == pytest.approx(float(bs), abs=1e-15)
    assert parts.miscalibration == pytest.approx(float(bs - bs_recalibrated), abs=1e-15)
    assert parts.uncertainty == pytest.approx(float(base * (1 - base)), abs=1e-15)
    assert parts.discrimination == pytest.approx(float(base * (1 - base) - bs_recalibrated), abs=1e-15)


def test_confidences_that_are_their_own_recalibration_have_no_miscalibration():
    # 1 right in 4 at 0.25, 3 in 4 at 0.75: the shares equal the confidences and increase.
    parts = brier_decomposition([0.25] * 4 + [0.75] * 4, [1, 0, 0, 0, 1, 1, 1, 0])
    assert parts.recalibrated.tolist() == [0.25, 0.75]
    assert parts.miscalibration == 0.0
    assert parts.discrimination == pytest.approx(0.25 - 0.1875)  # UNC 1/4, BS 3/16
    # One right answer and one wrong one at the same confidence: nothing to discriminate.
    flat = brier_decomposition([0.9, 0.9], [1, 0])
    assert flat.discrimination == 0.0 and flat.miscalibration == pytest.approx(0.16)


@pytest.mark.parametrize(
    "conf, correct, match",
    [([0.5], [1, 0], "different lengths"), ([], [], "empty input"), ([0.5, 0.2], [1, 0.5], "0/1")],
)
def test_the_decomposition_validates_its_input(conf, correct, match):
    with pytest.raises(ValueError, match=match):
        brier_decomposition(conf, correct)
