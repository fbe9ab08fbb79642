"""B = `nli`: answers share a class when an NLI model finds them equivalent (Kuhn et al. 2023).

Two answers a and b to question q are compared as "Q: q A: a" against "Q: q A: b", in
both directions. `strict`: each entails the other. `lenient`: neither contradicts the
other. A question's distinct normalised answers are taken in order of first appearance;
each is compared with one representative per existing class and joins the first class
it is equivalent to, or opens a new one. Equivalence judged this way is not transitive,
so this first-appearance rule is what makes the grouping well defined.

Cost: the k-th distinct answer of a question costs at most 2 x (classes so far) pair
judgements, never M (M - 1). Every question of a batch moves one answer forward per
round, and a round's pairs go to the model together, in batches of `batch_size`.
Judgements are kept in an on-disk SQLite cache (`judgement_cache`) keyed by the model
(a hub id with its revision, or a local folder's path and file fingerprint), the
question and the ordered pair, so a re-run or a rescore of the same samples calls the model zero times.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from lm_eval_semcal.core.normalization import normalize_text
from lm_eval_semcal.core.scoring import GoldRequest, GroupingRequest
from lm_eval_semcal.core.semantic_classes import SemanticClasses
from lm_eval_semcal.grouping.base import Grouping, GroupingSpec, group_by_first_appearance
from lm_eval_semcal.grouping.judgement_cache import JudgementCache, cache_file, model_fingerprint

DEFAULT_MODEL = "microsoft/deberta-large-mnli"
MODES = ("strict", "lenient")
LABELS = ("entailment", "neutral", "contradiction")

# (question, premise answer, hypothesis answer) -> one of LABELS
Pair = tuple[str, str, str]
Judge = Callable[[Sequence[Pair]], list[str]]


def check_options(mode: str, batch_size: int, **_: object) -> None:
    """Raise ValueError for an nli option that cannot work; loads nothing."""
    if mode not in MODES:
        raise ValueError(f"nli: mode={mode!r}; choose one of {', '.join(MODES)}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"nli: batch_size={batch_size!r} must be a whole number >= 1")


def equivalent(forward: str, backward: str, mode: str) -> bool:
    """Whether two answers judged `forward` (a vs b) and `backward` (b vs a) share a class."""
    if mode == "strict":
        return forward == backward == "entailment"
    return "contradiction" not in (forward, backward)


class NliGrouping(Grouping):
    """Bidirectional entailment with a pair judge (see the module doc)."""

    name = "nli"

    def __init__(self, judge: Judge, mode: str, cache: JudgementCache) -> None:
        check_options(mode=mode, batch_size=1)
        self.judge = judge
        self.mode = mode
        self.cache = cache
        self.pairs_judged = 0  # pairs sent to the model (cache misses), for benchmarks

    def labels(self, pairs: Sequence[Pair]) -> dict[Pair, str]:
        """Labels of `pairs`, from the cache or, for the rest, from one judge call."""
        key = {pair: json.dumps(pair, ensure_ascii=False) for pair in pairs}
        missing = [pair for pair in key if self.cache.get(key[pair]) is None]
        if missing:
            judged = self.judge(missing)
            if len(judged) != len(missing) or any(label not in LABELS for label in judged):
                raise ValueError(f"nli judge returned {judged[:5]!r}... for {len(missing)} pairs; expected {LABELS}")
            self.cache.put({key[pair]: label for pair, label in zip(missing, judged, strict=True)})
            self.pairs_judged += len(missing)
        return {pair: self.cache.get(key[pair]) for pair in key}

    def _equivalent(self, labels: dict[Pair, str], question: str, a: str, b: str) -> bool:
        return equivalent(labels[(question, a, b)], labels[(question, b, a)], self.mode)

    def group(self, requests: Sequence[GroupingRequest]) -> list[SemanticClasses]:
        texts = [[(normalize_text(a) or None) if a is not None else None for a in r.answers] for r in requests]

        def join(pending: Sequence[tuple[int, str, Sequence[str]]]) -> list[int | None]:
            # The whole round's pairs go to the model together.
            labels = self.labels([
                pair
                for i, text, representatives in pending
                for rep in representatives
                for pair in ((requests[i].question, text, rep), (requests[i].question, rep, text))
            ])
            return [
                next(
                    (k for k, rep in enumerate(representatives)
                     if self._equivalent(labels, requests[i].question, text, rep)),
                    None,
                )
                for i, text, representatives in pending
            ]

        return group_by_first_appearance(requests, texts, join)

    def matches_gold(self, requests: Sequence[GoldRequest]) -> list[bool]:
        candidates = [
            [(r.question, normalize_text(r.representative), normalize_text(g)) for g in r.golds]
            for r in requests
        ]
        candidates = [[c for c in cs if c[1] and c[2]] for cs in candidates]
        # An alias equal to the representative matches outright, without asking the model.
        pairs = [
            pair
            for cs in candidates
            for (q, rep, gold) in cs
            if rep != gold
            for pair in ((q, rep, gold), (q, gold, rep))
        ]
        labels = self.labels(pairs)
        return [
            any(rep == gold or self._equivalent(labels, q, rep, gold) for q, rep, gold in cs) for cs in candidates
        ]


def hf_judge(model: str, device: str | None, batch_size: int) -> Judge:
    """A pair judge running a Hugging Face sequence-classification NLI model."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    classifier = AutoModelForSequenceClassification.from_pretrained(model).eval()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    classifier.to(device)
    names = {index: str(name).lower() for index, name in classifier.config.id2label.items()}
    label_of = {}
    for index, name in names.items():
        found = [label for label in LABELS if name.startswith(label[:7])]
        if not found:
            raise ValueError(f"nli: {model} has labels {sorted(names.values())}; an NLI model with {LABELS} is needed")
        label_of[index] = found[0]

    def judge(pairs: Sequence[Pair]) -> list[str]:
        out: list[str] = []
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            inputs = tokenizer(
                [f"Q: {q} A: {a}" for q, a, _ in chunk],
                [f"Q: {q} A: {b}" for q, _, b in chunk],
                padding=True,
                truncation=True,
                return_tensors="pt",
            ).to(device)
            with torch.no_grad():
                predicted = classifier(**inputs).logits.argmax(-1).tolist()
            out += [label_of[index] for index in predicted]
        return out

    return judge


def resolve_model(model: str, **_: object) -> None:
    """Fails when `model` is neither a folder nor a reachable hub id; loads no weights."""
    model_fingerprint(model)


def make_nli_grouping(
    model: str = DEFAULT_MODEL,
    mode: str = "strict",
    device: str | None = None,
    batch_size: int = 64,
    cache: str | None = "default",
) -> Grouping:
    """Bidirectional entailment by an NLI model (`strict` or `lenient`), judgements cached on disk.

    `cache`: an SQLite file, "default" (judgements.sqlite in `cache_root()`, ~/.cache/lm_eval_semcal on Linux)
    or None (memory only).
    """
    judge = hf_judge(model, device, batch_size)
    return NliGrouping(judge, mode, JudgementCache(cache_file(cache), f"nli:{model_fingerprint(model)}"))


NLI = GroupingSpec(make_nli_grouping, check=check_options, preflight=resolve_model)
