"""The real `lm_eval` and `semcal` console scripts on a tiny HF model built in the session."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
from conftest import FIXTURES, GSM8K_TEST

from lm_eval_semcal.runs.saved import logged_record
from lm_eval_semcal.tasks import TASKS_DIR

# lm-eval itself runs here: CI runs this module under every supported release.
pytestmark = pytest.mark.harness

NINE_METRICS = ("acc", "conf", "ece", "smece", "brier", "auroc", "sem_entropy", "n_classes", "no_answer")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_model")
    run([console("semcal"), "tiny-model", str(folder)], cwd=folder)
    assert (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()
    return folder


def console(name: str) -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent))
    assert path, f"console script {name} is not installed beside {sys.executable}"
    return path


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{args[0]} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


def only(paths: list[Path]) -> Path:
    assert len(paths) == 1, paths
    return paths[0]


@pytest.mark.slow  # console scripts on a real model in subprocesses
def test_lm_eval_console_runs_a_semcal_task_on_a_local_file(tiny_model, tmp_path):
    out = tmp_path / "out"
    result = run(
        [
            console("lm_eval"),
            "--model", "hf",
            "--model_args", f"pretrained={tiny_model},dtype=float32",
            "--device", "cpu",
            "--batch_size", "8",
            "--tasks", "semcal_gsm8k",
            "--include_path", str(TASKS_DIR),
            # JSON: lm-eval 0.5's --metadata takes nothing else (0.4.13 also takes key=value).
            "--metadata", json.dumps({"data_files": str(GSM8K_TEST), "repeats": 3}),
            "--limit", "3",
            "--output_path", str(out),
            "--log_samples",
        ],
        cwd=tmp_path,
    )
    # The harness's own results table lists all nine metrics.
    table = result.stdout
    for name in NINE_METRICS:
        assert f"|{name}" in table.replace(" ", "")

    results = json.loads(only(list(out.rglob("results_*.json"))).read_text())
    metrics = {k.split(",")[0]: v for k, v in results["results"]["semcal_gsm8k"].items() if "," in k}
    for name in NINE_METRICS:
        assert name in metrics
    assert "not_attempted" not in metrics  # no three-way judge graded this run
    assert results["configs"]["semcal_gsm8k"]["repeats"] == 3

    samples = [json.loads(line) for line in only(list(out.rglob("samples_semcal_gsm8k_*.jsonl"))).open()]
    assert len(samples) == 3
    confidences = []
    for sample in samples:
        assert len(sample["resps"][0]) == 3
        record = logged_record(sample).to_dict()
        assert sum(record["counts"]) == 3
        confidences.append(Fraction(record["confidence"]).limit_denominator(3))
    assert set(confidences) <= {Fraction(1, 3), Fraction(2, 3), Fraction(1)}
    assert metrics["conf"] == pytest.approx(float(sum(confidences) / 3))


@pytest.mark.slow  # console scripts on a real model in subprocesses
def test_semcal_run_includes_the_tasks_and_sets_repeats(tiny_model, tmp_path):
    out = tmp_path / "out"
    run(
        [
            console("semcal"), "run",
            "--repeats", "2",
            "--bootstrap-iters", "50",
            "--model", "hf",
            "--model_args", f"pretrained={tiny_model},dtype=float32",
            "--device", "cpu",
            "--tasks", "semcal_triviaqa",
            "--metadata", f"data_files={FIXTURES / 'triviaqa.jsonl'}",
            "--limit", "2",
            "--output_path", str(out),
            "--log_samples",
        ],
        cwd=tmp_path,
    )
    results = json.loads(only(list(out.rglob("results_*.json"))).read_text())
    assert results["configs"]["semcal_triviaqa"]["repeats"] == 2
    samples = [json.loads(line) for line in only(list(out.rglob("samples_semcal_triviaqa_*.jsonl"))).open()]
    assert [len(s["resps"][0]) for s in samples] == [2, 2]


def test_semcal_tasks_dir_prints_the_shipped_folder(tmp_path):
    printed = run([console("semcal"), "tasks-dir"], cwd=tmp_path).stdout.strip()
    assert Path(printed) == TASKS_DIR
    assert (Path(printed) / "semcal" / "semcal.yaml").is_file()


def test_semcal_run_rejects_bad_repeats(tmp_path):
    result = subprocess.run(
        [console("semcal"), "run", "--repeats", "1", "--tasks", "semcal_gsm8k"],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert "--repeats: must be >= 2, got 1" in result.stderr


@pytest.mark.slow  # console scripts on a real model in subprocesses
def test_semcal_run_ends_a_misconfigured_run_with_one_line(tiny_model, tmp_path):
    result = subprocess.run(
        [
            console("semcal"), "run",
            "--model", "hf",
            "--model_args", f"pretrained={tiny_model},dtype=float32",
            "--device", "cpu",
            "--tasks", "semcal_gsm8k",
            "--metadata", f"data_files={GSM8K_TEST}",
            "--gen_kwargs", "temperature=0",
            "--limit", "1",
        ],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "semcal run: error: semcal_gsm8k: temperature=0 gives M copies of the greedy answer "
        "(set --gen_kwargs temperature=1.0)"
    )
    assert "Traceback" not in result.stderr


def test_semcal_run_refuses_backends_that_fix_the_seed(tmp_path):
    args = [
        console("semcal"), "run",
        "--model", "local-completions",
        "--model_args", "model=m,base_url=http://127.0.0.1:9/v1/completions",
        "--tasks", "semcal_gsm8k",
    ]
    result = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "--model local-completions sends one fixed seed with every request" in result.stderr
