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
