"""Layer 2, grouping: the collapsing functions B and their registry.

`base` holds the interface every B implements (`Collapser`, `KeyCollapser`) and the
first-appearance grouping the model-based B share; `registry` finds a B by name and
loads its module on first use; `strings` holds exact, normalize and numeric;
`embedding`, `nli` and `llm` (with `llm_clients`) the model-based B, whose model
answers `judgement_cache` keeps on disk.

May import: core, and the libraries a B needs (sentence-transformers, transformers,
torch, tenacity), the heavy ones only inside the B that needs them. Never lm_eval.
"""

from lm_eval_semcal.core.scoring import GoldRequest, GroupingRequest
from lm_eval_semcal.grouping.base import Collapser, CollapserSpec, KeyCollapser
from lm_eval_semcal.grouping.registry import (
    available_collapsers,
    check_collapser,
    get_collapser,
    preflight_collapser,
    register_collapser,
)

__all__ = [
    "Collapser",
    "CollapserSpec",
    "GoldRequest",
    "GroupingRequest",
    "KeyCollapser",
    "available_collapsers",
    "check_collapser",
    "get_collapser",
    "preflight_collapser",
    "register_collapser",
]
