"""The lm-eval filter `semcal_classes`: each question's M responses scored into one record.

A thin adapter over `grouping.scoring_step.ScoringStep` (the scorer's settings and the
collapsing function B) and so over `core.scoring.score_questions`. lm-eval logs each
question's record as the sample's `filtered_resps`, and `harness.metric_hooks.process_results`
reads it. All questions of a task go to the scorer in one batch, so a model-based B can
batch its work across questions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from lm_eval.api.filter import Filter
from lm_eval.api.registry import register_filter

from lm_eval_semcal.core.scoring import Question
from lm_eval_semcal.grouping.scoring_step import FILTER_NAME, ScoringStep
from lm_eval_semcal.harness import releases


@register_filter(FILTER_NAME)
class SemanticClassesFilter(Filter):
    """Score each question's M responses: extract, group into classes, judge every class.

    Takes the settings of `ScoringStep` (style, answer_type, collapse, collapse_args,
    gold_match); B is built once, when lm-eval builds the filter.
    """

    def __init__(self, **settings: Any) -> None:
        super().__init__()
        self.step = ScoringStep(**settings)
        self.step.check()
        self.gold_match = self.step.applied_gold_match

    @classmethod
    def check_settings(cls, **settings: Any) -> None:
        """Raise ValueError for a bad setting (TypeError for an unknown one); builds nothing.

        Lets a task reject its filter settings before generation without loading the
        model a collapsing function may need.
        """
        ScoringStep(**settings).check()

    @classmethod
    def preflight(cls, **settings: Any) -> None:
        """`check_settings`, then whether the model or endpoint of a model-based B can be used.

        lm-eval builds filters when it applies them, after generation: a task calls this
        before it generates. Loads no weights.
        """
        ScoringStep(**settings).preflight()

    def apply(self, resps: Iterable[Sequence[str]], docs: Sequence[dict]) -> list:
        records = self.step.score(
            [
                Question(doc["semcal_question"], doc_resps, doc["semcal_golds"])
                for doc_resps, doc in zip(resps, docs, strict=True)
            ]
        )
        return releases.filter_output(records)
