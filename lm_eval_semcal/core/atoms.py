"""The questions as atoms, and every corpus metric's formula written once on them.

A corpus metric depends only on the multiset of (confidence, correct) pairs, and
confidence lives on the grid {1/M, ..., M/M}, so n questions collapse to at most 2M
*atoms* (distinct pairs) with counts. Each formula here is a *weighted* function of the
atoms that evaluates a whole matrix of count vectors at once: the point metrics
(`point_metrics`) evaluate it at the observed counts, the bootstrap (`bootstrap`) at
multinomial draws of new counts. The input checks every public function shares live
here too.

Internal: the public path of the metrics is `lm_eval_semcal.core.calibration`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

_DEFAULT_N_BINS = 10

# Confidences computed on the way to us can sit a hair below a bin edge (1 - 45/50 is
# 0.09999999999999998, ten steps of 1/50 sum to 0.19999999999999998); the bin rule
# (docs/metrics.md, "Bins and the grid") adds this so they land in the bin whose lower
# edge they stand for.
_EDGE_EPS = 1e-9

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
    conf = _confidence_values(conf)
    if corr.dtype.kind not in "biuf":
        raise ValueError(
            f"correct must be numeric or bool, got dtype {corr.dtype}; convert it to 0/1"
        )
    corr = corr.astype(np.float64)
    if np.isnan(corr).any():
        raise ValueError("correct contains NaN; drop or fill those questions first")
    binary = (corr == 0.0) | (corr == 1.0)
    if not binary.all():
        bad = corr[~binary][0]
        raise ValueError(f"correct must be 0/1 or bool, got {bad}; binarise the labels first")
    return conf, corr


def _validate_confidence(confidence) -> np.ndarray:
    """Check per-question confidences that come without verdicts; return them as float64."""
    conf = np.asarray(confidence)
    if conf.ndim != 1:
        raise ValueError(
            f"confidence must be 1-D (one entry per question), got shape {conf.shape}; flatten it first"
        )
    if len(conf) == 0:
        raise ValueError("empty input: pass at least one question")
    return _confidence_values(conf)


def _confidence_values(conf: np.ndarray) -> np.ndarray:
    """The checks of a 1-D confidence array's values: numeric, no NaN, within [0, 1]."""
    if conf.dtype.kind not in "biuf":
        raise ValueError(
            f"confidence must be numeric, got dtype {conf.dtype}; convert it to float"
        )
    conf = conf.astype(np.float64)
    if np.isnan(conf).any():
        raise ValueError("confidence contains NaN; drop or fill those questions first")
    if conf.min() < 0.0 or conf.max() > 1.0:
        raise ValueError(
            f"confidence must lie in [0, 1], got values in [{conf.min()}, {conf.max()}]; "
            f"pass probabilities, not scores"
        )
    return conf


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


def _binned_gap_mean(
    conf: np.ndarray, corr: np.ndarray, w: np.ndarray, n_bins: int, of_gap: Callable
) -> np.ndarray:
    """``sum_b (n_b/n) * of_gap(gap_b)``, gap_b = mean confidence - mean correct in bin b."""
    n_b, sum_conf, sum_corr = _bin_sums(conf, corr, w, n_bins)
    n = w.sum(axis=1, keepdims=True)
    # A bin a resample left empty would divide 0 by 0; np.where then gives it weight 0.
    with np.errstate(invalid="ignore", divide="ignore"):
        value = of_gap(sum_conf / n_b - sum_corr / n_b)
    return np.where(n_b > 0, n_b / n * value, 0.0).sum(axis=1)


def _weighted_binned_ece(
    conf: np.ndarray, corr: np.ndarray, w: np.ndarray, n_bins: int = _DEFAULT_N_BINS
) -> np.ndarray:
    return _binned_gap_mean(conf, corr, w, n_bins, np.abs)


def _weighted_squared_ce(
    conf: np.ndarray, corr: np.ndarray, w: np.ndarray, n_bins: int = _DEFAULT_N_BINS
) -> np.ndarray:
    """Plug-in squared binned calibration error, ``sum_b (n_b/n) * (gap_b)**2``."""
    return _binned_gap_mean(conf, corr, w, n_bins, np.square)


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


def _levels_from_top(conf: np.ndarray, corr: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, per distinct confidence from the highest down: (questions, right answers) there."""
    starts = _runs(conf)
    # Highest confidence first: the order in which a threshold lowered from 1 admits questions.
    return np.add.reduceat(w, starts, axis=1)[:, ::-1], np.add.reduceat(w * corr, starts, axis=1)[:, ::-1]


def _risk_coverage_steps(
    conf: np.ndarray, corr: np.ndarray, w: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The risk-coverage curve's points per row, one per distinct confidence, highest first.

    Returns (step, coverage, risk), each of shape (k, levels): the share of the questions
    at that confidence, the share at or above it, and the error rate of those at or
    above it. A level a row gives no question has step 0 (and is no point of that row's
    curve); its risk is NaN when no question lies at or above it either.
    """
    questions, right = _levels_from_top(conf, corr, w)
    covered = np.cumsum(questions, axis=1)
    n = w.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        risk = np.cumsum(questions - right, axis=1) / covered
    return questions / n, covered / n, risk


def _weighted_aurc(conf: np.ndarray, corr: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Area under the risk-coverage curve: ``sum_t risk(t) * (coverage(t) - coverage(t_prev))``."""
    step, _, risk = _risk_coverage_steps(conf, corr, w)
    return np.where(step > 0, step * risk, 0.0).sum(axis=1)


def _point(weighted: Callable, conf: np.ndarray, corr: np.ndarray, **options) -> float:
    """A weighted formula at the observed questions' counts: its metric's point value."""
    atom_conf, atom_corr, counts = _atoms(conf, corr)
    return float(weighted(atom_conf, atom_corr, counts[None, :].astype(np.float64), **options)[0])
