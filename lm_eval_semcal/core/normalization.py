"""Text and number normalisation behind the `normalize` and `numeric` groupings.

Two public functions, both total (they never raise on any `str`):

- `normalize_text`: the SQuAD/TriviaQA answer normalisation of docs/grouping.md.
- `parse_number`: a math answer as an exact `fractions.Fraction` (None when the text holds
  no number), so that `18 == 18.0 == 18.00 == $18 == 18.` compare equal.

`find_number_spans`, `first_number_span` and `last_number_span` expose the number scanner
that `parse_number` uses, for answer extraction (`lm_eval_semcal.core.extraction`).

Every rule, including the cases docs/grouping.md does not spell out (all covered by tests):

normalize_text
    The aim: two strings land in one class when SQuAD v1.1's or TriviaQA's
    official scorer would count them as the same answer, and never when they are
    different answers. Steps, in order:

    * Every apostrophe-like character (‘ ’ ‛ ´ ` ʼ ʻ ′ and the fullwidth ＇ ｀) becomes
      the apostrophe, before NFKC (which would turn ´ into a space and a combining
      accent: "O´Neal") and again after it.
    * Format characters (Unicode category Cf: zero-width space and joiners, bidi
      controls, soft hyphen, BOM) and control characters (Cc) that are not whitespace
      are dropped: they are invisible and "Pa\u200bris" is "Paris". Whitespace controls
      (tab, newline, U+001C-U+001F) separate words.
    * NFKC (ligatures, fullwidth forms, superscripts), then lowercase (`str.lower`, as
      SQuAD), with the Greek final sigma read as sigma ("A.Σ" lowers to "a.ς", "A Σ" to
      "a σ").
    * The apostrophe is deleted ("O'Neal" = "ONeal", "don't" -> "dont", as SQuAD).
    * A comma between digit groups of three is deleted: "1,000" -> "1000", as SQuAD; it
      formats a number, it does not separate two. "3,4" and "1,2345" are not such commas.
    * Punctuation is every character of `string.punctuation` (ASCII, so `$ + < = > ^ _ |
      ~` go too, as in SQuAD) plus every Unicode character whose category is P*
      (dashes, quotes, `¿`, `。`, ...). A run of punctuation that joins two word
      characters reads as a space, as TriviaQA's scorer reads it ("Rolls-Royce" =
      "Rolls Royce", "Mr.T" = "Mr. T", "AC/DC" = "AC DC", "1.5" -> "1 5", which stays
      apart from "15"); any other punctuation is deleted, as SQuAD deletes it ("(Paris)",
      "U.S." -> "u s", "Paris!" -> "paris"). A word character is a letter or a digit
      (L*, N*); on the left also a combining mark (M*), which ends the word it sits on,
      while a mark right after the punctuation belongs to nothing and does not count.
      Other Unicode symbols (S*: `€ £ ° © ½`-like characters that NFKC keeps, math
      operators, emoji) are kept, and are not word characters.
    * The articles a, an, the are dropped as whole whitespace-separated tokens, unless
      every token is one: then they are kept ("The The", the band, stays "the the"; a
      bare "A" stays "a"), so such a gold can still match.
    * Whitespace (whatever `str.split()` splits on) collapses to single spaces; the
      result is stripped. An answer left empty is no answer (`normalize_key`).
    * The steps are repeated until nothing changes (in practice at most twice), so the
      function is idempotent even where deleting a character lets NFKC compose the
      neighbours anew (e.g. "e", ".", combining acute).

parse_number
    * The text is NFKC-normalised first (full-width "１８" -> 18); vulgar-fraction
      characters count as their value ("½" -> 1/2, "1½" -> 3/2); the fraction slash
      "⁄" and the division slash "∕" act as "/".
    * Several numbers: the LAST one is the answer (answers usually end the text: "9 * 2 =
      18", "She makes $18"), except that when the text holds a LaTeX `\\boxed{...}` (or
      `\\fbox{...}`) with a number in it, the last number inside the last box wins.
    * Number forms: optional sign ("-", "+", or U+2212 "−") when it is not a binary
      operator (a sign directly after a letter, digit or closing bracket is an operator:
      "16-3" holds 16 and 3); digits with optional "," thousands separators, which count
      only between groups of exactly three digits ("1,000" -> 1000, "1,234,567.5"; "3, 4"
      and "3,4" are two numbers, 3 and 4 -- a European decimal comma is not supported);
      an optional decimal part (".5" alone is accepted); an optional exponent
      ("1e3" -> 1000, "2.5E-2"; at most three exponent digits, so no "1e999999"
      blow-up); a simple fraction "3/4" (no spaces around the slash); LaTeX
      `\\frac{3}{4}`, `\\dfrac`, `\\tfrac` (also `\\frac34`) with a (signed) number in each
      brace.
    * Ignored around the number: "$" (also "\\$" and "-$5" -> -5), "%" (50% -> 50, not
      1/2), a trailing ".", unit words ("18 dollars"), LaTeX thousands spacing
      ("1{,}000", "1\\,000", "1\\!000").
    * Digits glued to a preceding letter, "_" or "^" are not a number ("CO2", "x2",
      "m^2", "m²"); letters after digits are fine ("18th", "5km").
    * Only ASCII digits (after NFKC) are digits; number words ("eighteen") are not
      numbers; mixed numbers with a space ("1 1/2") read as 1/2.
    * A number the scanner finds but cannot represent -- a zero denominator ("3/0"), or
      more than 1000 digits -- has no value: when it is the last number, the result is
      None rather than an earlier number.
"""

