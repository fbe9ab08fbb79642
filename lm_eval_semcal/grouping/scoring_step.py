"""One scoring step, as a task's `semcal_classes` filter names it: the scorer's settings and B.

    step = ScoringStep(style="concise", answer_type="text", collapse="normalize")
    step.check()                      # every setting and B's options; builds nothing
    records = step.score(questions)   # builds B once, then core's scorer

The lm-eval filter (`harness.filter`) and `semcal rescore` / `semcal agree` (`runs`)
both score through it, so a task's YAML settings and a rescore mean the same thing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from lm_eval_semcal.core.records import QuestionRecord
from lm_eval_semcal.core.scoring import Question, check_scoring_settings, judged_by, score_questions
from lm_eval_semcal.grouping.base import Collapser
from lm_eval_semcal.grouping.registry import check_collapser, get_collapser, preflight_collapser

# The name a task YAML gives the step (`filter: - function: semcal_classes`).
FILTER_NAME = "semcal_classes"


def step_settings(step: dict[str, Any]) -> dict[str, Any]:
    """The settings of one filter step of a task config, as `ScoringStep` takes them.

    A YAML writes them beside `function`; lm-eval 0.5 moves them under `kwargs` when it
    reads the config (and records them so); either form, or a mix, is read here.

    >>> step_settings({"function": "semcal_classes", "style": "cot", "kwargs": {"collapse": "exact"}})
    {'style': 'cot', 'collapse': 'exact'}
    """
    return {key: value for key, value in step.items() if key not in ("function", "kwargs")} | dict(step.get("kwargs") or {})


def with_step_settings(step: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """`step` with `settings` set, where the step keeps its settings (beside `function`, or under `kwargs`).

    >>> with_step_settings({"function": "semcal_classes", "kwargs": {"collapse": "exact"}}, {"collapse": "nli"})
    {'function': 'semcal_classes', 'kwargs': {'collapse': 'nli'}}
    """
    if isinstance(step.get("kwargs"), dict):
        return {**step, "kwargs": {**step["kwargs"], **settings}}
    return {**step, **settings}


@dataclass(frozen=True)
class ScoringStep:
    """The settings of the `semcal_classes` filter.

    Attributes:
        style: concise, sentence or cot: how an answer is extracted from a response.
        answer_type: text or number.
        collapse: the collapsing function B: a registered name (exact, normalize,
            numeric, embedding, nli, llm, ...) or a "module:object" path.
        collapse_args: options passed to the collapsing function.
        gold_match: `same_class` (the gold, pushed through B, lands in the plurality
            class) or `contains` (a gold alias occurs in the plurality class's
            representative sentence; for sentence responses under a string B). A B
            that extracts short answers itself (`llm`) is always judged `same_class`:
            the sentence tasks' `contains` would pass "Paris or Lyon" for "Paris".
    """

    style: str = "concise"
    answer_type: str = "text"
    collapse: str = "normalize"
    collapse_args: dict[str, Any] | None = None
    gold_match: str = "same_class"

    def check(self) -> None:
        """Raise ValueError for a setting or an option of B that cannot work; builds nothing."""
        check_scoring_settings(self.style, self.answer_type, self.gold_match)
        if self.collapse_args is not None and not isinstance(self.collapse_args, dict):
            raise ValueError(f"{FILTER_NAME}: collapse_args={self.collapse_args!r} must be a mapping of options")
        check_collapser(self.collapse, **(self.collapse_args or {}))

    def preflight(self) -> None:
        """`check`, then whether the model or endpoint of a model-based B can be used; loads no weights."""
        self.check()
        preflight_collapser(self.collapse, **(self.collapse_args or {}))

    @cached_property
    def collapser(self) -> Collapser:
        self.check()
        return get_collapser(self.collapse, **(self.collapse_args or {}))

    @property
    def applied_gold_match(self) -> str:
        """The gold rule the scorer applies: by class for a B of short answers."""
        return judged_by(self.collapser, self.gold_match)

    def score(self, questions: Sequence[Question]) -> list[QuestionRecord]:
        return score_questions(
            questions, self.collapser, style=self.style, answer_type=self.answer_type, gold_match=self.gold_match
        )

    def settings(self) -> dict[str, Any]:
        """The step as a filter's YAML settings, with the gold rule it applies."""
        return {
            "style": self.style,
            "answer_type": self.answer_type,
            "collapse": self.collapse,
            "collapse_args": self.collapse_args,
            "gold_match": self.applied_gold_match,
        }
