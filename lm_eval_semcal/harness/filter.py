"""The lm-eval filter `semcal_grouping`: each question's M responses scored into one record.

A thin adapter over `grouping.scoring_step.ScoringStep` (the scorer's settings and the
grouping B) and so over `core.scoring.score_questions`. lm-eval logs each
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
from lm_eval_semcal.core.spellings import OLD_FILTER_NAME, renamed_settings
from lm_eval_semcal.grouping.scoring_step import FILTER_NAME, ScoringStep
from lm_eval_semcal.harness import releases


@register_filter(OLD_FILTER_NAME)
@register_filter(FILTER_NAME)
class SemanticClassesFilter(Filter):
    """Score each question's M responses: extract, group into classes, judge every class.

    Takes the settings of `ScoringStep` (style, answer_type, grouping, grouping_args,
    gold_match), or release 0.1's names for them (with a warning); B is built once,
    when lm-eval builds the filter. Registered under release 0.1's name too.
    """

    def __init__(self, **settings: Any) -> None:
        super().__init__()
        self.step = self._step(settings)
        self.step.check()
        self.gold_match = self.step.applied_gold_match

    @staticmethod
    def _step(settings: dict[str, Any]) -> ScoringStep:
        return ScoringStep(**renamed_settings(settings, warn=True))

    @classmethod
    def check_settings(cls, **settings: Any) -> None:
        """Raise ValueError for a bad setting (TypeError for an unknown one); builds nothing.

        Lets a task reject its filter settings before generation without loading the
        model a grouping may need.
        """
        cls._step(settings).check()

    @classmethod
    def preflight(cls, **settings: Any) -> None:
        """`check_settings`, then whether the model or endpoint of a model-based B can be used.

        lm-eval builds filters when it applies them, after generation: a task calls this
        before it generates. Loads no weights.
        """
        cls._step(settings).preflight()

    def apply(self, resps: Iterable[Sequence[str]], docs: Sequence[dict]) -> list:
        records = self.step.score(
            [
                Question(doc["semcal_question"], doc_resps, doc["semcal_golds"])
                for doc_resps, doc in zip(resps, docs, strict=True)
            ]
        )
        return releases.filter_output(records)
