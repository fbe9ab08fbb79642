"""The corpus metrics of n questions, each a function ``f(confidence, correct) -> float``.

Every metric takes the same two arrays, one entry per question: `confidence` (the share
of samples in the plurality semantic class, in [0, 1]) and `correct` (1 when the gold
answer lands in that class, else 0; bool also accepted). Definitions: docs/metrics.md,
"The metrics". Each is its weighted formula (`atoms`) at the observed counts; smECE is
delegated to `relplot`, the reference implementation.

Public path: `lm_eval_semcal.core.calibration`, which re-exports these.
"""

from __future__ import annotations

import warnings

import numpy as np
import relplot

from lm_eval_semcal.core.atoms import (
    _DEFAULT_N_BINS,
    _clipped_root,
    _point,
    _validate,
    _validate_n_bins,
    _weighted_accuracy,
    _weighted_auroc,
    _weighted_binned_ece,
    _weighted_brier,
    _weighted_debiased_squared_ce,
    _weighted_mean_confidence,
    _weighted_overconfidence,
)

__all__ = [
    "accuracy",
    "auroc",
    "binned_ece",
    "brier",
    "debiased_l2_ce",
    "mean_confidence",
    "overconfidence",
    "smece",
]


def accuracy(confidence, correct) -> float:
    """Share of questions answered correctly.

    Parameters
    ----------
    confidence : array-like of shape (n,), values in [0, 1]
        Validated but not used; present so every corpus metric has one signature.
    correct : array-like of shape (n,), values in {0, 1} or bool

    Returns
    -------
    float
        ``acc = (1/n) * sum_i correct_i``.

    Examples
    --------
    >>> from lm_eval_semcal.core.calibration import accuracy
    >>> accuracy([0.25, 0.5, 1.0, 1.0], [0, 1, 1, 0])  # 2 of 4 right
    0.5
    """
    return _point(_weighted_accuracy, *_validate(confidence, correct))


def mean_confidence(confidence, correct) -> float:
    """Mean semantic confidence over questions.

    Parameters
    ----------
    confidence : array-like of shape (n,), values in [0, 1]
    correct : array-like of shape (n,), values in {0, 1} or bool
        Validated but not used; present so every corpus metric has one signature.

    Returns
    -------
    float
        ``conf = (1/n) * sum_i confidence_i``.

    Examples
    --------
    >>> from lm_eval_semcal.core.calibration import mean_confidence
    >>> mean_confidence([0.25, 0.5, 1.0, 1.0], [0, 1, 1, 0])  # 2.75 / 4
    0.6875
    """
    return _point(_weighted_mean_confidence, *_validate(confidence, correct))


def binned_ece(confidence, correct, n_bins=_DEFAULT_N_BINS) -> float:
    """Expected calibration error with equal-width bins.

    Parameters
    ----------
    confidence : array-like of shape (n,), values in [0, 1]
    correct : array-like of shape (n,), values in {0, 1} or bool
    n_bins : int, default 10
        Number of equal-width bins B on [0, 1].

    Returns
    -------
    float
        ``ECE = sum_b (n_b / n) * |mean(confidence in b) - mean(correct in b)|``, empty
        bins contributing 0. Question i falls in bin
        ``b = min(floor(confidence_i * B + 1e-9), B - 1)``: bins are [lo, hi), the last
        one also holds 1.0, and a value on a bin edge goes to the bin it is the lower edge
        of even when rounding left it a hair below (1 - 45/50 = 0.09999999999999998).

    Examples
    --------
    >>> from lm_eval_semcal.core.calibration import binned_ece
    >>> binned_ece([0.25, 0.5, 1.0, 1.0], [0, 1, 1, 0])  # bins 2, 5, 9: (0.25 + 0.5 + 2 * 0.5) / 4
    0.4375
    >>> binned_ece([0.5, 1.0], [1, 1])  # 0.5 opens bin 5, 1.0 closes the last bin
    0.25
    """
    conf, corr = _validate(confidence, correct)
    return _point(_weighted_binned_ece, conf, corr, n_bins=_validate_n_bins(n_bins))


def overconfidence(confidence, correct) -> float:
    """Mean confidence minus accuracy: above 0 overconfident, below 0 underconfident.

    Parameters
    ----------
    confidence : array-like of shape (n,), values in [0, 1]
    correct : array-like of shape (n,), values in {0, 1} or bool

    Returns
    -------
    float in [-1, 1]
        ``conf - acc = (1/n) * sum_i (confidence_i - correct_i)``. It measures the
        direction of miscalibration on average only: errors of both signs cancel, so a
        value near 0 does not mean calibrated (read the ECE for that).

    Examples
    --------
    >>> from lm_eval_semcal.core.calibration import overconfidence
    >>> overconfidence([0.25, 0.5, 1.0, 1.0], [0, 1, 1, 0])  # 0.6875 - 0.5
    0.1875
    """
    return _point(_weighted_overconfidence, *_validate(confidence, correct))


