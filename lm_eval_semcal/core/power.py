"""The calibration test's power: how much overconfidence a run can detect, and with how many questions.

A calibration test that does not reject says little unless it could have: these
simulate the test of `consistency_resampling.calibration_test` against an overconfident
model, one whose accuracy at confidence c is ``clip(c - d, 0, 1)`` (its stated confidence
is c; d is the overconfidence shift), and find

- `detectable_overconfidence`: for a run's own confidences (its n and its grid), the
  least d the test detects with the wanted power;
- `questions_needed`: for a pilot's confidences, the least number of questions whose
  test detects a given d with that power.

Both reject as the test does, at p-value <= alpha, where the p-value is computed from
calibrated draws with the same seed as `calibration_test` (so the critical value is the
one that test would use), and count the rejections among `iters` runs drawn under the
overconfident model. Those runs are drawn by the inverse CDF from one fixed set of
uniforms, so every d (and every n) sees the same random numbers and the estimated
power changes smoothly with it, which the bisections rely on.

Public path: `lm_eval_semcal.core.calibration`, which re-exports the public names.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lm_eval_semcal.core.atoms import _validate_confidence
from lm_eval_semcal.core.consistency_resampling import (
    _TIE_TOLERANCE,
    _check_count,
    _check_test_metric,
    _critical_value,
    _VerdictDraws,
)
from lm_eval_semcal.core.settings import DEFAULT_BOOTSTRAP_ITERS

__all__ = ["DetectableOverconfidence", "QuestionsNeeded", "detectable_overconfidence", "questions_needed"]

# questions_needed doubles the number of questions from here until the power suffices.
_FIRST_QUESTIONS = 100


@dataclass(frozen=True)
class DetectableOverconfidence:
    """The least overconfidence shift a run's calibration test detects with the wanted power.

    Attributes
    ----------
    overconfidence : float or None
        The shift d (within `tolerance` above the least one found); None when even the
        largest shift (every answer wrong) is detected less often than `power`.
    achieved_power : float or None
        The estimated power at that shift: the share of the overconfident runs drawn
        that the test rejects.
    metric, power, alpha, iters, tolerance
        As passed.
    n : int
        The number of questions of the run.
    """

    metric: str
    overconfidence: float | None
    achieved_power: float | None
    power: float
    alpha: float
    n: int
    iters: int
    tolerance: float


@dataclass(frozen=True)
class QuestionsNeeded:
    """The least number of questions whose calibration test detects a shift with the wanted power.

    Attributes
    ----------
    questions : int or None
        The least n found; None when `max_questions` questions do not suffice.
    achieved_power : float or None
        The estimated power at that n.
    metric, overconfidence, power, alpha, iters, tolerance, max_questions
        As passed.
    """

    metric: str
    overconfidence: float
    questions: int | None
    achieved_power: float | None
    power: float
    alpha: float
    iters: int
    tolerance: float
    max_questions: int


def _is_number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float, np.number))


def _check_probability(value, name: str, low: float = 0.0) -> float:
    if not _is_number(value) or not low < value < 1.0:
        raise ValueError(f"{name} must lie strictly between {low:g} and 1, got {value!r}")
    return float(value)


def _check_tolerance(tolerance) -> float:
    if not _is_number(tolerance) or not tolerance > 0:
        raise ValueError(f"tolerance must be a positive number, got {tolerance!r}")
    return float(tolerance)


def _check_power_options(metric, power, alpha, iters, seed) -> tuple[str, float, float, int, int]:
    metric = _check_test_metric(metric)
    alpha = _check_probability(alpha, "alpha")
    # A calibrated model is rejected with probability alpha: a lower power asks nothing.
    power = _check_probability(power, "power", low=alpha)
    iters = _check_count(iters, "iters", 1)
    # The least p-value, no draw reaching the run's metric, is 1 / (iters + 1).
    if 1 / (iters + 1) > alpha:
        raise ValueError(
            f"with iters={iters} calibrated draws no p-value reaches alpha={alpha}; "
            f"draw at least {int(np.ceil(1 / alpha)) - 1}"
        )
    return metric, power, alpha, iters, _check_count(seed, "seed", 0)


def _rejection_rate(draws: _VerdictDraws, critical: float, accuracy: np.ndarray, iters: int, seed: int) -> float:
    """The share of `iters` runs, right at level j with probability `accuracy[j]`, the test rejects.

    The runs draw their uniforms from ``np.random.default_rng((seed, 1))``, a stream
    apart from the calibrated draws' ``default_rng(seed)``, and the same for every call.
    """
    statistics = draws.draws(np.random.default_rng((seed, 1)), accuracy, iters)
    return float(np.mean(statistics > critical + _TIE_TOLERANCE))


def _null_critical_value(draws: _VerdictDraws, alpha: float, iters: int, seed: int) -> float:
    """The critical value of the test at `alpha`, from calibration_test's own draws (same seed)."""
    null = draws.draws(np.random.default_rng(seed), draws.levels, iters)
    return _critical_value(null, alpha)


