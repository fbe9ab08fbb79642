"""B = `llm`: a reader model extracts each response's short final answer; a string B groups them.

The paper's way of comparing free-form answers: a model reads the question and one
sampled response (the whole raw response, so a sentence or a chain of thought that
never says "The answer is" still yields its answer) and replies with the short final
answer it gives, or NO_ANSWER (empty, cut off, a refusal, "I don't know"), which goes
to the reserved no-answer class. The short answers are then grouped by `group_by`:
`auto` (the default: `numeric` for a task whose answers are numbers, `normalize` for
text), `normalize`, `numeric` or `exact`.

Correctness, by default, pushes the gold answer through the same string B (any alias
equal to the plurality class's short answer); the classes hold short answers, so they
are judged by class even on sentence tasks (never by containment). With `judge: true` the reader model also
grades each class's short answer against the gold aliases in the manner of SimpleQA's
grader (CORRECT / INCORRECT / NOT_ATTEMPTED; only CORRECT counts as correct), by a
rubric that states the SimpleQA grader's rules with worked examples. The three-way
grade of every class is kept in the record (`class_grades`), so the not-attempted share
is reported beside the wrong answers, not folded into them. A grade the model writes in
no readable form counts as not correct, is recorded as no grade, and is reported in a
warning with its count.

Cost: one reader call per distinct (question, response) pair: up to M per question,
fewer when samples repeat; with `judge`, one more per (question, class). Every reply
is cached on disk under the model, its settings and the prompt's hash, so a re-run or a
rescore of the same samples calls the model zero times, and a run that fails part way
keeps every reply it got. A changed prompt (a new grading rubric, say) is a new key:
replies cached for the old one are never reused for it.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import re
from collections.abc import Sequence

from tqdm import tqdm

from lm_eval_semcal.core.records import GRADES
from lm_eval_semcal.core.scoring import GoldRequest, GroupingRequest
from lm_eval_semcal.core.semantic_classes import SemanticClasses
from lm_eval_semcal.grouping.base import Grouping, GroupingSpec, KeyGrouping
from lm_eval_semcal.grouping.judgement_cache import JudgementCache, cache_file
from lm_eval_semcal.grouping.llm_clients import ChatClient, HFChatClient, OpenAIChatClient, api_key
from lm_eval_semcal.grouping.registry import get_grouping
from lm_eval_semcal.grouping.torch_devices import check_device

log = logging.getLogger(__name__)

GROUP_BY = ("auto", "normalize", "numeric", "exact")
AUTO_GROUP_BY = {"text": "normalize", "number": "numeric"}
NO_ANSWER_REPLY = "NO_ANSWER"
# SimpleQA's letters: A = CORRECT, B = INCORRECT, C = NOT_ATTEMPTED.
GRADE_LETTERS = dict(zip("ABC", GRADES, strict=True))

EXTRACT_TEMPLATE = """You read a question and a response written by another model. Reply with the short final answer that the response gives: a name, a number, a date or a short phrase, in the response's own words, and nothing else. Do not judge whether it is right, and do not answer the question yourself. If the response gives no answer (it is empty, cut off before an answer, refuses, or says it does not know), reply {no_answer}.{digits}

Question: {question}
Response: {response}
Short final answer:"""

GRADE_TEMPLATE = """You grade one predicted answer to a question against its gold target; an answer listed under "Also accepted" counts as the gold target too. There are three grades:
A = CORRECT: the predicted answer gives the gold target, in any wording, and says nothing that contradicts it.
B = INCORRECT: the predicted answer says something that contradicts the gold target, however it is hedged.
C = NOT_ATTEMPTED: the predicted answer commits to nothing that can be checked against the gold target, and contradicts nothing.

