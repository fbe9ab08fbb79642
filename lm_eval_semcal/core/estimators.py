"""Estimators of a question's top-class confidence from its records' class ids.

The plurality share c_{k*}/M (`QuestionRecord.confidence`) picks the class and measures
its share on the same M samples, so it overstates the model's top-class probability,
the more so the smaller M is (docs/definitions.md, "Estimator bias"). Two ways to see
how much:

- `split_half_estimates`: k* chosen on the first floor(M/2) samples, its share measured
  on the rest: unbiased for the chosen class;
- `first_m_estimates`: every question cut to its first m samples, to watch the
  numbers move as M grows.

Both judge the class they pick with the record's own verdict on that class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lm_eval_semcal.core.records import QuestionRecord
from lm_eval_semcal.core.semantic_classes import plurality

__all__ = ["SplitEstimate", "first_m_estimates", "split_half_choice", "split_half_estimates"]


def split_half_choice(class_ids: Sequence[int]) -> tuple[int, float]:
    """The split estimator of one question: (k*, its share) from disjoint halves of the samples.

    k* is the plurality class of the first floor(M/2) samples, a tie going to the class
    that appeared first; its share is measured on the remaining M - floor(M/2) samples,
    so it is an unbiased estimate of that class's probability.
    """
    m = len(class_ids)
    if m < 2:
        raise ValueError(f"the split estimator needs at least 2 samples per question, got {m}")
    half = m // 2
    k, _ = plurality(class_ids[:half])
    second = list(class_ids[half:])
    return k, second.count(k) / len(second)


@dataclass(frozen=True, eq=False)
class SplitEstimate:
    """Per question: the split confidence and whether the split k* holds the gold answer.

    `switched` counts the questions whose split k* is not the full-sample plurality class.
    """

    confidence: np.ndarray
    correct: np.ndarray
    switched: int


def split_half_estimates(records: Sequence[QuestionRecord]) -> SplitEstimate:
    """The split estimator over questions (see `split_half_choice`).

    Parameters
    ----------
    records : sequence of QuestionRecord
        One per question, each of at least 2 samples.

    Returns
    -------
    SplitEstimate
        Per question, with M its samples and h = floor(M/2): ``confidence`` the share of
        the last M - h samples in k*, the plurality class of the first h (a tie to the
        class that appeared first); ``correct`` 1.0 when the gold answer lands in k*,
        else 0.0. ``switched`` counts the questions whose k* is not the plurality class of
        all M samples.

    Examples
    --------
    >>> from lm_eval_semcal.core.records import QuestionRecord
    >>> from lm_eval_semcal.core.semantic_classes import SemanticClasses
    >>> def record(answers, gold):
    ...     classes = SemanticClasses.from_keys(answers, answers)
    ...     return QuestionRecord(classes, tuple(r == gold for r in classes.representatives), "exact")
    >>> split = split_half_estimates([
    ...     record(["4", "4", "5", "5", "5", "5"], "4"),  # k* = "4" from 4, 4, 5; none of 5, 5, 5
    ...     record(["Paris", "Lyon", "Paris", "Paris"], "Paris"),  # a tie goes to Paris; 2 of 2
    ... ])
    >>> split.confidence.tolist(), split.correct.tolist(), split.switched
    ([0.0, 1.0], [1.0, 1.0], 1)
    """
    confidence, correct = [], []
    switched = 0
    for record in records:
        k, share = split_half_choice(record.classes.class_ids)
        switched += k != record.plurality_class
        confidence.append(share)
        correct.append(float(record.class_correct[k]))
    return SplitEstimate(np.array(confidence), np.array(correct), switched)


def first_m_estimates(records: Sequence[QuestionRecord], m: int) -> tuple[np.ndarray, np.ndarray]:
    """Confidence and correctness when each question keeps only its first `m` samples."""
    confidence, correct = [], []
    for record in records:
        k, share = plurality(record.classes.class_ids[:m])
        confidence.append(share)
        correct.append(bool(record.class_correct[k]))
    return np.array(confidence), np.array(correct)
