"""The demo's grouping: the synthetic world's towns as entities.

A town's three surface forms are one class; any other text is its own class. The
`semcal_synthetic` task names it by path (`grouping:
lm_eval_semcal.demo.entity:ENTITY`), so it serves the demo without appearing among the
registered B every user sees.
"""

from __future__ import annotations

from functools import lru_cache

from lm_eval_semcal.core.normalization import normalize_text
from lm_eval_semcal.demo.world import towns
from lm_eval_semcal.grouping.base import GroupingSpec, KeyGrouping

NAME = "synthetic_entity"


@lru_cache(maxsize=1)
def _town_of_form() -> dict[str, str]:
    return {normalize_text(form): town.name for town in towns() for form in town.forms}


def town_of(answer: str) -> str | None:
    """The town a surface form names ("the town of Marrow", "Marrow!" -> "Marrow"), or None.

    Compared after normalisation, so case, punctuation and articles do not matter; a
    wrong region ("Marrow, in the south" for a town in the north) is no form of the town.
    """
    return _town_of_form().get(normalize_text(answer))


def _entity_key(answer: str) -> tuple[str, str] | None:
    town = town_of(answer)
    if town is not None:
        return ("town", town)
    text = normalize_text(answer)
    return ("other", text) if text else None


def make_entity_grouping() -> KeyGrouping:
    """The synthetic world's towns: the three forms of a town are one class, any other text its own."""
    return KeyGrouping(NAME, _entity_key)


ENTITY = GroupingSpec(make_entity_grouping)
