"""What differs between lm-eval 0.4.13 and 0.5 at the command line, checked on the release installed.

CI runs this file under both releases (.ci/run): each test asserts what the running
release must do, and the same semcal numbers either way.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys

import numpy as np
import pytest
from conftest import FIXTURES, ScriptedLM
from lm_eval import simple_evaluate
from lm_eval._cli import HarnessCLI
from lm_eval.tasks import TaskManager

from lm_eval_semcal.harness.releases import (
    RELEASE,
    SCORER_PIPELINE,
    harness_argv,
    metadata_option,
    repeats_option,
)
from lm_eval_semcal.cli import main
from lm_eval_semcal.core.calibration import aurc, bootstrap_ci, calibration_test, detectable_overconfidence
from lm_eval_semcal.harness.task import SemcalConfigError
from lm_eval_semcal.runs.saved import load_run
from lm_eval_semcal.tasks import TASKS_DIR

# lm-eval itself runs here: CI runs this module under every supported release.
pytestmark = pytest.mark.harness

TRIVIAQA = str(FIXTURES / "triviaqa.jsonl")
# conf 3/4 right, 2/4 right (tie, Rome first), 4/4 right, 1/4 wrong (Lisbon, Madrid, ...).
SCRIPT = {
    "What is the capital city of France?": ["Paris", "paris.", "Lyon", "The Paris"],
    "Which city was the capital of the Roman Empire?": ["Rome", "Milan", "Milan", "Rome"],
    "In which city is the Brandenburg Gate?": ["Berlin"] * 4,
    "What is the capital of Portugal?": ["Madrid", "Lisbon", "Porto", "Lisboa"],
}


def parsed(*words: str):
    """`lm_eval run --model hf --tasks semcal_triviaqa WORDS`, as the installed release's parser reads it."""
    saved = sys.argv
    sys.argv = ["lm_eval", "run", "--model", "hf", "--tasks", "semcal_triviaqa", *words]
    try:
        return HarnessCLI().parse_args()
    finally:
        sys.argv = saved


def test_the_release_is_told_apart_by_its_api():
    import lm_eval.api.task as task_api

    assert RELEASE == ("0.5" if hasattr(task_api, "GenerateTask") else "0.4")
    assert SCORER_PIPELINE is (RELEASE == "0.5")


def test_the_metadata_option_a_message_names_is_one_the_release_parses():
    settings = {"data_files": "/data/my file.jsonl", "repeats": 50}
    assert parsed(*shlex.split(metadata_option(settings))).metadata == settings


@pytest.mark.parametrize(
    ("words", "metadata"),
    [
        (["--metadata", f"data_files={TRIVIAQA}", "repeats=3"], {"data_files": TRIVIAQA, "repeats": 3}),
        (["--metadata", json.dumps({"data_files": {"triviaqa": TRIVIAQA}})], {"data_files": {"triviaqa": TRIVIAQA}}),
        (["--metadata", "repeats=3", "--limit", "2"], {"repeats": 3}),
        (["--metadata=repeats=3", "--limit", "2"], {"repeats": 3}),
        (["--limit", "2"], None),
    ],
    ids=["key-value", "json", "then-another-option", "with-equals", "none"],
)
def test_semcal_run_takes_metadata_as_key_value_words_or_json_on_either_release(words, metadata):
    args = parsed(*harness_argv(words))
    assert args.metadata == metadata
    if "--limit" in words:
        assert args.limit == 2
    if not SCORER_PIPELINE:
        assert harness_argv(words) == words  # 0.4.13 parses them as they are


def run_triviaqa(metadata: dict, **evaluate_args):
    lm = ScriptedLM(SCRIPT)
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata={"data_files": TRIVIAQA, **metadata})
    results = simple_evaluate(model=lm, tasks=["semcal_triviaqa"], task_manager=manager, bootstrap_iters=0, **evaluate_args)
    return lm, results


