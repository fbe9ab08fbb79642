"""The lm-eval filter: extract each sample's answer and group the M answers into classes.

Registered as `semcal_classes`. For every question it turns the M raw responses into one
JSON-able record (see `records`): the extracted answer and class of every sample, each
class's representative and whether it holds the gold answer, the plurality class and the
confidence. lm-eval logs that record as the
sample's `filtered_resps`, and `lm_eval_metrics.process_results` reads it.

All questions of a task go to the collapsing function in one batch, so a model-based B
can batch its work across questions.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable, Sequence
from typing import Any

from lm_eval.api.filter import Filter
from lm_eval.api.registry import register_filter

from lm_eval_semcal.collapsing import (
    GoldRequest,
    GroupingRequest,
    check_collapser,
    get_collapser,
    preflight_collapser,
)
from lm_eval_semcal.extraction import ANSWER_TYPES, STYLES, extract_answer
from lm_eval_semcal.normalization import normalize_text
from lm_eval_semcal.records import question_record

FILTER_NAME = "semcal_classes"
GOLD_MATCHES = ("same_class", "contains")


def gold_in_sentence(sentence: str, golds: Sequence[str]) -> bool:
    """Whether a normalised gold alias occurs as a whole-word span of the sentence.

    The task-specific rule for `sentence` responses under a string B: a whole sentence
    never equals a short gold answer, but a correct one contains it.
    """
    text = f" {normalize_text(sentence)} "
    return any(
        (alias := normalize_text(gold)) and re.search(rf" {re.escape(alias)} ", text)
        for gold in golds
    )


def _check_settings(
    style: str, answer_type: str, collapse: str, collapse_args: dict[str, Any] | None, gold_match: str
) -> None:
    for name, value, choices in (
        ("style", style, STYLES),
        ("answer_type", answer_type, ANSWER_TYPES),
        ("gold_match", gold_match, GOLD_MATCHES),
    ):
        if value not in choices:
            raise ValueError(f"semcal_classes: {name}={value!r}; choose one of {', '.join(choices)}")
    if collapse_args is not None and not isinstance(collapse_args, dict):
        raise ValueError(f"semcal_classes: collapse_args={collapse_args!r} must be a mapping of options")
    check_collapser(collapse, **(collapse_args or {}))


@register_filter(FILTER_NAME)
class SemanticClassesFilter(Filter):
    """Group each question's M responses into semantic classes.

    Args:
        style: concise, sentence or cot: how an answer is extracted from a response.
        answer_type: text or number.
        collapse: the registered collapsing function B (exact, normalize, numeric, ...).
        collapse_args: options passed to the collapsing function.
        gold_match: `same_class` (the gold, pushed through B, lands in the plurality
            class) or `contains` (a gold alias occurs in the plurality class's
            representative sentence; for sentence responses under a string B). A B
            that extracts short answers itself (`llm`) is always judged `same_class`:
            the sentence tasks' `contains` would pass "Paris or Lyon" for "Paris".
    """

    def __init__(
        self,
        style: str = "concise",
        answer_type: str = "text",
        collapse: str = "normalize",
        collapse_args: dict[str, Any] | None = None,
        gold_match: str = "same_class",
    ) -> None:
        super().__init__()
        _check_settings(style, answer_type, collapse, collapse_args, gold_match)
        self.style = style
        self.answer_type = answer_type
        self.collapser = get_collapser(collapse, **(collapse_args or {}))
        self.gold_match = "same_class" if self.collapser.short_answers else gold_match

    @classmethod
    def check_settings(cls, **settings: Any) -> None:
        """Raise ValueError for a bad setting (TypeError for an unknown one); builds nothing.

        Lets a task reject its filter settings before generation without loading the
        model a collapsing function may need; defaults are this class's own.
        """
        bound = inspect.signature(cls).bind(**settings)
        bound.apply_defaults()
        _check_settings(**bound.arguments)

    @classmethod
    def preflight(cls, **settings: Any) -> None:
        """`check_settings`, then whether the model or endpoint of a model-based B can be used.

        lm-eval builds filters when it applies them, after generation: a task calls this
        before it generates. Loads no weights.
        """
        cls.check_settings(**settings)
        preflight_collapser(settings.get("collapse", "normalize"), **(settings.get("collapse_args") or {}))

    def apply(self, resps: Iterable[Sequence[str]], docs: Sequence[dict]) -> list[dict]:
        resps = list(resps)
        for doc_resps in resps:
            # A string here would be grouped character by character.
            if isinstance(doc_resps, str) or not isinstance(doc_resps, Sequence):
                raise TypeError(
                    f"{FILTER_NAME} needs each question's M responses as a list, got "
                    f"{type(doc_resps).__name__}: a filter before it reduced them"
                )
        groupings = self.collapser.group(
            [
                GroupingRequest(
                    question=doc["semcal_question"],
                    answers=[extract_answer(r, self.style, self.answer_type) for r in doc_resps],
                    responses=list(doc_resps),
                    answer_type=self.answer_type,
                )
                for doc_resps, doc in zip(resps, docs, strict=True)
            ]
        )
        # Judge every answered class of every question, in one batch for a model-based B.
        judged = [
            (i, k)
            for i, grouping in enumerate(groupings)
            for k in range(grouping.n_classes)
            if k != grouping.no_answer_class
        ]
        if self.gold_match == "contains":
            verdicts = [
                gold_in_sentence(groupings[i].representatives[k], docs[i]["semcal_golds"])
                for i, k in judged
            ]
        else:
            verdicts = self.collapser.matches_gold(
                [
                    GoldRequest(
                        question=docs[i]["semcal_question"],
                        representative=groupings[i].representatives[k],
                        golds=docs[i]["semcal_golds"],
                        answer_type=self.answer_type,
                    )
                    for i, k in judged
                ]
            )
        class_correct = [[False] * grouping.n_classes for grouping in groupings]
        for (i, k), verdict in zip(judged, verdicts, strict=True):
            class_correct[i][k] = bool(verdict)
        return [
            question_record(grouping, class_verdicts, self.collapser.name)
            for grouping, class_verdicts in zip(groupings, class_correct, strict=True)
        ]
