"""One question's M sampled answers grouped into semantic classes.

`SemanticClasses` is what a grouping produces and what every per-question
quantity of docs/definitions.md (confidence, plurality class, entropy, no-answer share)
is read from.
It is plain data: it round-trips through JSON, so lm-eval's `--log_samples` output keeps
the class of every sample and each class's representative text.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from functools import cached_property


def plurality(class_ids: Sequence[int]) -> tuple[int, float]:
    """The plurality class of samples and its share of them (the argmax of the counts).

    `class_ids` are numbered by first appearance (as `SemanticClasses` numbers them, or
    any prefix of such a numbering), so a tie goes to the smallest id: the class that
    appeared first. Every estimator of this package picks its class here.
    """
    if not class_ids:
        raise ValueError("the plurality of no samples is undefined: pass at least one class id")
    counts = Counter(class_ids)
    best = min(counts, key=lambda k: (-counts[k], k))
    return best, counts[best] / len(class_ids)


@dataclass(frozen=True)
class SemanticClasses:
    """The grouping of one question's samples.

    Attributes:
        answers: the extracted answer of each sample, None where the sample has no
            extractable answer (empty, cut off, refusal).
        class_ids: the class of each sample. Classes are numbered 0, 1, ... in order of
            first appearance among the samples; the reserved no-answer class takes a
            number like any other.
        representatives: the text standing for each class (its first member's answer);
            None for the no-answer class.
        no_answer_class: the id of the no-answer class, or None when every sample
            has an answer.
    """

    answers: tuple[str | None, ...]
    class_ids: tuple[int, ...]
    representatives: tuple[str | None, ...]
    no_answer_class: int | None = None
    counts: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.answers) != len(self.class_ids):
            raise ValueError(
                f"{len(self.answers)} answers but {len(self.class_ids)} class ids"
            )
        if not self.class_ids:
            raise ValueError("a question needs at least one sample to be grouped")
        n_classes = len(self.representatives)
        if sorted(set(self.class_ids)) != list(range(n_classes)):
            raise ValueError(
                f"class ids {sorted(set(self.class_ids))} must be exactly 0..{n_classes - 1}"
            )
        counts = [0] * n_classes
        for k in self.class_ids:
            counts[k] += 1
        object.__setattr__(self, "counts", tuple(counts))

    @classmethod
    def from_keys(
        cls, answers: Sequence[str | None], keys: Sequence[Hashable | None]
    ) -> SemanticClasses:
        """Group samples whose keys are equal; a None key means no answer.

        Classes are numbered by first appearance and represented by their first member.
        """
        if len(answers) != len(keys):
            raise ValueError(f"{len(answers)} answers but {len(keys)} keys")
        no_answer = object()
        ids: dict[object, int] = {}
        class_ids: list[int] = []
        representatives: list[str | None] = []
        for answer, key in zip(answers, keys):
            key = no_answer if key is None else ("key", key)
            if key not in ids:
                ids[key] = len(ids)
                representatives.append(None if key is no_answer else answer)
            class_ids.append(ids[key])
        return cls(
            answers=tuple(answers),
            class_ids=tuple(class_ids),
            representatives=tuple(representatives),
            no_answer_class=ids.get(no_answer),
        )

    @property
    def n_samples(self) -> int:
        """M, every sample counted, no-answer included."""
        return len(self.class_ids)

    @property
    def n_classes(self) -> int:
        """Distinct classes among the samples, the no-answer class included."""
        return len(self.counts)

    @cached_property
    def plurality_class(self) -> int:
        """argmax of the counts; a tie goes to the class that appeared first (`plurality`)."""
        return plurality(self.class_ids)[0]

    @property
    def plurality_answer(self) -> str | None:
        """The representative of the plurality class (None when it is no-answer)."""
        return self.representatives[self.plurality_class]

    @property
    def plurality_share(self) -> float:
        """The semantic confidence c_{k*} / M."""
        return self.counts[self.plurality_class] / self.n_samples

    @property
    def plurality_is_no_answer(self) -> bool:
        return self.plurality_class == self.no_answer_class

    @property
    def entropy(self) -> float:
        """Discrete semantic entropy -sum_k p_k ln p_k with p_k = c_k / M (nats)."""
        m = self.n_samples
        return -sum((c / m) * math.log(c / m) for c in self.counts)

    @property
    def no_answer_share(self) -> float:
        """Share of the M samples that had no extractable answer."""
        if self.no_answer_class is None:
            return 0.0
        return self.counts[self.no_answer_class] / self.n_samples

    def to_dict(self) -> dict:
        return {
            "answers": list(self.answers),
            "class_ids": list(self.class_ids),
            "representatives": list(self.representatives),
            "no_answer_class": self.no_answer_class,
            "counts": list(self.counts),
        }

    @classmethod
    def from_dict(cls, data: dict) -> SemanticClasses:
        return cls(
            answers=tuple(data["answers"]),
            class_ids=tuple(data["class_ids"]),
            representatives=tuple(data["representatives"]),
            no_answer_class=data.get("no_answer_class"),
        )
