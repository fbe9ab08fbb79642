"""Dataset loading: hub ids and splits, local files, gold answers, bad input."""

from __future__ import annotations

import json
import logging
import re

import datasets
import pytest
from conftest import FIXTURES, GSM8K_TEST

from lm_eval_semcal.harness import data
from lm_eval_semcal.harness.releases import metadata_option

# lm-eval itself runs here: CI runs this module under every supported release.
pytestmark = pytest.mark.harness

HUB = {
    "triviaqa": ("mandarjoshi/trivia_qa", "rc.nocontext", "validation"),
    "nq_open": ("google-research-datasets/nq_open", "nq_open", "validation"),
    "simpleqa": ("basicv8vc/SimpleQA", None, "test"),
    "gsm8k": ("openai/gsm8k", "main", "test"),
}
LOCAL = {
    "triviaqa": FIXTURES / "triviaqa.jsonl",
    "nq_open": FIXTURES / "nq_open.jsonl",
    "simpleqa": FIXTURES / "simpleqa.jsonl",
    "gsm8k": GSM8K_TEST,
}


def fake_hub(dataset, monkeypatch):
    """The hub replaced by the dataset's local rows: the (path, name, split) asked for, and the rows."""
    calls = []
    local_rows = datasets.load_dataset("json", data_files=str(LOCAL[dataset]), split="train")

    def fake_load_dataset(path, name=None, split=None, **kwargs):
        calls.append((path, name, split))
        return local_rows

    monkeypatch.setattr(data.datasets, "load_dataset", fake_load_dataset)
    return calls, local_rows


@pytest.mark.parametrize("dataset", sorted(HUB))
def test_without_data_files_the_hub_dataset_is_loaded(dataset, monkeypatch):
    calls, _ = fake_hub(dataset, monkeypatch)
    loaded = data.load_semcal_dataset(dataset, pretrained="some/model", version=1.0)
    assert calls == [HUB[dataset]]
    assert list(loaded) == [HUB[dataset][2]]


@pytest.mark.parametrize("style", ["", "_sentence", "_cot"])
@pytest.mark.parametrize("dataset", sorted(HUB))
def test_every_task_loads_its_hub_dataset_and_evaluates_its_split(dataset, style, monkeypatch):
    # Each task as lm-eval resolves it (includes, !function loaders, splits), not its text.
    from lm_eval.tasks import TaskManager

    from lm_eval_semcal.tasks import TASKS_DIR

    calls, local_rows = fake_hub(dataset, monkeypatch)
    name = f"semcal_{dataset}{style}"
    task = TaskManager(include_path=str(TASKS_DIR), include_defaults=False).load([name])["tasks"][name]
    split = HUB[dataset][2]
    if split == "validation":
        assert (task.config.validation_split, task.config.test_split) == ("validation", None)
        assert task.has_validation_docs() and not task.has_test_docs()
    else:
        assert (task.config.test_split, task.config.validation_split) == ("test", None)
        assert task.has_test_docs() and not task.has_validation_docs()
    # The docs lm-eval evaluates are that split's rows, with the semcal fields added
    # (SimpleQA's fixture has one row without a gold answer, dropped).
    docs = list(task.eval_docs)
    assert len(docs) == len(local_rows) - (dataset == "simpleqa")
    assert all(doc["semcal_question"] and doc["semcal_golds"] for doc in docs)
    # The task's loader asked the hub for this dataset's id, config and split, once (when
    # the task was built on lm-eval 0.4.13, when its documents were first read on 0.5).
    assert calls == [HUB[dataset]]


