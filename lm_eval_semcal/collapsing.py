"""Collapsing functions B: map each extracted answer of a question to a semantic class.

A collapsing function does two things, both in batches over many questions so that a
model-based B (NLI, embeddings, an LLM judge) can batch its forward passes:

- `group`: turn each question's extracted answers into `SemanticClasses`;
- `matches_gold`: decide whether the gold answer, pushed through the same B, lands in
  the class of a given representative (any of the gold aliases may match).

New collapsing functions register under a name with `register_collapser` and are then
selectable from a task YAML (`collapse: NAME`, `collapse_args: {...}`) or from the
command line (`--metadata collapse=NAME`), with no change to tasks or metrics.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from lm_eval_semcal.normalization import normalize_text, parse_number
from lm_eval_semcal.semantic_classes import SemanticClasses


@dataclass(frozen=True)
class GroupingRequest:
    """One question's extracted answers (None = no answer) to be grouped.

    `responses`, when given, are the raw sampled texts the answers were extracted from,
    for a B that reads whole responses itself (`llm`); `answer_type` is the task's
    (text or number), for a B that compares the two kinds differently.
    """

    question: str
    answers: Sequence[str | None]
    responses: Sequence[str] | None = None
    answer_type: str = "text"


@dataclass(frozen=True)
class GoldRequest:
    """Does any of `golds` fall in the class that `representative` stands for?"""

    question: str
    representative: str
    golds: Sequence[str]
    answer_type: str = "text"


class Collapser(ABC):
    """A collapsing function B."""

    name: str = ""
    # True for a B whose class representatives are short answers it extracted itself,
    # even from sentence responses (`llm`): the gold is then judged by the class.
    short_answers: bool = False

    @abstractmethod
    def group(self, requests: Sequence[GroupingRequest]) -> list[SemanticClasses]:
        """Group each request's answers; classes numbered by first appearance."""

    @abstractmethod
    def matches_gold(self, requests: Sequence[GoldRequest]) -> list[bool]:
        """For each request, whether a gold alias lands in the representative's class."""


class KeyCollapser(Collapser):
    """A B defined by a key function: answers with equal keys share a class.

    A key of None sends the answer to the no-answer class (for `numeric`, an answer
    with no number in it).
    """

    def __init__(self, name: str, key: Callable[[str], Hashable | None]) -> None:
        self.name = name
        self.key = key

    def _key(self, answer: str | None) -> Hashable | None:
        return None if answer is None else self.key(answer)

    def group(self, requests: Sequence[GroupingRequest]) -> list[SemanticClasses]:
        return [
            SemanticClasses.from_keys(r.answers, [self._key(a) for a in r.answers])
            for r in requests
        ]

    def matches_gold(self, requests: Sequence[GoldRequest]) -> list[bool]:
        results = []
        for r in requests:
            target = self._key(r.representative)
            results.append(
                target is not None and any(self._key(g) == target for g in r.golds)
            )
        return results


def _exact_key(answer: str) -> str | None:
    return answer if answer != "" else None


def _normalize_key(answer: str) -> str | None:
    return normalize_text(answer) or None


_FACTORIES: dict[str, Callable[..., Collapser]] = {}
# Option values a model-based B checks before generation, without loading its model.
_OPTION_CHECKS: dict[str, Callable[..., None]] = {}
# What a model-based B's options point at outside the process, checked before generation.
_PREFLIGHTS: dict[str, Callable[..., None]] = {}


def register_collapser(
    name: str, check: Callable[..., None] | None = None, preflight: Callable[..., None] | None = None
) -> Callable[[Callable[..., Collapser]], Callable[..., Collapser]]:
    """Register a factory `factory(**options) -> Collapser` under `name`.

    `check(**options)`, given every option with the factory's defaults filled in, raises
    ValueError for values that cannot work; it must not load a model. `preflight(**options)`
    (same arguments) raises when what the options point at cannot be used (a model that
    cannot be resolved, an endpoint that cannot be reached); it runs once before
    generation and must not load weights either.
    """

    def decorate(factory: Callable[..., Collapser]) -> Callable[..., Collapser]:
        if name in _FACTORIES and _FACTORIES[name] is not factory:
            raise ValueError(f"collapsing function {name!r} is already registered")
        _FACTORIES[name] = factory
        if check is not None:
            _OPTION_CHECKS[name] = check
        if preflight is not None:
            _PREFLIGHTS[name] = preflight
        return factory

    return decorate


@register_collapser("exact")
def _make_exact() -> Collapser:
    """The raw extracted string, untouched: the token-level baseline."""
    return KeyCollapser("exact", _exact_key)


@register_collapser("normalize")
def _make_normalize() -> Collapser:
    """SQuAD/TriviaQA normalisation: NFKC, lowercase, no punctuation or articles."""
    return KeyCollapser("normalize", _normalize_key)


@register_collapser("numeric")
def _make_numeric() -> Collapser:
    """Math answers compared as exact rational numbers (18 == 18.0 == $18)."""
    return KeyCollapser("numeric", parse_number)


def available_collapsers() -> list[str]:
    return sorted(_FACTORIES)


def check_collapser(name: str, **options: Any) -> None:
    """Raise ValueError unless `name` is registered and takes `options`; builds nothing.

    Lets a task reject a misspelt B or option before generation, without loading a model.
    """
    if name not in _FACTORIES:
        raise ValueError(
            f"unknown collapsing function {name!r}; choose one of "
            f"{', '.join(available_collapsers())}"
        )
    try:
        bound = inspect.signature(_FACTORIES[name]).bind(**options)
    except TypeError as err:
        # Option names only: a value could be a secret the user misplaced.
        raise ValueError(f"collapsing function {name!r}: bad options {sorted(options)}: {err}") from None
    if name in _OPTION_CHECKS:
        bound.apply_defaults()
        _OPTION_CHECKS[name](**bound.arguments)


def preflight_collapser(name: str, **options: Any) -> None:
    """`check_collapser`, then whether the models or endpoints `options` name can be used.

    lm-eval builds filters only when it applies them, after generation; a task calls
    this before it generates, so an unreachable reader costs no sampling.
    """
    check_collapser(name, **options)
    if name in _PREFLIGHTS:
        bound = inspect.signature(_FACTORIES[name]).bind(**options)
        bound.apply_defaults()
        _PREFLIGHTS[name](**bound.arguments)


def get_collapser(name: str, **options: Any) -> Collapser:
    """Build the collapsing function registered as `name` with its options."""
    check_collapser(name, **options)
    return _FACTORIES[name](**options)


# Model-based B live in modules of their own and register themselves on import; their
# models load only when a collapser is built.
from lm_eval_semcal import embedding, llm, nli, synthetic  # noqa: E402,F401
