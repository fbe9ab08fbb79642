"""The Brier score split into miscalibration, discrimination and uncertainty (CORP).

Dimitriadis, Gneiting & Jordan (2021, "Stable reliability diagrams for probabilistic
classifiers", PNAS 118(8) e2016191118) recalibrate the confidences by isotonic
regression of correct on confidence, computed by the pool-adjacent-violators algorithm
(PAV): the non-decreasing map of confidence that fits the verdicts best. Their CORP
("consistent, optimally binned, reproducible, PAV-based") reliability diagram plots it
against confidence, with no bins or bandwidth to choose, and the Brier scores of the
confidences, of their recalibration and of the constant base rate split the score
exactly.

Public path: `lm_eval_semcal.core.calibration`, which re-exports these.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lm_eval_semcal.core.atoms import _atoms, _runs, _validate, _weighted_accuracy, _weighted_brier

__all__ = ["BrierDecomposition", "brier_decomposition"]


@dataclass(frozen=True, eq=False)
class BrierDecomposition:
    """The CORP decomposition of a Brier score, and the isotonic curve behind it.

    Attributes
    ----------
    brier : float
        ``mean((confidence - correct)**2)``.
    miscalibration : float
        ``brier - brier(recalibrated)`` (MCB, >= 0): what recalibration would remove.
    discrimination : float
        ``uncertainty - brier(recalibrated)`` (DSC, >= 0): how much better than the base
        rate the recalibrated confidences predict.
    uncertainty : float
        ``mean((correct - mean(correct))**2) = acc * (1 - acc)`` (UNC): the Brier score of
        the base rate, the same for every model on these verdicts.
    confidence_levels : ndarray
        The distinct confidences, increasing.
    recalibrated : ndarray
        The isotonic regression of correct on confidence at each of them
        (non-decreasing): the CORP reliability diagram is ``recalibrated`` against
        ``confidence_levels``, and the diagonal is perfect calibration.
    """

    brier: float
    miscalibration: float
    discrimination: float
    uncertainty: float
    confidence_levels: np.ndarray
    recalibrated: np.ndarray


def _pool_adjacent_violators(right: np.ndarray, questions: np.ndarray) -> np.ndarray:
    """The non-decreasing sequence nearest, in squared error weighted by `questions`, to
    ``right / questions``: each level's fitted share of right answers.

    Adjacent blocks are pooled while one's share exceeds the next one's; a block's share
    is its right answers over its questions, kept as those two integer-valued sums so
    that pooling adds no rounding.
    """
    block_right: list[float] = []
    block_questions: list[float] = []
    block_levels: list[int] = []
    for level_right, level_questions in zip(right.tolist(), questions.tolist()):
        pooled_right, pooled_questions, levels = level_right, level_questions, 1
        # a / b > c / d with b, d > 0, compared without dividing.
        while block_right and block_right[-1] * pooled_questions > pooled_right * block_questions[-1]:
            pooled_right += block_right.pop()
            pooled_questions += block_questions.pop()
            levels += block_levels.pop()
        block_right.append(pooled_right)
        block_questions.append(pooled_questions)
        block_levels.append(levels)
    return np.repeat(np.array(block_right) / np.array(block_questions), block_levels)


def brier_decomposition(confidence, correct) -> BrierDecomposition:
    """The CORP decomposition ``brier = miscalibration - discrimination + uncertainty``.

    Parameters
    ----------
    confidence : array-like of shape (n,), values in [0, 1]
    correct : array-like of shape (n,), values in {0, 1} or bool

    Returns
    -------
    BrierDecomposition
        With ``r(c)`` the isotonic (non-decreasing) regression of correct on confidence,
        fitted by pool-adjacent-violators on the distinct confidences (questions of one
        confidence are one block from the start, weighted by their number), and
        ``BS(p) = mean((p_i - correct_i)**2)``:
        ``brier = BS(confidence)``, ``miscalibration = BS(confidence) - BS(r(confidence))``,
        ``discrimination = uncertainty - BS(r(confidence))``,
        ``uncertainty = BS(mean(correct)) = acc * (1 - acc)``. The three add up to the
        Brier score by construction, and both ``miscalibration`` and ``discrimination``
        are at least 0: r is the best non-decreasing map of confidence in Brier score,
        better than the identity and than the constant base rate (Dimitriadis, Gneiting
        & Jordan 2021, the CORP score decomposition). ``miscalibration`` is 0 exactly
        when the confidences are their own isotonic recalibration.

    Examples
    --------
    Confidence 0.2 for two right answers, 0.6 for one right and one wrong, 0.8 for one
    wrong: the shares right, 1 then 1/2 then 0, decrease, so PAV pools all three levels
    into one block of 3 right in 5, and the recalibration is the base rate 0.6.

    >>> from lm_eval_semcal.core.calibration import brier_decomposition
    >>> parts = brier_decomposition([0.2, 0.2, 0.6, 0.6, 0.8], [1, 1, 1, 0, 0])
    >>> parts.recalibrated.tolist()
    [0.6, 0.6, 0.6]
    >>> round(parts.brier, 12)  # (0.64 + 0.64 + 0.16 + 0.36 + 0.64) / 5
    0.488
    >>> round(parts.uncertainty, 12), round(parts.discrimination, 12)  # 0.6 * 0.4; none
    (0.24, 0.0)
    >>> round(parts.miscalibration, 12)  # 0.488 - 0.24
    0.248

    Right at 0.2 once in two, and at 0.8 always: the shares 1/2 and 1 increase already.

    >>> parts = brier_decomposition([0.2, 0.2, 0.8, 0.8], [0, 1, 1, 1])
    >>> parts.confidence_levels.tolist(), parts.recalibrated.tolist()
    ([0.2, 0.8], [0.5, 1.0])
    >>> round(parts.brier, 12), round(parts.miscalibration, 12)  # (0.04 + 0.64 + 2 * 0.04) / 4; minus 1/8
    (0.19, 0.065)
    >>> round(parts.uncertainty, 12), round(parts.discrimination, 12)  # 0.75 * 0.25; minus 1/8
    (0.1875, 0.0625)
    """
    atom_conf, atom_corr, counts = _atoms(*_validate(confidence, correct))
    starts = _runs(atom_conf)
    levels = atom_conf[starts]
    recalibrated = _pool_adjacent_violators(
        np.add.reduceat(counts * atom_corr, starts), np.add.reduceat(counts, starts).astype(np.float64)
    )
    # Each atom's recalibrated confidence: that of its level.
    atom_recalibrated = np.repeat(recalibrated, np.diff(np.r_[starts, len(atom_conf)]))
    w = counts[None, :].astype(np.float64)
    base_rate = np.full(len(atom_conf), _weighted_accuracy(atom_conf, atom_corr, w)[0])
    brier = float(_weighted_brier(atom_conf, atom_corr, w)[0])
    recalibrated_brier = float(_weighted_brier(atom_recalibrated, atom_corr, w)[0])
    uncertainty = float(_weighted_brier(base_rate, atom_corr, w)[0])
    return BrierDecomposition(
        brier=brier,
        miscalibration=brier - recalibrated_brier,
        discrimination=uncertainty - recalibrated_brier,
        uncertainty=uncertainty,
        confidence_levels=levels,
        recalibrated=recalibrated,
    )