from __future__ import annotations

import re
import string
import unicodedata
from fractions import Fraction
from typing import NamedTuple

__all__ = [
    "ARTICLES",
    "NumberSpan",
    "find_number_spans",
    "first_number_span",
    "is_blank",
    "last_number_span",
    "normalize_text",
    "parse_number",
    "prepare_number_text",
]

# --------------------------------------------------------------------------- text

_ASCII_PUNCT = frozenset(string.punctuation)
# The articles SQuAD and TriviaQA drop.
ARTICLES = frozenset({"a", "an", "the"})
_MAX_PASSES = 8
# U+2018 ‘, U+2019 ’, U+201B ‛, U+00B4 ´, U+0060 `, U+02BC ʼ, U+02BB ʻ, U+2032 ′,
# U+FF07 ＇ and U+FF40 ｀: each stands for the apostrophe in real text.
_APOSTROPHES = str.maketrans(dict.fromkeys("\u2018\u2019\u201b\u00b4\u0060\u02bc\u02bb\u2032\uff07\uff40", "'"))
_THOUSANDS_COMMA_RE = re.compile(r"(?<=[0-9]),(?=[0-9]{3}(?![0-9]))")


def _is_punct(ch: str) -> bool:
    return ch in _ASCII_PUNCT or unicodedata.category(ch).startswith("P")


