"""lm-eval's commit lookup, without git's complaint outside a repository."""

from __future__ import annotations

import shutil

import pytest
from conftest import FIXTURES, ScriptedLM

from lm_eval_semcal.harness.evaluate import evaluate_and_save, quiet_git_hash

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def test_a_run_outside_a_repository_prints_no_git_error(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert quiet_git_hash() is None
    metadata = {"data_files": str(FIXTURES / "triviaqa.jsonl"), "repeats": 4, "bootstrap_iters": 0}
    evaluate_and_save(["semcal_triviaqa"], tmp_path / "out", metadata, model=ScriptedLM(lambda q: [" Paris"] * 4), bootstrap_iters=0)
    assert "not a git repository" not in capfd.readouterr().err
    assert next((tmp_path / "out").rglob("results_*.json")).is_file()


def test_inside_a_repository_the_commit_is_still_recorded(tmp_path, monkeypatch):
    import subprocess

    monkeypatch.chdir(tmp_path)
    subprocess.run(["git", "init", "-q"], check=True)
    subprocess.run(["git", "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "--allow-empty", "-m", "x"], check=True)
    head = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True).strip()
    assert quiet_git_hash() == head