def test_hub_failure_names_the_local_file_fix(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach the Hub")

    monkeypatch.setattr(data.datasets, "load_dataset", offline)
    one_file = re.escape(metadata_option({"data_files": "PATH.jsonl"}))
    with pytest.raises(RuntimeError, match=rf"semcal nq_open: could not load .*{one_file} \(one dataset\)"):
        data.load_semcal_dataset("nq_open")


def test_triviaqa_golds_and_ids():
    rows = data.load_semcal_dataset("triviaqa", data_files=str(LOCAL["triviaqa"]))["validation"]
    first = rows[0]
    assert first["semcal_question"] == "What is the capital city of France?"
    assert first["semcal_id"] == "tc_1"
    # aliases first, then the normalised aliases that differ from them; no duplicates.
    assert first["semcal_golds"] == ["Paris", "Paris, France", "City of Light", "city of light", "paris", "paris, france"]
    # The original schema stays intact beside the semcal fields.
    assert first["answer"]["value"] == "Paris"


def test_gsm8k_gold_is_the_number_after_the_hashes():
    rows = data.load_semcal_dataset("gsm8k", data_files=str(GSM8K_TEST))["test"]
    assert len(rows) == 1319
    assert rows[0]["semcal_golds"] == ["18"]
    real = [json.loads(line) for line in GSM8K_TEST.open()]
    assert [r["semcal_question"] for r in rows.select(range(5))] == [r["question"] for r in real[:5]]


def test_rows_without_gold_are_dropped_and_reported(caplog):
    with caplog.at_level(logging.WARNING, logger="lm_eval_semcal.harness.data"):
        rows = data.load_semcal_dataset("simpleqa", data_files=str(LOCAL["simpleqa"]))["test"]
    assert len(rows) == 2
    assert any("1 of 3 rows have no usable gold answer" in r.getMessage() and "ids: 2" in r.getMessage() for r in caplog.records)


def test_data_files_dict_picks_each_datasets_file():
    rows = data.load_semcal_dataset("nq_open", data_files={"nq_open": str(LOCAL["nq_open"]), "gsm8k": "unused"})
    assert len(rows["validation"]) == 3
    with pytest.raises(ValueError, match="unknown dataset"):
        data.load_semcal_dataset("nq_open", data_files={"nqopen": "x.jsonl"})


@pytest.mark.parametrize(
    ("dataset", "other", "problem"),
    [
        ("nq_open", "triviaqa", "`answer` should be a list of strings"),
        ("nq_open", "gsm8k", "`answer` should be a list of strings"),
        ("triviaqa", "gsm8k", "`answer` should be a dict with an `aliases` list"),
        ("simpleqa", "nq_open", "lacks field\\(s\\) problem"),
        ("gsm8k", "triviaqa", "`answer` should be a solution ending in '#### N'"),
    ],
)
def test_another_datasets_file_is_refused_not_misread(dataset, other, problem):
    # One data_files path for a whole group would feed every dataset the same file.
    with pytest.raises(ValueError, match=rf"semcal {dataset}: .* is not in the schema of .*{problem}.*\"data_files\": {{"):
        data.load_semcal_dataset(dataset, data_files=str(LOCAL[other]))


def test_local_file_errors_name_the_fix(tmp_path):
    with pytest.raises(data.DataFileError, match=r"data_files=.*missing.jsonl is not a file"):
        data.load_semcal_dataset("gsm8k", data_files=str(tmp_path / "missing.jsonl"))
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text(json.dumps({"question": "q", "answers": ["a"]}) + "\n")
    with pytest.raises(ValueError, match=r"not in the schema of google-research.*lacks field\(s\) answer"):
        data.load_semcal_dataset("nq_open", data_files=str(wrong))
    empty_gold = tmp_path / "empty.jsonl"
    empty_gold.write_text(json.dumps({"question": "q", "answer": ["  "]}) + "\n")
    with pytest.raises(ValueError, match="no row with a usable question and gold answer"):
        data.load_semcal_dataset("nq_open", data_files=str(empty_gold))
    with pytest.raises(ValueError, match="unknown semcal dataset 'squad'"):
        data.load_semcal_dataset("squad", data_files=str(wrong))


GSM8K_ROW = {"question": "Ann has 2 apples and buys 3. How many now?", "answer": "2 + 3 = 5\n#### 5"}


def jsonl(*rows) -> bytes:
    return b"".join((row if isinstance(row, bytes) else json.dumps(row).encode()) + b"\n" for row in rows)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"bad.jsonl holds no rows; it needs one JSON object per line with the fields question, answer of openai/gsm8k$"),
        (b"\n  \n", r"holds no rows"),
        (b"[]", r"holds no rows"),
        (
            jsonl(GSM8K_ROW, GSM8K_ROW, b'{"question": "caf\xe9?", "answer": "#### 1"}'),
            r"bad.jsonl line 3 is not UTF-8 \(byte 0xe9 at column 18\); save the file as UTF-8",
        ),
        (
            jsonl(GSM8K_ROW, {"prompt": "no question here", "answer": "#### 4"}, GSM8K_ROW),
            r"bad.jsonl line 2 lacks field\(s\) question; every row needs question, answer: add them to that row or remove it$",
        ),
        (
            jsonl(GSM8K_ROW, b'{"question": "cut off", "answer": "#### 1"', GSM8K_ROW),
            r"bad.jsonl line 2 is not JSON \(Expecting ',' delimiter at column 43\); each line must hold one whole JSON object$",
        ),
        (jsonl(GSM8K_ROW, b'["a", "list"]'), r"bad.jsonl line 2 holds a JSON list, not an object"),
        (b'[{"question": "q", "answer": "#### 1"}, 3]', r"bad.jsonl row 2 holds a JSON int, not an object"),
        (
            jsonl({"question": "q1", "answer": "no number ####"}, {"question": "", "answer": "#### 2"}),
            (
                r"bad.jsonl has no row with a usable question and gold answer \(none of its 2 rows; line 1 has "
                r"answer 'no number ####'\); each row needs a non-empty `question` and `answer`, a solution ending "
                r"in '#### N'$"
            ),
        ),
    ],
    ids=["empty", "blank-lines", "empty-array", "not-utf8", "row-without-question", "cut-off-line", "not-an-object",
         "array-row-not-an-object", "no-usable-gold"],
)
def test_a_bad_data_file_is_one_line_naming_file_row_and_fix(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(data.DataFileError, match=rf"^semcal gsm8k: {tmp_path}/.*{message}") as caught:
        data.check_data_file("gsm8k", str(path))
    assert "\n" not in str(caught.value)
    # The loader lm-eval calls stops with the same line, before `datasets` reads the file.
    with pytest.raises(data.DataFileError, match=message):
        data.load_semcal_dataset("gsm8k", data_files=str(path))


def test_a_readable_file_passes_the_check_as_json_lines_an_array_or_with_a_bom(tmp_path):
    for name, content in [
        ("rows.jsonl", jsonl(GSM8K_ROW, {"question": "", "answer": "#### 2"})),  # one unusable row is dropped later
        ("rows.json", json.dumps([GSM8K_ROW, GSM8K_ROW]).encode()),
        ("bom.jsonl", b"\xef\xbb\xbf" + jsonl(GSM8K_ROW)),
    ]:
        (tmp_path / name).write_bytes(content)
        data.check_data_file("gsm8k", str(tmp_path / name))
        assert data.load_semcal_dataset("gsm8k", data_files=str(tmp_path / name))["test"]["semcal_golds"][0] == ["5"]
    # The hub dataset, and a dict without this dataset's file, have nothing to check.
    data.check_data_file("gsm8k", None)
    data.check_data_file("gsm8k", {"nq_open": str(tmp_path / "missing.jsonl")})
    with pytest.raises(data.DataFileError, match="data_files names unknown dataset"):
        data.check_data_file("gsm8k", {"gsm8kk": str(tmp_path / "rows.jsonl")})
