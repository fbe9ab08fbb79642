"""Tests of lm_eval_semcal.core.normalization: normalize_text and parse_number."""

from __future__ import annotations

import string
import unicodedata
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lm_eval_semcal.core.normalization import (
    find_number_spans,
    first_number_span,
    last_number_span,
    normalize_text,
    parse_number,
)

# A long, mixed-script, control-character-laden text.
LONG_MIXED = (
    "Ünïcödé ﬁ １８ — «the» answer\x00\x07\u200b\u2028 is 1,234.50$ 北京。 " * 200
)[:10_000]

# ------------------------------------------------------------------ normalize_text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Punctuation and an article go.
        ("The Eiffel Tower!", "eiffel tower"),
        # Articles only as whole words, any case.
        ("A  an The  cat ", "cat"),
        ("Theodore and Anne", "theodore and anne"),
        ("an apple a day", "apple day"),
        # The apostrophe is deleted (as SQuAD); other punctuation joining two word
        # characters reads as a space (as TriviaQA's scorer); the rest is deleted.
        ("U.S.", "u s"),
        ("don't", "dont"),
        ("Jean-Paul Sartre", "jean paul sartre"),
        ("the-end", "end"),
        ("Rolls-Royce", "rolls royce"),
        ("Rolls--Royce", "rolls royce"),
        ("Rolls - Royce", "rolls royce"),
        ("Mr.T", "mr t"),
        ("Mr. T", "mr t"),
        ("AC/DC", "ac dc"),
        ("snake_case", "snake case"),
        ("Washington, D.C.", "washington d c"),
        ("(Paris)", "paris"),
        ("-Paris-", "paris"),
        # Answers that differ stay apart: a decimal point is not deleted ...
        ("1.5", "1 5"),
        ("15", "15"),
        ("3.14", "3 14"),
        # ... but a thousands separator is (SQuAD's 1000 for "1,000").
        ("1,000", "1000"),
        ("1,234,567", "1234567"),
        ("$1,000,000", "1000000"),
        ("1,2345", "1 2345"),
        ("3,4", "3 4"),
        ("3, 4", "3 4"),
        # string.punctuation includes symbols such as $ + = ^ | ~ <.
        ("$5 + 3 = 8", "5 3 8"),
        ("x|y~z^w<v>u", "x y z w v u"),
        ("<v>", "v"),
        # Articles are kept when nothing else would remain (The The, the band).
        ("The The", "the the"),
        ("the", "the"),
        ("A", "a"),
        ("  An, a; THE. ", "an a the"),
        ("The The album", "album"),
        # Every apostrophe-like character is the apostrophe, deleted.
        ("Shaquille O\u00b4Neal", "shaquille oneal"),
        ("Shaquille O\u2019Neal", "shaquille oneal"),
        ("Shaquille O\u2018Neal", "shaquille oneal"),
        ("Shaquille O`Neal", "shaquille oneal"),
        ("Shaquille O\u02bcNeal", "shaquille oneal"),
        ("Shaquille O\u2032Neal", "shaquille oneal"),
        ("Shaquille O\uff07Neal", "shaquille oneal"),
        ("Shaquille O\uff40Neal", "shaquille oneal"),
        ("Guns N\u00b4 Roses", "guns n roses"),
        ("\u2018Paris\u2019", "paris"),
        # Format (Cf) and control characters are dropped; whitespace controls separate words.
        ("Pa\u200bris", "paris"),
        ("\u202eParis\u202c", "paris"),
        ("\u2066Paris\u2069", "paris"),
        ("\ufeffParis", "paris"),
        ("co\u00adoperate", "cooperate"),
        ("Pa\x00ris\x07", "paris"),
        ("\ufeff", ""),
        ("\x00", ""),
        ("\u200b\u200d\x1b", ""),
        ("Paris\x1cFrance", "paris france"),
        # Unicode punctuation (P*): guillemets, curly quotes, dashes, CJK stops, ¿ ¡.
        ("«Bonjour»", "bonjour"),
        ("\u201cParis\u201d \u2014 France", "paris france"),
        ("¿Qué? ¡Sí!", "qué sí"),
        ("Saint\u2010Étienne", "saint étienne"),
        ("北京。", "北京"),
        # Unicode symbols that are not punctuation stay.
        ("5 €", "5 €"),
        ("90°", "90°"),
        ("©2020", "©2020"),
        # NFKC first: ligatures, full-width forms, superscripts.
        ("ﬁne", "fine"),
        ("１８", "18"),
        ("ＴＨＥ ＣＡＴ", "cat"),
        ("x²", "x2"),
        # Whitespace of every kind collapses; result stripped.
        ("  Paris\t\n\r  France\u3000 ", "paris france"),
        ("Paris\u2028France", "paris france"),
        # Lowercase.
        ("PARIS", "paris"),
        ("ÉCOLE", "école"),
        # Empty and punctuation-only texts.
        ("", ""),
        ("   ", ""),
        ("?!...", ""),
        # Deleting a character may let NFKC compose its neighbours: still a fixed point.
        ("e.\u0301", "\u00e9"),
    ],
)
def test_normalize_text_values(text: str, expected: str) -> None:
    assert normalize_text(text) == expected


