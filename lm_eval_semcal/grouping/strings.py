"""The string B: `exact` (the raw string), `normalize` (SQuAD/TriviaQA), `numeric` (as numbers)."""

from __future__ import annotations

from lm_eval_semcal.core.normalization import normalize_text, parse_number
from lm_eval_semcal.grouping.base import Collapser, CollapserSpec, KeyCollapser


def exact_key(answer: str) -> str | None:
    return answer if answer != "" else None


def normalize_key(answer: str) -> str | None:
    return normalize_text(answer) or None


def make_exact() -> Collapser:
    """The raw extracted string, untouched: the token-level baseline."""
    return KeyCollapser("exact", exact_key)


def make_normalize() -> Collapser:
    """SQuAD/TriviaQA normalisation: NFKC, lowercase, no punctuation or articles."""
    return KeyCollapser("normalize", normalize_key)


def make_numeric() -> Collapser:
    """Math answers compared as exact rational numbers (18 == 18.0 == $18)."""
    return KeyCollapser("numeric", parse_number)


EXACT = CollapserSpec(make_exact)
NORMALIZE = CollapserSpec(make_normalize)
NUMERIC = CollapserSpec(make_numeric)
