"""The measured interval coverage: scripts/coverage.py writes it, core.metrics.INTERVAL_NOTES quotes it."""

from __future__ import annotations

import copy
import importlib.util
import json

import numpy as np
import pytest
from conftest import REPO_ROOT

from lm_eval_semcal.core.calibration import (
    accuracy,
    calibration_test,
    detectable_overconfidence,
    paired_bootstrap_distributions,
)
from lm_eval_semcal.core.metrics import COVERAGE_FILE, INTERVAL_METHOD, INTERVAL_NOTES, interval_notes
from lm_eval_semcal.core.settings import CI_LEVEL

SCRIPT = REPO_ROOT / "scripts" / "coverage.py"

# The notes as they read when their figures were typed by hand, from the table of
# docs/metrics.md ("Intervals: measured coverage"): ECE and smECE held 0 for the calibrated
# world in at most 64.5% of corpora (ECE, n = 3000), debiased_l2_ce held the truth in at
# least 93.0% (mixed - mixed, n = 3000), and smECE's paired difference missed it in
# 100 - 17.5 = 82.5% (calibrated - overconfident, n = 3000).
NOTES_AS_TYPED = (
    "ECE and smECE are biased upward near perfect calibration: for a well-calibrated model their 95% "
    "interval usually lies entirely above the true value 0 (in simulation it contained 0 in at most 65% "
    "of cases), so an interval above 0 is not evidence of miscalibration: read debiased_l2_ce and its "
    "interval, which contained the true value in at least 93% of simulated cases, 0 included.",
    "When one of two models is nearly calibrated, a difference in ECE or smECE understates the gap between "
    "them, and its interval missed the true difference in up to 83% of simulated cases: compare "
    "debiased_l2_ce instead.",
)