def debiased_l2_ce(confidence, correct, n_bins=_DEFAULT_N_BINS) -> float:
    """Debiased L2 binned calibration error (Kumar, Liang & Ma, NeurIPS 2019).

    The estimator of "Verified Uncertainty Calibration" (Kumar, Liang and Ma, NeurIPS
    2019, section 5), as their `calibration` library computes it with
    ``get_calibration_error(..., p=2, debias=True)``, on the bins of `binned_ece`. The
    plug-in squared error overstates the truth by each bin's sampling variance; their
    estimator subtracts an unbiased estimate of it, so the squared error is estimated
    without bias and a calibrated model scores about 0 rather than about the noise floor
    (the plug-in ECE of a calibrated model is about 0.036 at n = 300).

    Parameters
    ----------
    confidence : array-like of shape (n,), values in [0, 1]
    correct : array-like of shape (n,), values in {0, 1} or bool
    n_bins : int, default 10
        Number of equal-width bins B on [0, 1], with `binned_ece`'s bin rule.

    Returns
    -------
    float
        ``sqrt(max(S, 0))`` where
        ``S = sum_{b: n_b >= 2} (n_b / n) * [(mean(confidence in b) - mean(correct in b))**2
        - a_b (1 - a_b) / (n_b - 1)]``, ``a_b = mean(correct in b)``; bins holding fewer
        than two questions contribute 0 (no variance estimate; their library does the
        same). S is unbiased for ``sum_b P(b) * (E[confidence - correct | b])**2`` when the
        answers in a bin are independent given the confidences; the reported value is on
        the scale of a probability, like `binned_ece`, and is the L2 (root mean square)
        gap, which is at least the L1 gap `binned_ece` estimates. Clipping at 0 keeps the
        square root defined; S itself can be negative by chance near perfect
        calibration, and `bootstrap_ci` builds the interval on S before taking roots.

    Examples
    --------
    One bin of four questions at confidence 0.75, one of them right: the plug-in gap is
    0.5, and S subtracts the bin's variance estimate 0.25 * 0.75 / 3 from its square.

    >>> from lm_eval_semcal.core.calibration import binned_ece, debiased_l2_ce
    >>> binned_ece([0.75] * 4, [1, 0, 0, 0])
    0.5
    >>> debiased_l2_ce([0.75] * 4, [1, 0, 0, 0])  # sqrt(0.5**2 - 0.0625) = sqrt(3) / 4
    0.4330127018922193
    >>> debiased_l2_ce([0.25, 0.5, 1.0, 1.0], [0, 1, 1, 0])  # bin 9 only: 0.5**2 - 0.5 * 0.5 / 1 = 0
    0.0
    """
    conf, corr = _validate(confidence, correct)
    squared = _point(_weighted_debiased_squared_ce, conf, corr, n_bins=_validate_n_bins(n_bins))
    return float(_clipped_root(np.float64(squared)))


def smece(confidence, correct) -> float:
    """Smooth ECE (Blasiok & Nakkiran), as computed by ``relplot.smECE``.

    Parameters
    ----------
    confidence : array-like of shape (n,), values in [0, 1]
    correct : array-like of shape (n,), values in {0, 1} or bool

    Returns
    -------
    float
        ``relplot.smECE(confidence, correct)``: the mean over confidence t of
        ``|E[confidence - correct | confidence = t]|``, the conditional mean and the
        density of t estimated by a reflected-Gaussian kernel smoother of bandwidth
        sigma, where sigma is found by bisection as the point where
        ``smECE_sigma(sigma) = sigma``.

    Examples
    --------
    >>> from lm_eval_semcal.core.calibration import smece
    >>> round(smece([0.9] * 4, [1, 1, 0, 0]), 4)  # one confidence, right half the time: |0.9 - 0.5|
    0.4
    >>> smece([0.75] * 4, [1, 1, 1, 0])  # right as often as it says
    0.0
    """
    conf, corr = _validate(confidence, correct)
    return float(relplot.smECE(conf, corr))


def brier(confidence, correct) -> float:
    """Brier score of confidence as a probability of being correct.

    Parameters
    ----------
    confidence : array-like of shape (n,), values in [0, 1]
    correct : array-like of shape (n,), values in {0, 1} or bool

    Returns
    -------
    float
        ``brier = (1/n) * sum_i (confidence_i - correct_i)**2``.

    Examples
    --------
    >>> from lm_eval_semcal.core.calibration import brier
    >>> brier([0.25, 0.5, 1.0, 1.0], [0, 1, 1, 0])  # (0.25**2 + 0.5**2 + 0**2 + 1**2) / 4
    0.328125
    """
    return _point(_weighted_brier, *_validate(confidence, correct))


def auroc(confidence, correct) -> float:
    """Area under the ROC curve of confidence as a predictor of correctness.

    Parameters
    ----------
    confidence : array-like of shape (n,), values in [0, 1]
    correct : array-like of shape (n,), values in {0, 1} or bool

    Returns
    -------
    float
        The Mann-Whitney statistic ``(1 / (P * N)) * sum_{i correct} sum_{j wrong}
        ([conf_i > conf_j] + 0.5 * [conf_i == conf_j])`` with P correct and N wrong
        questions. When all answers are correct or all wrong it is undefined: returns NaN
        and emits a RuntimeWarning, never raises.

    Examples
    --------
    The right answers have confidence 0.5 and 1.0, the wrong ones 0.25 and 1.0: of the
    four (right, wrong) pairs, 0.5 beats 0.25, loses to 1.0, and 1.0 beats 0.25 and ties 1.0.

    >>> from lm_eval_semcal.core.calibration import auroc
    >>> auroc([0.25, 0.5, 1.0, 1.0], [0, 1, 1, 0])  # (1 + 0 + 1 + 0.5) / 4
    0.625
    """
    conf, corr = _validate(confidence, correct)
    if corr.min() == corr.max():
        warnings.warn(
            f"AUROC is undefined when every answer is {'correct' if corr[0] else 'wrong'} "
            f"(all {len(corr)} questions); returning NaN",
            RuntimeWarning,
            stacklevel=2,
        )
        return float("nan")
    return _point(_weighted_auroc, conf, corr)
