"""Real-data check of answer extraction against OpenAI's GSM8K correctness labels.

`tests/data/gsm8k/example_model_solutions.jsonl` holds 1319 GSM8K test questions, each
with four real GPT-3 runs (6B / 175B, finetuning / verification) and OpenAI's label
`is_correct` for each solution; `test.jsonl` is the GSM8K test set (gold after "####").
Extracting every solution as a `cot` number answer and comparing it to the gold with
`parse_number` must reproduce OpenAI's labels.

Measured: the extracted answers agree with `is_correct` on all 1319 questions of all four
runs. The solutions end with "A: N" (no "The answer is"), so extraction falls back to the
last number of the solution; that also handles the calculator annotations
"<<9*2=18>>18", thousands separators ("A: 6,250" == "#### 6,250", "A: 3,000" == 3000)
and decimals ("A: 7.5"). Thirteen solutions were cut off before their "A:" line (e.g.
row 852, 175b_verification, is just "25"; row 48 ends in "0.3333...3"); their last
number is not the gold and OpenAI labels them all wrong, so they agree as well.

The data are carried in the repository (`tests/data/gsm8k/README.md` gives their source
and licence). A missing file is a failure, not a skip.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest
from conftest import GSM8K_SOLUTIONS, GSM8K_TEST

from lm_eval_semcal.core.extraction import extract_answer, gsm8k_gold
from lm_eval_semcal.core.normalization import parse_number

N_QUESTIONS = 1319

# run -> (questions whose extracted answer agrees with OpenAI's is_correct,
#         solutions OpenAI labels correct)
EXPECTED = {
    "6b_finetuning": (1319, 286),
    "6b_verification": (1319, 515),
    "175b_finetuning": (1319, 458),
    "175b_verification": (1319, 742),
}


def _read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def data() -> tuple[list[dict], list[dict]]:
    return _read_jsonl(GSM8K_SOLUTIONS), _read_jsonl(GSM8K_TEST)


@pytest.fixture(scope="module")
def golds(data: tuple[list[dict], list[dict]]) -> list[Fraction]:
    _, test = data
    values = [parse_number(gsm8k_gold(row["answer"]) or "") for row in test]
    bad = [i for i, v in enumerate(values) if v is None]
    assert not bad, f"GSM8K test rows without a parseable gold: {bad[:10]}"
    return values


def test_files_line_up(data: tuple[list[dict], list[dict]]) -> None:
    solutions, test = data
    assert len(solutions) == N_QUESTIONS
    assert len(test) == N_QUESTIONS
    mismatched = [
        i for i, (s, t) in enumerate(zip(solutions, test)) if s["question"] != t["question"]
    ]
    assert not mismatched, f"questions differ between the two files at rows {mismatched[:10]}"
    for row in solutions:
        assert set(EXPECTED) <= set(row)


def test_gold_matches_ground_truth(
    data: tuple[list[dict], list[dict]], golds: list[Fraction]
) -> None:
    # The ground-truth solutions end with "A: N": extracting them gives the "####" gold.
    solutions, _ = data
    for i, row in enumerate(solutions):
        extracted = extract_answer(row["ground_truth"], "cot", "number")
        assert parse_number(extracted) == golds[i], (i, extracted, golds[i])
    # Thousands separators in the gold are read as such.
    assert gsm8k_gold(data[1][146]["answer"]) == "2,125"
    assert golds[146] == 2125


@pytest.mark.parametrize("run", sorted(EXPECTED))
def test_extraction_reproduces_openai_labels(
    run: str, data: tuple[list[dict], list[dict]], golds: list[Fraction]
) -> None:
    solutions, _ = data
    agree = 0
    n_correct = 0
    disagreements = []
    for i, row in enumerate(solutions):
        extracted = extract_answer(row[run]["solution"], "cot", "number")
        correct = extracted is not None and parse_number(extracted) == golds[i]
        n_correct += correct
        if correct == row[run]["is_correct"]:
            agree += 1
        else:
            disagreements.append((i, extracted, golds[i], row[run]["is_correct"]))
    expected_agree, expected_correct = EXPECTED[run]
    assert agree == expected_agree, disagreements[:10]
    assert n_correct == expected_correct


@pytest.mark.parametrize(
    ("row", "run", "extracted", "is_correct"),
    [
        (0, "6b_finetuning", "26", False),  # "... = $<<13*2=26>>26\nA: 26", gold 18
        (419, "175b_finetuning", "3,000", True),  # thousands separator, gold 3000
        (819, "175b_finetuning", "6,250", True),  # gold "6,250"
        (507, "6b_finetuning", "-1.8", False),  # a negative decimal
        (852, "175b_verification", "25", False),  # truncated solution "25", gold 123
    ],
)
def test_spot_checks(
    row: int,
    run: str,
    extracted: str,
    is_correct: bool,
    data: tuple[list[dict], list[dict]],
    golds: list[Fraction],
) -> None:
    solution = data[0][row][run]
    assert extract_answer(solution["solution"], "cot", "number") == extracted
    assert solution["is_correct"] is is_correct
    assert (parse_number(extracted) == golds[row]) is is_correct
