"""The calibration test: is the run's calibration error more than a calibrated model's noise?

Every calibration error of n questions is above 0 even for a perfectly calibrated model
(its noise floor), so a value alone does not say whether the model is miscalibrated.
Consistency resampling (Bröcker & Smith 2007, "Increasing the reliability of reliability
diagrams", Weather and Forecasting 22(3):651) simulates the hypothesis H0 "the
confidences are calibrated": each question keeps its confidence and gets a verdict drawn
as ``correct_i ~ Bernoulli(confidence_i)``, and the metric of many such draws is the
distribution the observed metric is compared with.

Questions of one confidence are exchangeable under H0, so a draw is, per distinct
confidence c held by n_c questions, a number of right answers ``k_c ~ Binomial(n_c, c)``:
counts over the atoms (c, 0) and (c, 1), scored by the same weighted formulas as the
bootstrap (`bootstrap._Scorer`; smECE through `smece_kernel`). A thousand draws of
any n then cost about what a thousand bootstrap resamples do.

Public path: `lm_eval_semcal.core.calibration`, which re-exports the public names.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import numpy as np
import scipy.stats

from lm_eval_semcal.core import point_metrics
from lm_eval_semcal.core.atoms import _validate
from lm_eval_semcal.core.bootstrap import _MAX_BLOCK_CELLS, _Scorer
from lm_eval_semcal.core.settings import DEFAULT_BOOTSTRAP_ITERS

__all__ = ["TEST_METRICS", "CalibrationTest", "calibration_test"]

# The calibration errors the test can use, by the name the reports give them.
_METRIC_FUNCTIONS = {
    "smece": point_metrics.smece,
    "ece": point_metrics.binned_ece,
    "debiased_l2_ce": point_metrics.debiased_l2_ce,
}
TEST_METRICS = tuple(_METRIC_FUNCTIONS)

# A draw whose metric equals the observed one in exact arithmetic can land a few ulps
# below it (the sums run in another order, and a matrix product over many rows may be
# blocked differently from one over a single row); draws within this of the observed
# value count as reaching it, which can only raise the p-value.
_TIE_TOLERANCE = 1e-12

# Uniforms on the open interval (0, 1): at exactly 0 scipy's inverse CDF answers -1,
# not the 0 right answers every level then has.
_SMALLEST_UNIFORM = np.finfo(np.float64).smallest_subnormal


def _check_test_metric(metric) -> str:
    if metric not in _METRIC_FUNCTIONS:
        raise ValueError(f"metric must be one of {', '.join(TEST_METRICS)} (by name), got {metric!r}")
    return metric


def _check_count(value, name: str, least: int) -> int:
    """`value` as an int; ValueError unless it is an integer of at least `least`."""
    try:
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer of at least {least}, got {value!r}") from None
    if value < least:
        raise ValueError(f"{name} must be an integer of at least {least}, got {value}")
    return value


class _VerdictDraws:
    """A run's confidences as levels, and a metric scored on verdicts drawn at those levels.

    The atoms are (c, 0) and (c, 1) for every level c, sorted as `atoms._atoms` sorts
    them, so a draw of k_c right answers among the n_c questions at c is the count
    vector (n_c - k_c, k_c) over each level's two atoms; a level may hold no question.
    """

    def __init__(self, metric: str, levels: np.ndarray, questions: np.ndarray):
        self.levels = levels
        self.questions = np.asarray(questions, dtype=np.float64)
        self.scorer = _Scorer(_METRIC_FUNCTIONS[metric], np.repeat(levels, 2), np.tile([0.0, 1.0], len(levels)))

    def statistic(self, right: np.ndarray) -> np.ndarray:
        """The metric, on its statistic's scale, of each row of right answers per level."""
        counts = np.empty((len(right), 2 * len(self.levels)))
        counts[:, 0::2] = self.questions - right
        counts[:, 1::2] = right
        return self.scorer.statistic(counts)

    def draws(self, rng: np.random.Generator, accuracy: np.ndarray, iters: int) -> np.ndarray:
        """The metric of `iters` runs whose questions at level j are right with probability `accuracy[j]`.

        Each run's right answers at level j are ``binom.ppf(u, n_j, accuracy[j])``, the
        inverse CDF at a uniform u on (0, 1) (`rng.uniform`), one u per run and level,
        drawn a block of runs at a time in row order: a Binomial(n_j, accuracy[j]) draw
        that, given its uniform, is non-increasing as the accuracy falls, so runs drawn
        with one generator's uniforms at two accuracies differ only as the accuracies do.
        """
        rows = max(1, _MAX_BLOCK_CELLS // (2 * len(self.levels)))
        blocks = []
        for start in range(0, iters, rows):
            uniforms = rng.uniform(_SMALLEST_UNIFORM, 1.0, size=(min(rows, iters - start), len(self.levels)))
            blocks.append(self.statistic(scipy.stats.binom.ppf(uniforms, self.questions, accuracy)))
        return np.concatenate(blocks)


def _reach(null: np.ndarray, observed: float) -> int:
    """How many null draws reach the observed value (ties, to rounding, included)."""
    return int(np.count_nonzero(null >= observed - _TIE_TOLERANCE))


def _critical_value(null: np.ndarray, alpha: float) -> float | None:
    """The value a statistic must exceed (by more than the tie tolerance) to be rejected at `alpha`.

    ``p = (1 + r) / (iters + 1) <= alpha``, r the draws that reach the statistic, holds
    for ``r < K``, K the number of r in 0..iters for which it holds (computed with the
    same floating-point division as the p-value), that is when the K-th largest draw
    lies below the statistic. None when K = 0: with so few draws no p-value reaches alpha.
    """
    iters = len(null)
    allowed = int(np.count_nonzero((1 + np.arange(iters + 1)) / (iters + 1) <= alpha))
    if allowed == 0:
        return None
    return float(np.sort(null)[iters - allowed])


@dataclass(frozen=True)
class CalibrationTest:
    """The calibration test of one run: its metric against the same metric under calibration.

    Attributes
    ----------
    metric : str
        The calibration error tested: ``"smece"``, ``"ece"`` or ``"debiased_l2_ce"``.
    observed : float
        Its value on the run (as the metric's function returns it).
    p_value : float
        ``(1 + #{draws >= observed}) / (iters + 1)``: the share of calibrated runs, the
        observed one counted among them, whose metric reaches the observed value. Small
        (at most 0.05, say) means a calibrated model would rarely show this much error.
    median, null_high : float
        The median and the 95th percentile of the metric over the calibrated draws: the
        noise floor, what a calibrated model with these confidences typically shows and
        exceeds one time in twenty.
    iters : int
        The number of calibrated draws.
    n : int
        The number of questions.
    """

    metric: str
    observed: float
    p_value: float
    median: float
    null_high: float
    iters: int
    n: int


def calibration_test(confidence, correct, metric="smece", iters=DEFAULT_BOOTSTRAP_ITERS, seed=0) -> CalibrationTest:
    """Test whether the confidences are calibrated, by consistency resampling.

    Parameters
    ----------
    confidence : array-like of shape (n,), values in [0, 1]
    correct : array-like of shape (n,), values in {0, 1} or bool
    metric : {"smece", "ece", "debiased_l2_ce"}, default "smece"
        The calibration error compared with its distribution under calibration
        (`smece`, `binned_ece` with 10 bins, `debiased_l2_ce`).
    iters : int, default 1000
        The number of calibrated runs drawn; the smallest p-value possible is
        ``1 / (iters + 1)``.
    seed : int, default 0
        Seed of ``np.random.default_rng``; the same seed gives the same result.

    Returns
    -------
    CalibrationTest
        H0: each question's verdict is an independent ``Bernoulli(confidence_i)`` draw.
        Under H0 the questions at one confidence c (n_c of them) are exchangeable, so a
        calibrated run is drawn as ``k_c ~ Binomial(n_c, c)`` right answers per distinct
        confidence c, by the inverse CDF at uniforms on (0, 1) from
        ``np.random.default_rng(seed).uniform``, one per run and confidence (distinct
        confidences increasing, runs in blocks, row after row). The metric of each of
        the `iters` runs gives ``p_value = (1 + #{draw >= observed}) / (iters + 1)``
        (draws within 1e-12 of the observed value count as reaching it; Bröcker & Smith
        2007, with the +1 of a Monte Carlo test: North, Curtis & Sham 2002, "A note on
        the calculation of empirical P values from Monte Carlo procedures", AJHG
        71:439), so that under H0 ``P(p_value <= a) <= a`` for every a. For `debiased_l2_ce` the
        draws are compared on the debiased squared error S, before the square root at
        0 that would tie every S below 0; `observed`, `median` and `null_high` are on
        the metric's scale. The test conditions on the confidences: it asks whether the
        verdicts fit them, not whether other questions would.

    Examples
    --------
    Four questions at 0.5, all four wrong: ECE 0.5. A calibrated run has k ~
    Binomial(4, 1/2) right answers and ECE ``|0.5 - k/4|``: 0 with probability 6/16,
    0.25 with 8/16, and 0.5 (all wrong or all right) with 2/16. Of the 999 runs drawn
    with seed 0 (k = 0, ..., 4 in 48, 234, 386, 271 and 60 of them), 108 reach 0.5.

    >>> from lm_eval_semcal.core.calibration import calibration_test
    >>> test = calibration_test([0.5] * 4, [0, 0, 0, 0], metric="ece", iters=999)
    >>> test.observed, test.median, test.null_high
    (0.5, 0.25, 0.5)
    >>> test.p_value  # (1 + 108) / (999 + 1)
    0.109

    Every answer right at confidence 1, and every answer wrong at 0: only one run is
    possible under H0, and it is this one.

    >>> calibration_test([1.0, 1.0, 0.0], [1, 1, 0], metric="ece", iters=99).p_value
    1.0
    """
    conf, corr = _validate(confidence, correct)
    metric = _check_test_metric(metric)
    iters = _check_count(iters, "iters", 1)
    seed = _check_count(seed, "seed", 0)
    levels, level_of = np.unique(conf, return_inverse=True)
    draws = _VerdictDraws(metric, levels, np.bincount(level_of))
    observed = float(draws.statistic(np.bincount(level_of, weights=corr)[None, :])[0])
    null = draws.draws(np.random.default_rng(seed), levels, iters)
    reported = draws.scorer.report(null)
    return CalibrationTest(
        metric=metric,
        observed=float(draws.scorer.report(np.float64(observed))),
        p_value=(1 + _reach(null, observed)) / (iters + 1),
        median=float(np.median(reported)),
        null_high=float(np.quantile(reported, 0.95)),
        iters=iters,
        n=len(conf),
    )
