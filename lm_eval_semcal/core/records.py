"""The per-question record: what the scorer returns, lm-eval logs and every report reads.

`QuestionRecord` is a frozen dataclass: one question's `SemanticClasses`, the gold
verdict on each class, the name of the grouping B and, when B is a
three-way judge (`llm` with `judge: true`), the judge's grade of each class: CORRECT,
INCORRECT or NOT_ATTEMPTED, as SimpleQA reports them. Everything else (plurality
class, confidence, correct, entropy, no-answer share, not-attempted share) is derived
from those, so a record cannot contradict itself.

Its one JSON form, written by `to_json` (and `str()`, which lm-eval's sample logger
calls on every entry of `filtered_resps`) and read by `QuestionRecord.read`:

    answers, class_ids, representatives, no_answer_class, counts   (SemanticClasses)
    class_correct      whether the gold lands in each class (False for no-answer)
    class_grades       only when graded: each class's grade (null for no-answer and for
                       a grade the judge wrote unreadably)
    plurality_class, confidence, correct, entropy, no_answer_share,
    not_attempted_share (only when graded), n_classes, grouping

A record that is not graded has neither graded key, so its JSON is what it was before
grades existed.

`correct` is `class_correct[plurality_class]`: the verdict on the plurality class, the
one whose confidence is measured. Every class is judged so that estimators that pick
another class (the split-half estimator) are scored exactly. A graded class is correct
exactly when its grade is CORRECT: INCORRECT, NOT_ATTEMPTED and an unreadable grade
are all not correct, and `not_attempted_share` tells the third kind apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from lm_eval_semcal.core.semantic_classes import SemanticClasses
from lm_eval_semcal.core.spellings import renamed_settings

# A three-way judge's grades of a class, as SimpleQA's grader gives them (A, B, C).
GRADES = ("CORRECT", "INCORRECT", "NOT_ATTEMPTED")

# The fields a saved record must have to be read back as one.
RECORD_KEYS = (
    "class_correct",
    "plurality_class",
    "confidence",
    "correct",
    "entropy",
    "no_answer_share",
    "n_classes",
    "grouping",
)


class DamagedRecord(ValueError):
    """A saved record whose stored numbers contradict its own classes."""


# Stored fields that must equal what the record derives from its classes and verdicts.
_DERIVED_KEYS = ("counts", "plurality_class", "confidence", "correct", "no_answer_share", "n_classes")
# Derived fields that a graded record has and an ungraded one lacks.
_GRADED_DERIVED_KEYS = ("not_attempted_share",)


@dataclass(frozen=True)
class QuestionRecord:
    """One question's classes, the verdict on each class, and the B that grouped them.

    Attributes:
        classes: the grouping of the question's M samples.
        class_correct: for each class, whether the gold answer lands in it; the
            no-answer class is never correct.
        grouping: the name of the grouping B.
        class_grades: None when B is no three-way judge; else for each class one of
            `GRADES`, or None for the no-answer class (never graded) and for a grade
            the judge wrote unreadably. A class is correct exactly when its grade is
            CORRECT.
    """

    classes: SemanticClasses
    class_correct: tuple[bool, ...]
    grouping: str
    class_grades: tuple[str | None, ...] | None = None

    def __post_init__(self) -> None:
        no_answer = self.classes.no_answer_class
        if len(self.class_correct) != self.classes.n_classes:
            raise ValueError(f"{len(self.class_correct)} verdicts for {self.classes.n_classes} classes")
        verdicts = tuple(bool(v) and k != no_answer for k, v in enumerate(self.class_correct))
        object.__setattr__(self, "class_correct", verdicts)
        if self.class_grades is None:
            return
        if isinstance(self.class_grades, str) or len(self.class_grades) != self.classes.n_classes:
            raise ValueError(
                f"class_grades {self.class_grades!r} is not one grade for each of {self.classes.n_classes} classes"
            )
        grades = tuple(None if k == no_answer else grade for k, grade in enumerate(self.class_grades))
        for k, (grade, verdict) in enumerate(zip(grades, verdicts, strict=True)):
            if grade is not None and grade not in GRADES:
                raise ValueError(f"class {k} has grade {grade!r}; a grade is one of {', '.join(GRADES)} or None")
            if verdict != (grade == "CORRECT"):
                raise ValueError(f"class {k} is graded {grade} but its verdict says correct={verdict}")
        object.__setattr__(self, "class_grades", grades)

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
    def not_attempted_share(self) -> float | None:
        """The share of the M samples in classes graded NOT_ATTEMPTED; None when not graded."""
        if self.class_grades is None:
            return None
        counts = self.classes.counts
        return sum(counts[k] for k, grade in enumerate(self.class_grades) if grade == "NOT_ATTEMPTED") / self.n_samples

    @property
    def n_classes(self) -> int:
        return self.classes.n_classes

    @property
    def n_samples(self) -> int:
        return self.classes.n_samples

    def to_dict(self) -> dict[str, Any]:
        """The record's JSON object (the field order of the samples files); the graded keys only when graded."""
        graded = self.class_grades is not None
        return {
            **self.classes.to_dict(),
            "class_correct": list(self.class_correct),
            **({"class_grades": list(self.class_grades)} if graded else {}),
            "plurality_class": self.plurality_class,
            "confidence": self.confidence,
            "correct": self.correct,
            "entropy": self.entropy,
            "no_answer_share": self.no_answer_share,
            **({"not_attempted_share": self.not_attempted_share} if graded else {}),
            "n_classes": self.n_classes,
            "grouping": self.grouping,
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
        if isinstance(value, dict):
            # A run saved by release 0.1 names B's field `collapse`.
            value = renamed_settings(value, warn=False)
        if not isinstance(value, dict) or not all(key in value for key in RECORD_KEYS):
            raise ValueError(
                "not a semcal question record: was this sample scored by the semcal_grouping filter?"
            )
        try:
            grades = value.get("class_grades")
            record = cls(
                SemanticClasses.from_dict(value),
                tuple(value["class_correct"]),
                str(value["grouping"]),
                None if grades is None else tuple(grades),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise DamagedRecord(f"damaged semcal record: {err}") from None
        derived = record.to_dict()
        for key in _DERIVED_KEYS:
            if value[key] != derived[key]:
                raise DamagedRecord(
                    f"damaged semcal record: it stores {key}={value[key]!r} but its classes give {derived[key]!r}"
                )
        for key in _GRADED_DERIVED_KEYS:
            if (key in value, value.get(key)) != (key in derived, derived.get(key)):
                stored = f"{key}={value[key]!r}" if key in value else f"no {key}"
                given = repr(derived[key]) if key in derived else "none (it has no class_grades)"
                raise DamagedRecord(f"damaged semcal record: it stores {stored} but its classes give {given}")
        return record
