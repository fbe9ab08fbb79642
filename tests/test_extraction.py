"""Tests of lm_eval_semcal.core.extraction: extract_answer and gsm8k_gold."""

from __future__ import annotations

import re
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lm_eval_semcal.core.extraction import ANSWER_TYPES, STYLES, extract_answer, first_sentence, gsm8k_gold
from lm_eval_semcal.core.normalization import is_blank, parse_number


@pytest.mark.parametrize(
    ("style", "answer_type", "expected"),
    [
        # The module docstring's rules, applied by hand to "The answer is 18.".
        ("concise", "text", "The answer is 18."),
        ("sentence", "text", "The answer is 18."),
        ("cot", "text", "18"),
        ("concise", "number", "18"),
        ("sentence", "number", "18"),
        ("cot", "number", "18"),
    ],
)
def test_every_advertised_choice_is_accepted(style: str, answer_type: str, expected: str) -> None:
    # STYLES and ANSWER_TYPES are what callers offer as choices: each must be honoured.
    assert style in STYLES and answer_type in ANSWER_TYPES
    assert extract_answer("The answer is 18.", style, answer_type) == expected


def test_choices_are_enforced_with_a_message_naming_them() -> None:
    with pytest.raises(ValueError, match=re.escape("unknown style 'verbose'; choose one of 'concise', 'sentence', 'cot'")):
        extract_answer("Paris", "verbose")
    with pytest.raises(ValueError, match=re.escape("unknown answer_type 'numeric'; choose one of 'text', 'number'")):
        extract_answer("18", "concise", "numeric")
    # Checked before the response is looked at: even a response with nothing to extract.
    with pytest.raises(ValueError, match=re.escape("unknown style 'Concise'")):
        extract_answer(None, "Concise")
    with pytest.raises(ValueError, match=re.escape("unknown answer_type 'TEXT'")):
        extract_answer("", "cot", "TEXT")


