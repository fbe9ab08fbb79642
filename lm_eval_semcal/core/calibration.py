"""Corpus calibration metrics over questions, and their bootstrap intervals.

Every metric takes the same two arrays, one entry per question: `confidence` (the share
of samples in the plurality semantic class, in [0, 1]) and `correct` (1 when the gold
answer lands in that class, else 0; bool also accepted). Definitions: docs/metrics.md,
"The metrics".

A corpus metric depends only on the multiset of (confidence, correct) pairs, and
confidence lives on the grid {1/M, ..., M/M}, so n questions collapse to at most 2M
*atoms* (distinct pairs) with counts. Each formula is written once, as a *weighted*
function of the atoms that evaluates a whole matrix of count vectors at once; the point
value is that function at the observed counts, and a bootstrap resample of the n
questions is a multinomial(n, counts / n) draw of new counts. A 1000-resample interval
over a million questions then takes well under a second instead of minutes.

Plain numpy; smECE is delegated to `relplot`, the reference implementation.

Intervals: `bootstrap_distribution` draws the resamples once and its `interval` builds
a percentile, basic or bias-corrected (BC) interval from them; `bootstrap_ci` is that in
one call. `paired_bootstrap_distributions` resamples the same questions for two models
and gives the distribution of each and of their difference; `paired_bootstrap_ci` is
the difference's interval in one call. `scripts/coverage.py` measures how often each
method's 95% interval covers the truth in simulated worlds.
"""

from __future__ import annotations

import math
import operator
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import relplot
import relplot.kernels
import scipy.signal

__all__ = [
    "INTERVAL_METHODS",
    "BootstrapDistribution",
    "PairedBootstrap",
    "accuracy",
    "auroc",
    "binned_ece",
    "bootstrap_ci",
    "bootstrap_distribution",
    "brier",
    "debiased_l2_ce",
    "mean_confidence",
    "overconfidence",
    "paired_bootstrap_ci",
    "paired_bootstrap_distributions",
    "smece",
]

# The ways `BootstrapDistribution.interval` turns resamples into an interval.
INTERVAL_METHODS = ("percentile", "basic", "bc")

_DEFAULT_N_BINS = 10

# Confidences computed on the way to us can sit a hair below a bin edge (1 - 45/50 is
# 0.09999999999999998, ten steps of 1/50 sum to 0.19999999999999998); the bin rule
# (docs/metrics.md, "Bins and the grid") adds this so they land in the bin whose lower
# edge they stand for.
_EDGE_EPS = 1e-9

# relplot's kernel smoother adds this to the estimated density (BaseKernelMixin.smooth),
# and its smECE bandwidth search stops below this bandwidth or after these many halvings.
_RELPLOT_DENSITY_EPS = 1e-4
_RELPLOT_MIN_BANDWIDTH = 0.001
_RELPLOT_BISECTION_STEPS = 10

# Above this many distinct (confidence, correct) pairs the smECE bootstrap smooths each
# resample on its own rather than through a pairs x grid basis (memory: pairs x 10/sigma).
_MAX_BASIS_ATOMS = 512

# Bootstrap count matrices are drawn and evaluated in blocks of at most this many cells,
# so that continuous confidences (one atom per question) cannot exhaust memory.
_MAX_BLOCK_CELLS = 1 << 22


# --------------------------------------------------------------------------------------
# Input handling


def _validate(confidence, correct) -> tuple[np.ndarray, np.ndarray]:
    """Check the per-question arrays; return them as float64 arrays."""
    conf = np.asarray(confidence)
    corr = np.asarray(correct)
    if conf.ndim != 1 or corr.ndim != 1:
        raise ValueError(
            f"confidence and correct must be 1-D (one entry per question), got shapes "
            f"{conf.shape} and {corr.shape}; flatten them first"
        )
    if len(conf) != len(corr):
        raise ValueError(
            f"confidence and correct have different lengths ({len(conf)} vs {len(corr)}); "
            f"pass exactly one of each per question"
        )
    if len(conf) == 0:
        raise ValueError("empty input: pass at least one question")
    if conf.dtype.kind not in "biuf":
        raise ValueError(
            f"confidence must be numeric, got dtype {conf.dtype}; convert it to float"
        )
    if corr.dtype.kind not in "biuf":
        raise ValueError(
            f"correct must be numeric or bool, got dtype {corr.dtype}; convert it to 0/1"
        )
    conf = conf.astype(np.float64)
    corr = corr.astype(np.float64)
    if np.isnan(conf).any():
        raise ValueError("confidence contains NaN; drop or fill those questions first")
    if conf.min() < 0.0 or conf.max() > 1.0:
        raise ValueError(
            f"confidence must lie in [0, 1], got values in [{conf.min()}, {conf.max()}]; "
            f"pass probabilities, not scores"
        )
    if np.isnan(corr).any():
        raise ValueError("correct contains NaN; drop or fill those questions first")
    binary = (corr == 0.0) | (corr == 1.0)
    if not binary.all():
        bad = corr[~binary][0]
        raise ValueError(f"correct must be 0/1 or bool, got {bad}; binarise the labels first")
    return conf, corr