def test_m_set_on_the_command_line_the_releases_way_gives_the_hand_computed_metrics():
    # `--repeats 4` on 0.5 (simple_evaluate's `repeats`), `--metadata repeats=4` on 0.4.13.
    args = parsed(*shlex.split(repeats_option(4)))
    lm, results = run_triviaqa(args.metadata or {}, **({"repeats": args.repeats} if SCORER_PIPELINE else {}))
    assert dict(lm.calls) == {question: 4 for question in SCRIPT}
    assert results["configs"]["semcal_triviaqa"]["repeats"] == 4
    got = results["results"]["semcal_triviaqa"]
    assert got["acc,semcal"] == pytest.approx(3 / 4)
    assert got["conf,semcal"] == pytest.approx((3 / 4 + 2 / 4 + 4 / 4 + 1 / 4) / 4)
    assert got["brier,semcal"] == pytest.approx(((3 / 4 - 1) ** 2 + (2 / 4 - 1) ** 2 + 0 + (1 / 4) ** 2) / 4)


def test_repeats_and_the_metadata_give_the_same_run_and_must_agree():
    if not SCORER_PIPELINE:
        with pytest.raises(SystemExit):  # 0.4.13 has no --repeats: M is the metadata's alone
            parsed("--repeats", "4")
        return
    by_flag = run_triviaqa({}, repeats=4)[1]["results"]["semcal_triviaqa"]
    by_metadata = run_triviaqa({"repeats": 4})[1]["results"]["semcal_triviaqa"]
    assert by_flag == by_metadata
    # Equal numbers given both ways are one setting; different ones are refused before any generation.
    assert run_triviaqa({"repeats": 4}, repeats=4)[1]["results"]["semcal_triviaqa"] == by_metadata
    lm = ScriptedLM(SCRIPT)
    with pytest.raises(SemcalConfigError, match=r"--repeats 3 and --metadata repeats=4 ask for different numbers"):
        manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata={"data_files": TRIVIAQA, "repeats": 4})
        simple_evaluate(model=lm, tasks=["semcal_triviaqa"], task_manager=manager, repeats=3)
    assert lm.requests == []
    with pytest.raises(SemcalConfigError, match=r"repeats=1 but semantic confidence needs M >= 2 .*--repeats 50"):
        run_triviaqa({}, repeats=1)


def test_metrics_with_no_better_direction_have_none_in_the_results():
    # The YAML's `higher_is_better: null` (conf, an interval's ends): lm-eval 0.5 would read
    # it as True and print an up arrow beside `conf` and `ece_ci_high`.
    directions = run_triviaqa({"repeats": 4})[1]["higher_is_better"]["semcal_triviaqa"]
    assert {name: directions[name] for name in ("acc", "conf", "ece", "ece_ci_low", "ece_ci_high", "auroc", "n_classes")} == {
        "acc": True, "conf": None, "ece": False, "ece_ci_low": None, "ece_ci_high": None, "auroc": True, "n_classes": None,
    }