def test_normalize_text_long_and_control_characters() -> None:
    out = normalize_text(LONG_MIXED)
    assert out == normalize_text(out)
    assert "ﬁ" not in out and "fi" in out and "18" in out
    assert "\x00" not in out and "\x07" not in out and "\u200b" not in out
    assert normalize_text("a" * 10_000) == "a" * 10_000


def test_normalize_text_rejects_non_str() -> None:
    with pytest.raises(TypeError):
        normalize_text(None)  # type: ignore[arg-type]


def _is_punct(ch: str) -> bool:
    return ch in string.punctuation or unicodedata.category(ch).startswith("P")


long_texts = st.text(max_size=60).map(lambda s: s * 170)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), long_texts))
def test_normalize_text_properties(text: str) -> None:
    out = normalize_text(text)
    assert isinstance(out, str)
    assert normalize_text(out) == out  # idempotent
    assert out == out.strip()
    assert "  " not in out
    assert not any(_is_punct(ch) for ch in out)
    tokens = out.split()
    # Articles go, unless they are all there is (The The).
    assert not {"a", "an", "the"} & set(tokens) or set(tokens) <= {"a", "an", "the"}
    assert not any(unicodedata.category(ch) in ("Cf", "Cc") for ch in out)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=40))
def test_normalize_text_case_and_punctuation_insensitive(text: str) -> None:
    base = normalize_text(text)
    assert normalize_text(text + "!?.") == base
    if set(base.split()) - {"a", "an", "the"}:
        assert normalize_text("  The " + text) == base


words = st.text(alphabet=st.characters(categories=("Lu", "Ll", "Nd")), min_size=1, max_size=12)
joiners = st.sampled_from(["-", "\u2010", "\u2013", "/", ".", "_", ":", "+", "--", " - ", ". "])


def test_a_greek_sigma_is_one_letter_wherever_it_stands() -> None:
    # Python's lower() writes a capital sigma as final sigma after a letter even across a
    # dot ("A.Σ" -> "a.ς"), and as sigma after a space: found by the property test below.
    assert normalize_text("A.Σ") == normalize_text("A Σ") == "σ"
    assert normalize_text("ΟΔΟΣ") == normalize_text("οδος") == normalize_text("Οδοσ") == "οδοσ"


@settings(max_examples=300, deadline=None)
@given(words, joiners, words)
def test_joined_and_separated_words_normalise_alike(left: str, joiner: str, right: str) -> None:
    assert normalize_text(left + joiner + right) == normalize_text(left + " " + right)


