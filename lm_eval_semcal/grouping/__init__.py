"""Layer 2, grouping: the groupings B and their registry.

`base` holds the interface every B implements (`Grouping`, `KeyGrouping`) and the
first-appearance grouping the model-based B share; `registry` finds a B by name and
loads its module on first use; `strings` holds exact, normalize and numeric;
`embedding`, `nli` and `llm` (with `llm_clients`) the model-based B, whose model
answers `judgement_cache` keeps on disk.

May import: core, and the libraries a B needs (sentence-transformers, transformers,
torch, tenacity), the heavy ones only inside the B that needs them. Never lm_eval.
"""

from lm_eval_semcal.core.scoring import GoldRequest, GroupingRequest
from lm_eval_semcal.core.spellings import renamed_attribute
from lm_eval_semcal.grouping.base import Grouping, GroupingSpec, KeyGrouping
from lm_eval_semcal.grouping.registry import (
    available_groupings,
    check_grouping,
    get_grouping,
    preflight_grouping,
    register_grouping,
)

__all__ = [
    "Grouping",
    "GroupingSpec",
    "GoldRequest",
    "GroupingRequest",
    "KeyGrouping",
    "available_groupings",
    "check_grouping",
    "get_grouping",
    "preflight_grouping",
    "register_grouping",
]


def __getattr__(name: str):
    # Release 0.1's names (`get_collapser`, `Collapser`, ...), kept for one more release.
    return globals()[renamed_attribute(__name__, name)]
