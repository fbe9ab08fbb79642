"""B = `llm`: a reader model extracts each response's short final answer; a string B groups them.

The paper's way of comparing free-form answers: a model reads the question and one
sampled response (the whole raw response, so a sentence or a chain of thought that
never says "The answer is" still yields its answer) and replies with the short final
answer it gives, or NO_ANSWER (empty, cut off, a refusal, "I don't know"), which goes
to the reserved no-answer class. The short answers are then grouped by `group_by`:
`auto` (the default: `numeric` for a task whose answers are numbers, `normalize` for
text), `normalize`, `numeric` or `exact`.

Correctness, by default, pushes the gold answer through the same string B (any alias
equal to the plurality class's short answer). With `judge: true` the reader model also
grades each class's short answer against the gold aliases in the manner of SimpleQA's
grader (CORRECT / INCORRECT / NOT_ATTEMPTED; only CORRECT counts as correct). A grade
the model writes in no readable form counts as not correct and is reported in a
warning with its count.

Cost: one reader call per distinct (question, response) pair: up to M per question,
fewer when samples repeat; with `judge`, one more per (question, class). Every reply
is cached on disk under the model, its settings and the prompt's hash, so a re-run or a
rescore of the same samples calls the model zero times, and a run that fails part way
keeps every reply it got.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence

from tqdm import tqdm

from lm_eval_semcal.collapsing import (
    Collapser,
    GoldRequest,
    GroupingRequest,
    KeyCollapser,
    get_collapser,
    register_collapser,
)
from lm_eval_semcal.judgement_cache import JudgementCache, cache_file
from lm_eval_semcal.llm_clients import ChatClient, HFChatClient, OpenAIChatClient, api_key
from lm_eval_semcal.semantic_classes import SemanticClasses

log = logging.getLogger(__name__)

GROUP_BY = ("auto", "normalize", "numeric", "exact")
AUTO_GROUP_BY = {"text": "normalize", "number": "numeric"}
NO_ANSWER_REPLY = "NO_ANSWER"
GRADES = {"A": "CORRECT", "B": "INCORRECT", "C": "NOT_ATTEMPTED"}

EXTRACT_TEMPLATE = """You read a question and a response written by another model. Reply with the short final answer that the response gives: a name, a number, a date or a short phrase, in the response's own words, and nothing else. Do not judge whether it is right, and do not answer the question yourself. If the response gives no answer (it is empty, cut off before an answer, refuses, or says it does not know), reply {no_answer}.

Question: {question}
Response: {response}
Short final answer:"""

GRADE_TEMPLATE = """You grade a predicted answer to a question against the gold target. Reply with one letter:
A: CORRECT. The predicted answer means the gold target (or one of the accepted answers) and contradicts nothing in it; wording, spelling variants, extra detail that is true, and a number within its stated precision do not matter.
B: INCORRECT. The predicted answer states something that contradicts the gold target, or hedges between several answers one of which is wrong.
C: NOT_ATTEMPTED. The predicted answer gives no answer to the question (it says it does not know, or asks for more information) and contradicts nothing.

Question: {question}
Gold target: {gold}{others}
Predicted answer: {predicted}
Grade (A, B or C):"""

_THINK_RE = re.compile(r"^\s*<think>.*?</think>", re.DOTALL)
_ANSWER_LABEL_RE = re.compile(r"^(?:short\s+)?(?:final\s+)?answer\s*:\s*", re.IGNORECASE)
_QUOTED_RE = re.compile(r"^([\"'`])(.+)\1\.?$")
# A grade opens the reply ("A", "**B**", "C: ...", "CORRECT") or follows "grade" ("The grade is A").
_GRADE_RE = re.compile(
    r"^[\s*\"'(\[]*(?:(?i:the\s+)?(?i:grade)\s*(?:(?i:is)|:)?\s*[*\"'(\[]*)?"
    r"((?i:correct|incorrect|not[ _]attempted)|[ABC])\b"
)


def extraction_prompt(question: str, response: str) -> str:
    return EXTRACT_TEMPLATE.format(no_answer=NO_ANSWER_REPLY, question=question, response=response.strip())


def parse_extraction(reply: str) -> str | None:
    """The short answer in a reader's reply, or None for no answer.

    The first non-empty line after any leading <think>...</think> block, without an
    "Answer:" label or enclosing quotes; None when that is empty or NO_ANSWER.
    """
    text = _THINK_RE.sub("", reply)
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    line = _ANSWER_LABEL_RE.sub("", line).strip()
    if quoted := _QUOTED_RE.match(line):
        line = quoted.group(2).strip()
    if not line or line.strip(".[]*` ").upper().replace(" ", "_") == NO_ANSWER_REPLY:
        return None
    return line


def grading_prompt(question: str, golds: Sequence[str], predicted: str) -> str:
    others = f"\nAlso accepted: {'; '.join(golds[1:])}" if len(golds) > 1 else ""
    return GRADE_TEMPLATE.format(question=question, gold=golds[0], others=others, predicted=predicted)


def parse_grade(reply: str) -> str | None:
    """CORRECT, INCORRECT or NOT_ATTEMPTED from a grader's reply ("A", "B: ...", "CORRECT"); None if unreadable."""
    match = _GRADE_RE.match(_THINK_RE.sub("", reply))
    if match is None:
        return None
    word = match.group(1).upper().replace(" ", "_")
    return GRADES.get(word, word)


