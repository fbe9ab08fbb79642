"""What a run survives: text no file can hold, a samples file lm-eval failed to write,
and the mistakes that would otherwise surface only after the model loads.

- A lone surrogate in a response (valid JSON from a server, not encodable as UTF-8)
  would make lm-eval drop the task's whole samples file with a warning and exit 0:
  SemcalTask replaces it by U+FFFD, and `semcal run` ends with status 1 when a samples
  file holds fewer lines than the results JSON counted.
- A bad data file, `--limit 0` or a misspelt semcal task stops `semcal run` with one
  line naming the file, the row and the fix, before lm-eval starts (and so before the
  model loads: lm-eval 0.4.13 creates the model before it builds the tasks).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FIXTURES, GSM8K_TEST, ScriptedLM, save_scripted_run
from lm_eval._cli import HarnessCLI

from lm_eval_semcal.cli import main
from lm_eval_semcal.harness.data import DataFileError
from lm_eval_semcal.harness.evaluate import (
    RunArgsError,
    check_run_args,
    evaluate_and_save,
    unsaved_samples,
)
from lm_eval_semcal.harness.rescue import write_rescue_file
from lm_eval_semcal.runs.saved import logged_record
from lm_eval_semcal.tasks import TASKS_DIR

# lm-eval itself runs here: CI runs this module under every supported release.
pytestmark = pytest.mark.harness

TRIVIAQA = FIXTURES / "triviaqa.jsonl"
FRANCE = "What is the capital city of France?"
# Three of the sixteen responses (4 questions, M = 4) hold lone surrogates.
SURROGATE_SCRIPT = {
    FRANCE: [" Par\ud800is", " Paris", " Paris", "\udc00"],
    "Which city was the capital of the Roman Empire?": [" Rome", " Rome", " Ro\udfffme", " Milan"],
    "In which city is the Brandenburg Gate?": [" Berlin"] * 4,
    "What is the capital of Portugal?": [" Lisbon", " Lisbon", " Porto", " Lisbon"],
}
UNSAVABLE = "responses held characters that cannot be saved"


def test_a_lone_surrogate_is_replaced_and_every_sample_is_saved(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="lm_eval_semcal.harness.task"):
        evaluate_and_save(
            ["semcal_triviaqa"], tmp_path / "out", {"data_files": str(TRIVIAQA), "repeats": 4},
            model=ScriptedLM(SURROGATE_SCRIPT), model_args="pretrained=scripted/lm", bootstrap_iters=0,
        )
    warnings = [record.getMessage() for record in caplog.records if UNSAVABLE in record.getMessage()]
    assert warnings == [
        (
            "semcal_triviaqa: 3 of 16 responses held characters that cannot be saved (lone surrogates); "
            "each was replaced by U+FFFD"
        )
    ]
    (samples_file,) = (tmp_path / "out").glob("*/samples_semcal_triviaqa_*.jsonl")
    samples = [json.loads(line) for line in samples_file.read_bytes().decode("utf-8").splitlines()]
    by_question = {sample["doc"]["question"]: sample for sample in samples}
    assert len(by_question) == 4
    assert by_question[FRANCE]["resps"] == [[" Par\ufffdis", " Paris", " Paris", "\ufffd"]]
    assert by_question["Which city was the capital of the Roman Empire?"]["resps"] == [[" Rome", " Rome", " Ro\ufffdme", " Milan"]]
    # The record groups the replaced text: "Par\ufffdis" is a class of its own, Paris wins 2 of 4.
    record = logged_record(by_question[FRANCE]).to_dict()
    assert record["answers"][0] == "Par\ufffdis" and record["confidence"] == 0.5 and record["correct"] is True
    assert unsaved_samples(tmp_path / "out", since=0) == []


def test_responses_without_surrogates_are_left_as_they_are_and_warn_nothing(tmp_path, caplog):
    script = {question: [" Paris", " 東京 🙂", " Lyon", ""] for question in SURROGATE_SCRIPT}
    with caplog.at_level(logging.WARNING, logger="lm_eval_semcal.harness.task"):
        evaluate_and_save(
            ["semcal_triviaqa"], tmp_path / "out", {"data_files": str(TRIVIAQA), "repeats": 4},
            model=ScriptedLM(script), model_args="pretrained=scripted/lm", bootstrap_iters=0,
        )
    assert not [record for record in caplog.records if UNSAVABLE in record.getMessage()]
    (samples_file,) = (tmp_path / "out").glob("*/samples_semcal_triviaqa_*.jsonl")
    first = json.loads(samples_file.read_text(encoding="utf-8").splitlines()[0])
    assert first["resps"] == [[" Paris", " 東京 🙂", " Lyon", ""]]


def test_a_rescue_file_keeps_a_lone_surrogate_as_its_json_escape(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMCAL_RESCUE_DIR", str(tmp_path))
    rows = [{"resps": [" Par\ud800is", "café 🙂"]}]
    path = write_rescue_file("semcal_triviaqa", rows)
    raw = path.read_bytes()
    assert b'"resps": [" Par\\ud800is", "caf\xc3\xa9 \xf0\x9f\x99\x82"]' in raw
    assert [json.loads(line) for line in raw.decode("utf-8").splitlines()] == rows


@pytest.mark.parametrize("output_path", ["out", "out/results.json"], ids=["folder", "json-path"])
def test_unsaved_samples_finds_a_samples_file_left_empty_short_or_missing(tmp_path, output_path):
    started = time.time() - 1
    out = tmp_path / output_path
    evaluate_and_save(
        ["semcal_triviaqa"], out, {"data_files": str(TRIVIAQA), "repeats": 4},
        model=ScriptedLM(SURROGATE_SCRIPT), model_args="pretrained=scripted/lm", bootstrap_iters=0,
    )
    (samples_file,) = tmp_path.rglob("samples_semcal_triviaqa_*.jsonl")
    assert unsaved_samples(out, since=started) == []
    lines = samples_file.read_text(encoding="utf-8").splitlines(keepends=True)
    samples_file.write_text("".join(lines[:2]), encoding="utf-8")
    assert unsaved_samples(out, since=started) == [f"semcal_triviaqa: {samples_file} holds 2 of its 4 samples"]
    samples_file.write_bytes(b"")
    assert unsaved_samples(out, since=started) == [f"semcal_triviaqa: {samples_file} holds 0 of its 4 samples"]
    samples_file.unlink()
    assert unsaved_samples(out, since=started) == [f"semcal_triviaqa: {samples_file} holds 0 of its 4 samples"]
    # A results file older than this run is another run's: not this run's to judge.
    assert unsaved_samples(out, since=time.time() + 60) == []


def run_args(tasks: str, data_files, *extra: str, output: Path | None = None) -> list[str]:
    args = ["run", "--model", "hf", "--model_args", "pretrained=/nonexistent/model", "--tasks", tasks]
    args += ["--metadata", f"data_files={data_files}", *extra]
    return args + (["--output_path", str(output), "--log_samples"] if output else [])


@pytest.mark.parametrize("samples_lost", [True, False], ids=["samples-lost", "samples-saved"])
def test_semcal_run_exits_non_zero_when_lm_eval_did_not_save_the_samples(tmp_path, monkeypatch, in_process_run, samples_lost):
    out = tmp_path / "out"

    def lm_eval_run(self, args):
        # lm-eval's own save, then what its caught UnicodeEncodeError leaves: an empty file.
        save_scripted_run(out, SURROGATE_SCRIPT, "semcal_triviaqa", "0")
        if samples_lost:
            next(out.rglob("samples_*.jsonl")).write_bytes(b"")

    monkeypatch.setattr(HarnessCLI, "execute", lm_eval_run)
    if not samples_lost:
        assert main(run_args("semcal_triviaqa", TRIVIAQA, output=out)) == 0
        return
    with pytest.raises(SystemExit) as stopped:
        main(run_args("semcal_triviaqa", TRIVIAQA, output=out))
    (samples_file,) = out.rglob("samples_semcal_triviaqa_*.jsonl")
    message = stopped.value.code
    assert message.startswith(f"semcal run: error: samples not saved (semcal_triviaqa: {samples_file} holds 0 of its 4 samples)")
    assert "remove the cause and rerun" in message and "\n" not in message


def gsm8k_rows(count: int) -> list[str]:
    return GSM8K_TEST.read_text(encoding="utf-8").splitlines()[:count]


def write_bad_file(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.jsonl"
    rows = gsm8k_rows(3)
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "not-utf8":
        path.write_bytes("\n".join(rows[:2]).encode() + b'\n{"question": "caf\xe9?", "answer": "#### 1"}\n')
    elif kind == "row-without-question":
        path.write_text("\n".join([rows[0], json.dumps({"answer": "#### 4"}), rows[2]]) + "\n", encoding="utf-8")
    elif kind == "no-usable-gold":
        path.write_text("".join(json.dumps({**json.loads(row), "answer": "no number ####"}) + "\n" for row in rows))
    return path


@pytest.mark.parametrize(
    ("tasks", "kind", "extra", "message"),
    [
        ("semcal_gsm8k", "empty", [], "semcal gsm8k: {path} holds no rows; it needs one JSON object per line"),
        ("semcal_gsm8k", "not-utf8", [], "semcal gsm8k: {path} line 3 is not UTF-8 (byte 0xe9 at column 18); save the file as UTF-8"),
        ("semcal_gsm8k", "missing", [], "semcal gsm8k: data_files={path} is not a file; pass a JSON or JSONL file"),
        ("semcal_gsm8k", "row-without-question", [], "semcal gsm8k: {path} line 2 lacks field(s) question; every row needs question, answer"),
        ("semcal_gsm8k", "no-usable-gold", [], "semcal gsm8k: {path} has no row with a usable question and gold answer (none of its 3 rows"),
        ("semcal_gsm8k", "good", ["--limit", "0"], "--limit 0 leaves no question to ask; pass --limit N"),
        ("semcal_gsm8kk", "good", [], "no task semcal_gsm8kk; did you mean semcal_gsm8k?"),
        ("semcal_gsm8k,semcal_nq_opn", "good", [], "no task semcal_nq_opn; did you mean semcal_nq_open?"),
    ],
)
def test_semcal_run_stops_with_one_line_before_lm_eval_starts(tmp_path, monkeypatch, in_process_run, tasks, kind, extra, message):
    def lm_eval_run(self, args):
        raise AssertionError("lm-eval started: the model would have loaded")

    monkeypatch.setattr(HarnessCLI, "execute", lm_eval_run)
    path = GSM8K_TEST if kind == "good" else write_bad_file(tmp_path, kind)
    with pytest.raises(SystemExit) as stopped:
        main(run_args(tasks, path, *extra))
    error = stopped.value.code
    assert error.startswith("semcal run: error: " + message.format(path=path)), error
    assert "\n" not in error


def test_check_run_args_reads_the_files_of_the_datasets_the_tasks_read(tmp_path):
    bad_nq_open = tmp_path / "nq_open.jsonl"
    bad_nq_open.write_bytes(b"")
    data_files = {"data_files": {"gsm8k": str(GSM8K_TEST), "nq_open": str(bad_nq_open)}}
    include = str(TASKS_DIR)
    # lm-eval's own tasks (and YAML paths) are lm-eval's to resolve; gsm8k's file is good.
    check_run_args(["hellaswag", "semcal_gsm8k", "semcal_gsm8k_cot", "my_task.yaml"], include, 0.5, data_files)
    # A group, a tag and a glob that hold an nq_open task all read its file.
    for tasks in (["semcal"], ["semcal_sentence"], ["semcal_nq*"]):
        with pytest.raises(DataFileError, match=f"semcal nq_open: {bad_nq_open} holds no rows"):
            check_run_args(tasks, include, None, data_files)
    # A name lm-eval's index does not hold either has no close semcal name to suggest.
    with pytest.raises(RunArgsError, match=r"^no task semcal_xyzzy_qqq; `lm_eval ls tasks \| grep semcal` lists them$"):
        check_run_args(["semcal_xyzzy_qqq"], include, None, {})
    with pytest.raises(RunArgsError, match="--limit -1 leaves no question"):
        check_run_args(["semcal_gsm8k"], include, -1.0, {})


@pytest.mark.slow  # a `semcal` process: lm-eval's CLI and the hf backend imported (~8 s)
def test_semcal_run_prints_one_line_to_stderr_for_a_bad_data_file(tmp_path):
    path = write_bad_file(tmp_path, "not-utf8")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "semcal"), *run_args("semcal_gsm8k", path)],
        check=False, cwd=tmp_path, capture_output=True, text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        (
            f"semcal run: error: semcal gsm8k: {path} line 3 is not UTF-8 (byte 0xe9 at column 18); save the file "
            "as UTF-8, e.g. `iconv -f latin1 -t utf-8`"
        )
    ]
    assert result.stdout == ""
