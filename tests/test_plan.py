"""`semcal plan`: the questions a run needs for its calibration test, from a pilot's confidences."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FIXTURES

from lm_eval_semcal import cli
from lm_eval_semcal.core import calibration
from lm_eval_semcal.core import power as power_module
from lm_eval_semcal.runs import plan as plan_module
from lm_eval_semcal.runs.saved import load_run

SAVED_RUN = FIXTURES / "runs" / "lm-eval-0.4.13"


def run_plan(capsys, *args):
    """`semcal plan ARGS`: its exit status, stdout lines and stderr."""
    try:
        status = cli.main(["plan", *args])
    except SystemExit as exit:
        status = exit.code
    captured = capsys.readouterr()
    return status, captured.out.splitlines(), captured.err


def test_a_file_of_confidences_is_planned_as_questions_needed_plans_it(tmp_path, capsys):
    # A pilot of 40 questions: 30 at 0.9 and 10 at 0.5 (a comment and commas allowed).
    path = tmp_path / "pilot.txt"
    path.write_text("# pilot run\n" + "0.9\n" * 30 + ", ".join(["0.5"] * 10) + "\n")
    status, lines, _ = run_plan(capsys, "--overconfidence", "0.1", "--confidences", str(path), "--iters", "200")
    expected = calibration.questions_needed([0.9] * 30 + [0.5] * 10, 0.1, metric="smece", iters=200, seed=0)
    assert status == 0
    assert lines == [
        f"{path}: {expected.questions:,} questions detect an overconfidence of 0.1 with 80% power at the 5% level "
        f"(smECE test, estimated power {expected.achieved_power:.3f} from 200 simulated runs)"
    ]
    # About 1/d^2: a shift twice as large needs about a quarter of the questions.
    larger = calibration.questions_needed([0.9] * 30 + [0.5] * 10, 0.2, metric="smece", iters=200, seed=0)
    assert 0.15 < larger.questions / expected.questions < 0.4


def test_a_saved_run_is_planned_task_by_task_from_its_confidences(capsys):
    (run,) = load_run(SAVED_RUN)
    status, lines, _ = run_plan(capsys, "--overconfidence", "0.05", "--run", str(SAVED_RUN), "--iters", "200",
                                "--power", "0.9")  # fmt: skip
    expected = calibration.questions_needed(run.confidence, 0.05, metric="smece", power=0.9, iters=200, seed=0)
    assert status == 0 and len(lines) == 1
    assert lines[0].startswith(f"semcal_triviaqa (scripted/lm, 4 questions, M = 4): {expected.questions:,} questions ")
    assert "an overconfidence of 0.05 with 90% power at the 5% level" in lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--overconfidence", "0", "--run", "x"], "--overconfidence must be a shift in (0, 1], e.g. 0.03, got 0.0"),
        (["--overconfidence", "1.5", "--confidences", "x"], "--overconfidence must be a shift in (0, 1]"),
        (["--overconfidence", "0.03", "--run", "/nowhere"], "/nowhere does not exist: pass the --output_path folder"),
        (["--overconfidence", "0.03", "--confidences", "/nowhere"], "cannot read --confidences /nowhere"),
        (["--overconfidence", "0.03", "--confidences", "WORDS"], "'seven' is not a number; give confidences in [0, 1]"),
        (["--overconfidence", "0.03", "--confidences", "EMPTY"], "holds no confidence"),
        (["--overconfidence", "0.03", "--confidences", "ABOVE_ONE"], "1.5 is not a confidence in [0, 1]"),
        (["--overconfidence", "0.03", "--confidences", "GOOD", "--power", "0.01"], "power must lie strictly between 0.05 and 1"),
        (["--overconfidence", "0.03", "--confidences", "GOOD", "--iters", "5"], "no p-value reaches alpha=0.05; draw at least 19"),
    ],
)
def test_bad_input_is_one_line_before_any_simulation(args, message, tmp_path, capsys, monkeypatch):
    files = {"WORDS": "0.5 seven\n", "EMPTY": "# nothing\n", "ABOVE_ONE": "0.5\n1.5\n", "GOOD": "0.5\n0.9\n"}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    args = [str(tmp_path / arg) if arg in files else arg for arg in args]
    simulated = []
    monkeypatch.setattr(power_module, "_rejection_rate", lambda *a, **k: simulated.append(a) or 1.0)
    status, lines, err = run_plan(capsys, *args)
    assert status == 1 and lines == []
    assert err.startswith("semcal plan: error: ") and message in err and err.count("\n") == 1
    assert simulated == []


def test_the_run_and_the_file_are_one_choice(capsys):
    status, _, err = run_plan(capsys, "--overconfidence", "0.03", "--run", "x", "--confidences", "y")
    assert status == 2 and "not allowed with argument --run" in err
    status, _, err = run_plan(capsys, "--overconfidence", "0.03")
    assert status == 2 and "one of the arguments --run --confidences is required" in err


def test_the_pilot_file_reader_keeps_every_number_in_order(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("0.2, 0.4\n# 0.9\n  0.6 1\n0\n")
    (pilot,) = plan_module.pilots_from_file(path)
    assert pilot.source == str(path) and pilot.confidence.tolist() == [0.2, 0.4, 0.6, 1.0, 0.0]
    assert isinstance(pilot.confidence, np.ndarray)
