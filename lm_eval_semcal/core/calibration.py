"""Corpus calibration metrics over questions, and their bootstrap intervals.

Every metric takes the same two arrays, one entry per question: `confidence` (the share
of samples in the plurality semantic class, in [0, 1]) and `correct` (1 when the gold
answer lands in that class, else 0; bool also accepted). Definitions follow the SPEC
section "Corpus metrics".

A corpus metric depends only on the multiset of (confidence, correct) pairs, and
confidence lives on the grid {1/M, ..., M/M}, so n questions collapse to at most 2M
*atoms* (distinct pairs) with counts. Each formula is written once, as a *weighted*
function of the atoms that evaluates a whole matrix of count vectors at once; the point
value is that function at the observed counts, and a bootstrap resample of the n
questions is a multinomial(n, counts / n) draw of new counts. A 1000-resample interval
over a million questions then takes well under a second instead of minutes.

Plain numpy; smECE is delegated to `relplot`, the reference implementation.
"""

from __future__ import annotations

import operator
import warnings
from collections.abc import Callable

import numpy as np
import relplot
import relplot.kernels
import scipy.signal

__all__ = [
    "accuracy",
    "auroc",
    "binned_ece",
    "bootstrap_ci",
    "brier",
    "mean_confidence",
    "smece",
]

_DEFAULT_N_BINS = 10

# Confidences computed on the way to us can sit a hair below a bin edge (1 - 45/50 is
# 0.09999999999999998, ten steps of 1/50 sum to 0.19999999999999998); the SPEC's bin
# rule adds this so they land in the bin whose lower edge they stand for.
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


def _weighted_brier(conf: np.ndarray, corr: np.ndarray, w: np.ndarray) -> np.ndarray:
    return (w @ (conf - corr) ** 2) / w.sum(axis=1)


def _weighted_binned_ece(
    conf: np.ndarray, corr: np.ndarray, w: np.ndarray, n_bins: int = _DEFAULT_N_BINS
) -> np.ndarray:
    bins = np.minimum(np.floor(conf * n_bins + _EDGE_EPS), n_bins - 1)
    starts = _runs(bins)
    n_b = np.add.reduceat(w, starts, axis=1)
    sum_conf = np.add.reduceat(w * conf, starts, axis=1)
    sum_corr = np.add.reduceat(w * corr, starts, axis=1)
    n = w.sum(axis=1, keepdims=True)
    # A bin a resample left empty would divide 0 by 0; np.where then gives it weight 0.
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = np.abs(sum_conf / n_b - sum_corr / n_b)
    return np.where(n_b > 0, n_b / n * gap, 0.0).sum(axis=1)


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
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    return _point(_weighted_binned_ece, conf, corr, n_bins=int(n_bins))


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


# The metrics whose interval is computed from the count matrix over atoms, without
# expanding resamples to n questions.
_WEIGHTED: dict[Callable, Callable] = {
    accuracy: _weighted_accuracy,
    mean_confidence: _weighted_mean_confidence,
    binned_ece: _weighted_binned_ece,
    brier: _weighted_brier,
    auroc: _weighted_auroc,
}
# The weighted smECE mirrors relplot's reflected-Gaussian smoother (its default); with
# relplot's logit-scaling option on, smECE resamples go through relplot itself.
if not relplot.config.use_logit_scaling:
    _WEIGHTED[smece] = _weighted_smece


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


def bootstrap_ci(
    metric, confidence, correct, iters=1000, seed=0, level=0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of a corpus metric, resampling questions.

    Parameters
    ----------
    metric : callable ``f(confidence, correct) -> float``
        Any corpus metric, invariant to question order. The module's own `accuracy`,
        `mean_confidence`, `binned_ece` (default bins), `brier` and `auroc` are evaluated
        for all resamples at once, and `smece` per resample on the distinct pairs with
        weights (a few milliseconds each, whatever n); any other callable (e.g. a lambda
        around a metric) is called once per resample on arrays of n questions, so it
        costs ``iters`` times one evaluation on n questions.
    confidence : array-like of shape (n,), values in [0, 1]
    correct : array-like of shape (n,), values in {0, 1} or bool
    iters : int, default 1000
        Number of bootstrap resamples; 0 skips the bootstrap and returns (nan, nan).
    seed : int, default 0
        Seed of ``np.random.default_rng``; the same seed gives the same interval.
    level : float in (0, 1), default 0.95

    Returns
    -------
    (low, high) : tuple of float
        The ``(1 - level)/2`` and ``(1 + level)/2`` percentiles (linear interpolation) of
        the metric over resamples. Each resample draws n questions with replacement; as
        the metric depends only on the multiset of (confidence, correct) pairs, it is
        drawn as counts ``multinomial(n, counts / n)`` over the distinct pairs (sorted by
        confidence, then correct), and a generic `metric` receives those pairs repeated
        by their counts (correct as float 0.0/1.0). Resamples where the metric is NaN
        (AUROC on a resample with one class) are dropped with a RuntimeWarning; if all
        are, the interval is (nan, nan).
    """
    if not callable(metric):
        raise ValueError(f"metric must be a callable f(confidence, correct), got {metric!r}")
    try:
        iters = operator.index(iters)
    except TypeError:
        raise ValueError(f"iters must be a non-negative integer, got {iters!r}") from None
    if iters < 0:
        raise ValueError(f"iters must be a non-negative integer, got {iters}")
    if not isinstance(level, (int, float, np.number)) or not 0.0 < level < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1 (e.g. 0.95), got {level!r}")
    conf, corr = _validate(confidence, correct)
    if iters == 0:
        return float("nan"), float("nan")

    atom_conf, atom_corr, counts = _atoms(conf, corr)
    rng = np.random.default_rng(seed)
    weighted = _WEIGHTED.get(metric)
    blocks = []
    for w in _resampled_counts(rng, counts, iters):
        if weighted is not None:
            blocks.append(weighted(atom_conf, atom_corr, w))
        else:
            blocks.append(
                [
                    float(metric(np.repeat(atom_conf, row), np.repeat(atom_corr, row)))
                    for row in w.astype(np.intp)
                ]
            )
    stats = np.concatenate([np.asarray(b, dtype=np.float64) for b in blocks])

    n_nan = int(np.isnan(stats).sum())
    if n_nan == iters:
        warnings.warn(
            f"the metric is NaN on all {iters} bootstrap resamples; the interval is (nan, nan)",
            RuntimeWarning,
            stacklevel=2,
        )
        return float("nan"), float("nan")
    if n_nan:
        warnings.warn(
            f"the metric is NaN on {n_nan} of {iters} bootstrap resamples; they are left out "
            f"of the interval",
            RuntimeWarning,
            stacklevel=2,
        )
    low, high = np.nanpercentile(stats, [50.0 * (1.0 - level), 50.0 * (1.0 + level)])
    return float(low), float(high)