@pytest.mark.parametrize(
    ("response", "style", "answer_type", "expected"),
    [
        # ---- concise: the first non-empty line, stripped.
        ("Paris", "concise", "text", "Paris"),
        ("  Paris  \nQ: What is the capital of Spain?\nA: Madrid", "concise", "text", "Paris"),
        ("\n\n   \n Paris.\nmore", "concise", "text", "Paris."),
        ("Paris\r\nLondon", "concise", "text", "Paris"),
        ("Paris\u2028London", "concise", "text", "Paris"),
        ("", "concise", "text", None),
        ("   \n\t\n  ", "concise", "text", None),
        # Chat models mark the answer up: a label, emphasis, code quotes.
        ("**Paris**", "concise", "text", "Paris"),
        ("*Paris*.", "concise", "text", "Paris."),
        ("`Au`", "concise", "text", "Au"),
        ("Answer: Paris", "concise", "text", "Paris"),
        ("**Answer:** Paris", "concise", "text", "Paris"),
        ("Final answer: **Jane Austen**", "concise", "text", "Jane Austen"),
        ("**Answer:**\n\nParis", "concise", "text", "Paris"),
        ("Answer: The capital of France is Paris.", "sentence", "text", "The capital of France is Paris."),
        ("**18**", "concise", "number", "18"),
        ("Answer: 18", "concise", "number", "18"),
        ("The answer is: 18", "cot", "number", "18"),
        ("The answer is: Paris.", "cot", "text", "Paris"),
        ("The answer is **Paris**.", "cot", "text", "Paris"),
        ("**The answer is Paris.**", "cot", "text", "Paris"),
        # ... but a word that begins like a label is the answer.
        ("Answer the phone", "concise", "text", "Answer the phone"),
        ("Answers: none", "concise", "text", "Answers: none"),
        # A line of invisible characters (format, control) is as empty as a blank one.
        ("\ufeff", "concise", "text", None),
        ("\x00", "concise", "text", None),
        ("\u200b \u202e\n\u200bParis\n", "concise", "text", "\u200bParis"),
        ("\u2060\n18", "concise", "number", "18"),
        ("The answer is \u200b.", "cot", "text", None),
        ("The answer is\n\ufeff\nParis.", "cot", "text", "Paris"),
        # Refusals are not detected: they are answers of their own.
        ("I don't know.", "concise", "text", "I don't know."),
        # concise, number: the last number of the first non-empty line, as found.
        ("18", "concise", "number", "18"),
        ("$18.", "concise", "number", "18"),
        ("$1,234.50 in total", "concise", "number", "1,234.50"),
        ("-5\n7", "concise", "number", "-5"),
        ("9 * 2 = 18", "concise", "number", "18"),
        ("\\boxed{\\frac{3}{4}}", "concise", "number", "\\frac{3}{4}"),
        ("１８", "concise", "number", "18"),
        ("eighteen\n18", "concise", "number", None),
        ("", "concise", "number", None),
        # ---- sentence: the whole first non-empty line is the answer.
        (
            "The capital of France is Paris.\nQ: next",
            "sentence",
            "text",
            "The capital of France is Paris.",
        ),
        ("\n  It's Paris.  ", "sentence", "text", "It's Paris."),
        ("\n \n", "sentence", "text", None),
        ("She makes 9 * 2 = $18 every day.\nQ:", "sentence", "number", "18"),
        ("Janet makes no money.", "sentence", "number", None),
        # ---- cot, text: after the LAST "the answer is", to the end of that line.
        (
            "Paris is in France. So the answer is Paris.\nQ: next question",
            "cot",
            "text",
            "Paris",
        ),
        ("The answer is London. Wait, no. The answer is Paris.", "cot", "text", "Paris"),
        ("THE ANSWER IS Paris.", "cot", "text", "Paris"),
        ("Thus the final answer is Paris.", "cot", "text", "Paris"),
        ("The answer is: Paris.", "cot", "text", "Paris"),
        ("The  answer\nis Paris.", "cot", "text", "Paris"),  # any whitespace between words
        ("The answer is\n\n  Paris.\nmore", "cot", "text", "Paris"),  # next non-empty line
        ("The answer is Washington D.C..", "cot", "text", "Washington D.C."),  # one '.'
        ("The answer is", "cot", "text", None),  # cut off
        ("The answer is .", "cot", "text", None),
        ("Paris is the capital.", "cot", "text", None),  # no phrase
        ("Theanswer is Paris.", "cot", "text", None),  # whole words only
        ("", "cot", "text", None),
        # ---- cot, number: the first number after the phrase ...
        ("9 * 2 = 18. The answer is 18.", "cot", "number", "18"),
        ("The answer is $1,234.50.", "cot", "number", "1,234.50"),
        ("The answer is -5.", "cot", "number", "-5"),
        ("The answer is 18. Q: Tom has 5 apples", "cot", "number", "18"),
        ("The answer is \\frac{3}{4}.", "cot", "number", "\\frac{3}{4}"),
        ("The answer is 3/4.", "cot", "number", "3/4"),
        ("The final answer is 18 dollars.", "cot", "number", "18"),
        # ... None when the phrase is there but no number follows it ...
        ("2 + 2 = 4. The answer is four.", "cot", "number", None),
        ("2 + 2 = 4. The answer is", "cot", "number", None),
        # ... and without the phrase, the last number of the response.
        ("16 - 3 - 4 = <<16-3-4=9>>9\n9 * 2 = $<<9*2=18>>18\nA: 18", "cot", "number", "18"),
        ("So she makes $18 every day.", "cot", "number", "18"),
        ("We get \\boxed{18}. Check: 18 - 2 = 16", "cot", "number", "18"),
        ("No numbers at all.", "cot", "number", None),
        ("", "cot", "number", None),
    ],
)
def test_extract_answer_values(
    response: str, style: str, answer_type: str, expected: str | None
) -> None:
    assert extract_answer(response, style, answer_type) == expected


def test_default_answer_type_is_text() -> None:
    assert extract_answer("The answer is 18.", "cot") == "18"
    assert extract_answer("Paris\n", "concise") == "Paris"