def _validate_n_bins(n_bins) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    return int(n_bins)


def _atoms(conf: np.ndarray, corr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (confidence, correct) pairs sorted by confidence then correct, and counts.

    The sort order is relied on by the weighted functions below: it makes every
    confidence bin, and every group of equal confidences, one contiguous run of atoms.
    """
    values, inverse = np.unique(conf, return_inverse=True)
    counts = np.bincount(inverse * 2 + corr.astype(np.intp), minlength=2 * len(values))
    present = counts > 0
    atom_conf = np.repeat(values, 2)[present]
    atom_corr = np.tile([0.0, 1.0], len(values))[present]
    return atom_conf, atom_corr, counts[present]


def _runs(keys: np.ndarray) -> np.ndarray:
    """Start index of each run of equal values in a sorted 1-D array."""
    return np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])


# --------------------------------------------------------------------------------------
# Weighted formulas: atoms (conf, corr) of length A, weights w of shape (k, A), each row a
# count vector over the atoms; each returns the metric for every row, shape (k,). The
# atoms must come from `_atoms` (sorted by confidence, then correct).


def _weighted_accuracy(conf: np.ndarray, corr: np.ndarray, w: np.ndarray) -> np.ndarray:
    return (w @ corr) / w.sum(axis=1)


def _weighted_mean_confidence(conf: np.ndarray, corr: np.ndarray, w: np.ndarray) -> np.ndarray:
    return (w @ conf) / w.sum(axis=1)


def _weighted_overconfidence(conf: np.ndarray, corr: np.ndarray, w: np.ndarray) -> np.ndarray:
    return (w @ (conf - corr)) / w.sum(axis=1)


def _weighted_brier(conf: np.ndarray, corr: np.ndarray, w: np.ndarray) -> np.ndarray:
    return (w @ (conf - corr) ** 2) / w.sum(axis=1)


def _bin_sums(
    conf: np.ndarray, corr: np.ndarray, w: np.ndarray, n_bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bin (docs/metrics.md's rule), per row: count, sum of confidence, sum of correct.

    Only the bins that hold an atom are returned (columns in bin order); empty bins of
    the observed questions never contribute, and a resample cannot fill them.
    """
    bins = np.minimum(np.floor(conf * n_bins + _EDGE_EPS), n_bins - 1)
    starts = _runs(bins)
    n_b = np.add.reduceat(w, starts, axis=1)
    sum_conf = np.add.reduceat(w * conf, starts, axis=1)
    sum_corr = np.add.reduceat(w * corr, starts, axis=1)
    return n_b, sum_conf, sum_corr


def _weighted_binned_ece(
    conf: np.ndarray, corr: np.ndarray, w: np.ndarray, n_bins: int = _DEFAULT_N_BINS
) -> np.ndarray:
    n_b, sum_conf, sum_corr = _bin_sums(conf, corr, w, n_bins)
    n = w.sum(axis=1, keepdims=True)
    # A bin a resample left empty would divide 0 by 0; np.where then gives it weight 0.
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = np.abs(sum_conf / n_b - sum_corr / n_b)
    return np.where(n_b > 0, n_b / n * gap, 0.0).sum(axis=1)


def _weighted_squared_ce(
    conf: np.ndarray, corr: np.ndarray, w: np.ndarray, n_bins: int = _DEFAULT_N_BINS
) -> np.ndarray:
    """Plug-in squared binned calibration error, ``sum_b (n_b/n) * (gap_b)**2``."""
    n_b, sum_conf, sum_corr = _bin_sums(conf, corr, w, n_bins)
    n = w.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        squared_gap = (sum_conf / n_b - sum_corr / n_b) ** 2
    return np.where(n_b > 0, n_b / n * squared_gap, 0.0).sum(axis=1)


def _weighted_debiased_squared_ce(
    conf: np.ndarray, corr: np.ndarray, w: np.ndarray, n_bins: int = _DEFAULT_N_BINS
) -> np.ndarray:
    """Kumar et al.'s unbiased squared binned calibration error; may be negative."""
    n_b, sum_conf, sum_corr = _bin_sums(conf, corr, w, n_bins)
    n = w.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_corr = sum_corr / n_b
        term = (sum_conf / n_b - mean_corr) ** 2 - mean_corr * (1.0 - mean_corr) / (n_b - 1.0)
    # A bin of one question has no variance estimate: it contributes 0, as in their library.
    return np.where(n_b > 1, n_b / n * term, 0.0).sum(axis=1)


def _clipped_root(squared: np.ndarray) -> np.ndarray:
    return np.sqrt(np.maximum(squared, 0.0))


def _weighted_auroc(conf: np.ndarray, corr: np.ndarray, w: np.ndarray) -> np.ndarray:
    starts = _runs(conf)
    pos = np.add.reduceat(w * corr, starts, axis=1)
    neg = np.add.reduceat(w * (1.0 - corr), starts, axis=1)
    neg_below = np.cumsum(neg, axis=1) - neg
    # Counts are integers, so numerator and denominator are exact in float64 (below 2**53
    # for any realistic n): both bootstrap paths give bit-identical AUROCs.
    wins = (pos * (neg_below + 0.5 * neg)).sum(axis=1)
    pairs = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, wins / pairs, np.nan)


