"""Bootstrap intervals of a corpus metric, resampling questions as counts over atoms.

A bootstrap resample of the n questions is a multinomial(n, counts / n) draw of new
counts over the atoms (`atoms`), and the metrics of `point_metrics` are evaluated on a
whole block of such count vectors at once. A 1000-resample interval over a million
questions then takes well under a second instead of minutes; any other metric is called
on each resample expanded back to n questions.

`bootstrap_distribution` draws the resamples once and its `interval` builds a
percentile, basic or bias-corrected (BC) interval from them; `bootstrap_ci` is that in
one call. `paired_bootstrap` builds on the same machinery for two models.

Public path: `lm_eval_semcal.core.calibration`, which re-exports the public names.
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

from lm_eval_semcal.core import atoms, point_metrics, selective, smece_kernel
from lm_eval_semcal.core.atoms import _atoms, _validate
from lm_eval_semcal.core.settings import BOOTSTRAP_SEED, CI_LEVEL, DEFAULT_BOOTSTRAP_ITERS

__all__ = ["INTERVAL_METHODS", "BootstrapDistribution", "bootstrap_ci", "bootstrap_distribution"]

# The ways `BootstrapDistribution.interval` turns resamples into an interval.
INTERVAL_METHODS = ("percentile", "basic", "bc")

# Bootstrap count matrices are drawn and evaluated in blocks of at most this many cells,
# so that continuous confidences (one atom per question) cannot exhaust memory.
_MAX_BLOCK_CELLS = 1 << 22


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
# expanding resamples to n questions, each with its weighted formula.
_WEIGHTED: dict[Callable, _Resampling] = {
    point_metrics.accuracy: _Resampling(atoms._weighted_accuracy),
    point_metrics.mean_confidence: _Resampling(atoms._weighted_mean_confidence),
    point_metrics.overconfidence: _Resampling(atoms._weighted_overconfidence, bounds=(-1.0, 1.0)),
    point_metrics.binned_ece: _Resampling(atoms._weighted_binned_ece),
    # The debiased estimator is unbiased for the squared error, and the plug-in squared
    # error of the observed questions is what its resamples estimate: the interval is
    # built there, where the bias correction is additive, then mapped to the L2 scale.
    point_metrics.debiased_l2_ce: _Resampling(
        atoms._weighted_debiased_squared_ce, atoms._weighted_squared_ce, atoms._clipped_root
    ),
    point_metrics.brier: _Resampling(atoms._weighted_brier),
    point_metrics.auroc: _Resampling(atoms._weighted_auroc),
    point_metrics.smece: _Resampling(smece_kernel._weighted_smece),
    selective.aurc: _Resampling(atoms._weighted_aurc),
}


def _weighted_resampling(metric: Callable) -> _Resampling | None:
    """How `metric` is evaluated on count vectors, or None: on each expanded resample.

    The weighted smECE mirrors relplot's reflected-Gaussian smoother (its default). With
    relplot's logit-scaling option on, smECE resamples go through relplot itself; the
    option is read at each call, as `smece` reads it, since a user can set it after import.
    """
    if metric is point_metrics.smece and relplot.config.use_logit_scaling:
        return None
    return _WEIGHTED.get(metric)


# --------------------------------------------------------------------------------------
# Drawing and scoring resamples


def _resampled_counts(rng: np.random.Generator, counts: np.ndarray, iters: int):
    """Yield blocks of bootstrap count vectors over the atoms, `iters` rows in all.

    Both bootstrap paths draw through here, so the same seed gives them the same resamples.
    """
    n = int(counts.sum())
    p = counts / n
    rows = max(1, _MAX_BLOCK_CELLS // len(counts))
    for start in range(0, iters, rows):
        yield rng.multinomial(n, p, size=min(rows, iters - start)).astype(np.float64)


def _check_bootstrap_options(metric, iters) -> int:
    """`iters` as an int; ValueError unless `metric` is callable and `iters` a count."""
    if not callable(metric):
        raise ValueError(f"metric must be a callable f(confidence, correct), got {metric!r}")
    try:
        iters = operator.index(iters)
    except TypeError:
        raise ValueError(f"iters must be a non-negative integer, got {iters!r}") from None
    if iters < 0:
        raise ValueError(f"iters must be a non-negative integer, got {iters}")
    return iters


def _check_interval_options(level, method) -> None:
    """ValueError unless 0 < `level` < 1 and `method` is one of `INTERVAL_METHODS`."""
    if not isinstance(level, (int, float, np.number)) or not 0.0 < level < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1 (e.g. {CI_LEVEL}), got {level!r}")
    if method not in INTERVAL_METHODS:
        raise ValueError(f"method must be one of {', '.join(INTERVAL_METHODS)}, got {method!r}")


class _Scorer:
    """A metric evaluated on count vectors over one set of atoms, on the statistic's scale.

    The atoms (sorted by confidence, then correct, as `_atoms` gives them) may include
    pairs no observed question has: the calibration test scores draws over every
    (confidence, 0) and (confidence, 1) of the run's confidences.
    """

    def __init__(self, metric: Callable, atom_conf: np.ndarray, atom_corr: np.ndarray):
        self.atom_conf, self.atom_corr = atom_conf, atom_corr
        self.resampling = _weighted_resampling(metric)
        self.metric = metric
        # A metric of `point_metrics` has its range; a generic one may lie anywhere.
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

    def observed(self, counts: np.ndarray) -> tuple[float, float]:
        """(estimate, target) at the observed counts, on the statistic's scale."""
        w = counts[None, :].astype(np.float64)
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

    def interval(self, method: str = "percentile", level: float = CI_LEVEL) -> tuple[float, float]:
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

        Parameters
        ----------
        method : {"percentile", "basic", "bc"}, default "percentile"
        level : float in (0, 1), default 0.95

        Returns
        -------
        (low, high) : tuple of float
            (nan, nan) when there are no resamples (0 iterations, or all NaN).
        """
        _check_interval_options(level, method)
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
    metric, confidence, correct, iters=DEFAULT_BOOTSTRAP_ITERS, seed=BOOTSTRAP_SEED
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
    atom_conf, atom_corr, counts = _atoms(*_validate(confidence, correct))
    scorer = _Scorer(metric, atom_conf, atom_corr)
    estimate, target = scorer.observed(counts)
    rng = np.random.default_rng(seed)
    blocks = [scorer.statistic(w) for w in _resampled_counts(rng, counts, iters)]
    stats = np.concatenate(blocks) if blocks else np.empty(0)
    nan = np.isnan(stats)
    _warn_nan_resamples(int(nan.sum()), iters)
    return BootstrapDistribution(estimate, target, stats[~nan], scorer.report, scorer.bounds)


def bootstrap_ci(
    metric,
    confidence,
    correct,
    iters=DEFAULT_BOOTSTRAP_ITERS,
    seed=BOOTSTRAP_SEED,
    level=CI_LEVEL,
    method="percentile",
) -> tuple[float, float]:
    """Bootstrap interval of a corpus metric, resampling questions.

    Parameters
    ----------
    metric : callable ``f(confidence, correct) -> float``
        Any corpus metric, invariant to question order. This package's `accuracy`,
        `mean_confidence`, `overconfidence`, `binned_ece` and `debiased_l2_ce` (default
        bins), `brier`, `auroc` and `aurc` are evaluated for all resamples at once, and
        `smece` per resample on the distinct pairs with weights (a few milliseconds each,
        whatever n; through relplot itself when relplot's logit scaling is on); any
        other callable (e.g. a lambda around a metric) is called once per resample on
        arrays of n questions, so it costs ``iters`` times one evaluation on n questions.
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
        counts (correct as float 0.0/1.0). Endpoints are clipped into the metric's range
        ([-1, 1] for `overconfidence`, else [0, 1]; a generic metric's are not clipped).
        Resamples where the metric is NaN (AUROC on a resample with one class) are
        dropped with a RuntimeWarning; if all are, the interval is (nan, nan).

    Examples
    --------
    >>> from lm_eval_semcal.core.calibration import accuracy, bootstrap_ci, brier
    >>> bootstrap_ci(accuracy, [0.5, 0.5, 0.5], [1, 1, 1])  # every resample is all right
    (1.0, 1.0)
    >>> bootstrap_ci(brier, [0.25, 0.5], [0, 1], iters=0)
    (nan, nan)

    Four questions, four distinct pairs: each resample is multinomial(4, [1/4] * 4) counts
    of them, drawn by ``np.random.default_rng(0)``; the interval is the 2.5 and 97.5
    percentiles of the 200 resamples' Brier scores.

    >>> bootstrap_ci(brier, [0.25, 0.5, 1.0, 1.0], [0, 1, 1, 0], iters=200, seed=0)
    (0.03125, 0.75)
    """
    _check_bootstrap_options(metric, iters)
    _check_interval_options(level, method)
    distribution = bootstrap_distribution(metric, confidence, correct, iters, seed)
    return distribution.interval(method, level)
