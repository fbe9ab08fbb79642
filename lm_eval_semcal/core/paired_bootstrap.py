"""Paired bootstrap: two models that answered the same questions, resampled together.

Each resample draws the same question indices for both models, so that a question hard
for both moves both metrics together and does not widen the interval of their
difference. Built on the single-model machinery of `bootstrap`.

Public path: `lm_eval_semcal.core.calibration`, which re-exports the public names.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lm_eval_semcal.core.atoms import _atoms, _runs, _validate
from lm_eval_semcal.core.bootstrap import (
    BootstrapDistribution,
    _check_bootstrap_options,
    _check_interval_options,
    _resampled_counts,
    _Scorer,
    _warn_nan_resamples,
)
from lm_eval_semcal.core.settings import BOOTSTRAP_SEED, CI_LEVEL, DEFAULT_BOOTSTRAP_ITERS

__all__ = ["PairedBootstrap", "paired_bootstrap_ci", "paired_bootstrap_distributions"]


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
    metric, confidence_a, correct_a, confidence_b, correct_b, iters=DEFAULT_BOOTSTRAP_ITERS, seed=BOOTSTRAP_SEED
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
    model_atoms = (_atoms(conf_a, corr_a), _atoms(conf_b, corr_b))
    scorers = tuple(_Scorer(metric, atom_conf, atom_corr) for atom_conf, atom_corr, _ in model_atoms)
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

    observed = [scorer.observed(counts) for scorer, (_, _, counts) in zip(scorers, model_atoms)]
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
    iters=DEFAULT_BOOTSTRAP_ITERS,
    seed=BOOTSTRAP_SEED,
    level=CI_LEVEL,
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
        Seed of ``np.random.default_rng``; the same seed gives the same interval.
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
        roots), with each model's plug-in target as in `bootstrap_ci`. Each resample is
        ``multinomial(n, counts / n)`` counts over the distinct joint tuples
        (confidence_a, correct_a, confidence_b, correct_b); resamples where either
        model's metric is NaN are dropped with a RuntimeWarning.

    Examples
    --------
    >>> from lm_eval_semcal.core.calibration import accuracy, paired_bootstrap_ci
    >>> conf, correct = [0.25, 0.5, 1.0, 1.0], [0, 1, 1, 0]
    >>> paired_bootstrap_ci(accuracy, conf, correct, conf, correct)  # a model against itself
    (0.0, 0.0, 0.0)

    Model a answers all four questions right, model b the second and third: each
    resample draws multinomial(4, [1/4] * 4) counts of the four questions, and the
    difference on it is 1 minus b's share of those two.

    >>> paired_bootstrap_ci(accuracy, [1.0] * 4, [1, 1, 1, 1], conf, correct, iters=200, seed=0)
    (0.5, 0.0, 1.0)
    """
    _check_bootstrap_options(metric, iters)
    _check_interval_options(level, method)
    paired = paired_bootstrap_distributions(
        metric, confidence_a, correct_a, confidence_b, correct_b, iters, seed
    )
    low, high = paired.difference.interval(method, level)
    return paired.difference.value, low, high