def _reflected_gaussian_smooth(
    conf: np.ndarray, weight_rows: np.ndarray, sigma: float, t: np.ndarray
) -> np.ndarray:
    """relplot's ReflectedGaussianKernel(sigma).apply(conf, row, t) for each weight row.

    The same grid, rounding, reflection and interpolation as relplot; only the
    convolution is done by FFT, which matters at the small bandwidths of a well
    calibrated model (grids of ~10,000 points, where relplot's direct convolution costs
    tens of milliseconds a call).
    """
    kernel = relplot.kernels.ReflectedGaussianKernel(sigma)
    points = max(2000, round(20 / sigma)) // 2 + 1
    grid = np.stack([relplot.kernels.smooth_round_to_grid(conf, row, points) for row in weight_rows])
    flipped = grid[:, ::-1]
    extended = np.concatenate([flipped[:, :-1], grid, flipped[:, 1:]], axis=1)
    smoothed = scipy.signal.fftconvolve(
        extended, kernel.kernel_ev(points)[None, :], mode="valid", axes=1
    )[:, points // 2 : points // 2 + points]
    return np.stack([relplot.kernels.interpolate(t, row) for row in smoothed])


def _weighted_smece(conf: np.ndarray, corr: np.ndarray, w: np.ndarray) -> np.ndarray:
    """relplot.smECE of every row of counts over the atoms, all rows in lockstep.

    relplot's smoother is linear in the per-question values it sums onto its grid, so
    with weights on A atoms the smoothed density and residual at bandwidth sigma are
    ``w @ B`` and ``(w * (conf - corr)) @ B``, where row a of the basis B is the smoother
    applied to a unit weight at atom a. relplot's bandwidth search (`search_param`:
    try 1, then ten bisection steps) is run for all rows at once; rows at the same
    bandwidth share one basis, and bootstrap resamples, being alike, mostly share their
    bandwidths. The point value `smece` calls relplot itself; the tests check this equals
    relplot.smECE on the expanded questions.
    """
    # Small corpora repeat resamples: score each distinct count vector once.
    distinct, inverse = np.unique(w, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    residual_weights = distinct * (conf - corr)
    bases: dict[float, np.ndarray] = {}

    def smooth(rows: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
        t = np.linspace(0, 1, max(round(10 / sigma), relplot.config.smECE_mesh_pts))
        if len(conf) > _MAX_BASIS_ATOMS:
            # Continuous confidences (an atom per question): smooth row by row instead.
            pairs = [
                _reflected_gaussian_smooth(conf, np.stack([distinct[r], residual_weights[r]]), sigma, t)
                for r in rows
            ]
            return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
        if sigma not in bases:
            bases[sigma] = _reflected_gaussian_smooth(conf, np.eye(len(conf)), sigma, t)
        return distinct[rows] @ bases[sigma], residual_weights[rows] @ bases[sigma]

    def smooth_ece(rows: np.ndarray, sigma: float) -> np.ndarray:
        density, residual = smooth(rows, sigma)
        density = density + _RELPLOT_DENSITY_EPS
        residual = residual / density
        return np.sum(np.abs(residual) * density, axis=1) / np.sum(density, axis=1)

    def holds(rows: np.ndarray, alpha: float) -> np.ndarray:
        # relplot.metrics.smECE's predicate: the bandwidth is at most the smECE it gives.
        if alpha < _RELPLOT_MIN_BANDWIDTH:
            return np.ones(len(rows), dtype=bool)
        return alpha < smooth_ece(rows, alpha)

    n = len(distinct)
    everyone = np.arange(n)
    bandwidth = np.ones(n)
    searching = everyone[~holds(everyone, 1.0)]
    false_side, true_side = np.ones(n), np.zeros(n)
    for _ in range(_RELPLOT_BISECTION_STEPS):
        middle = (false_side + true_side) / 2
        for alpha in np.unique(middle[searching]):
            rows = searching[middle[searching] == alpha]
            ok = holds(rows, float(alpha))
            true_side[rows[ok]] = alpha
            false_side[rows[~ok]] = alpha
    bandwidth[searching] = false_side[searching]

    out = np.empty(n)
    for sigma in np.unique(bandwidth):
        rows = everyone[bandwidth == sigma]
        out[rows] = smooth_ece(rows, float(sigma))
    return out[inverse]


def _point(weighted: Callable, conf: np.ndarray, corr: np.ndarray, **options) -> float:
    atom_conf, atom_corr, counts = _atoms(conf, corr)
    return float(weighted(atom_conf, atom_corr, counts[None, :].astype(np.float64), **options)[0])


# --------------------------------------------------------------------------------------
# Point metrics


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


@dataclass(frozen=True)
class _Resampling:
    """How the bootstrap scores a metric on count vectors over the atoms.

    `statistic` is the weighted estimator on the scale the interval is built on;
    `target` the weighted plug-in value of the quantity it estimates, i.e. what the
    statistic estimates when the observed questions are the population the resamples
    are drawn from (None: the statistic is its own plug-in, as every metric here but
    the debiased one); `report` the non-decreasing map from the statistic's scale to
    the metric's value (None: the identity); `bounds` the range of the metric's value.
    """

    statistic: Callable
    target: Callable | None = None
    report: Callable | None = None
    bounds: tuple[float, float] = (0.0, 1.0)


# The metrics whose interval is computed from the count matrix over atoms, without
# expanding resamples to n questions.
_WEIGHTED: dict[Callable, _Resampling] = {
    accuracy: _Resampling(_weighted_accuracy),
    mean_confidence: _Resampling(_weighted_mean_confidence),
    overconfidence: _Resampling(_weighted_overconfidence, bounds=(-1.0, 1.0)),
    binned_ece: _Resampling(_weighted_binned_ece),
    # The debiased estimator is unbiased for the squared error, and the plug-in squared
    # error of the observed questions is what its resamples estimate: the interval is
    # built there, where the bias correction is additive, then mapped to the L2 scale.
    debiased_l2_ce: _Resampling(_weighted_debiased_squared_ce, _weighted_squared_ce, _clipped_root),
    brier: _Resampling(_weighted_brier),
    auroc: _Resampling(_weighted_auroc),
    smece: _Resampling(_weighted_smece),
}


def _weighted_resampling(metric: Callable) -> _Resampling | None:
    """How `metric` is evaluated on count vectors, or None: on each expanded resample.

    The weighted smECE mirrors relplot's reflected-Gaussian smoother (its default). With
    relplot's logit-scaling option on, smECE resamples go through relplot itself; the
    option is read at each call, as `smece` reads it, since a user can set it after import.
    """
    if metric is smece and relplot.config.use_logit_scaling:
        return None
    return _WEIGHTED.get(metric)


# --------------------------------------------------------------------------------------
# Bootstrap


def _resampled_counts(rng: np.random.Generator, counts: np.ndarray, iters: int):
    """Yield blocks of bootstrap count vectors over the atoms, `iters` rows in all.

    Both bootstrap paths draw through here, so the same seed gives them the same resamples.
    """
    n = int(counts.sum())
    p = counts / n
    rows = max(1, _MAX_BLOCK_CELLS // len(counts))
    for start in range(0, iters, rows):
        yield rng.multinomial(n, p, size=min(rows, iters - start)).astype(np.float64)


def _check_bootstrap_options(metric, iters, level=None, method=None) -> int:
    if not callable(metric):
        raise ValueError(f"metric must be a callable f(confidence, correct), got {metric!r}")
    try:
        iters = operator.index(iters)
    except TypeError:
        raise ValueError(f"iters must be a non-negative integer, got {iters!r}") from None
    if iters < 0:
        raise ValueError(f"iters must be a non-negative integer, got {iters}")
    if level is not None and (
        not isinstance(level, (int, float, np.number)) or not 0.0 < level < 1.0
    ):
        raise ValueError(f"level must lie strictly between 0 and 1 (e.g. 0.95), got {level!r}")
    if method is not None and method not in INTERVAL_METHODS:
        raise ValueError(f"method must be one of {', '.join(INTERVAL_METHODS)}, got {method!r}")
    return iters


class _Scorer:
    """A metric evaluated on count vectors over one set of atoms, on the statistic's scale."""

    def __init__(self, metric: Callable, conf: np.ndarray, corr: np.ndarray):
        self.atom_conf, self.atom_corr, self.counts = _atoms(conf, corr)
        self.resampling = _weighted_resampling(metric)
        self.metric = metric
        # A metric of this module has its range; a generic one may lie anywhere.
        self.bounds = self.resampling.bounds if self.resampling is not None else (-math.inf, math.inf)

    def statistic(self, w: np.ndarray) -> np.ndarray:
        if self.resampling is not None:
            return self.resampling.statistic(self.atom_conf, self.atom_corr, w)
        # A generic metric sees the pairs repeated by their counts.
        return np.array(
            [
                float(self.metric(np.repeat(self.atom_conf, row), np.repeat(self.atom_corr, row)))
                for row in w.astype(np.intp)
            ],
            dtype=np.float64,
        )

    def observed(self) -> tuple[float, float]:
        """(estimate, target) at the observed counts, on the statistic's scale."""
        w = self.counts[None, :].astype(np.float64)
        with warnings.catch_warnings():
            # An undefined AUROC warns once, where the caller asks for the metric itself.
            warnings.simplefilter("ignore", RuntimeWarning)
            estimate = float(self.statistic(w)[0])
        if self.resampling is None or self.resampling.target is None:
            return estimate, estimate
        return estimate, float(self.resampling.target(self.atom_conf, self.atom_corr, w)[0])

    def report(self, values: np.ndarray) -> np.ndarray:
        if self.resampling is None or self.resampling.report is None:
            return values
        return self.resampling.report(values)


@dataclass(frozen=True)
class BootstrapDistribution:
    """A metric's estimate and its bootstrap resamples, ready to give intervals.

    Attributes
    ----------
    estimate : float
        The metric's estimate on the statistic's scale (for `debiased_l2_ce`, the
        debiased squared error, before the root; for every other metric, its value).
    target : float
        The plug-in value, at the observed questions, of what the estimate estimates:
        what the resamples scatter around when the estimator is unbiased. Equal to
        `estimate` for every plug-in metric (all here but `debiased_l2_ce`).
    resamples : ndarray of shape (k,)
        The statistic on each resample; resamples where it was NaN are left out.
    report : callable
        The non-decreasing map from the statistic's scale to the metric's value.
    bounds : (float, float)
        The range of the metric's value; interval endpoints are clipped into it (the
        basic interval can step past 0), which never uncovers a true value.
    """

    estimate: float
    target: float
    resamples: np.ndarray
    report: Callable = np.asarray
    bounds: tuple[float, float] = (-math.inf, math.inf)

    @property
    def value(self) -> float:
        """The metric's value, as the metric function returns it."""
        return float(self.report(np.float64(self.estimate)))

    def interval(self, method: str = "percentile", level: float = 0.95) -> tuple[float, float]:
        """A bootstrap interval for the metric's true value.

        With ``q(p)`` the p-quantile (linear interpolation) of ``resamples - target`` (the
        resamples' deviations from what they estimate), ``a = (1 - level) / 2``, and
        every endpoint mapped through `report` and clipped into `bounds`:

        - ``"percentile"``: ``[estimate + q(a), estimate + q(1 - a)]``; for a plug-in
          metric the a and 1 - a percentiles of the resamples (Efron & Tibshirani 1993,
          "An Introduction to the Bootstrap", ch. 13). It inherits the estimator's bias.
        - ``"basic"``: ``[estimate - q(1 - a), estimate - q(a)]``, the basic (reverse
          percentile) interval (Davison & Hinkley 1997, "Bootstrap Methods and their
          Application", eq. 5.6): the resamples' deviation from the observed questions
          stands in for the estimate's deviation from the truth, so a bias the resamples
          show is removed from both ends.
        - ``"bc"``: Efron's bias-corrected percentile interval (Efron 1987, "Better
          bootstrap confidence intervals", JASA 82:171, the BCa interval with
          acceleration 0): ``z0 = Phi^-1(share of deviations < 0, ties counting
          half)``, clipped to [1/(2k), 1 - 1/(2k)] for k resamples, and the interval is
          ``[estimate + q(Phi(2 z0 + z_a)), estimate + q(Phi(2 z0 - z_a))]`` with
          ``z_a = Phi^-1(a)``.

        Returns (nan, nan) when there are no resamples (0 iterations, or all NaN).
        """
        if method not in INTERVAL_METHODS:
            raise ValueError(f"method must be one of {', '.join(INTERVAL_METHODS)}, got {method!r}")
        if not isinstance(level, (int, float, np.number)) or not 0.0 < level < 1.0:
            raise ValueError(f"level must lie strictly between 0 and 1 (e.g. 0.95), got {level!r}")
        if len(self.resamples) == 0 or math.isnan(self.estimate) or math.isnan(self.target):
            return float("nan"), float("nan")
        alpha = (1.0 - level) / 2.0
        shift = self.estimate - self.target
        if method == "percentile":
            tails = [100.0 * alpha, 100.0 * (1.0 - alpha)]
            low, high = np.percentile(self.resamples, tails) + shift
        elif method == "basic":
            upper_dev, lower_dev = np.percentile(
                self.resamples, [100.0 * (1.0 - alpha), 100.0 * alpha]
            ) - self.target
            low, high = self.estimate - upper_dev, self.estimate - lower_dev
        else:
            k = len(self.resamples)
            below = np.count_nonzero(self.resamples < self.target)
            ties = np.count_nonzero(self.resamples == self.target)
            share = min(max((below + 0.5 * ties) / k, 0.5 / k), 1.0 - 0.5 / k)
            normal = NormalDist()
            z0, z_alpha = normal.inv_cdf(share), normal.inv_cdf(alpha)
            levels = [normal.cdf(2.0 * z0 + z_alpha), normal.cdf(2.0 * z0 - z_alpha)]
            low, high = np.percentile(self.resamples, [100.0 * p for p in levels]) + shift
        low, high = np.clip(self.report(np.array([low, high], dtype=np.float64)), *self.bounds)
        return float(low), float(high)


def _warn_nan_resamples(n_nan: int, iters: int) -> None:
    if n_nan and n_nan == iters:
        warnings.warn(
            f"the metric is NaN on all {iters} bootstrap resamples; the interval is (nan, nan)",
            RuntimeWarning,
            stacklevel=3,
        )
    elif n_nan:
        warnings.warn(
            f"the metric is NaN on {n_nan} of {iters} bootstrap resamples; they are left out "
            f"of the interval",
            RuntimeWarning,
            stacklevel=3,
        )


def bootstrap_distribution(
    metric, confidence, correct, iters=1000, seed=0
) -> BootstrapDistribution:
    """Resample the questions `iters` times and score the metric on each resample.

    Parameters
    ----------
    metric, confidence, correct, iters, seed
        As for `bootstrap_ci`.

    Returns
    -------
    BootstrapDistribution
        Its `interval(method, level)` gives any of the `INTERVAL_METHODS` from the
        same resamples; ``bootstrap_ci(metric, c, y, iters, seed, level, method)`` is
        ``bootstrap_distribution(metric, c, y, iters, seed).interval(method, level)``.
    """
    iters = _check_bootstrap_options(metric, iters)
    scorer = _Scorer(metric, *_validate(confidence, correct))
    estimate, target = scorer.observed()
    rng = np.random.default_rng(seed)
    blocks = [scorer.statistic(w) for w in _resampled_counts(rng, scorer.counts, iters)]
    stats = np.concatenate(blocks) if blocks else np.empty(0)
    nan = np.isnan(stats)
    _warn_nan_resamples(int(nan.sum()), iters)
    return BootstrapDistribution(estimate, target, stats[~nan], scorer.report, scorer.bounds)


def bootstrap_ci(
    metric, confidence, correct, iters=1000, seed=0, level=0.95, method="percentile"
) -> tuple[float, float]:
    """Bootstrap interval of a corpus metric, resampling questions.

    Parameters
    ----------
    metric : callable ``f(confidence, correct) -> float``
        Any corpus metric, invariant to question order. The module's own `accuracy`,
        `mean_confidence`, `binned_ece` and `debiased_l2_ce` (default bins), `brier`
        and `auroc` are evaluated for all resamples at once, and `smece` per resample on
        the distinct pairs with weights (a few milliseconds each, whatever n); any other
        callable (e.g. a lambda around a metric) is called once per resample on arrays
        of n questions, so it costs ``iters`` times one evaluation on n questions.
    confidence : array-like of shape (n,), values in [0, 1]
    correct : array-like of shape (n,), values in {0, 1} or bool
    iters : int, default 1000
        Number of bootstrap resamples; 0 skips the bootstrap and returns (nan, nan).
    seed : int, default 0
        Seed of ``np.random.default_rng``; the same seed gives the same interval.
    level : float in (0, 1), default 0.95
    method : {"percentile", "basic", "bc"}, default "percentile"
        How resamples become an interval: see `BootstrapDistribution.interval`, which
        gives the formulas and references. `scripts/coverage.py` measures each one's
        coverage.

    Returns
    -------
    (low, high) : tuple of float
        With the default method, the ``(1 - level)/2`` and ``(1 + level)/2`` percentiles
        (linear interpolation) of the metric over resamples; for `debiased_l2_ce` the
        interval is built on the debiased squared error, shifted by its plug-in bias
        (see `BootstrapDistribution`), and its endpoints then square-rooted (clipped at
        0). Each resample draws n questions with replacement; as the metric depends only
        on the multiset of (confidence, correct) pairs, it is drawn as counts
        ``multinomial(n, counts / n)`` over the distinct pairs (sorted by confidence,
        then correct), and a generic `metric` receives those pairs repeated by their
        counts (correct as float 0.0/1.0). Resamples where the metric is NaN (AUROC on a
        resample with one class) are dropped with a RuntimeWarning; if all are, the
        interval is (nan, nan).
    """
    _check_bootstrap_options(metric, iters, level, method)
    distribution = bootstrap_distribution(metric, confidence, correct, iters, seed)
    return distribution.interval(method, level)


@dataclass(frozen=True)
class PairedBootstrap:
    """Two models' bootstrap distributions over the same resampled questions.

    `a` and `b` are each model's own distribution (each a plain bootstrap of that
    model); `difference` is that of ``metric(a) - metric(b)`` on the metric's scale,
    resample by resample.
    """

    a: BootstrapDistribution
    b: BootstrapDistribution
    difference: BootstrapDistribution


def _marginal_counts(w: np.ndarray, order: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Sum the columns of joint counts `w` into the counts of one model's atoms."""
    return np.add.reduceat(w[:, order], starts, axis=1)


def paired_bootstrap_distributions(
    metric, confidence_a, correct_a, confidence_b, correct_b, iters=1000, seed=0
) -> PairedBootstrap:
    """Resample questions once for two models that answered the same questions.

    Parameters
    ----------
    metric, confidence_a, correct_a, confidence_b, correct_b, iters, seed
        As for `paired_bootstrap_ci`.

    Returns
    -------
    PairedBootstrap
        Each resample draws n question indices with replacement and scores both models
        on them. As with `bootstrap_distribution`, it is drawn as counts
        ``multinomial(n, counts / n)`` over the distinct joint tuples
        (confidence_a, correct_a, confidence_b, correct_b), and each model's counts over
        its own atoms are the sums of those; resamples where either model's metric is
        NaN are left out of all three distributions.
    """
    iters = _check_bootstrap_options(metric, iters)
    conf_a, corr_a = _validate(confidence_a, correct_a)
    conf_b, corr_b = _validate(confidence_b, correct_b)
    if len(conf_a) != len(conf_b):
        raise ValueError(
            f"model a and model b have different numbers of questions ({len(conf_a)} vs "
            f"{len(conf_b)}); pass the questions both answered, in the same order"
        )
    scorers = (_Scorer(metric, conf_a, corr_a), _Scorer(metric, conf_b, corr_b))
    joint, joint_index = np.unique(
        np.column_stack([conf_a, corr_a, conf_b, corr_b]), axis=0, return_inverse=True
    )
    joint_counts = np.bincount(joint_index.reshape(-1), minlength=len(joint))
    projections = []
    for columns in ((0, 1), (2, 3)):
        # Joint atoms -> this model's atoms (np.unique sorts pairs as `_atoms` does).
        _, model_index = np.unique(joint[:, columns], axis=0, return_inverse=True)
        model_index = model_index.reshape(-1)
        order = np.argsort(model_index, kind="stable")
        projections.append((order, _runs(model_index[order])))

    observed = [scorer.observed() for scorer in scorers]
    rng = np.random.default_rng(seed)
    stats: list[list[np.ndarray]] = [[], []]
    for w in _resampled_counts(rng, joint_counts, iters):
        for side, (scorer, (order, starts)) in enumerate(zip(scorers, projections)):
            stats[side].append(scorer.statistic(_marginal_counts(w, order, starts)))
    stat_a, stat_b = (np.concatenate(s) if s else np.empty(0) for s in stats)
    nan = np.isnan(stat_a) | np.isnan(stat_b)
    _warn_nan_resamples(int(nan.sum()), iters)
    stat_a, stat_b = stat_a[~nan], stat_b[~nan]

    (estimate_a, target_a), (estimate_b, target_b) = observed
    report_a, report_b = scorers[0].report, scorers[1].report
    (low_a, high_a), (low_b, high_b) = scorers[0].bounds, scorers[1].bounds
    difference = BootstrapDistribution(
        float(report_a(np.float64(estimate_a)) - report_b(np.float64(estimate_b))),
        float(report_a(np.float64(target_a)) - report_b(np.float64(target_b))),
        report_a(stat_a) - report_b(stat_b),
        bounds=(low_a - high_b, high_a - low_b),
    )
    return PairedBootstrap(
        BootstrapDistribution(estimate_a, target_a, stat_a, report_a, scorers[0].bounds),
        BootstrapDistribution(estimate_b, target_b, stat_b, report_b, scorers[1].bounds),
        difference,
    )


def paired_bootstrap_ci(
    metric,
    confidence_a,
    correct_a,
    confidence_b,
    correct_b,
    iters=1000,
    seed=0,
    level=0.95,
    method="percentile",
) -> tuple[float, float, float]:
    """Paired bootstrap interval of the difference of a metric between two models.

    Parameters
    ----------
    metric : callable ``f(confidence, correct) -> float``
        As for `bootstrap_ci` (the module's metrics take the fast path).
    confidence_a, correct_a : array-like of shape (n,)
        Model a's confidence and verdict on each question.
    confidence_b, correct_b : array-like of shape (n,)
        Model b's, on the same n questions in the same order.
    iters : int, default 1000
        Number of resamples; 0 gives (difference, nan, nan).
    seed : int, default 0
    level : float in (0, 1), default 0.95
    method : {"percentile", "basic", "bc"}, default "percentile"
        See `BootstrapDistribution.interval`.

    Returns
    -------
    (difference, low, high) : tuple of float
        ``difference = metric(a) - metric(b)``, and its interval from resamples that
        draw the same question indices for both models, so that a question hard for
        both moves both metrics together and does not widen the interval. The
        interval is built on the metric's scale (for `debiased_l2_ce`, the clipped
        roots), with each model's plug-in target as in `bootstrap_ci`.
    """
    _check_bootstrap_options(metric, iters, level, method)
    paired = paired_bootstrap_distributions(
        metric, confidence_a, correct_a, confidence_b, correct_b, iters, seed
    )
    low, high = paired.difference.interval(method, level)
    return paired.difference.value, low, high