def test_the_results_carry_the_calibration_test_the_brier_parts_aurc_and_selective_accuracy():
    results = run_triviaqa({"repeats": 4, "bootstrap_iters": 50})[1]
    got = {key.split(",")[0]: value for key, value in results["results"]["semcal_triviaqa"].items() if "," in key}
    conf, correct = np.array([0.75, 0.5, 1.0, 0.25]), np.array([1.0, 1.0, 1.0, 0.0])
    # Accuracy rises with confidence (wrong only at 0.25): the isotonic recalibration is
    # (0, 1, 1, 1), whose Brier score is 0; all of brier is miscalibration, all of the
    # uncertainty 3/4 * 1/4 is discriminated.
    assert got["brier_miscalibration"] == pytest.approx(got["brier"], abs=1e-15)
    assert got["brier_discrimination"] == pytest.approx(3 / 16, abs=1e-15)
    assert got["brier_uncertainty"] == pytest.approx(3 / 16, abs=1e-15)
    # Most confident first: right, right, right, wrong; only the last step has a risk, 1/4.
    assert got["aurc"] == pytest.approx(1 / 16, abs=1e-15)
    assert (got["aurc_ci_low"], got["aurc_ci_high"]) == bootstrap_ci(aurc, conf, correct, iters=50, seed=0)
    # The top 2 are right; the top 3.2 hold 3 right and 0.2 of the wrong one.
    assert got["acc_at_50_coverage"] == 1.0 and got["acc_at_80_coverage"] == pytest.approx(3 / 3.2, abs=1e-15)
    test = calibration_test(conf, correct, metric="smece", iters=50, seed=0)
    assert (got["smece_p_value"], got["smece_noise_floor"], got["smece_noise_p95"]) == (
        test.p_value, test.median, test.null_high,
    )  # fmt: skip
    # Four questions see only a gross shift: 0.73 (of at most 1.0), found as the core finds it.
    detectable = detectable_overconfidence(conf, metric="smece", power=0.8, alpha=0.05, iters=50, seed=0)
    assert got["smece_detectable_overconfidence"] == detectable.overconfidence == pytest.approx(0.7275, abs=1e-4)
    directions = results["higher_is_better"]["semcal_triviaqa"]
    assert {name: directions[name] for name in (
        "brier_miscalibration", "brier_discrimination", "brier_uncertainty", "aurc", "aurc_ci_low",
        "acc_at_50_coverage", "acc_at_80_coverage", "smece_p_value", "smece_noise_floor", "smece_noise_p95",
        "smece_detectable_overconfidence",
    )} == {
        "brier_miscalibration": False, "brier_discrimination": True, "brier_uncertainty": None, "aurc": False,
        "aurc_ci_low": None, "acc_at_50_coverage": True, "acc_at_80_coverage": True, "smece_p_value": None,
        "smece_noise_floor": None, "smece_noise_p95": None, "smece_detectable_overconfidence": False,
    }  # fmt: skip


SAVED_RUNS = FIXTURES / "runs"  # one scripted TriviaQA run, saved by each release (runs/README.md)


def test_a_run_saved_by_either_release_reads_back_and_rescores_to_the_same_numbers(tmp_path):
    folders = {folder.name: folder for folder in sorted(SAVED_RUNS.iterdir()) if folder.is_dir()}
    assert set(folders) == {"lm-eval-0.4.13", "lm-eval-0.5.0.dev1"}
    runs = {name: load_run(folder) for name, folder in folders.items()}
    for (run,) in runs.values():
        # SCRIPT under `normalize`: Paris 3/4 right, Rome 2/4 (tie, first seen) right, Berlin 4/4, Madrid 1/4 wrong.
        assert [record.confidence for record in run.records] == [0.75, 0.5, 1.0, 0.25]
        assert [record.correct for record in run.records] == [True, True, True, False]
        assert run.doc_hashes == runs["lm-eval-0.4.13"][0].doc_hashes
        assert run.reported == runs["lm-eval-0.4.13"][0].reported
    rescored = {}
    for name, folder in folders.items():
        copy = shutil.copytree(folder, tmp_path / name)
        assert main(["rescore", str(copy), "--grouping", "exact", "--bootstrap-iters", "200"]) == 0
        (results_file,) = copy.rglob("rescored-exact/results_*.json")
        rescored[name] = json.loads(results_file.read_text())["results"]["semcal_triviaqa"]
    # Exact strings: Paris 1/4 (first of four strings) right, Rome 2/4 right, Berlin 4/4, Madrid 1/4 wrong.
    old, new = rescored["lm-eval-0.4.13"], rescored["lm-eval-0.5.0.dev1"]
    assert old["conf,semcal"] == pytest.approx((0.25 + 0.5 + 1.0 + 0.25) / 4)
    assert old["brier,semcal"] == pytest.approx(((0.25 - 1) ** 2 + (0.5 - 1) ** 2 + 0 + 0.25**2) / 4)
    assert new == old
