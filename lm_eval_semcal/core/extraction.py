"""Answer extraction: reduce one sampled response to its answer text (docs/tasks.md,
"Response styles and answer extraction").

`extract_answer(response, style, answer_type)` returns the answer text, or None when the
response has no extractable answer; None maps to the reserved no-answer class.

Rules:

- `concise` and `sentence`: the first non-empty line of the response, stripped (lines as
  `str.splitlines` cuts them; a line is empty when it shows nothing: only whitespace,
  format characters such as a zero-width space or a BOM, and control characters). For
  `sentence` the whole sentence is the answer: grouping sentences needs a semantic
  grouping (nli / llm) or a task rule, not text normalisation.
- `cot`: the text after the LAST "the answer is" or "the final answer is"
  (case-insensitive, whole words, any whitespace between the words), up to the end of
  that line and of its first sentence (see `first_sentence`: a base model often runs
  on, "The answer is Mars. It is the fourth planet."), stripped, with one leading ":"
  and one trailing "." or "!" removed. When nothing
  follows the phrase on its line, the next non-empty line is taken (a model that wrote
  "The answer is\\n18"). Without the phrase, a `text` answer is None and a `number`
  answer falls back to the last number of the whole response (the answer usually ends
  the reasoning, e.g. GSM8K's "... A: 26").
- `number` answers, in every style: the text of the number as found (in the response
  after `normalization.prepare_number_text`, i.e. NFKC), e.g. "1,234.50", "-5",
  "\\frac{3}{4}"; `parse_number` turns it into a value. In `concise`/`sentence` lines it
  is the number the first sentence of the line states: the first number after its last
  "=" ("9 * 2 = 18"), else its first number ("18 (6 boxes x $3)", "The baker makes 18
  dollars from 6 boxes."), the last `\\boxed{}` taking precedence;
  after the cot phrase it is the FIRST number ("The answer is 18. Q: ..." - the number
  right after the phrase, like lm-eval's gsm8k-cot strict match). A number answer with
  no number is None; when the cot phrase is there but no number follows it, the answer
  is None too (no fallback: the model's stated answer is not a number, or was cut off).

Refusals ("I don't know", "I cannot answer that") are not detected: they are extracted
like any other text and form their own class(es) under the grouping. Only
an empty response, one that shows nothing (whitespace, format and control characters
only), or cot text without the phrase is no-answer.
"""

from __future__ import annotations

import re

from lm_eval_semcal.core.normalization import NumberSpan, first_number_span, is_blank, last_number_span

__all__ = ["ANSWER_TYPES", "STYLES", "extract_answer", "first_sentence", "gsm8k_gold"]

STYLES: tuple[str, ...] = ("concise", "sentence", "cot")
ANSWER_TYPES: tuple[str, ...] = ("text", "number")

_COT_PHRASE_RE = re.compile(r"\bthe\s+(?:final\s+)?answer\s+is\b", re.IGNORECASE)
# A sentence ends at . ! or ? before white space and an upper-case letter or a digit...
_SENTENCE_END_RE = re.compile(r"[.!?](?=\s+[A-Z0-9])")
# ... unless the "." closes one of these words (or an initial, or a dotted word: D.C.).
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr st jr sr prof mt ft vs no inc ltd co corp gen col lt sgt capt rev hon".split()
)
_GSM8K_MARK = "####"
# How chat models mark up an answer line: a leading label ("Answer:", "**Final answer:**")
# and emphasis or code quotes around the answer ("**Paris**", "`18`").
_ANSWER_LABEL_RE = re.compile(r"^[*_]*(?:final\s+)?answer\s*[*_]*\s*:[\s*_]*", re.IGNORECASE)
_MARKUP_RE = re.compile(r"^[*_`]+|[*_`]+(?=[.!]?$)")


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(
            f"unknown {name} {value!r}; choose one of {', '.join(repr(c) for c in choices)}"
        )


def _first_nonempty_line(text: str) -> str | None:
    for line in text.splitlines():
        if not is_blank(line):
            return line.strip()
    return None