How to decide, with made-up examples:
1. Numbers: a number is right when it agrees with the gold target to the gold target's last significant figure, that is, when it rounds to the gold target at the gold target's precision. The gold target "84 thousand" is given by 84,000, 83,600 or 84,450 (each rounds to 84 thousand) and contradicted by 82,000 or 84,600 (they round to 82 and 85 thousand). The gold target "206" is given by 206 alone; 205 contradicts it.
2. Spelling: a name with a small typo is right when it is plainly the same name: "Antonin Dvorjak" gives the gold target "Antonín Dvořák".
3. Implied omissions: leaving out what the question already says is fine. Asked "Which city in Ohio is home to the Rock and Roll Hall of Fame?", with the gold target "Cleveland, Ohio", the answer "Cleveland" is CORRECT.
4. More in the gold target than asked: the predicted answer only has to answer the question. Asked "In which year did the bridge open?", with the gold target "27 May 1937", the answer "1937" is CORRECT.
5. Hedged answers: an answer hedged with "I think", "probably" or "I am not sure, but" is CORRECT when it gives the gold target and nothing that contradicts it: "I believe it was Dvorak, though I may be wrong" gives "Antonín Dvořák".
6. Vague and partial answers are NOT_ATTEMPTED when they neither give the gold target nor contradict it, and INCORRECT when they rule it out. An approximate number ("about", "around", "roughly") coarser than the gold target is NOT_ATTEMPTED when the gold target, rounded to the approximation's precision, equals it: for the gold target "206", "around 200" is NOT_ATTEMPTED and "about 300" is INCORRECT, while "about 206" gives the gold target and is CORRECT. A range or a bound is NOT_ATTEMPTED when the gold target lies inside it and INCORRECT when it lies outside: "between 200 and 250" and "more than 150" are NOT_ATTEMPTED, "fewer than 150" is INCORRECT. A part of what was asked, with nothing wrong in it, is NOT_ATTEMPTED: asked for the two moons of Mars (gold target "Phobos and Deimos"), "Phobos, and I forget the other" is NOT_ATTEMPTED.
7. Several candidates: an answer that offers more than one candidate, any of them wrong, is INCORRECT even when the gold target is among them: "Dvorak or Smetana" for "Antonín Dvořák", "Phobos and Titan" for "Phobos and Deimos".
8. Refusals: "I don't know", "I would have to look it up", or a request for more context, is NOT_ATTEMPTED.

Reply with the single letter A, B or C and nothing else.