def detectable_overconfidence(
    confidence, metric="smece", power=0.8, alpha=0.05, iters=DEFAULT_BOOTSTRAP_ITERS, seed=0, tolerance=0.001
) -> DetectableOverconfidence:
    """The least overconfidence the calibration test of these confidences detects.

    Parameters
    ----------
    confidence : array-like of shape (n,), values in [0, 1]
        The run's confidences; their verdicts are not needed.
    metric : {"smece", "ece", "debiased_l2_ce"}, default "smece"
        The calibration error the test uses.
    power : float, default 0.8
        The wanted probability of rejecting; between `alpha` and 1.
    alpha : float, default 0.05
        The test's level: it rejects at ``p_value <= alpha``.
    iters : int, default 1000
        The calibrated runs drawn for the critical value, and the overconfident runs
        drawn at each shift tried; at least ``1 / alpha - 1``.
    seed : int, default 0
        The calibrated runs are those of ``calibration_test(..., iters=iters, seed=seed)``.
    tolerance : float, default 0.001
        The bisection stops when its interval is this narrow.

    Returns
    -------
    DetectableOverconfidence
        The least shift d for which the test rejects, with probability at least
        `power`, runs of these questions (these confidences) whose verdicts are drawn
        as ``correct_i ~ Bernoulli(clip(confidence_i - d, 0, 1))``: with every stated
        confidence unchanged, the model is right d less often than it says (less where
        the confidence is below d). The power at d is estimated as the share of
        `iters` such runs whose metric exceeds the test's critical value (the value a
        run's metric must exceed for ``p_value <= alpha``, from the calibrated runs of
        `calibration_test` with the same seed and iters). d is found by bisection on
        [0, max(confidence)], which keeps an interval whose upper end reaches `power`
        until it is narrower than `tolerance`, and is that upper end; each step draws
        the overconfident runs from the same uniforms (``np.random.default_rng((seed,
        1))``), so that the estimated power changes smoothly with d. The power is an
        estimate: about ``sqrt(power * (1 - power) / iters)`` (0.013 at 1000 runs) of
        simulation error, which moves d by that over the power curve's slope.

    Examples
    --------
    Ten thousand questions at confidence 0.8, tested with ECE (one bin): a calibrated
    run's ECE is ``|0.8 - k/10000|`` with k ~ Binomial(10000, 0.8), whose 95th
    percentile is about 1.96 * 0.004 = 0.0078 (0.004 = ``sqrt(0.8 * 0.2 / 10000)``).
    A shift d is detected 80% of the time when the run's accuracy 0.8 - d lies 0.84
    standard deviations below 0.8 - 0.0078: d is about 0.0078 + 0.84 * 0.004 = 0.0112
    by the normal approximation; the 999 simulated runs put it at 0.0116.

    >>> from lm_eval_semcal.core.calibration import detectable_overconfidence
    >>> found = detectable_overconfidence([0.8] * 10_000, metric="ece", iters=999, tolerance=0.0001)
    >>> found.overconfidence, found.n  # 119/10240: bisection halves [0, 0.8] 13 times
    (0.01162109375, 10000)
    >>> found.achieved_power  # 803 of the 999 runs rejected
    0.8038038038038038
    """
    metric, power, alpha, iters, seed = _check_power_options(metric, power, alpha, iters, seed)
    tolerance = _check_tolerance(tolerance)
    conf = _validate_confidence(confidence)
    levels, questions = np.unique(conf, return_counts=True)
    draws = _VerdictDraws(metric, levels, questions)
    critical = _null_critical_value(draws, alpha, iters, seed)

    def power_at(shift: float) -> float:
        return _rejection_rate(draws, critical, np.clip(levels - shift, 0.0, 1.0), iters, seed)

    found = DetectableOverconfidence(metric, None, None, power, alpha, len(conf), iters, tolerance)
    low, high = 0.0, float(levels[-1])
    power_high = power_at(high)
    if power_high < power:
        return found
    while high - low > tolerance:
        middle = (low + high) / 2
        power_middle = power_at(middle)
        if power_middle >= power:
            high, power_high = middle, power_middle
        else:
            low = middle
    return DetectableOverconfidence(metric, high, power_high, power, alpha, len(conf), iters, tolerance)


