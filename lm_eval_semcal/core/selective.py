"""Selective answering: how accurate the model is when it answers only where it is most sure.

A model that may abstain answers the questions whose confidence reaches a threshold t.
Lowering t from 1 admits the questions in order of decreasing confidence, all questions
of one confidence together (ties are never split by their order in the input): one
point per distinct confidence, its *coverage* (the share of questions answered) and its
*risk* (the error rate among them). Together they are the risk-coverage curve of El-Yaniv
& Wiener (2010, "On the Foundations of Noise-free Selective Classification", JMLR 11:1605),
and the area under it (AURC) is the summary of Geifman, Uziel & El-Yaniv (ICLR 2019,
"Bias-Reduced Uncertainty Estimation for Deep Neural Classifiers"). Unlike ECE, these
judge how well confidence *ranks* the answers, not whether its values are right.

Public path: `lm_eval_semcal.core.calibration`, which re-exports these.
"""

from __future__ import annotations

import numpy as np

from lm_eval_semcal.core.atoms import (
    _atoms,
    _levels_from_top,
    _point,
    _risk_coverage_steps,
    _validate,
    _weighted_aurc,
)

__all__ = ["aurc", "risk_coverage_curve", "selective_accuracy"]


def risk_coverage_curve(confidence, correct) -> tuple[np.ndarray, np.ndarray]:
    """The risk-coverage curve: one point per distinct confidence, the most confident first.

    Parameters
    ----------
    confidence : array-like of shape (n,), values in [0, 1]
    correct : array-like of shape (n,), values in {0, 1} or bool

    Returns
    -------
    (coverage, risk) : tuple of ndarray, each of shape (number of distinct confidences,)
        For the distinct confidences ``t_1 > t_2 > ...``:
        ``coverage_j = #{i : confidence_i >= t_j} / n`` (increasing, the last 1.0) and
        ``risk_j = #{i : confidence_i >= t_j, correct_i = 0} / #{i : confidence_i >= t_j}``,
        the error rate of a model that answers exactly the questions of confidence at
        least ``t_j`` (El-Yaniv & Wiener 2010). Questions of equal confidence enter
        together, so the curve does not depend on the order of the questions.

    Examples
    --------
    Two questions at 0.9 (one right), one right at 0.6, one wrong at 0.3:

    >>> from lm_eval_semcal.core.calibration import risk_coverage_curve
    >>> coverage, risk = risk_coverage_curve([0.9, 0.3, 0.6, 0.9], [1, 0, 1, 0])
    >>> coverage.tolist(), risk.tolist()  # errors 1 of 2, 1 of 3, 2 of 4
    ([0.5, 0.75, 1.0], [0.5, 0.3333333333333333, 0.5])
    """
    atom_conf, atom_corr, counts = _atoms(*_validate(confidence, correct))
    _, coverage, risk = _risk_coverage_steps(atom_conf, atom_corr, counts[None, :].astype(np.float64))
    return coverage[0], risk[0]


def aurc(confidence, correct) -> float:
    """Area under the risk-coverage curve (Geifman, Uziel & El-Yaniv, ICLR 2019).

    Parameters
    ----------
    confidence : array-like of shape (n,), values in [0, 1]
    correct : array-like of shape (n,), values in {0, 1} or bool

    Returns
    -------
    float in [0, 1]
        ``AURC = sum_j risk_j * (coverage_j - coverage_{j-1})``, ``coverage_0 = 0``, over
        the points of `risk_coverage_curve` (one per distinct confidence, the most
        confident first): the error rate among the questions answered, averaged over
        the share of questions answered, each step of coverage weighted by the risk at
        its end. Lower is better: a confidence that puts every right answer above every
        wrong one gives the least AURC its accuracy allows, one that tells nothing (a
        single confidence for all) gives the error rate. `bootstrap_ci` computes its
        interval on atoms, like the other metrics of this package.

    Examples
    --------
    The curve of `risk_coverage_curve`'s example: steps of 0.5, 0.25 and 0.25 in
    coverage, ending at risks 1/2, 1/3 and 1/2.

    >>> from lm_eval_semcal.core.calibration import aurc
    >>> aurc([0.9, 0.3, 0.6, 0.9], [1, 0, 1, 0])  # 0.5 * 1/2 + 0.25 * 1/3 + 0.25 * 1/2 = 11/24
    0.4583333333333333
    >>> aurc([0.5] * 4, [1, 0, 0, 0])  # one confidence: one point, the error rate
    0.75
    """
    return _point(_weighted_aurc, *_validate(confidence, correct))


def selective_accuracy(confidence, correct, coverage) -> float:
    """Accuracy on the most confident `coverage` share of the questions.

    Parameters
    ----------
    confidence : array-like of shape (n,), values in [0, 1]
    correct : array-like of shape (n,), values in {0, 1} or bool
    coverage : float in (0, 1]
        The share of the questions answered; 1 gives the accuracy.

    Returns
    -------
    float
        The accuracy of the ``m = coverage * n`` questions of highest confidence. Where
        the boundary falls inside a group of tied confidences, which of them are
        answered is left to a random tie-break, and the value is its expectation: with
        the group at confidence ``t`` (``n_t`` questions, ``r_t`` of them right) and
        ``n_>``, ``r_>`` the questions above it and the right ones among them,
        ``(r_> + (m - n_>) * r_t / n_t) / m``. For m a whole number it is the mean,
        over every order of the tied questions, of the accuracy of the first m; for
        any m it is continuous in `coverage` and equals ``1 - risk`` at each point of
        `risk_coverage_curve`.

    Examples
    --------
    Of the two questions at 0.9 one is right: answering one question at random among
    them is right half the time; answering three adds the one at 0.6, which is right.

    >>> from lm_eval_semcal.core.calibration import selective_accuracy
    >>> conf, correct = [0.9, 0.3, 0.6, 0.9], [1, 0, 1, 0]
    >>> selective_accuracy(conf, correct, 0.25)  # (0 + 1 * 1/2) / 1
    0.5
    >>> selective_accuracy(conf, correct, 0.75)  # (1 + 1 * 1/1) / 3
    0.6666666666666666
    """
    conf, corr = _validate(confidence, correct)
    if isinstance(coverage, bool) or not isinstance(coverage, (int, float, np.number)) or not 0.0 < coverage <= 1.0:
        raise ValueError(f"coverage must be a share of the questions in (0, 1], got {coverage!r}")
    atom_conf, atom_corr, counts = _atoms(conf, corr)
    (questions,), (right,) = _levels_from_top(atom_conf, atom_corr, counts[None, :].astype(np.float64))
    answered = coverage * len(conf)
    boundary = min(int(np.searchsorted(np.cumsum(questions), answered)), len(questions) - 1)
    questions_above = questions[:boundary].sum()
    right_above = right[:boundary].sum()
    at_boundary = answered - questions_above
    return float((right_above + at_boundary * right[boundary] / questions[boundary]) / answered)
