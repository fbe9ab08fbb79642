"""`semcal demo` end to end, from a cold cache, at its real size: the three findings must show.

This trains both demo models (about two minutes on 2 CPU cores), samples 300 questions x 50
answers from each through lm-eval, and checks what the issue asks the demo to show, plus
that its files agree with one another and with an independent recomputation.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from lm_eval_semcal import cli
from lm_eval_semcal.core import calibration
from lm_eval_semcal.demo import models as demo_model
from lm_eval_semcal.demo import run as demo
from lm_eval_semcal.demo import world as synthetic
from lm_eval_semcal.runs.saved import load_run


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(demo_model.CACHE_ENV, str(out / "cache"))
        assert cli.main(["demo", "--out", str(out / "run"), "--bootstrap-iters", "200"]) == 0
    return out / "run"


def test_the_demo_shows_the_three_findings(demo_run):
    summary = json.loads((demo_run / "demo.json").read_text())
    base, tuned = summary["models"]["base"], summary["models"]["tuned"]
    assert all(item["shown"] for item in summary["findings"]), summary["findings"]
    # Base: calibrated, within the noise floor, and its sampled smECE near the exact one.
    assert base["metrics"]["towns"]["smece"] <= 0.06
    assert base["metrics"]["towns"]["smece"] <= summary["noise_floor"]["p95"]
    assert abs(base["metrics"]["towns"]["smece"] - base["exact_smece"]) <= 0.03
    # Tuned: overconfident.
    assert tuned["metrics"]["towns"]["conf"] - tuned["metrics"]["towns"]["acc"] >= 0.10
    # Strings split a town's forms: the same base model looks underconfident.
    strings, towns = base["metrics"]["strings"], base["metrics"]["towns"]
    assert strings["conf"] - strings["acc"] < towns["conf"] - towns["acc"] - 0.2


def test_the_sampled_estimate_converges_to_the_exact_probability(demo_run):
    base = json.loads((demo_run / "demo.json").read_text())["models"]["base"]
    errors = [base["convergence"][str(m)]["mean_abs_error"] for m in demo.M_STEPS]
    assert errors == sorted(errors, reverse=True) and errors[-1] < 0.05


def test_the_files_agree_with_an_independent_recomputation(demo_run):
    summary = json.loads((demo_run / "demo.json").read_text())
    runs = {(run.model_dir.rsplit("__", 1)[-1], run.filter): run for run in load_run(demo_run / "lm_eval")}
    assert sorted(runs) == [("base", "semcal"), ("base", "semcal_exact"), ("tuned", "semcal"), ("tuned", "semcal_exact")]
    towns = runs[("base", "semcal")]
    assert towns.n_questions == 300 and towns.M == 50
    assert summary["models"]["base"]["metrics"]["towns"]["smece"] == pytest.approx(
        calibration.smece(towns.confidence, towns.correct)
    )
    # The first M samples of each question re-grouped here give the convergence table's M = 50 row.
    confidence, correct = demo.first_m(towns.records, 50)
    assert np.array_equal(confidence, towns.confidence) and np.array_equal(correct, towns.correct)
    world = synthetic.build_world()
    golds = [json.loads(line)["answer"]["aliases"] for line in (demo_run / "world.jsonl").read_text().splitlines()]
    assert golds == [list(world.towns[q.gold].forms) for q in world.questions]
    diagrams = [path.name for path in (demo_run / "report").iterdir() if path.name.endswith("_reliability.png")]
    assert len(diagrams) == 4
    assert "- [x] tuned model overconfident" in (demo_run / "demo.md").read_text()
    rows = [json.loads(line) for line in (demo_run / "per_question.jsonl").read_text().splitlines()]
    base_rows = [row for row in rows if row["model"] == "base"]
    assert len(base_rows) == 300 and [row["sampled_confidence"] for row in base_rows] == towns.confidence.tolist()
    mean_error = np.mean([abs(row["sampled_confidence"] - row["exact_top_probability"]) for row in base_rows])
    assert mean_error == pytest.approx(summary["models"]["base"]["mean_abs_error"])


def test_the_noise_floor_of_a_perfect_predictor_by_hand():
    # One question with a certain answer: every simulated run has confidence 1, correct.
    world = synthetic.World(0, synthetic.towns(), (synthetic.Question("q", "Q?", ((3, 20),), 3),))
    assert demo.noise_floor(world, 10, runs=5) == {"median": 0.0, "p95": 0.0}
    assert demo.plurality([0, 1, 1, 0, 2]) == (0, 0.4)  # a tie goes to the class seen first
