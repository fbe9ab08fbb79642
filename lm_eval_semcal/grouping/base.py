"""The grouping interface, `Grouping` (defined in core, where the scorer uses it), and the helpers the B share.

A grouping B does two things, both in batches over many questions so that a
model-based B (NLI, embeddings, an LLM reader) can batch its forward passes:

- `group`: turn each question's extracted answers into `SemanticClasses`;
- `matches_gold`: decide whether the gold answer, pushed through the same B, lands in
  the class of a given representative (any of the gold aliases may match).

A B that judges answers three ways, as SimpleQA's grader does (`llm` with `judge:
true`), sets `grades` and offers `grade_gold`: CORRECT, INCORRECT or NOT_ATTEMPTED (or
None, no readable grade) for each request. The scorer then judges by it and keeps the
grades in the record.

`GroupingSpec` pairs a factory with the checks the registry runs before generation.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

from lm_eval_semcal.core.scoring import GoldRequest, Grouping, GroupingRequest
from lm_eval_semcal.core.semantic_classes import SemanticClasses

__all__ = [
    "Grouping",
    "GroupingSpec",
    "GoldRequest",
    "GroupingRequest",
    "KeyGrouping",
    "group_by_first_appearance",
]


class KeyGrouping(Grouping):
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
        return [SemanticClasses.from_keys(r.answers, self._keys(r.answers)) for r in requests]

    def _keys(self, answers: Sequence[str | None]) -> list[Hashable | None]:
        # A question's M samples repeat a few answers: each distinct one is keyed once.
        memo: dict[str | None, Hashable | None] = {}
        for answer in answers:
            if answer not in memo:
                memo[answer] = self._key(answer)
        return [memo[answer] for answer in answers]

    def matches_gold(self, requests: Sequence[GoldRequest]) -> list[bool]:
        results = []
        for r in requests:
            target = self._key(r.representative)
            results.append(
                target is not None and any(self._key(g) == target for g in r.golds)
            )
        return results


# One round of first-appearance grouping: for each (question index, new text, that
# question's class representatives so far), the index of the class the text joins, or
# None to open a new class.
JoinRound = Callable[[Sequence[tuple[int, str, Sequence[str]]]], Sequence[int | None]]


def group_by_first_appearance(
    requests: Sequence[GroupingRequest], texts: Sequence[Sequence[str | None]], join: JoinRound
) -> list[SemanticClasses]:
    """Group each question's answers by a similarity that need not be transitive.

    `texts[i]` holds the comparable form of each answer of question i (None: no
    answer). A question's distinct texts are taken in order of first appearance; each
    is compared with one representative per existing class (its first member) and
    joins the class `join` names, or opens a new one. Fixing the order this way is what
    makes the grouping well defined when similarity is not transitive, and the k-th
    distinct text costs one comparison per class so far, never one per answer. Every
    question moves one text forward per round, and `join` sees the whole round at once,
    so a model-based B batches its comparisons across questions.
    """
    distinct = [[t for t in dict.fromkeys(ts) if t is not None] for ts in texts]
    class_of: list[dict[str, int]] = [{} for _ in requests]
    representatives: list[list[str]] = [[] for _ in requests]
    for step in range(max((len(d) for d in distinct), default=0)):
        pending = [(i, d[step], representatives[i]) for i, d in enumerate(distinct) if step < len(d)]
        for (i, text, _), match in zip(pending, join(pending), strict=True):
            if match is None:
                match = len(representatives[i])
                representatives[i].append(text)
            class_of[i][text] = match
    return [
        SemanticClasses.from_keys(r.answers, [None if t is None else class_of[i][t] for t in ts])
        for i, (r, ts) in enumerate(zip(requests, texts, strict=True))
    ]


@dataclass(frozen=True)
class GroupingSpec:
    """A registered B: `factory(**options) -> Grouping`, and its checks before generation.

    `check(**options)`, given every option with the factory's defaults filled in, raises
    ValueError for values that cannot work; it must not load a model. `preflight(**options)`
    (same arguments) raises when what the options point at cannot be used (a model that
    cannot be resolved, an endpoint that cannot be reached); it runs once before
    generation and must not load weights either.
    """

    factory: Callable[..., Grouping]
    check: Callable[..., None] | None = None
    preflight: Callable[..., None] | None = None