def _without_markup(answer: str) -> str:
    """`answer` without emphasis or code quotes at its ends ("**Paris**." -> "Paris.")."""
    return _MARKUP_RE.sub("", answer).strip()


def _answer_line(text: str) -> str | None:
    """The first line that shows something, without an answer label; a line that is only
    a label ("**Answer:**") gives the next one."""
    for line in text.splitlines():
        if not is_blank(line) and (unlabelled := _ANSWER_LABEL_RE.sub("", line.strip(), count=1)):
            return unlabelled
    return None


def first_sentence(text: str) -> str:
    """`text` up to the end of its first sentence (all of it when it has one sentence).

    A sentence ends at ".", "!" or "?" followed by white space and an upper-case letter
    or a digit; a "." does not end one after an initial ("J. K. Rowling"), a word holding
    a dot ("Washington, D.C. Then", "U.S.") or a common abbreviation ("St. Louis").
    """
    for end in _SENTENCE_END_RE.finditer(text):
        if end.group() == ".":
            words = text[: end.start()].split()
            word = words[-1].strip("(\"'") if words else ""
            if (len(word) == 1 and word.isupper()) or "." in word or word.lower() in _ABBREVIATIONS:
                continue
        return text[: end.end()]
    return text


def _stated_number(line: str) -> NumberSpan | None:
    """The number a concise or sentence answer line states (see the module docstring)."""
    sentence = first_sentence(line)
    if "\\boxed" in sentence or "\\fbox" in sentence:
        return last_number_span(sentence)
    equals = sentence.rfind("=")
    return first_number_span(sentence[equals + 1 :] if equals >= 0 else sentence)


def _cot_tail(response: str) -> str | None:
    """The text after the last cot answer phrase (None when the phrase is absent)."""
    last = None
    for last in _COT_PHRASE_RE.finditer(response):
        pass
    if last is None:
        return None
    rest = response[last.end():]
    lines = rest.splitlines()
    tail = lines[0].strip() if lines else ""
    if tail.startswith(":"):
        tail = tail[1:].strip()
    if is_blank(tail):
        tail = _first_nonempty_line("\n".join(lines[1:])) or ""
    tail = _without_markup(first_sentence(tail))
    if tail.endswith((".", "!")):
        tail = tail[:-1].rstrip()
    return "" if is_blank(tail) else tail


def extract_answer(response: str, style: str, answer_type: str = "text") -> str | None:
    """The answer text of one sampled response, or None for no extractable answer.

    Args:
        response: the sampled text (None is accepted and gives None).
        style: one of `STYLES`: "concise", "sentence", "cot".
        answer_type: one of `ANSWER_TYPES`: "text", or "number" for math answers.

    Raises:
        ValueError: for an unknown style or answer type (never for the response).
    """
    _check_choice("style", style, STYLES)
    _check_choice("answer_type", answer_type, ANSWER_TYPES)
    if response is None:
        return None
    if not isinstance(response, str):
        raise TypeError(f"response must be a str, got {type(response).__name__}")

    if style == "cot":
        tail = _cot_tail(response)
        if answer_type == "text":
            return tail or None
        if tail is None:
            span = last_number_span(response)
        else:
            span = first_number_span(tail)
    else:
        line = _answer_line(response)
        if line is None or answer_type == "text":
            return None if line is None else _without_markup(line) or None
        span = _stated_number(line)
    return None if span is None else span.text


def gsm8k_gold(answer_field: str) -> str | None:
    """The gold number of a GSM8K `answer` field: the number after the last "####".

    Returned as its text, thousands separators kept ("...\\n#### 1,234" -> "1,234"), so
    `parse_number` reads it; None when there is no "####" or no number after it.
    """
    if not isinstance(answer_field, str) or _GSM8K_MARK not in answer_field:
        return None
    rest = answer_field.rsplit(_GSM8K_MARK, 1)[1]
    line = _first_nonempty_line(rest)
    if line is None:
        return None
    span = last_number_span(line)
    return None if span is None else span.text