def test_none_response() -> None:
    assert extract_answer(None, "concise") is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("style", "answer_type", "message"),
    [
        ("verbose", "text", "'concise', 'sentence', 'cot'"),
        ("COT", "text", "'concise', 'sentence', 'cot'"),
        ("cot", "numeric", "'text', 'number'"),
        ("cot", None, "'text', 'number'"),
    ],
)
def test_invalid_choices(style: str, answer_type: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        extract_answer("The answer is 18.", style, answer_type)


@pytest.mark.parametrize(
    ("answer_field", "expected", "value"),
    [
        ("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs.\n#### 18", "18", 18),
        ("...\n#### 1,234", "1,234", 1234),
        ("...\n#### -3", "-3", -3),
        ("...\n####5", "5", 5),
        ("#### 1\n#### 2", "2", 2),  # the last marker
        ("#### 7.5\n", "7.5", Fraction(15, 2)),
        ("no marker 18", None, None),
        ("...\n#### ", None, None),
        ("...\n#### seven", None, None),
        ("", None, None),
    ],
)
def test_gsm8k_gold(answer_field: str, expected: str | None, value: object) -> None:
    gold = gsm8k_gold(answer_field)
    assert gold == expected
    assert (None if gold is None else parse_number(gold)) == value


long_texts = st.text(max_size=60).map(lambda s: s * 170)
cotish = st.lists(
    st.sampled_from(
        ["The answer is ", "the final answer is", " 18", "$1,234", ".", "\n", " ", "-",
         "\\boxed{", "}", "3/4", "Paris", "１８", "ANSWER IS", "\u2028", ":", "½"]
    ),
    max_size=30,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), long_texts, cotish))
def test_extract_answer_never_raises(response: str) -> None:
    for style in STYLES:
        for answer_type in ANSWER_TYPES:
            out = extract_answer(response, style, answer_type)
            assert out is None or (isinstance(out, str) and out != "" and out == out.strip())
    first = extract_answer(response, "concise", "text")
    assert first == extract_answer(response, "sentence", "text")
    # What a chat model marks an answer with: a label, emphasis or code quotes.
    unmarked = re.sub(r"[*_`]|(?i:(?:final\s+)?answer\s*:)", "", response)
    if first is not None:
        assert re.sub(r"[*_`]", "", first) in unmarked
        assert "\n" not in first
    else:
        assert all(is_blank(line) for line in unmarked.splitlines())


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=-(10**12), max_value=10**12), st.text(max_size=80))
def test_cot_number_after_phrase(n: int, reasoning: str) -> None:
    response = f"{reasoning}\nSo the answer is {n:,}.\n\nQ: Tom has 5 apples."
    assert parse_number(extract_answer(response, "cot", "number")) == n
    assert extract_answer(response, "cot", "text") == f"{n:,}"


# Base models often run on past the answer on the same line; the stated answer is what
# the first sentence says.
@pytest.mark.parametrize(
    ("response", "style", "answer_type", "expected"),
    [
        (" The answer is Mars. It is the fourth planet from the Sun.", "cot", "text", "Mars"),
        ("So the answer is Jane Austen! She also wrote Emma.", "cot", "text", "Jane Austen"),
        ("The answer is St. Louis. It lies on the Mississippi.", "cot", "text", "St. Louis"),
        ("The answer is J. K. Rowling.", "cot", "text", "J. K. Rowling"),
        # A dotted word could be an abbreviation or a sentence end: it is kept (conservative).
        ("The answer is Washington, D.C. It is", "cot", "text", "Washington, D.C. It is"),
        (" 18 (6 boxes x $3)", "concise", "number", "18"),
        (" 18. That's 6 boxes at $3 each.", "concise", "number", "18"),
        ("The baker makes 18 dollars from 6 boxes.", "sentence", "number", "18"),
        ("The baker makes 6 * 3 = 18 dollars.", "sentence", "number", "18"),
        ("x = 3, so \\boxed{5}", "concise", "number", "5"),
        ("It was 1.5 m. Then 2 more.", "concise", "number", "1.5"),
    ],
)
def test_run_on_answers(response, style, answer_type, expected):
    assert extract_answer(response, style, answer_type) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mars. It is red.", "Mars."),
        ("Is it Mars? Yes.", "Is it Mars?"),
        ("Dr. Who is here. Then", "Dr. Who is here."),
        ("U.S. Route 66. Then", "U.S. Route 66."),
        ("3.14 is pi", "3.14 is pi"),
        ("mars. it is red", "mars. it is red"),
        ("", ""),
    ],
)
def test_first_sentence(text, expected):
    assert first_sentence(text) == expected