def _apportioned(questions: int, shares: np.ndarray) -> np.ndarray:
    """`questions` split over the levels in proportion to `shares` (counts), by largest remainder.

    Each level gets the whole part of its exact share, and the questions left over go one
    each to the levels with the largest fractional parts (the first such level on ties).
    """
    exact = questions * shares / shares.sum()
    whole = np.floor(exact)
    left_over = questions - int(whole.sum())
    whole[np.argsort(-(exact - whole), kind="stable")[:left_over]] += 1
    return whole.astype(np.int64)


def questions_needed(
    confidence_sample,
    overconfidence,
    metric="smece",
    power=0.8,
    alpha=0.05,
    iters=DEFAULT_BOOTSTRAP_ITERS,
    seed=0,
    tolerance=0.01,
    max_questions=1_000_000,
) -> QuestionsNeeded:
    """The least number of questions whose calibration test detects `overconfidence`.

    Parameters
    ----------
    confidence_sample : array-like of shape (m,), values in [0, 1]
        Confidences like those the planned run will have (a pilot run's, on its k/M
        grid): their distinct values and proportions are the run's.
    overconfidence : float in (0, 1]
        The shift d to detect: the model is right with probability
        ``clip(confidence - d, 0, 1)``.
    metric, power, alpha, iters, seed
        As for `detectable_overconfidence`.
    tolerance : float, default 0.01
        The bisection on n stops when its interval is narrower than this share of its
        upper end (or than one question).
    max_questions : int, default 1,000,000
        The search gives up above this many questions.

    Returns
    -------
    QuestionsNeeded
        The least n for which the test rejects with estimated probability at least
        `power`, at level `alpha`, a run of n questions whose confidences are the
        sample's distinct values in the sample's proportions (n times each share, the
        remainders apportioned by largest fraction) and whose verdicts are drawn as
        ``Bernoulli(clip(confidence - d, 0, 1))``; each n tried is simulated as in
        `detectable_overconfidence` (a critical value from `iters` calibrated runs of
        those confidences, the power from `iters` overconfident runs). The runs'
        confidences are not redrawn: the test conditions on a run's confidences, and
        the sample's proportions stand for a typical run's. n is searched by doubling
        from 100 until the power is reached, then by bisection between the last two
        sizes, and is the upper end of the final interval; every n sees the same
        uniforms, so that the estimated power changes smoothly with n. Each size tried
        costs two sets of `iters` runs, whatever n: with ECE or debiased_l2_ce the
        search takes about a second, with smECE about a minute (2 CPU cores).
        Simulation error in the power (about 0.013 at 1000 runs) moves n by a few
        percent.

    Examples
    --------
    Confidence 0.8 throughout, tested with ECE: 10,000 questions detect a shift of
    0.0116 (`detectable_overconfidence`'s example), so a shift of 0.0112 needs a few
    more (``(0.0116 / 0.0112)**2 * 10000``, about 10,700, were the power a function of
    ``d * sqrt(n)`` alone).

    >>> from lm_eval_semcal.core.calibration import questions_needed
    >>> needed = questions_needed([0.8], 0.0112, metric="ece", iters=999)
    >>> needed.questions, needed.achieved_power  # 802 of 999 runs rejected
    (10700, 0.8028028028028028)
    """
    metric, power, alpha, iters, seed = _check_power_options(metric, power, alpha, iters, seed)
    tolerance = _check_tolerance(tolerance)
    if not _is_number(overconfidence) or not 0.0 < overconfidence <= 1.0:
        raise ValueError(f"overconfidence must be a shift in (0, 1], got {overconfidence!r}")
    max_questions = _check_count(max_questions, "max_questions", _FIRST_QUESTIONS)
    sample = _validate_confidence(confidence_sample)
    levels, sample_counts = np.unique(sample, return_counts=True)
    accuracy = np.clip(levels - overconfidence, 0.0, 1.0)

    def power_at(n: int) -> float:
        draws = _VerdictDraws(metric, levels, _apportioned(n, sample_counts))
        return _rejection_rate(draws, _null_critical_value(draws, alpha, iters, seed), accuracy, iters, seed)

    low, high = 0, _FIRST_QUESTIONS
    power_high = power_at(high)
    while power_high < power:
        if high == max_questions:
            return QuestionsNeeded(
                metric, float(overconfidence), None, None, power, alpha, iters, tolerance, max_questions
            )
        low, high = high, min(2 * high, max_questions)
        power_high = power_at(high)
    while high - low > max(1, tolerance * high):
        middle = (low + high) // 2
        power_middle = power_at(middle)
        if power_middle >= power:
            high, power_high = middle, power_middle
        else:
            low = middle
    return QuestionsNeeded(
        metric, float(overconfidence), high, power_high, power, alpha, iters, tolerance, max_questions
    )