def _is_invisible(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cf", "Cc") and not ch.isspace()


def is_blank(text: str) -> bool:
    """Whether `text` shows nothing: only whitespace, format (Cf) and control (Cc) characters."""
    return all(ch.isspace() or _is_invisible(ch) for ch in text)


def _ends_word(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "LNM"


def _starts_word(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "LN"


def _replace_punctuation(text: str) -> str:
    """Each run of punctuation: a space between two word characters, else nothing."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if not _is_punct(text[i]):
            out.append(text[i])
            i += 1
            continue
        end = i
        while end < len(text) and _is_punct(text[end]):
            end += 1
        if i > 0 and end < len(text) and _ends_word(text[i - 1]) and _starts_word(text[end]):
            out.append(" ")
        i = end
    return "".join(out)


# The same steps for ASCII text, where NFKC changes nothing and one pass is a fixed
# point: most answers are ASCII, and the scorer keys every sample.
_ASCII_INVISIBLE_RE = re.compile(r"[\x00-\x08\x0e-\x1b\x7f]")
_ASCII_GLUE_RE = re.compile(rf"(?<=[a-z0-9])[{re.escape(string.punctuation)}]+(?=[a-z0-9])")
_ASCII_DELETE = str.maketrans("", "", string.punctuation)


def _normalize_ascii(text: str) -> str:
    text = _ASCII_INVISIBLE_RE.sub("", text).lower().replace("`", "").replace("'", "")
    text = _ASCII_GLUE_RE.sub(" ", _THOUSANDS_COMMA_RE.sub("", text))
    tokens = text.translate(_ASCII_DELETE).split()
    words = [tok for tok in tokens if tok not in ARTICLES]
    return " ".join(words or tokens)


def _normalize_once(text: str) -> str:
    text = text.translate(_APOSTROPHES)
    text = "".join(ch for ch in text if not _is_invisible(ch))
    # lower() writes a capital sigma as final sigma by the letters around it, which
    # punctuation and spacing change: one sigma, wherever it stands.
    text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES).lower().replace("ς", "σ")
    text = _THOUSANDS_COMMA_RE.sub("", text.replace("'", ""))
    tokens = _replace_punctuation(text).split()
    words = [tok for tok in tokens if tok not in ARTICLES]
    return " ".join(words or tokens)


def normalize_text(text: str) -> str:
    """SQuAD/TriviaQA normalisation: NFKC, lowercase, no punctuation, no articles.

    "The Eiffel Tower!" -> "eiffel tower", "Rolls-Royce" -> "rolls royce",
    "O´Neal" -> "oneal", "Pa\u200bris" -> "paris", "The The" -> "the the". Whitespace
    is collapsed to single spaces and stripped. Idempotent; never raises on a `str`
    (see the module docstring for every rule).
    """
    if not isinstance(text, str):
        raise TypeError(f"normalize_text expects a str, got {type(text).__name__}")
    if text.isascii():
        return _normalize_ascii(text)
    for _ in range(_MAX_PASSES):
        new = _normalize_once(text)
        if new == text:
            break
        text = new
    return text


# ------------------------------------------------------------------------ numbers

_MAX_DIGITS = 1000

# Vulgar fractions: NFKC turns "½" into "1⁄2" and "1½" into "11⁄2", so they are
# rewritten to plain "n/d" (mixed numbers "1½" to "3/2") before NFKC.
_VULGAR = "\u00bc-\u00be\u2150-\u215e\u2189"
_VULGAR_RE = re.compile(rf"([0-9]*)([{_VULGAR}])")

# LaTeX spacing used as a thousands separator: 1{,}000, 1\,000, 1\!000.
_LATEX_THOUSANDS_RE = re.compile(r"(?<=[0-9])(?:\{,\}|\\[,!])(?=[0-9]{3}(?![0-9]))")

_SIGN = r"[-+\u2212]"
# A decimal number: thousands-grouped or plain digits, optional decimals, optional
# exponent; or a leading-dot decimal. Digits must not follow a letter, digit, "_" or "^".
_UNSIGNED = (
    r"(?<![^\W\d_])(?<![0-9_^])"
    r"(?:(?:[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])|[0-9]+)(?:\.[0-9]+)?|\.[0-9]+)"
    r"(?:[eE][-+]?[0-9]{1,3}(?![0-9]))?"
)
# A sign counts only where it cannot be a binary operator.
_SIGN_PREFIX = rf"(?:(?<![\w)\]}}]){_SIGN}(?:\\?\$)?)?"
_BRACED = rf"\{{\s*({_SIGN}?\s*[0-9]+(?:\.[0-9]+)?|{_SIGN}?\s*\.[0-9]+)\s*\}}"
_NUMBER_RE = re.compile(
    # LaTeX fraction \frac{a}{b}, \dfrac, \tfrac, and the shorthand \frac34.
    rf"(?P<latex>(?:(?<![\w)\]}}]){_SIGN}\s*)?\\[dt]?frac\s*"
    rf"(?:{_BRACED}|([0-9]))\s*(?:{_BRACED}|([0-9])))"
    r"|"
    # Plain number, optionally a simple fraction a/b.
    rf"(?P<plain>{_SIGN_PREFIX}{_UNSIGNED}(?:/{_UNSIGNED})?)"
)
_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")


class NumberSpan(NamedTuple):
    """One number found in a (prepared) text: its span, its text, its value.

    `value` is None when the number cannot be represented (zero denominator, more than
    1000 digits).
    """

    start: int
    end: int
    text: str
    value: Fraction | None


def _vulgar_sub(match: re.Match) -> str:
    try:
        frac = Fraction(unicodedata.numeric(match.group(2))).limit_denominator(10)
    except (TypeError, ValueError):
        return match.group(0)
    whole = match.group(1)
    if whole:
        if len(whole) > _MAX_DIGITS:
            return match.group(0)
        frac += int(whole)
    return f"{frac.numerator}/{frac.denominator}"


def prepare_number_text(text: str) -> str:
    """The text the number scanner reads: vulgar fractions spelled out, NFKC, the
    fraction/division slash as "/", LaTeX thousands spacing as ","."""
    text = _VULGAR_RE.sub(_vulgar_sub, text)
    text = unicodedata.normalize("NFKC", text)
    text = text.replace("\u2044", "/").replace("\u2215", "/")
    return _LATEX_THOUSANDS_RE.sub(",", text)


def _decimal_value(token: str) -> Fraction | None:
    token = token.replace("\u2212", "-").replace("$", "").replace("\\", "")
    token = token.replace(",", "").replace(" ", "")
    if sum(ch.isdigit() for ch in token) > _MAX_DIGITS:
        return None
    try:
        return Fraction(token)
    except (ValueError, ZeroDivisionError, OverflowError):
        return None


def _ratio(num: Fraction | None, den: Fraction | None) -> Fraction | None:
    if num is None or den is None or den == 0:
        return None
    return num / den


def _span_value(match: re.Match) -> Fraction | None:
    if match.group("latex") is not None:
        num = _decimal_value(match.group(2) or match.group(3) or "")
        den = _decimal_value(match.group(4) or match.group(5) or "")
        value = _ratio(num, den)
        if value is not None and match.group(0).lstrip()[0] in "-\u2212":
            value = -value
        return value
    text = match.group("plain")
    if "/" in text:
        num_text, den_text = text.split("/", 1)
        return _ratio(_decimal_value(num_text), _decimal_value(den_text))
    return _decimal_value(text)


def _scan(text: str, offset: int = 0) -> list[NumberSpan]:
    return [
        NumberSpan(m.start() + offset, m.end() + offset, m.group(0), _span_value(m))
        for m in _NUMBER_RE.finditer(text)
    ]


def _last_box_content(text: str) -> tuple[int, str] | None:
    """(offset, content) of the last \\boxed{...}; unbalanced braces run to the end."""
    boxes = list(_BOX_RE.finditer(text))
    if not boxes:
        return None
    start = boxes[-1].end()
    depth = 1
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return start, text[start:i]
    return start, text[start:]


def find_number_spans(text: str) -> list[NumberSpan]:
    """Every number in `prepare_number_text(text)`, in order (spans index that text)."""
    return _scan(prepare_number_text(text))


def _answer_span(prepared: str, which: int) -> NumberSpan | None:
    if which == -1:
        box = _last_box_content(prepared)
        if box is not None:
            inside = _scan(box[1], box[0])
            if inside:
                return inside[-1]
    spans = _scan(prepared)
    return spans[which] if spans else None


def last_number_span(text: str) -> NumberSpan | None:
    """The answer number of `text` as `parse_number` picks it (last number; the last
    `\\boxed{}` first), with its text in `prepare_number_text(text)`; None if none."""
    return _answer_span(prepare_number_text(text), -1)


def first_number_span(text: str) -> NumberSpan | None:
    """The first number of `text` (no `\\boxed{}` preference); None if none."""
    return _answer_span(prepare_number_text(text), 0)


def parse_number(text: str) -> Fraction | None:
    """The math answer in `text` as an exact rational; None when there is no number.

    "18", "18.0", "18.00", "$18", "18.", "18 dollars", "\\boxed{18}", "１８" all give
    Fraction(18); "3/4", "\\frac{3}{4}", "0.75" give Fraction(3, 4); "$1,234.50" gives
    Fraction(2469, 2). With several numbers the last one counts. Never raises on a
    `str` (see the module docstring for every rule).
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_number expects a str, got {type(text).__name__}")
    span = last_number_span(text)
    return None if span is None else span.value