Question: {question}
Gold target: {gold}{others}
Predicted answer: {predicted}
Grade (A, B or C):"""

_ANSWER_LABEL_RE = re.compile(r"^[*_\s]*(?:short\s+)?(?:final\s+)?answer[*_\s]*:[*_\s]*", re.IGNORECASE)
_WRAPPED_RE = re.compile(r"^(\*\*|__|\*|[\"'`])(.+?)\1\.?$")
_NO_ANSWER_RE = re.compile(r"^\W*no[\s_-]?answer\b", re.IGNORECASE)
# A label before the verdict: "Grade:", "Final grade:", "The grade is", "**Grade:**", or
# the prompt's own "Grade (A, B or C):" echoed.
_GRADE_LABEL_RE = re.compile(
    r"^[\W_]*(?:the\s+)?(?:final\s+)?grade\b[*_\s]*(?:\([^)]*\))?[*_\s]*(?:is\b)?[*_\s]*:?", re.IGNORECASE
)
_GRADE_WORD = r"(correct|incorrect|not[ _-]attempted)\b"
_GRADE_WORD_RE = re.compile(r"^[\s*_\"'(\[]*" + _GRADE_WORD, re.IGNORECASE)
# A letter standing alone: not followed by a word character ("Apple" and "CORRECT" are no letter).
_GRADE_LETTER_RE = re.compile(r"^[\s*_\"'(\[]*([ABC])(?!\w)")
# Closing emphasis, quote or bracket right after a letter or word: "**A**", "(A)".
_CLOSERS = r"[*_\"')\]]*"
# The grade's word after its letter: "A (CORRECT)", "A - CORRECT", "A: correct", "A, CORRECT",
# "A – CORRECT", "A **CORRECT**", or on the next line. A word that follows a bare space
# must be wrapped or in capitals, so that the article in "A correct answer would be..."
# is no grade.
_SEPARATED_WORD_RE = re.compile(
    _CLOSERS + r"(?:\s*(?:[-–—:,.;/|=]+|[(\[]|\n)|\s+(?=[*_\"'(\[]))[\s*_\"'(\[]*" + _GRADE_WORD, re.IGNORECASE
)
_SPACED_CAPITALS_WORD_RE = re.compile(_CLOSERS + r"\s+(CORRECT|INCORRECT|NOT[ _-]ATTEMPTED)\b")
# What may follow a letter read alone: punctuation (then anything, "B: the city is wrong"),
# or nothing up to the line's end. "A wrong answer" is no grade.
_AFTER_LETTER_RE = re.compile(_CLOSERS + r"(?:\s*[-–—:,.;!/|=(\[]|\s*$|[^\S\n]*\n)")
# A letter in brackets after the grade's word: "CORRECT (A)".
_BRACKETED_LETTER_RE = re.compile(_CLOSERS + r"\s*[(\[][\s*_]*([ABC])[\s*_]*[)\]]")


def extraction_prompt(question: str, response: str, answer_type: str = "text") -> str:
    digits = " A number answer is written in digits, like 18 or 2.5." if answer_type == "number" else ""
    return EXTRACT_TEMPLATE.format(
        no_answer=NO_ANSWER_REPLY, digits=digits, question=question, response=response.strip()
    )


def after_reasoning(reply: str) -> str | None:
    """The reply after any reasoning (the text after the last </think>); None when a
    <think> block never closes: the reader ran out of tokens before it answered."""
    if "</think>" in reply:
        return reply.rsplit("</think>", 1)[1]
    return None if "<think>" in reply else reply


def parse_extraction(reply: str) -> str | None:
    """The short answer in a reader's reply, or None for no answer.

    The first non-empty line after any reasoning, without an "Answer:" label (a line
    that is only a label gives the next line), emphasis or enclosing quotes; None when
    there is none, it says NO_ANSWER, or the reasoning never ended.
    """
    text = after_reasoning(reply)
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    while lines:
        labelled = _ANSWER_LABEL_RE.match(lines[0])
        line = lines[0][labelled.end() :].strip() if labelled else lines[0]
        if line or not labelled:
            break
        lines = lines[1:]
    else:
        return None
    while wrapped := _WRAPPED_RE.match(line):
        line = wrapped.group(2).strip()
    if not line or _NO_ANSWER_RE.match(line):
        return None
    return line


def grading_prompt(question: str, golds: Sequence[str], predicted: str) -> str:
    others = f"\nAlso accepted: {'; '.join(golds[1:])}" if len(golds) > 1 else ""
    return GRADE_TEMPLATE.format(question=question, gold=golds[0], others=others, predicted=predicted)


def _grade_word(word: str) -> str:
    return word.upper().replace(" ", "_").replace("-", "_")


def parse_grade(reply: str) -> str | None:
    """CORRECT, INCORRECT or NOT_ATTEMPTED from a grader's reply; None when it is unreadable.

    After any reasoning and a label ("Grade:", "Final grade:", "The grade is", the
    echoed "Grade (A, B or C):"), the reply must open with the grade's word ("CORRECT",
    "not attempted"; a bare "CORRECT" is the word, never the letter C), or with its
    letter followed by punctuation, the line's end, or the grade's own word ("A",
    "B: the city is wrong", "(C)", "**A**", "A (CORRECT)", "A - CORRECT", "A, CORRECT").
    A letter with a word that contradicts it ("A (INCORRECT)", "CORRECT (B)") is
    unreadable, not guessed; "A wrong answer" is no grade.
    """
    text = after_reasoning(reply)
    if text is None:
        return None
    text = text.strip()
    if label := _GRADE_LABEL_RE.match(text):
        text = text[label.end() :]
    if word := _GRADE_WORD_RE.match(text):
        grade = _grade_word(word.group(1))
        letter = _BRACKETED_LETTER_RE.match(text, word.end())
        return grade if letter is None or GRADE_LETTERS[letter.group(1)] == grade else None
    if not (letter := _GRADE_LETTER_RE.match(text)):
        return None
    grade = GRADE_LETTERS[letter.group(1)]
    if word := _SEPARATED_WORD_RE.match(text, letter.end()) or _SPACED_CAPITALS_WORD_RE.match(text, letter.end()):
        return grade if _grade_word(word.group(1)) == grade else None
    return grade if _AFTER_LETTER_RE.match(text, letter.end()) else None


def prompt_key(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


class LlmGrouping(Grouping):
    """A reader model's short answers grouped by a string B (see the module doc)."""

    name = "llm"
    short_answers = True

    def __init__(self, client: ChatClient, group_by: str, judge: bool, cache: JudgementCache) -> None:
        self.client = client
        # The string B comparing the short answers of each answer type.
        self.strings: dict[str, KeyGrouping] = {
            answer_type: get_grouping(group_by if group_by != "auto" else AUTO_GROUP_BY[answer_type])
            for answer_type in AUTO_GROUP_BY
        }
        # With the judge, B grades each class three ways (`grade_gold`), as SimpleQA does.
        self.grades = judge
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
            [extraction_prompt(r.question, t, r.answer_type) if t is not None and t.strip() else None for t in ts]
            for r, ts in zip(requests, texts, strict=True)
        ]
        replies = self.replies([p for ps in prompts for p in ps if p is not None], "extracting answers")
        cut_off = [reply for reply in replies.values() if after_reasoning(reply) is None]
        if cut_off:
            log.warning(
                "semcal llm: %d of %d replies stopped inside <think> before any answer and count as no answer; "
                "raise max_tokens or turn the reader's reasoning off",
                len(cut_off), len(replies),
            )
        return [
            self.strings[r.answer_type].group(
                [GroupingRequest(r.question, [None if p is None else parse_extraction(replies[p]) for p in ps])]
            )[0]
            for r, ps in zip(requests, prompts, strict=True)
        ]

    def matches_gold(self, requests: Sequence[GoldRequest]) -> list[bool]:
        if self.grades:
            return [grade == "CORRECT" for grade in self.grade_gold(requests)]
        return [self.strings[r.answer_type].matches_gold([r])[0] for r in requests]

    def grade_gold(self, requests: Sequence[GoldRequest]) -> list[str | None]:
        """The judge's grade of each representative against the gold aliases: CORRECT,
        INCORRECT or NOT_ATTEMPTED; None when there is nothing to grade (no gold or no
        answer) or the grade is unreadable, which a warning counts."""
        prompts = [
            grading_prompt(r.question, r.golds, r.representative) if r.golds and r.representative else None
            for r in requests
        ]
        replies = self.replies([p for p in prompts if p is not None], "grading answers")
        grades = [None if p is None else parse_grade(replies[p]) for p in prompts]
        asked = [(p, g) for p, g in zip(prompts, grades, strict=True) if p is not None]
        unreadable = [replies[p] for p, g in asked if g is None]
        if unreadable:
            log.warning(
                "semcal llm judge: %d of %d grades were unreadable and count as not correct (first: %r); "
                "a stronger judge model avoids this",
                len(unreadable), len(asked), unreadable[0][:100],
            )
        return grades


