"""The per-question scorer: extract each response's answer, group, judge every class, record.

One function does it for every caller (the lm-eval filter, `semcal rescore`, the demo,
a Python user):

    records = score_questions(questions, grouping, style="concise", answer_type="text")

All questions go to the grouping B in one batch, and so do all their classes
when they are judged against the gold answers, so a model-based B (NLI, embeddings, an
LLM reader) batches its work across questions. B is any object with the `Grouping`
interface; `lm_eval_semcal.grouping` holds the built-in ones and their registry.

Correctness (docs/definitions.md, "One question, step by step"): every answered class is
judged, the no-answer class never is. `gold_match="same_class"` pushes the gold aliases
through B (`matches_gold`); `"contains"` asks whether a normalised gold alias occurs as
a whole-word span of the class's representative sentence (the rule for `sentence`
responses under a string B). A B whose classes hold short answers it extracted itself
(`short_answers`, the `llm` reader) is always judged by class: containment would pass
"Paris or Lyon" for "Paris".

A B that is a three-way judge (`grades`, the `llm` reader with `judge: true`) grades
each class CORRECT, INCORRECT or NOT_ATTEMPTED (`grade_gold`) instead, as SimpleQA's
grader does; a class is correct when graded CORRECT, and the record keeps every grade
(`QuestionRecord.class_grades`) so that the not-attempted share is reported apart.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from lm_eval_semcal.core.extraction import ANSWER_TYPES, STYLES, extract_answer
from lm_eval_semcal.core.normalization import ARTICLES, normalize_text
from lm_eval_semcal.core.records import QuestionRecord
from lm_eval_semcal.core.semantic_classes import SemanticClasses

__all__ = [
    "GOLD_MATCHES",
    "GoldRequest",
    "Grouping",
    "GroupingRequest",
    "Question",
    "check_scoring_settings",
    "gold_in_sentence",
    "judged_by",
    "score_question",
    "score_questions",
]

GOLD_MATCHES: tuple[str, ...] = ("same_class", "contains")


@dataclass(frozen=True)
class GroupingRequest:
    """One question's extracted answers (None = no answer) to be grouped.

    `responses`, when given, are the raw sampled texts the answers were extracted from,
    for a B that reads whole responses itself (`llm`); `answer_type` is the task's
    (text or number), for a B that compares the two kinds differently.
    """

    question: str
    answers: Sequence[str | None]
    responses: Sequence[str] | None = None
    answer_type: str = "text"


@dataclass(frozen=True)
class GoldRequest:
    """Does any of `golds` fall in the class that `representative` stands for?"""

    question: str
    representative: str
    golds: Sequence[str]
    answer_type: str = "text"


class Grouping(ABC):
    """A grouping B: what every B implements, and all the scorer needs of one.

    `lm_eval_semcal.grouping` holds the built-in ones and their registry. The scorer
    calls `group` and `matches_gold` once each for a whole batch of questions.

    Optionally, a three-way judge: a B whose attribute `grades` is true also offers
    `grade_gold(requests: Sequence[GoldRequest]) -> list[str | None]`, each request's
    grade, one of `core.records.GRADES` (CORRECT, INCORRECT, NOT_ATTEMPTED) or None
    for no readable grade. The scorer then judges by it rather than `matches_gold`
    (under `same_class`) and records the grades. A B without `grades` is judged by
    `matches_gold` alone.
    """

    name: str = ""
    # True for a B whose class representatives are short answers it extracted itself,
    # even from sentence responses (`llm`): the gold is then judged by the class.
    short_answers: bool = False
    grades: bool = False

    @abstractmethod
    def group(self, requests: Sequence[GroupingRequest]) -> list[SemanticClasses]:
        """Group each request's answers; classes numbered by first appearance."""

    @abstractmethod
    def matches_gold(self, requests: Sequence[GoldRequest]) -> list[bool]:
        """For each request, whether a gold alias lands in the representative's class."""


@dataclass(frozen=True)
class Question:
    """One question to score: its text, the model's M raw responses and the gold aliases."""

    text: str
    responses: Sequence[str]
    golds: Sequence[str]


def check_scoring_settings(style: str, answer_type: str, gold_match: str) -> None:
    """Raise ValueError, naming the choices, for a style, answer type or gold rule that does not exist."""
    for name, value, choices in (
        ("style", style, STYLES),
        ("answer_type", answer_type, ANSWER_TYPES),
        ("gold_match", gold_match, GOLD_MATCHES),
    ):
        if value not in choices:
            raise ValueError(f"semcal_grouping: {name}={value!r}; choose one of {', '.join(choices)}")