def load_script():
    spec = importlib.util.spec_from_file_location("coverage_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def shipped() -> dict:
    return json.loads(COVERAGE_FILE.read_text(encoding="utf-8"))


def cell(coverage: dict, world: str, n: int, metric: str) -> dict:
    (found,) = [c for c in coverage["cells"] if (c["world"], c["n"], c["metric"]) == (world, n, metric)]
    return found


def test_the_notes_read_as_they_did_when_typed_by_hand():
    assert INTERVAL_NOTES == NOTES_AS_TYPED


def test_the_shipped_figures_are_the_documented_table(shipped):
    # Spot checks against docs/metrics.md's table (percent of 200 corpora, 40 for smECE).
    assert cell(shipped, "calibrated", 3000, "ece") == {
        "world": "calibrated", "n": 3000, "metric": "ece", "method": "basic", "covered": 129, "corpora": 200,
    }  # fmt: skip
    difference = cell(shipped, "calibrated - overconfident", 3000, "smece")
    assert (difference["covered"], difference["corpora"]) == (7, 40)
    assert cell(shipped, "mixed - mixed", 3000, "debiased_l2_ce")["covered"] == 186
    assert len(shipped["cells"]) == 5 * 2 * 8


def test_the_coverage_is_that_of_the_reported_intervals(shipped):
    assert shipped["level"] == CI_LEVEL
    assert {c["method"] for c in shipped["cells"] if c["metric"] != "ece"} == {"percentile"}
    assert {c["method"] for c in shipped["cells"] if c["metric"] == "ece"} == {INTERVAL_METHOD["ece"]}


def test_the_notes_are_formatted_from_the_coverage(shipped):
    assert interval_notes(shipped) == INTERVAL_NOTES
    changed = copy.deepcopy(shipped)
    cell(changed, "calibrated", 300, "smece")["covered"] = 31  # 77.5% of 40: at most 78%
    cell(changed, "overconfident", 300, "debiased_l2_ce")["covered"] = 181  # 90.5%: at least 90%
    cell(changed, "calibrated - overconfident", 300, "ece")["covered"] = 3  # missed 98.5%: up to 99%
    first, second = interval_notes(changed)
    assert "contained 0 in at most 78% of cases" in first
    assert "in at least 90% of simulated cases" in first
    assert "missed the true difference in up to 99% of simulated cases" in second


def test_notes_without_their_cells_are_refused(shipped):
    no_pairs = {**shipped, "cells": [c for c in shipped["cells"] if " - " not in c["world"]]}
    with pytest.raises(ValueError, match="no cell of ece, smece in calibrated - overconfident"):
        interval_notes(no_pairs)


def test_the_shipped_file_is_in_the_format_the_script_writes(shipped):
    assert load_script().coverage_json(shipped) == COVERAGE_FILE.read_text(encoding="utf-8")


def test_the_script_writes_the_coverage_the_notes_read(tmp_path, monkeypatch, capsys):
    script = load_script()
    # The worlds' smECE truth from 10^7 questions takes a minute; 10^5 is enough here.
    monkeypatch.setattr(script, "TRUTH_QUESTIONS", 10**5)
    out = tmp_path / "coverage.json"
    script.main(["--corpora", "3", "--smece-corpora", "1", "--resamples", "40", "--sizes", "60", "--json", str(out)])
    written = json.loads(out.read_text(encoding="utf-8"))
    assert out.read_text(encoding="utf-8") == script.coverage_json(written)
    assert {key: written[key] for key in ("level", "resamples", "corpora", "smece_corpora", "sizes")} == {
        "level": CI_LEVEL, "resamples": 40, "corpora": 3, "smece_corpora": 1, "sizes": [60],
    }  # fmt: skip
    worlds = ["calibrated", "overconfident", "mixed", "calibrated - overconfident", "mixed - mixed"]
    metrics = ["acc", "conf", "overconfidence", "ece", "debiased_l2_ce", "smece", "brier", "auroc", "aurc"]
    assert [(c["world"], c["n"], c["metric"]) for c in written["cells"]] == [(w, 60, m) for w in worlds for m in metrics]
    assert all(c["corpora"] == (1 if c["metric"] == "smece" else 3) for c in written["cells"])
    assert "the notes beside the intervals will read" in capsys.readouterr().out
    assert interval_notes(written)[1].startswith("When one of two models is nearly calibrated")

    # Accuracy in the calibrated world, recomputed: model a of the first pair, each corpus
    # drawn and resampled as the script says, against the world's exact accuracy.
    p = script.CONFIDENCE_PROBABILITY
    truth = float((p * script.GRID).sum())
    covered = 0
    for corpus in range(3):
        sample = script.draw_pair(np.random.default_rng([0, 60, corpus]), 60, "calibrated", "overconfident")
        low, high = paired_bootstrap_distributions(accuracy, *sample, 40, corpus).a.interval("percentile", CI_LEVEL)
        covered += low <= truth <= high
    assert cell(written, "calibrated", 60, "acc")["covered"] == covered


def test_the_script_measures_the_calibration_tests_rejections(capsys):
    script = load_script()
    script.main(["--calibration-test", "--corpora", "6", "--smece-corpora", "1", "--null-draws", "19", "--sizes", "200"])
    printed = capsys.readouterr().out
    tables = [line for line in printed.splitlines() if line.startswith("| ") and "---" not in line]
    rows, detectable = tables[:4], tables[4:]
    assert rows[0] == "| world | n | smece | ece | debiased_l2_ce |"
    assert [row.split(" | ")[:2] for row in rows[1:]] == [["| calibrated", "200"], ["| overconfident", "200"], ["| mixed", "200"]]
    assert "6 corpora per cell (1 for smECE), 19 calibrated draws per test" in printed

    # The mixed world's cell for ECE, recomputed: each corpus drawn as the script documents
    # (confidences from the grid distribution, then verdicts: c + 0.05 below 0.7, c - 0.05 from it).
    assert script.MEDIAN_CONFIDENCE == 0.7
    cumulative = np.cumsum(script.CONFIDENCE_PROBABILITY)
    rejected = 0
    for corpus in range(6):
        rng = np.random.default_rng([3, 2, 200, corpus])
        conf = script.GRID[np.minimum(np.searchsorted(cumulative, rng.random(200), side="right"), 49)]
        accuracy = np.clip(np.where(conf < 0.7, conf + 0.05, conf - 0.05), 0, 1)
        correct = (rng.random(200) < accuracy).astype(float)
        rejected += calibration_test(conf, correct, metric="ece", iters=19, seed=corpus).p_value <= 0.05
    assert rejected == 4  # of 6: a miscalibration the test sees at 200 questions
    assert rows[3].split(" | ")[3] == "66.7% (4/6)"

    # The detectable shift for ECE, recomputed on the typical run: the grid distribution's
    # quantiles at (i + 1/2) / 200.
    typical = script.GRID[np.minimum(np.searchsorted(cumulative, (np.arange(200) + 0.5) / 200, side="right"), 49)]
    assert detectable[0] == "| n | smece | ece | debiased_l2_ce |"
    shift = detectable_overconfidence(typical, metric="ece", iters=19).overconfidence
    assert detectable[1].split(" | ")[2] == f"{shift:.3f}"


def test_the_calibration_test_mode_refuses_metrics_it_cannot_test(capsys):
    with pytest.raises(SystemExit):
        load_script().main(["--calibration-test", "--metrics", "brier"])
    assert "--calibration-test tests smece, ece, debiased_l2_ce only, not brier" in capsys.readouterr().err


def test_a_worlds_exact_aurc_is_the_aurc_of_its_many_questions():
    script = load_script()
    from lm_eval_semcal.core.calibration import aurc

    for accuracy_at in script.WORLDS.values():
        p, acc = script.CONFIDENCE_PROBABILITY, accuracy_at(script.GRID)
        right, wrong = np.round(p * acc * 10**6).astype(int), np.round(p * (1 - acc) * 10**6).astype(int)
        confidence = np.concatenate([np.repeat(script.GRID, right), np.repeat(script.GRID, wrong)])
        correct = np.concatenate([np.ones(right.sum()), np.zeros(wrong.sum())])
        assert script.world_truths(accuracy_at)["aurc"] == pytest.approx(aurc(confidence, correct), abs=1e-5)
