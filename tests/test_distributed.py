"""`accelerate launch --num_processes 2` with hf-semcal: each rank samples its share, rank 0 gets all,
and both keep their samples in one store that a second run is served from.

Runs two CPU processes (gloo) through the real `accelerate` launcher and the `semcal`
module entry point on an odd number of questions (lm-eval then pads the short rank by
sending its last request again), then checks the merged result set: every question
present once, each with exactly its M samples, and the reported metrics equal to the
means of the per-question records.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIXTURES

from lm_eval_semcal.demo.tiny_model import build_tiny_model
from lm_eval_semcal.runs.saved import logged_record

REPEATS = 4
QUESTIONS = 3  # odd: rank 1 gets one question and lm-eval's padding


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow  # two accelerate processes, each loading lm-eval and a model
def test_two_cpu_processes_give_the_complete_result_set(tmp_path):
    model_dir = build_tiny_model(tmp_path / "tiny")
    # accelerate comes with lm-eval[hf]; its launcher sits beside this interpreter. Its
    # --cpu launcher starts a single process; --multi_gpu is the torchrun launcher, and
    # ACCELERATE_USE_CPU makes its processes join on CPU through gloo.
    command = [
        str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
        "-m", "lm_eval_semcal", "run",
        "--model", "hf-semcal", "--model_args", f"pretrained={model_dir}",
        "--tasks", "semcal_triviaqa",
        "--metadata", json.dumps({"data_files": str(FIXTURES / "triviaqa.jsonl")}),
        "--repeats", str(REPEATS), "--limit", str(QUESTIONS),
        "--use_cache", str(tmp_path / "cache"), "--log_samples",
    ]
    env = {**os.environ, "ACCELERATE_USE_CPU": "true"}
    result = subprocess.run([*command, "--output_path", str(tmp_path / "out")], capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]

    questions = [json.loads(line) for line in (FIXTURES / "triviaqa.jsonl").read_text().splitlines()][:QUESTIONS]
    samples_file = next((tmp_path / "out").rglob("samples_semcal_triviaqa_*.jsonl"))
    samples = [json.loads(line) for line in samples_file.read_text().splitlines()]
    assert sorted(sample["doc_id"] for sample in samples) == list(range(len(questions)))
    assert [len(sample["resps"][0]) for sample in samples] == [REPEATS] * len(questions)
    assert {sample["doc"]["question"] for sample in samples} == {q["question"] for q in questions}

    records = [logged_record(sample).to_dict() for sample in samples]
    assert [len(record["class_ids"]) for record in records] == [REPEATS] * QUESTIONS
    results = json.loads(next((tmp_path / "out").rglob("results_*.json")).read_text())
    metrics = results["results"]["semcal_triviaqa"]
    assert metrics["conf,semcal"] == pytest.approx(sum(r["confidence"] for r in records) / len(records))
    assert metrics["acc,semcal"] == pytest.approx(sum(r["correct"] for r in records) / len(records))
    # Both ranks sampled: each logs its own share of the questions.
    shares = [line for line in result.stderr.splitlines() if "hf-semcal rank" in line]
    assert any("rank 0 of 2" in line for line in shares) and any("rank 1 of 2" in line for line in shares), shares

    # Both ranks wrote their samples to one shared store: a second run is served wholly from it.
    rerun = subprocess.run([*command, "--output_path", str(tmp_path / "rerun")], capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    served = [line for line in rerun.stderr.splitlines() if "samples served from it" in line]
    assert len(served) == 2 and all(line.endswith("; 0 to draw") for line in served), served
    rerun_samples = [json.loads(line) for line in next((tmp_path / "rerun").rglob("samples_*.jsonl")).read_text().splitlines()]
    assert sorted((s["doc_id"], s["resps"]) for s in rerun_samples) == sorted((s["doc_id"], s["resps"]) for s in samples)
