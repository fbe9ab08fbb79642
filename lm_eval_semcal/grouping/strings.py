"""The string B: `exact` (the raw string), `normalize` (SQuAD/TriviaQA), `numeric` (as numbers)."""

from __future__ import annotations

from lm_eval_semcal.core.normalization import normalize_text, parse_number
from lm_eval_semcal.grouping.base import Grouping, GroupingSpec, KeyGrouping


def exact_key(answer: str) -> str | None:
    return answer if answer != "" else None


def normalize_key(answer: str) -> str | None:
    return normalize_text(answer) or None


def make_exact() -> Grouping:
    """The raw extracted string, untouched: the token-level baseline."""
    return KeyGrouping("exact", exact_key)


def make_normalize() -> Grouping:
    """SQuAD/TriviaQA normalisation: NFKC, lowercase, no punctuation or articles."""
    return KeyGrouping("normalize", normalize_key)


def make_numeric() -> Grouping:
    """Math answers compared as exact rational numbers (18 == 18.0 == $18)."""
    return KeyGrouping("numeric", parse_number)


EXACT = GroupingSpec(make_exact)
NORMALIZE = GroupingSpec(make_normalize)
NUMERIC = GroupingSpec(make_numeric)
