"""The per-question record: what the scorer returns, lm-eval logs and every report reads.

`QuestionRecord` is a frozen dataclass: one question's `SemanticClasses`, the gold
verdict on each class and the name of the collapsing function B. Everything else
(plurality class, confidence, correct, entropy, no-answer share) is derived from those,
so a record cannot contradict itself.

Its one JSON form, written by `to_json` (and `str()`, which lm-eval's sample logger
calls on every entry of `filtered_resps`) and read by `QuestionRecord.read`:

    answers, class_ids, representatives, no_answer_class, counts   (SemanticClasses)
    class_correct      whether the gold lands in each class (False for no-answer)
    plurality_class, confidence, correct, entropy, no_answer_share, n_classes, collapse

`correct` is `class_correct[plurality_class]`: the verdict on the plurality class, the
one whose confidence is measured. Every class is judged so that estimators that pick
another class (the split-half estimator) are scored exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from lm_eval_semcal.core.semantic_classes import SemanticClasses

# The fields a saved record must have to be read back as one.
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


class DamagedRecord(ValueError):
    """A saved record whose stored numbers contradict its own classes."""


# Stored fields that must equal what the record derives from its classes and verdicts.
_DERIVED_KEYS = ("counts", "plurality_class", "confidence", "correct", "no_answer_share", "n_classes")


@dataclass(frozen=True)
class QuestionRecord:
    """One question's classes, the verdict on each class, and the B that grouped them.

    Attributes:
        classes: the grouping of the question's M samples.
        class_correct: for each class, whether the gold answer lands in it; the
            no-answer class is never correct.
        collapse: the name of the collapsing function B.
    """

    classes: SemanticClasses
    class_correct: tuple[bool, ...]
    collapse: str

    def __post_init__(self) -> None:
        if len(self.class_correct) != self.classes.n_classes:
            raise ValueError(f"{len(self.class_correct)} verdicts for {self.classes.n_classes} classes")
        verdicts = tuple(bool(v) and k != self.classes.no_answer_class for k, v in enumerate(self.class_correct))
        object.__setattr__(self, "class_correct", verdicts)

    @property
    def plurality_class(self) -> int:
        return self.classes.plurality_class

    @property
    def confidence(self) -> float:
        """The semantic confidence c_{k*} / M."""
        return self.classes.plurality_share

    @property
    def correct(self) -> bool:
        """Whether the gold answer lands in the plurality class."""
        return self.class_correct[self.plurality_class]

    @property
    def entropy(self) -> float:
        return self.classes.entropy

    @property
    def no_answer_share(self) -> float:
        return self.classes.no_answer_share

    @property
    def n_classes(self) -> int:
        return self.classes.n_classes

    @property
    def n_samples(self) -> int:
        return self.classes.n_samples

    def to_dict(self) -> dict[str, Any]:
        """The record's JSON object (the field order of the samples files)."""
        return {
            **self.classes.to_dict(),
            "class_correct": list(self.class_correct),
            "plurality_class": self.plurality_class,
            "confidence": self.confidence,
            "correct": self.correct,
            "entropy": self.entropy,
            "no_answer_share": self.no_answer_share,
            "n_classes": self.n_classes,
            "collapse": self.collapse,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    def __str__(self) -> str:
        # lm-eval's sample logger writes str(entry): the samples file then holds JSON.
        return self.to_json()

    @classmethod
    def read(cls, value: QuestionRecord | dict | str) -> QuestionRecord:
        """A record from the scorer (as is), a JSON object, or its text in a samples file.

        Raises ValueError when `value` is no semcal record, and `DamagedRecord` (a
        ValueError) when its stored numbers contradict its classes (an edited file).
        """
        if isinstance(value, QuestionRecord):
            return value
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                value = None
        if not isinstance(value, dict) or not all(key in value for key in RECORD_KEYS):
            raise ValueError(
                "not a semcal question record: was this sample scored by the semcal_classes filter?"
            )
        try:
            record = cls(SemanticClasses.from_dict(value), tuple(value["class_correct"]), str(value["collapse"]))
        except (KeyError, TypeError, ValueError) as err:
            raise DamagedRecord(f"damaged semcal record: {err}") from None
        derived = record.to_dict()
        for key in _DERIVED_KEYS:
            if value[key] != derived[key]:
                raise DamagedRecord(
                    f"damaged semcal record: it stores {key}={value[key]!r} but its classes give {derived[key]!r}"
                )
        return record
