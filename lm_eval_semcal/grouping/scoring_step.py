"""One scoring step, as a task's `semcal_grouping` filter names it: the scorer's settings and B.

    step = ScoringStep(style="concise", answer_type="text", grouping="normalize")
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
from lm_eval_semcal.core.spellings import OLD_FILTER_NAME, renamed_settings, warn_old_spelling
from lm_eval_semcal.grouping.base import Grouping
from lm_eval_semcal.grouping.registry import check_grouping, get_grouping, preflight_grouping

# The name a task YAML gives the step (`filter: - function: semcal_grouping`).
FILTER_NAME = "semcal_grouping"


def is_scoring_step(step: dict[str, Any]) -> bool:
    """Whether a filter step of a task config is the scoring step, under today's name or 0.1's."""
    return step.get("function") in (FILTER_NAME, OLD_FILTER_NAME)


def in_todays_spelling(step: dict[str, Any], *, warn: bool) -> dict[str, Any]:
    """A scoring step with release 0.1's names (`semcal_classes`, `collapse`, ...) replaced.

    `warn`: True for a config a user wrote (each old name warns), False for a saved run's.

    >>> in_todays_spelling({"function": "semcal_classes", "collapse": "exact"}, warn=False)
    {'function': 'semcal_grouping', 'grouping': 'exact'}
    """
    if step.get("function") == OLD_FILTER_NAME:
        if warn:
            warn_old_spelling(OLD_FILTER_NAME, FILTER_NAME)
        step = {**step, "function": FILTER_NAME}
    if isinstance(step.get("kwargs"), dict):
        step = {**step, "kwargs": renamed_settings(step["kwargs"], warn=warn)}
    return renamed_settings(step, warn=warn)


def step_settings(step: dict[str, Any]) -> dict[str, Any]:
    """The settings of one filter step of a task config, as `ScoringStep` takes them.

    A YAML writes them beside `function`; lm-eval 0.5 moves them under `kwargs` when it
    reads the config (and records them so); either form, or a mix, is read here.

    >>> step_settings({"function": "semcal_grouping", "style": "cot", "kwargs": {"grouping": "exact"}})
    {'style': 'cot', 'grouping': 'exact'}
    """
    return {key: value for key, value in step.items() if key not in ("function", "kwargs")} | dict(step.get("kwargs") or {})


def with_step_settings(step: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """`step` with `settings` set, where the step keeps its settings (beside `function`, or under `kwargs`).

    >>> with_step_settings({"function": "semcal_grouping", "kwargs": {"grouping": "exact"}}, {"grouping": "nli"})
    {'function': 'semcal_grouping', 'kwargs': {'grouping': 'nli'}}
    """
    if isinstance(step.get("kwargs"), dict):
        return {**step, "kwargs": {**step["kwargs"], **settings}}
    return {**step, **settings}


@dataclass(frozen=True)
class ScoringStep:
    """The settings of the `semcal_grouping` filter.

    Attributes:
        style: concise, sentence or cot: how an answer is extracted from a response.
        answer_type: text or number.
        grouping: the grouping B: a registered name (exact, normalize,
            numeric, embedding, nli, llm, ...) or a "module:object" path.
        grouping_args: options passed to the grouping.
        gold_match: `same_class` (the gold, pushed through B, lands in the plurality
            class) or `contains` (a gold alias occurs in the plurality class's
            representative sentence; for sentence responses under a string B). A B
            that extracts short answers itself (`llm`) is always judged `same_class`:
            the sentence tasks' `contains` would pass "Paris or Lyon" for "Paris".
    """

    style: str = "concise"
    answer_type: str = "text"
    grouping: str = "normalize"
    grouping_args: dict[str, Any] | None = None
    gold_match: str = "same_class"

    def check(self) -> None:
        """Raise ValueError for a setting or an option of B that cannot work; builds nothing."""
        check_scoring_settings(self.style, self.answer_type, self.gold_match)
        if self.grouping_args is not None and not isinstance(self.grouping_args, dict):
            raise ValueError(f"{FILTER_NAME}: grouping_args={self.grouping_args!r} must be a mapping of options")
        check_grouping(self.grouping, **(self.grouping_args or {}))

    def preflight(self) -> None:
        """`check`, then whether the model or endpoint of a model-based B can be used; loads no weights."""
        self.check()
        preflight_grouping(self.grouping, **(self.grouping_args or {}))

    @cached_property
    def built_grouping(self) -> Grouping:
        self.check()
        return get_grouping(self.grouping, **(self.grouping_args or {}))

    @property
    def applied_gold_match(self) -> str:
        """The gold rule the scorer applies: by class for a B of short answers."""
        return judged_by(self.built_grouping, self.gold_match)

    def score(self, questions: Sequence[Question]) -> list[QuestionRecord]:
        return score_questions(
            questions, self.built_grouping, style=self.style, answer_type=self.answer_type, gold_match=self.gold_match
        )

    def settings(self) -> dict[str, Any]:
        """The step as a filter's YAML settings, with the gold rule it applies."""
        return {
            "style": self.style,
            "answer_type": self.answer_type,
            "grouping": self.grouping,
            "grouping_args": self.grouping_args,
            "gold_match": self.applied_gold_match,
        }