invisible = st.sampled_from(["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u202e", "\u2066",
                             "\x00", "\x07", "\x1b", "\x7f"])


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30), st.integers(min_value=0, max_value=30), invisible)
def test_an_invisible_character_changes_nothing(text: str, position: int, char: str) -> None:
    assert normalize_text(text[:position] + char + text[position:]) == normalize_text(text)


ascii_answers = st.one_of(
    st.text(alphabet=st.characters(max_codepoint=127), max_size=30),
    st.lists(st.sampled_from(list("aAtThHeEn1230 .,-'`/_:;!?()\x00\x1c\t\x7f")), max_size=16).map("".join),
)


@settings(max_examples=500, deadline=None)
@given(ascii_answers)
def test_ascii_text_takes_the_same_steps_as_any_text(text: str) -> None:
    # ASCII text has a faster path; a zero-width space (dropped) sends it down the general one.
    assert normalize_text(text) == normalize_text(text + "\u200b")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("1944", "1945"),
        ("1.5", "15"),
        ("3.14", "314"),
        ("1,000", "1,001"),
        ("1,000", "1.000"),
        ("George H. W. Bush", "George W. Bush"),
        ("Jean-Paul", "Jean-Pierre"),
        ("Austria", "Australia"),
    ],
)
def test_different_answers_stay_apart(a: str, b: str) -> None:
    assert normalize_text(a) != normalize_text(b)




# -------------------------------------------------------------------- parse_number

F = Fraction


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # docs/grouping.md: 18 == 18.0 == 18.00 == $18 == 18.
        ("18", F(18)),
        ("18.0", F(18)),
        ("18.00", F(18)),
        ("$18", F(18)),
        ("18.", F(18)),
        ("18 dollars", F(18)),
        ("$18.00.", F(18)),
        ("+18", F(18)),
        # NFKC: full-width digits.
        ("１８", F(18)),
        ("＄１８", F(18)),
        # Thousands separators only between groups of three digits.
        ("1,000", F(1000)),
        ("$1,234.50", F(2469, 2)),
        ("1,234,567", F(1234567)),
        ("3, 4", F(4)),
        ("3,4", F(4)),
        ("1,2345", F(2345)),
        ("1{,}000", F(1000)),
        ("1\\,000", F(1000)),
        # Negatives; a minus after a digit/letter/bracket is an operator.
        ("-5", F(-5)),
        ("\u22125", F(-5)),
        ("-$5", F(-5)),
        ("$-5", F(-5)),
        ("(-5)", F(-5)),
        ("x = -2.5", F(-5, 2)),
        ("16-3", F(3)),
        ("5 - 3", F(3)),
        ("COVID-19", F(19)),
        # Decimals and scientific notation.
        ("0.75", F(3, 4)),
        (".5", F(1, 2)),
        ("1e3", F(1000)),
        ("2.5E-2", F(1, 40)),
        ("8.294400000000001", F("8.294400000000001")),
        ("1e5000", F(1)),  # exponent over three digits is not an exponent
        # Percent is stripped, not divided.
        ("50%", F(50)),
        ("12.5\\%", F(25, 2)),
        # Fractions and LaTeX.
        ("3/4", F(3, 4)),
        ("-3/4", F(-3, 4)),
        ("\\frac{3}{4}", F(3, 4)),
        ("\\dfrac{3}{4}", F(3, 4)),
        ("\\tfrac{1}{3}", F(1, 3)),
        ("\\frac34", F(3, 4)),
        ("-\\frac{3}{4}", F(-3, 4)),
        ("\\frac{-3}{4}", F(-3, 4)),
        ("\\frac{1.5}{2}", F(3, 4)),
        ("\\boxed{18}", F(18)),
        ("\\boxed{\\frac{1}{2}}", F(1, 2)),
        ("The answer is $\\boxed{1{,}000}$.", F(1000)),
        ("\\boxed{18} and then 7 more", F(18)),  # the box wins over a later number
        ("\\boxed{12} ... \\boxed{18}", F(18)),  # the last box
        ("\\boxed{x} so 7", F(7)),  # a box without a number does not count
        ("\\boxed{18", F(18)),  # unclosed box
        # Vulgar fractions.
        ("½", F(1, 2)),
        ("1½ cups", F(3, 2)),
        ("¾", F(3, 4)),
        # Several numbers: the last one.
        ("9 * 2 = 18", F(18)),
        ("She makes 9 * 2 = $18 every day.", F(18)),
        ("<<16-3=13>>13 eggs\nA: 26", F(26)),
        ("1 1/2", F(1, 2)),  # a mixed number with a space reads as its fraction
        # Digits glued to a preceding letter, '_' or '^' are not numbers.
        ("CO2", None),
        ("x2", None),
        ("m^2", None),
        ("m²", None),
        ("a123", None),
        ("5km", F(5)),
        ("18th", F(18)),
        # No number.
        ("", None),
        ("   ", None),
        ("eighteen", None),
        ("no number here.", None),
        ("$", None),
        ("-", None),
        ("\\frac{}{}", None),
        # Numbers without a value: zero denominators, too many digits.
        ("3/0", None),
        ("\\frac{1}{0}", None),
        ("7 then 3/0", None),
        ("9" * 1001, None),
        ("9" * 1000, F(int("9" * 1000))),
    ],
)
def test_parse_number_values(text: str, expected: Fraction | None) -> None:
    assert parse_number(text) == expected
    if expected is not None:
        assert type(parse_number(text)) is Fraction


