"""The variant-pair corpus of scripts/normalization_pairs.py, its reference scorers, and
semcal's `normalize_text` measured on it against the normalisation rules of docs/grouping.md."""

from __future__ import annotations

import importlib.util
import unicodedata

import pytest
from conftest import REPO_ROOT

from lm_eval_semcal.core.normalization import normalize_text

SCRIPT = REPO_ROOT / "scripts" / "normalization_pairs.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("normalization_pairs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


normalization_pairs = _load_script()

TOGETHER_KINDS = [
    "hyphenation",
    "spacing",
    "dotted initials",
    "apostrophes",
    "diacritics",
    "invisible",
    "case and articles",
    "thousands separators",
]
# TriviaQA's scorer keeps "1,000,000" and "1 000 000" together because it reads every
# comma as a space. `normalize` deletes a thousands comma instead, as SQuAD does ("1,000,000"
# is "1000000"), and a space between digits still separates two numbers ("3 4" is not
# "34"); a normaliser cannot do both, so these pairs are split on purpose.
TRIVIAQA_EXCEPTION_KINDS = {"digits grouped by spaces"}


@pytest.fixture(scope="module")
def semcal_result() -> dict:
    return normalization_pairs.measure(normalize_text)


@pytest.fixture(scope="module")
def variants() -> list[tuple[str, str, str]]:
    return normalization_pairs.variant_pairs()


def _first(items: list, n: int = 5) -> str:
    return "\n".join(repr(item) for item in items[:n])


# --------------------------------------------------------------- the references


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("O'Neal", "o neal"),
        ("O\u00b4Neal", "o neal"),
        ("Guns N\u2019 Roses", "guns n roses"),
        ("O\u02bcNeal", "o\u02bcneal"),  # not in its list of apostrophes
        ("Rolls-Royce", "rolls royce"),
        ("Jean\u2013Paul", "jean\u2013paul"),  # the en dash is not in string.punctuation
        ("U.S.", "u s"),
        ("AC/DC", "ac dc"),
        ("snake_case", "snake case"),
        ("1,000,000", "1 000 000"),
        ("1.5", "1 5"),
        ("The Beatles", "beatles"),
        ("The The", ""),
        ("A-ha", "ha"),
        ("Beyonc\u00e9", "beyonc\u00e9"),
        ("Pa\u200bris", "pa\u200bris"),
    ],
)
def test_triviaqa_reference(text: str, expected: str) -> None:
    assert normalization_pairs.triviaqa_normalize(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Rolls-Royce", "rollsroyce"),
        ("O'Neal", "oneal"),
        ("O\u2019Neal", "o\u2019neal"),  # ASCII punctuation only
        ("U.S.", "us"),
        ("Mr. T", "mr t"),
        ("Mr.T", "mrt"),
        ("snake_case", "snakecase"),
        ("1,000,000", "1000000"),
        ("1.5", "15"),
        ("The Beatles", "beatles"),
        ("The The", ""),
        ("A-ha", "aha"),
        ("the-end", "theend"),
        ("  An   apple ", "apple"),
    ],
)
def test_squad_reference(text: str, expected: str) -> None:
    assert normalization_pairs.squad_normalize(text) == expected


def test_measure_counts_what_the_references_do() -> None:
    squad = normalization_pairs.measure(normalization_pairs.squad_normalize)
    assert ("1.5", "15", "15") in squad["different"]["decimals"]["merged_pairs"]
    assert squad["split_where_triviaqa_keeps"], "SQuAD splits Rolls-Royce / Rolls Royce"
    triviaqa = normalization_pairs.measure(normalization_pairs.triviaqa_normalize)
    split = {(a, b) for a, b, _, _ in triviaqa["variants"]["diacritics"]["split"]}
    assert ("Beyonc\u00e9", "Beyonce\u0301") in split
    # "The The" has an empty key under TriviaQA: an empty key keeps nothing together.
    split = {(a, b) for a, b, _, _ in triviaqa["variants"]["case and articles"]["split"]}
    assert ("The The", "the the") in split
    assert triviaqa["split_where_triviaqa_keeps"] == []


# ------------------------------------------------------------------- the corpus


def test_corpus_is_deterministic_and_large_enough(variants: list[tuple[str, str, str]]) -> None:
    different = normalization_pairs.different_pairs()
    assert variants == normalization_pairs.variant_pairs()
    assert different == normalization_pairs.different_pairs()

    assert len(normalization_pairs.ANSWERS) >= 250
    assert len(set(normalization_pairs.ANSWERS)) == len(normalization_pairs.ANSWERS)
    assert all(unicodedata.is_normalized("NFC", answer) for answer in normalization_pairs.ANSWERS)

    assert len(variants) >= 5000
    assert len(set(variants)) == len(variants)
    assert all(a != b for _, a, b in variants)
    sizes = {}
    for kind, _, _ in variants:
        sizes[kind] = sizes.get(kind, 0) + 1
    minimum = {
        "hyphenation": 400,
        "spacing": 800,
        "dotted initials": 100,
        "apostrophes": 600,
        "diacritics": 500,
        "invisible": 2000,
        "case and articles": 1000,
        "thousands separators": 20,
        "accents stripped": 50,
        "initials run together": 50,
        "digits grouped by spaces": 50,
    }
    assert set(sizes) == set(minimum)
    assert all(sizes[kind] >= minimum[kind] for kind in minimum), sizes

    assert len(different) >= 300
    assert all(a != b for a, b in different)


