"""The per-question record: what the filter emits, lm-eval logs and the metrics read.

A record is a dict of JSON values. lm-eval's sample logger turns every entry of
`filtered_resps` into `str(entry)`, so the record's `str` is its JSON text: the samples
file then holds parseable JSON, and `read_record` reads a record back from either form,
so a saved run can be re-read (by `semcal report`) without the model:

    answers, class_ids, representatives, no_answer_class, counts   (SemanticClasses)
    class_correct      whether the gold lands in each class (False for no-answer)
    plurality_class, confidence, correct, entropy, no_answer_share, n_classes, collapse

`correct` is `class_correct[plurality_class]`: the verdict on the plurality class, the
one whose confidence is measured. Every class is judged so that estimators that pick
another class (the split-half estimator of `semcal report`) are scored exactly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from lm_eval_semcal.semantic_classes import SemanticClasses

RECORD_KEYS = (
    "class_correct",
    "plurality_class",
    "confidence",
    "correct",
    "entropy",
    "no_answer_share",
    "n_classes",
    "collapse",
)


class QuestionRecord(dict):
    """A question's record; `str()` gives JSON so lm-eval's logged samples stay parseable."""

    def __str__(self) -> str:
        return json.dumps(self, ensure_ascii=False)


def question_record(
    grouping: SemanticClasses, class_correct: Sequence[bool], collapse: str
) -> QuestionRecord:
    """The record of one question, given the gold verdict on each of its classes.

    The no-answer class is never correct, whatever verdict is passed for it.
    """
    if len(class_correct) != grouping.n_classes:
        raise ValueError(f"{len(class_correct)} verdicts for {grouping.n_classes} classes")
    verdicts = [bool(v) and k != grouping.no_answer_class for k, v in enumerate(class_correct)]
    return QuestionRecord({
        **grouping.to_dict(),
        "class_correct": verdicts,
        "plurality_class": grouping.plurality_class,
        "confidence": grouping.plurality_share,
        "correct": verdicts[grouping.plurality_class],
        "entropy": grouping.entropy,
        "no_answer_share": grouping.no_answer_share,
        "n_classes": grouping.n_classes,
        "collapse": collapse,
    })


def is_question_record(value: object) -> bool:
    return isinstance(value, dict) and all(key in value for key in RECORD_KEYS)


def read_record(value: dict | str) -> dict:
    """A record from lm-eval's in-memory samples (a dict) or a samples file (JSON text)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = None
    if not is_question_record(value):
        raise ValueError(
            "not a semcal question record: was this sample scored by the semcal_classes filter?"
        )
    return value