def prompt_key(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


class LlmCollapser(Collapser):
    """A reader model's short answers grouped by a string B (see the module doc)."""

    name = "llm"

    def __init__(self, client: ChatClient, group_by: str, judge: bool, cache: JudgementCache) -> None:
        self.client = client
        # The string B comparing the short answers of each answer type.
        self.strings: dict[str, KeyCollapser] = {
            answer_type: get_collapser(group_by if group_by != "auto" else AUTO_GROUP_BY[answer_type])
            for answer_type in AUTO_GROUP_BY
        }
        self.judge = judge
        self.cache = cache
        self.calls = 0  # prompts sent to the model (cache misses), for benchmarks and tests

    def replies(self, prompts: Sequence[str], what: str) -> dict[str, str]:
        """The reply to each prompt, from the cache or the model; each reply is cached as it arrives."""
        keys = {prompt: prompt_key(prompt) for prompt in prompts}
        missing = [prompt for prompt in keys if self.cache.get(keys[prompt]) is None]
        if missing:
            progress = tqdm(total=len(missing), desc=f"semcal llm: {what}", disable=len(missing) < 20)
            received: dict[str, str] = {}
            try:
                for index, reply in self.client.complete(missing):
                    received[keys[missing[index]]] = reply
                    self.calls += 1
                    progress.update()
                    if len(received) >= 256:
                        self.cache.put(received)
                        received = {}
            finally:
                self.cache.put(received)
                progress.close()
        return {prompt: self.cache.get(key) for prompt, key in keys.items()}

    def group(self, requests: Sequence[GroupingRequest]) -> list[SemanticClasses]:
        texts = [r.responses if r.responses is not None else r.answers for r in requests]
        prompts = [
            [extraction_prompt(r.question, t) if t is not None and t.strip() else None for t in ts]
            for r, ts in zip(requests, texts, strict=True)
        ]
        replies = self.replies([p for ps in prompts for p in ps if p is not None], "extracting answers")
        return [
            self.strings[r.answer_type].group(
                [GroupingRequest(r.question, [None if p is None else parse_extraction(replies[p]) for p in ps])]
            )[0]
            for r, ps in zip(requests, prompts, strict=True)
        ]

    def matches_gold(self, requests: Sequence[GoldRequest]) -> list[bool]:
        if not self.judge:
            return [self.strings[r.answer_type].matches_gold([r])[0] for r in requests]
        prompts = [
            grading_prompt(r.question, r.golds, r.representative) if r.golds and r.representative else None
            for r in requests
        ]
        replies = self.replies([p for p in prompts if p is not None], "grading answers")
        grades = [None if p is None else parse_grade(replies[p]) for p in prompts]
        unreadable = [replies[p] for p, g in zip(prompts, grades, strict=True) if p is not None and g is None]
        if unreadable:
            log.warning(
                "semcal llm judge: %d of %d grades were unreadable and count as not correct (first: %r); "
                "a stronger judge model avoids this",
                len(unreadable), len(replies), unreadable[0][:100],
            )
        return [grade == "CORRECT" for grade in grades]


def _check_positive(name: str, value: object, kinds: tuple[type, ...] = (int,)) -> None:
    if not isinstance(value, kinds) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"llm: {name}={value!r} must be {'a number' if float in kinds else 'a whole number'} > 0")


def check_options(
    model: str | None,
    base_url: str | None,
    api_key_env: str | None,
    group_by: str,
    judge: bool,
    batch_size: int,
    num_concurrent: int,
    max_retries: int,
    timeout: float,
    max_tokens: int,
    **_: object,
) -> None:
    """Raise ValueError for an llm option that cannot work; loads nothing, sends nothing."""
    if not isinstance(model, str) or not model:
        raise ValueError(
            "llm: set collapse_args model=... : a Hugging Face model id or folder, or with base_url=... "
            "the model name an OpenAI-compatible server serves"
        )
    if group_by not in GROUP_BY:
        raise ValueError(f"llm: group_by={group_by!r}; choose one of {', '.join(GROUP_BY)}")
    if not isinstance(judge, bool):
        raise ValueError(f"llm: judge={judge!r} must be true or false")
    for name, value in (("batch_size", batch_size), ("num_concurrent", num_concurrent),
                        ("max_retries", max_retries), ("max_tokens", max_tokens)):
        _check_positive(name, value)
    _check_positive("timeout", timeout, (int, float))
    if base_url is not None and not (isinstance(base_url, str) and base_url.startswith(("http://", "https://"))):
        raise ValueError(f"llm: base_url={base_url!r} must be an http:// or https:// URL")
    if api_key_env is not None:
        if base_url is None:
            raise ValueError("llm: api_key_env is for an endpoint; set base_url=... too, or drop it for a local model")
        api_key(api_key_env)


@register_collapser("llm", check=check_options)
def make_llm_collapser(
    model: str | None = None,
    base_url: str | None = None,
    api_key_env: str | None = None,
    group_by: str = "auto",
    judge: bool = False,
    device: str | None = None,
    batch_size: int = 16,
    dtype: str = "auto",
    num_concurrent: int = 8,
    max_retries: int = 3,
    timeout: float = 60.0,
    max_tokens: int = 32,
    cache: str | None = "default",
) -> Collapser:
    """A reader model's short answers grouped by `group_by`; optionally a SimpleQA-style judge.

    `model` with `base_url`: the model name an OpenAI-compatible endpoint serves
    (`num_concurrent`, `max_retries`, `timeout`, key in the variable `api_key_env`);
    without: a Hugging Face model id or folder (`device`, `batch_size`, `dtype`).
    `cache`: an SQLite file, "default" (~/.cache/lm_eval_semcal/judgements.sqlite) or
    None (memory only).
    """
    if base_url is not None:
        client: ChatClient = OpenAIChatClient(
            base_url, model, api_key_env, max_tokens, num_concurrent, max_retries, timeout
        )
    else:
        client = HFChatClient(model, device, batch_size, max_tokens, dtype)
    return LlmCollapser(client, group_by, judge, JudgementCache(cache_file(cache), f"llm:{client.fingerprint}"))