@pytest.mark.parametrize(
    "pair",
    [
        ("hyphenation", "Rolls-Royce", "Rolls Royce"),
        ("hyphenation", "Jean-Paul Sartre", "Jean\u2013Paul Sartre"),
        ("hyphenation", "AC/DC", "AC-DC"),
        ("spacing", "Mr. T", "Mr.T"),
        ("spacing", "St. Louis", "St.Louis"),
        ("dotted initials", "J. R. R. Tolkien", "J.R.R. Tolkien"),
        ("dotted initials", "Washington, D. C.", "Washington, D.C."),
        ("apostrophes", "Shaquille O'Neal", "Shaquille O\u2019Neal"),
        ("apostrophes", "Rock 'n' roll", "Rock \u2018n\u2019 roll"),
        ("apostrophes", "Guns N' Roses", "Guns N Roses"),
        ("diacritics", "Beyonc\u00e9", "Beyonce\u0301"),
        ("diacritics", "Z\u00fcrich", "\uff3a\u00fc\uff52\uff49\uff43\uff48"),
        ("diacritics", "Henry VIII", "Henry \u2167"),
        ("accents stripped", "S\u00e3o Paulo", "Sao Paulo"),
        ("invisible", "The Beatles", "\ufeffThe Beatles"),
        ("case and articles", "The Beatles", "Beatles"),
        ("case and articles", "The The", "the the"),
        ("thousands separators", "1,000,000", "1000000"),
        ("initials run together", "J. R. R. Tolkien", "JRR Tolkien"),
        ("digits grouped by spaces", "1,000,000", "1 000 000"),
    ],
)
def test_corpus_holds_the_examples_of_each_kind(
    variants: list[tuple[str, str, str]], pair: tuple[str, str, str]
) -> None:
    assert pair in variants


@pytest.mark.parametrize(
    "pair",
    [
        ("1944", "1945"),
        ("1.5", "15"),
        ("3.14", "314"),
        ("1,000", "1,001"),
        ("John Adams", "John Quincy Adams"),
        ("George H. W. Bush", "George W. Bush"),
        ("Austria", "Australia"),
        ("Jean-Paul", "Jean-Pierre"),
    ],
)
def test_corpus_holds_the_different_answers(pair: tuple[str, str]) -> None:
    assert pair in normalization_pairs.different_pairs()


# --------------------------------------------------------------- semcal against it


@pytest.mark.parametrize("kind", TOGETHER_KINDS)
def test_semcal_keeps_every_variant_pair_together(semcal_result: dict, kind: str) -> None:
    split = semcal_result["variants"][kind]["split"]
    assert split == [], f"{len(split)} {kind} pairs split (a, b, key a, key b):\n{_first(split)}"


def test_semcal_merges_no_different_answers(semcal_result: dict) -> None:
    merged = [pair for row in semcal_result["different"].values() for pair in row["merged_pairs"]]
    assert merged == [], f"{len(merged)} different answers merged (a, b, key):\n{_first(merged)}"


def test_semcal_keeps_what_triviaqa_keeps(semcal_result: dict) -> None:
    split_where_triviaqa_keeps = semcal_result["split_where_triviaqa_keeps"]
    split = [pair for pair in split_where_triviaqa_keeps if pair[0] not in TRIVIAQA_EXCEPTION_KINDS]
    assert split == [], f"{len(split)} pairs TriviaQA keeps and semcal splits:\n{_first(split)}"
    # The documented exception, as docs/grouping.md has it.
    assert normalize_text("1,000,000") == normalize_text("1000000") != normalize_text("1 000 000")


def test_semcal_keeps_accent_stripped_forms_apart(semcal_result: dict) -> None:
    # "Beyoncé" and "Beyonce" are different strings to both official scorers.
    assert semcal_result["variants"]["accents stripped"]["together"] == 0


def test_script_prints_both_tables(capsys: pytest.CaptureFixture[str]) -> None:
    before = REPO_ROOT / "lm_eval_semcal" / "core" / "normalization.py"
    assert normalization_pairs.main(["--before", str(before), "--examples"]) == 0
    out = capsys.readouterr().out
    assert "| variant kind | pairs | SQuAD v1.1 | TriviaQA | semcal before | semcal |" in out
    assert "| different answers | pairs |" in out
    assert "Variant pairs TriviaQA keeps together that semcal splits:" in out