def test_spec_equalities() -> None:
    values = {parse_number(t) for t in ["18", "18.0", "18.00", "$18", "18.", "１８"]}
    assert values == {Fraction(18)}


def test_number_spans() -> None:
    spans = find_number_spans("Pay $1,234.50, then -5 and 3/4.")
    assert [s.text for s in spans] == ["1,234.50", "-5", "3/4"]
    assert [s.value for s in spans] == [F(2469, 2), F(-5), F(3, 4)]
    assert first_number_span("a 1 b 2").text == "1"
    assert last_number_span("a 1 b 2").text == "2"
    assert first_number_span("none") is None
    assert last_number_span("") is None


def test_parse_number_long_inputs() -> None:
    assert parse_number("1" * 10_000) is None
    assert parse_number("x " * 5_000 + "42") == 42
    assert parse_number(LONG_MIXED) == F(2469, 2)
    assert parse_number("-" * 10_000) is None
    assert parse_number("1," * 5_000) == 1


def test_parse_number_rejects_non_str() -> None:
    with pytest.raises(TypeError):
        parse_number(18)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=-(10**30), max_value=10**30))
def test_parse_number_integer_formats(n: int) -> None:
    for text in [str(n), f"{n:,}", f"{n}.", f"{n}.00", f"The answer is {n}.", f"{n:,} dollars"]:
        assert parse_number(text) == n, text
    if n >= 0:
        assert parse_number(f"${n:,}") == n
        assert parse_number(f"\\boxed{{{n}}}") == n


@settings(max_examples=300, deadline=None)
@given(st.fractions(max_denominator=10**6).filter(lambda f: f.denominator != 1))
def test_parse_number_fraction_formats(value: Fraction) -> None:
    p, q = value.numerator, value.denominator
    assert parse_number(f"{p}/{q}") == value
    assert parse_number(f"\\frac{{{p}}}{{{q}}}") == value
    assert parse_number(f"{float(value)!r}") == Fraction(repr(float(value)))


numberish = st.text(alphabet="0123456789-+.,/$%eE \\{}fracboxed½²x\u2212\n", max_size=80)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(), numberish, long_texts))
def test_parse_number_never_raises_and_spans_are_consistent(text: str) -> None:
    value = parse_number(text)
    assert value is None or isinstance(value, Fraction)
    for span in find_number_spans(text):
        # A span's text read on its own has the span's value.
        assert parse_number(span.text) == span.value, span
    span = last_number_span(text)
    assert (span.value if span else None) == value