def judged_by(grouping: Grouping, gold_match: str) -> str:
    """The gold rule the scorer applies with `grouping`: by class for a B of short answers."""
    return "same_class" if grouping.short_answers else gold_match


def gold_in_sentence(sentence: str, golds: Sequence[str]) -> bool:
    """Whether a normalised gold alias occurs as a whole-word span of the sentence.

    The task-specific rule for `sentence` responses under a string B: a whole sentence
    never equals a short gold answer, but a correct one contains it.
    """
    text = f" {normalize_text(sentence)} "
    # A gold made only of articles (The The) keeps them, so it is sought in the sentence
    # with its articles kept: each word normalised alone keeps an article.
    with_articles = f" {' '.join(filter(None, (normalize_text(word) for word in sentence.split())))} "
    return any(
        (alias := normalize_text(gold))
        and re.search(rf" {re.escape(alias)} ", with_articles if set(alias.split()) <= ARTICLES else text)
        for gold in golds
    )


def score_questions(
    questions: Sequence[Question],
    grouping: Grouping,
    *,
    style: str = "concise",
    answer_type: str = "text",
    gold_match: str = "same_class",
) -> list[QuestionRecord]:
    """The record of each question: its responses' answers grouped by B, every class judged.

    Parameters
    ----------
    questions : sequence of Question
        Each with at least one response (a list of M strings, not one string).
    grouping : Grouping
        The grouping B, e.g. ``lm_eval_semcal.get_grouping("normalize")``.
    style : {"concise", "sentence", "cot"}
        How an answer is extracted from a response (`extract_answer`).
    answer_type : {"text", "number"}
    gold_match : {"same_class", "contains"}
        How the gold answer is judged (see the module doc); a B of short answers is
        always judged `same_class`.

    Returns
    -------
    list of QuestionRecord
        One per question, in order. ``record.confidence`` is the plurality class's
        share of the M samples; ``record.correct`` whether the gold lands in that class;
        ``record.class_grades`` each class's grade when B is a three-way judge.
    """
    check_scoring_settings(style, answer_type, gold_match)
    for question in questions:
        # A string here would be grouped character by character.
        if isinstance(question.responses, str) or not isinstance(question.responses, Sequence):
            raise TypeError(
                f"the scorer needs each question's M responses as a list, got "
                f"{type(question.responses).__name__}: did a step before it reduce them to one?"
            )
    question_classes = grouping.group(
        [
            GroupingRequest(
                question=q.text,
                answers=[extract_answer(r, style, answer_type) for r in q.responses],
                responses=list(q.responses),
                answer_type=answer_type,
            )
            for q in questions
        ]
    )
    judged = [
        (i, k)
        for i, classes in enumerate(question_classes)
        for k in range(classes.n_classes)
        if k != classes.no_answer_class
    ]
    gold_requests = [
        GoldRequest(
            question=questions[i].text,
            representative=question_classes[i].representatives[k],
            golds=questions[i].golds,
            answer_type=answer_type,
        )
        for i, k in judged
    ]
    by_class = judged_by(grouping, gold_match) == "same_class"
    graded = by_class and bool(getattr(grouping, "grades", False))
    if graded:
        grades = list(grouping.grade_gold(gold_requests))
        verdicts = [grade == "CORRECT" for grade in grades]
    elif by_class:
        verdicts = grouping.matches_gold(gold_requests)
    else:
        verdicts = [gold_in_sentence(r.representative, r.golds) for r in gold_requests]
    class_correct = [[False] * classes.n_classes for classes in question_classes]
    for (i, k), verdict in zip(judged, verdicts, strict=True):
        class_correct[i][k] = bool(verdict)
    class_grades: list[tuple[str | None, ...] | None] = [None] * len(question_classes)
    if graded:
        by_question: list[list[str | None]] = [[None] * classes.n_classes for classes in question_classes]
        for (i, k), grade in zip(judged, grades, strict=True):
            by_question[i][k] = grade
        class_grades = [tuple(question_grades) for question_grades in by_question]
    return [
        QuestionRecord(classes, tuple(correct), grouping.name, question_grades)
        for classes, correct, question_grades in zip(question_classes, class_correct, class_grades, strict=True)
    ]


def score_question(
    question: str, responses: Sequence[str], golds: Sequence[str], grouping: Grouping, **settings: str
) -> QuestionRecord:
    """`score_questions` for one question: its text, its M responses and its gold aliases."""
    return score_questions([Question(question, responses, golds)], grouping, **settings)[0]
