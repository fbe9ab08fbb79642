"""The per-question record: what the filter emits, lm-eval logs and the metrics read.

A record is a plain JSON-able dict so that it survives `--log_samples` unchanged and a
saved run can be re-read (by `semcal report`) without the model:

    answers, class_ids, representatives, no_answer_class, counts   (SemanticClasses)
    plurality_class, confidence, correct, entropy, no_answer_share, n_classes, collapse
"""

from __future__ import annotations

from lm_eval_semcal.semantic_classes import SemanticClasses

RECORD_KEYS = (
    "plurality_class",
    "confidence",
    "correct",
    "entropy",
    "no_answer_share",
    "n_classes",
    "collapse",
)


def question_record(grouping: SemanticClasses, correct: bool, collapse: str) -> dict:
    """The record of one question; `correct` is forced False when k* is no-answer."""
    return {
        **grouping.to_dict(),
        "plurality_class": grouping.plurality_class,
        "confidence": grouping.plurality_share,
        "correct": bool(correct) and not grouping.plurality_is_no_answer,
        "entropy": grouping.entropy,
        "no_answer_share": grouping.no_answer_share,
        "n_classes": grouping.n_classes,
        "collapse": collapse,
    }


def is_question_record(value: object) -> bool:
    return isinstance(value, dict) and all(key in value for key in RECORD_KEYS)