def _check_positive(name: str, value: object, kinds: tuple[type, ...] = (int,)) -> None:
    if not isinstance(value, kinds) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"llm: {name}={value!r} must be {'a number' if float in kinds else 'a whole number'} > 0")


def _check_local_settings(device: str | None, dtype: str) -> None:
    import torch

    if dtype != "auto" and not isinstance(getattr(torch, str(dtype), None), torch.dtype):
        raise ValueError(f"llm: dtype={dtype!r}; use auto or a torch dtype name (float32, bfloat16, float16)")
    if device is not None:
        check_device(device, "llm")


# Options that only one kind of reader reads.
LOCAL_ONLY = ("device", "batch_size", "dtype")
ENDPOINT_ONLY = ("api_key_env", "num_concurrent", "max_retries", "timeout")


def check_options(
    model: str | None,
    base_url: str | None,
    api_key_env: str | None,
    group_by: str,
    judge: bool,
    device: str | None,
    batch_size: int,
    dtype: str,
    num_concurrent: int,
    max_retries: int,
    timeout: float,
    max_tokens: int,
    **_: object,
) -> None:
    """Raise ValueError for an llm option that cannot work; loads nothing, sends nothing."""
    if not isinstance(model, str) or not model:
        raise ValueError(
            "llm: set grouping_args model=... : a Hugging Face model id or folder, or with base_url=... "
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
    given = {"device": device, "batch_size": batch_size, "dtype": dtype, "api_key_env": api_key_env,
             "num_concurrent": num_concurrent, "max_retries": max_retries, "timeout": timeout}
    defaults = {name: p.default for name, p in inspect.signature(make_llm_grouping).parameters.items()}
    unread, reader = (LOCAL_ONLY, "a local reader (no base_url)") if base_url else (ENDPOINT_ONLY, "an endpoint (base_url)")
    if wasted := [name for name in unread if given[name] != defaults[name]]:
        raise ValueError(f"llm: {', '.join(wasted)} only applies to {reader}; drop it or change the reader")
    if base_url is None:
        _check_local_settings(device, dtype)
    api_key(api_key_env)


def make_reader(
    model: str,
    base_url: str | None,
    api_key_env: str | None,
    device: str | None,
    batch_size: int,
    dtype: str,
    num_concurrent: int,
    max_retries: int,
    timeout: float,
    max_tokens: int,
    **_: object,
) -> ChatClient:
    """The reader the options name; an endpoint is asked what it serves, local weights are not loaded."""
    if base_url is not None:
        return OpenAIChatClient(base_url, model, api_key_env, max_tokens, num_concurrent, max_retries, timeout)
    return HFChatClient(model, device, batch_size, max_tokens, dtype)


def make_llm_grouping(
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
) -> Grouping:
    """A reader model's short answers grouped by `group_by`; optionally a SimpleQA-style judge.

    `model` with `base_url`: the model name an OpenAI-compatible endpoint serves
    (`num_concurrent`, `max_retries`, `timeout`, key in the variable `api_key_env`);
    without: a Hugging Face model id or folder (`device`, `batch_size`, `dtype`).
    `cache`: an SQLite file, "default" (judgements.sqlite in `cache_root()`, ~/.cache/lm_eval_semcal on Linux) or
    None (memory only).
    """
    client = make_reader(
        model, base_url, api_key_env, device, batch_size, dtype, num_concurrent, max_retries, timeout, max_tokens
    )
    return LlmGrouping(client, group_by, judge, JudgementCache(cache_file(cache), f"llm:{client.fingerprint}"))


LLM = GroupingSpec(make_llm_grouping, check=check_options, preflight=make_reader)
