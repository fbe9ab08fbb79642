"""`semcal report` on a real lm-eval output folder, written the way `lm_eval run` writes it.

A scripted LM answers the four TriviaQA fixture questions with M = 4 samples each, so
every per-question class, the table's numbers and the split-half estimator are worked out
by hand below.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import hand_aurc, hand_brier, hand_ece, reference_bootstrap, save_scripted_run
from matplotlib import image

from lm_eval_semcal import cli
from lm_eval_semcal.core.calibration import calibration_test, detectable_overconfidence
from lm_eval_semcal.core.estimators import split_half_choice, split_half_estimates
from lm_eval_semcal.core.records import QuestionRecord
from lm_eval_semcal.core.semantic_classes import SemanticClasses
from lm_eval_semcal.runs.report import summarize, write_reports
from lm_eval_semcal.runs.saved import RunDirError, label_models, load_run, logged_record

# lm-eval itself runs here: CI runs this module under every supported release.
pytestmark = pytest.mark.harness

TASK = "semcal_triviaqa"
MODEL = "scripted/lm"
MODEL_DIR = "scripted__lm"

SCRIPT = {
    # Lyon, Paris, Paris, Paris -> classes 0 1 1 1: k* = Paris (3/4), correct.
    # Split: the first half {Lyon, Paris} ties, Lyon appeared first; Lyon's share of the
    # second half {Paris, Paris} is 0, and Lyon is wrong.
    "What is the capital city of France?": ["Lyon", "Paris", "Paris", "Paris"],
    # Rome x3, Milan -> 0 0 0 1: 3/4, correct. Split: Rome; second half {Rome, Milan}: 1/2, correct.
    "Which city was the capital of the Roman Empire?": ["Rome", "Rome", "Rome", "Milan"],
    # no-answer, Berlin, Berlin, no-answer -> 0 1 1 0: the tie goes to no-answer (first
    # seen): 2/4, wrong. Split: no-answer again; second half {Berlin, none}: 1/2, wrong.
    "In which city is the Brandenburg Gate?": ["", "Berlin", "Berlin", "\n"],
    # Four times Madrid: 4/4, wrong; split 2/2, wrong.
    "What is the capital of Portugal?": ["Madrid"] * 4,
}
CONFIDENCE = [3 / 4, 3 / 4, 2 / 4, 4 / 4]
CORRECT = [1.0, 1.0, 0.0, 0.0]
SPLIT_CONFIDENCE = [0.0, 1 / 2, 1 / 2, 1.0]
SPLIT_CORRECT = [0.0, 1.0, 0.0, 0.0]

# Bins: 0.75 -> bin 7 holds Q1 and Q2, both right: |0.75 - 1| * 2/4; 0.5 sits on the edge
# of bin 5: |0.5 - 0| * 1/4; 1.0 -> bin 9: |1 - 0| * 1/4.
HAND_ECE = 0.25 * 2 / 4 + 0.5 / 4 + 1.0 / 4
HAND_BRIER = (0.25**2 + 0.25**2 + 0.5**2 + 1.0**2) / 4
# Split: bin 0 holds Q1 (0 vs 0), bin 5 Q2 and Q3 (mean conf 0.5, mean correct 0.5), bin 9
# Q4: only Q4's |1 - 0| * 1/4 is left.
HAND_SPLIT_ECE = 1.0 / 4
# Isotonic recalibration: 0.5 -> 0 right of 1; 0.75 (2 of 2 right) and 1.0 (0 of 1) violate
# the order and pool to 2/3. Its Brier score is (1/9 + 1/9 + 0 + 4/9) / 4 = 1/6.
HAND_MISCALIBRATION = HAND_BRIER - 1 / 6
HAND_DISCRIMINATION = 0.5 * 0.5 - 1 / 6
# Most confident first: 1.0 (wrong) risk 1 at coverage 1/4; with 0.75 (two right) 1/3 at 3/4;
# all: 2/4.
HAND_AURC = 1 / 4 * 1 + 2 / 4 * 1 / 3 + 1 / 4 * 2 / 4
# Two answered: the wrong one at 1.0 and one of the two right at 0.75; 3.2: the three
# above 0.5 (two right) and 0.2 of the wrong one at 0.5.
HAND_ACC_AT_50, HAND_ACC_AT_80 = 1 / 2, 2 / 3.2


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """An lm-eval output folder, saved as `lm_eval run --output_path OUT --log_samples` does."""
    return save_scripted_run(tmp_path_factory.mktemp("lm_eval_out"), SCRIPT, TASK, bootstrap_iters="0")


def model_folder(out: Path) -> Path:
    return out / MODEL_DIR


def only_file(folder: Path, pattern: str) -> Path:
    (path,) = folder.glob(pattern)
    return path


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "out"
    shutil.copytree(run_dir, copy)
    return copy


def markdown_rows(text: str, header: str) -> list[list[str]]:
    """The cells of each row of the Markdown table whose header line starts with `header`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def markdown_table(text: str, header: str) -> dict[str, list[str]]:
    """The same rows, keyed by their first cell."""
    return {row[0]: row[1:] for row in markdown_rows(text, header)}


def test_the_folder_is_laid_out_as_lm_eval_writes_it(run_dir):
    folder = model_folder(run_dir)
    assert len(list(folder.glob("results_*.json"))) == 1
    assert len(list(folder.glob(f"samples_{TASK}_*.jsonl"))) == 1


def test_load_run_reads_back_the_per_question_records(run_dir):
    (run,) = load_run(run_dir)
    assert run.task == TASK and run.filter == "semcal"
    assert run.model == MODEL and run.model_dir == MODEL_DIR
    assert run.M == 4 and run.n_questions == 4 and run.grouping == "normalize"
    assert run.doc_ids == (0, 1, 2, 3)
    # lm-eval counts the questions it evaluated in the results JSON; the samples hold them all.
    assert json.loads(run.results_file.read_text())["n-samples"][TASK] == {"original": 4, "effective": 4}
    assert run.results_questions == 4 and run.lost_rows is None
    np.testing.assert_array_equal(run.confidence, CONFIDENCE)
    np.testing.assert_array_equal(run.correct, CORRECT)
    assert [list(r.classes.class_ids) for r in run.records] == [[0, 1, 1, 1], [0, 0, 0, 1], [0, 1, 1, 0], [0, 0, 0, 0]]
    assert run.records[2].classes.no_answer_class == 0
    assert run.reported["acc"] == pytest.approx(0.5)
    assert run.reported["ece"] == pytest.approx(HAND_ECE)
    assert math.isnan(run.reported["ece_ci_low"])
    # The model folder and the results JSON itself are accepted too.
    assert load_run(model_folder(run_dir))[0].results_file == run.results_file
    assert load_run(run.results_file)[0].samples_file == run.samples_file


def test_split_half_choice_by_hand():
    # M = 5: k* from the first 2 samples, its share over the last 3.
    assert split_half_choice([0, 1, 1, 1, 0]) == (0, 1 / 3)
    assert split_half_choice([0, 1, 0, 2, 1]) == (0, 1 / 3)
    # M = 6: a winner in the first 3, measured on the last 3.
    assert split_half_choice([0, 0, 1, 1, 1, 2]) == (0, 0.0)
    assert split_half_choice([0, 1, 1, 2, 1, 0]) == (1, 1 / 3)
    # A three-way tie in the first half goes to class 0 even though class 1 is the plurality.
    assert split_half_choice([0, 1, 2, 1, 1, 1]) == (0, 0.0)
    assert split_half_choice([3, 3]) == (3, 1.0)
    with pytest.raises(ValueError, match="at least 2 samples"):
        split_half_choice([0])


def test_split_k_star_is_scored_by_its_own_class_verdict():
    # Paris, Paris, Lyon, Lyon, Lyon: wrong Lyon (class 1) wins the full sample; the first
    # half [Paris, Paris] picks Paris (class 0), whose share of the second half
    # [Lyon, Lyon, Lyon] is 0, and Paris is right.
    classes = SemanticClasses.from_keys(["Paris", "Paris", "Lyon", "Lyon", "Lyon"], ["paris", "paris", "lyon", "lyon", "lyon"])
    record = QuestionRecord(classes, (True, False), "normalize")
    assert record.plurality_class == 1
    split = split_half_estimates([record])
    assert split.confidence.tolist() == [0.0]
    assert split.correct.tolist() == [1.0]
    assert split.switched == 1


def test_split_half_estimates_of_the_scripted_run(run_dir):
    (run,) = load_run(run_dir)
    split = split_half_estimates(run.records)
    np.testing.assert_array_equal(split.confidence, SPLIT_CONFIDENCE)
    np.testing.assert_array_equal(split.correct, SPLIT_CORRECT)
    assert split.switched == 1


def test_report_numbers_equal_hand_values(run_dir, caplog):
    (run,) = load_run(run_dir)
    with caplog.at_level(logging.WARNING, logger="lm_eval_semcal"):
        report = summarize(run, TASK, bootstrap_iters=200)
    assert report.values["acc"] == pytest.approx(0.5)
    assert report.values["conf"] == pytest.approx(0.75)
    assert report.values["ece"] == pytest.approx(HAND_ECE)
    assert report.values["brier"] == pytest.approx(HAND_BRIER)
    assert report.values["brier_miscalibration"] == pytest.approx(HAND_MISCALIBRATION, abs=1e-15)
    assert report.values["brier_discrimination"] == pytest.approx(HAND_DISCRIMINATION, abs=1e-15)
    assert report.values["brier_uncertainty"] == 0.25
    assert report.values["aurc"] == pytest.approx(HAND_AURC, abs=1e-15)
    assert report.values["acc_at_50_coverage"] == pytest.approx(HAND_ACC_AT_50, abs=1e-15)
    assert report.values["acc_at_80_coverage"] == pytest.approx(HAND_ACC_AT_80, abs=1e-15)
    test = calibration_test(CONFIDENCE, CORRECT, metric="smece", iters=200, seed=0)
    detectable = detectable_overconfidence(CONFIDENCE, metric="smece", power=0.8, alpha=0.05, iters=200, seed=0)
    assert report.test == {
        "smece_p_value": test.p_value, "smece_noise_floor": test.median, "smece_noise_p95": test.null_high,
        "smece_detectable_overconfidence": detectable.overconfidence,
    }  # fmt: skip
    # Right {0.75, 0.75} vs wrong {0.5, 1.0}: each right one beats 0.5 and loses to 1.0.
    assert report.values["auroc"] == pytest.approx(0.5)
    assert report.values["n_classes"] == pytest.approx(7 / 4)
    assert report.values["no_answer"] == pytest.approx(0.5 / 4)
    assert report.split_ece == pytest.approx(HAND_SPLIT_ECE)
    assert report.disagreements == []
    assert not [r for r in caplog.records if "lm-eval reported" in r.getMessage()]
    low, high = report.intervals["brier"]
    assert low <= report.values["brier"] <= high
    expected = reference_bootstrap(hand_brier, CONFIDENCE, CORRECT, iters=200, seed=0)
    assert (low, high) == pytest.approx(expected, abs=1e-12, rel=0)
    # ECE's is the basic interval: the percentile one reflected about the estimate
    # (2 ece - q97.5, 2 ece - q2.5), clipped to [0, 1].
    q_low, q_high = reference_bootstrap(hand_ece, CONFIDENCE, CORRECT, iters=200, seed=0)
    basic = (max(0.0, 2 * HAND_ECE - q_high), min(1.0, 2 * HAND_ECE - q_low))
    assert report.intervals["ece"] == pytest.approx(basic, abs=1e-12, rel=0)


def test_write_reports_writes_tables_and_a_diagram(run_dir, tmp_path):
    out = tmp_path / "report"
    paths = write_reports(run_dir, out_dir=out, bootstrap_iters=200)
    assert paths == [
        out / f"{TASK}_reliability.png", out / f"{TASK}_risk_coverage.png", out / f"{TASK}.md", out / "summary.md"
    ]  # fmt: skip

    text = (out / f"{TASK}.md").read_text()
    metrics = markdown_table(text, "| metric |")
    assert list(metrics) == [
        "acc", "conf", "ece", "debiased_l2_ce", "smece", "brier", "brier_miscalibration", "brier_discrimination",
        "brier_uncertainty", "auroc", "aurc", "acc_at_50_coverage", "acc_at_80_coverage", "sem_entropy",
        "n_classes", "no_answer",
    ]  # fmt: skip
    assert float(metrics["brier_miscalibration"][0]) == pytest.approx(HAND_MISCALIBRATION, abs=5e-5)
    assert metrics["brier_miscalibration"][1] == "" and metrics["brier_discrimination"][2] == "higher"
    assert float(metrics["aurc"][0]) == pytest.approx(HAND_AURC, abs=5e-5)
    low, high = reference_bootstrap(hand_aurc, CONFIDENCE, CORRECT, iters=200, seed=0)
    assert metrics["aurc"][1] == f"[{low:.4f}, {high:.4f}]" and metrics["aurc"][2] == "lower"
    assert float(metrics["acc_at_80_coverage"][0]) == pytest.approx(HAND_ACC_AT_80, abs=5e-5)

    test = calibration_test(CONFIDENCE, CORRECT, metric="smece", iters=200, seed=0)
    detectable = detectable_overconfidence(CONFIDENCE, metric="smece", iters=200, seed=0).overconfidence
    section = markdown_table(text[text.index("## Is it calibrated?") :], "| | |")
    assert section["noise floor: smECE of a calibrated model, median"] == [f"{test.median:.4f}"]
    assert section["noise floor: 95th percentile"] == [f"{test.null_high:.4f}"]
    assert section["p-value"] == [f"{test.p_value:.4f}"]
    # Four questions, nothing like a calibrated model's verdicts ruled out.
    assert test.p_value > 0.05 and section["verdict"] == [f"within noise of calibrated (p = {test.p_value:.2f})"]
    assert section["least overconfidence detected with 80% power at 5%"] == [f"{detectable:.4f}"]
    assert float(metrics["acc"][0]) == pytest.approx(0.5, abs=5e-5)
    assert float(metrics["ece"][0]) == pytest.approx(HAND_ECE, abs=5e-5)
    assert float(metrics["brier"][0]) == pytest.approx(HAND_BRIER, abs=5e-5)
    assert metrics["acc"][1] == "" and metrics["ece"][2] == "lower"
    low, high = reference_bootstrap(hand_brier, CONFIDENCE, CORRECT, iters=200, seed=0)
    assert metrics["brier"][1] == f"[{low:.4f}, {high:.4f}]"
    q_low, q_high = reference_bootstrap(hand_ece, CONFIDENCE, CORRECT, iters=200, seed=0)
    assert metrics["ece"][1] == f"[{max(0.0, 2 * HAND_ECE - q_high):.4f}, {min(1.0, 2 * HAND_ECE - q_low):.4f}]"
    assert "| samples per question (M) | 4 |" in text
    assert "| grouping (B) | normalize |" in text
    assert "agree with lm-eval's results JSON to 1e-09 (16 of 16 metrics reported there)" in text

    split = markdown_table(text, "| estimator |")
    plurality, halves = split.values()
    assert [float(x) for x in plurality] == pytest.approx([0.75, 0.5, HAND_ECE], abs=5e-5)
    assert [float(x) for x in halves] == pytest.approx([0.5, 0.25, HAND_SPLIT_ECE], abs=5e-5)
    assert "k* on samples 1-2, share on samples 3-4" in text
    assert "gap between the two mean confidences shows the small-M bias" in text
    assert "differs from the full-sample plurality class on 1 of 4 questions" in text

    summary = markdown_table((out / "summary.md").read_text(), "| task |")
    row = summary[TASK]
    assert row[:4] == [MODEL, "4", "4", "normalize"]
    assert row[5].startswith("0.7500") and row[6].startswith(f"{HAND_ECE:.4f} [")
    assert row[11].startswith(f"{HAND_AURC:.4f} [")
    assert row[12:14] == [f"{test.median:.4f}", f"within noise of calibrated (p = {test.p_value:.2f})"]

    png = out / f"{TASK}_reliability.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = image.imread(png)
    height, width = pixels.shape[:2]
    assert 500 < width < 2000 and 500 < height < 2000
    assert pixels.std() > 0.05  # drawn on, not blank
    curve = image.imread(out / f"{TASK}_risk_coverage.png")
    assert curve.shape[0] > 300 and curve.std() > 0.05


def test_the_corp_diagram_is_drawn_on_request_and_unknown_diagrams_are_refused(run_dir, tmp_path):
    smooth = write_reports(run_dir, out_dir=tmp_path / "smooth", bootstrap_iters=0)[0]
    assert cli.main(["report", str(run_dir), "--out", str(tmp_path / "corp"), "--bootstrap-iters", "0",
                     "--diagram", "corp"]) == 0  # fmt: skip
    corp = tmp_path / "corp" / f"{TASK}_reliability.png"
    assert corp.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and corp.read_bytes() != smooth.read_bytes()
    assert image.imread(corp).std() > 0.05
    with pytest.raises(ValueError, match="diagram must be one of smooth, corp, got 'binned'"):
        write_reports(run_dir, out_dir=tmp_path / "binned", bootstrap_iters=0, diagram="binned")
    with pytest.raises(SystemExit):
        cli.main(["report", str(run_dir), "--diagram", "binned"])


def test_cli_report_prints_the_written_paths(run_dir, tmp_path, capsys):
    out = tmp_path / "cli_report"
    assert cli.main(["report", str(run_dir), "--out", str(out), "--bootstrap-iters", "0"]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [
        str(out / f"{TASK}_reliability.png"), str(out / f"{TASK}_risk_coverage.png"), str(out / f"{TASK}.md"),
        str(out / "summary.md"),
    ]  # fmt: skip
    assert all(Path(p).is_file() for p in printed)
    assert "| ece | 0.5000 | n/a | lower |" in (out / f"{TASK}.md").read_text()


def test_default_out_dir_is_inside_the_run(run_dir, tmp_path):
    copy = copy_run(run_dir, tmp_path)
    paths = write_reports(copy, bootstrap_iters=0)
    assert {p.parent for p in paths} == {copy / "semcal_report"}


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(RunDirError, match="does not exist: pass the --output_path folder"):
        load_run(tmp_path / "nowhere")


def test_folder_without_results_is_a_clear_error(tmp_path):
    (tmp_path / "notes.json").write_text("{}")
    with pytest.raises(RunDirError, match="no lm-eval results JSON .*run lm_eval with --output_path"):
        load_run(tmp_path)


def test_results_without_samples_is_a_clear_error(run_dir, tmp_path):
    results = only_file(model_folder(run_dir), "results_*.json")
    (tmp_path / MODEL_DIR).mkdir()
    shutil.copy(results, tmp_path / MODEL_DIR)
    with pytest.raises(RunDirError, match="re-run with --log_samples: the report needs per-question records"):
        write_reports(tmp_path)


def test_newest_run_wins(run_dir, tmp_path):
    copy = copy_run(run_dir, tmp_path)
    folder = model_folder(copy)
    results, samples = only_file(folder, "results_*.json"), only_file(folder, "samples_*.jsonl")
    # A later run where the Portugal question came out 2/4 instead of 4/4.
    later = "2999-01-01T00-00-00.000000"
    shutil.copy(results, folder / f"results_{later}.json")
    lines = []
    for line in samples.read_text().splitlines():
        sample = json.loads(line)
        if sample["doc_id"] == 3:
            portugal = logged_record(sample)
            half = SemanticClasses.from_keys(["Madrid", "Madrid", "Lisbon", "Lisbon"], ["madrid", "madrid", "lisbon", "lisbon"])
            sample["filtered_resps"] = [str(QuestionRecord(half, (False, True), portugal.grouping))]
        lines.append(json.dumps(sample))
    (folder / f"samples_{TASK}_{later}.jsonl").write_text("\n".join(lines) + "\n")
    (run,) = load_run(copy)
    assert run.results_file.name == f"results_{later}.json"
    np.testing.assert_array_equal(run.confidence, [0.75, 0.75, 0.5, 0.5])


def test_other_tasks_are_skipped_with_a_log_line(run_dir, tmp_path, caplog):
    copy = copy_run(run_dir, tmp_path)
    results = only_file(model_folder(copy), "results_*.json")
    date = results.stem.removeprefix("results_")
    data = json.loads(results.read_text())
    data["configs"]["harness_qa"] = {"task": "harness_qa"}
    data["results"]["harness_qa"] = {"exact_match,none": 1.0}
    results.write_text(json.dumps(data))
    line = {"doc_id": 0, "filter": "none", "filtered_resps": ["Paris"], "resps": [["Paris"]]}
    (model_folder(copy) / f"samples_harness_qa_{date}.jsonl").write_text(json.dumps(line) + "\n")
    with caplog.at_level(logging.WARNING, logger="lm_eval_semcal"):
        runs = load_run(copy)
    assert [run.task for run in runs] == [TASK]
    assert any("skipping harness_qa: not a semcal task" in r.getMessage() for r in caplog.records)


def test_disagreement_with_lm_eval_is_named(run_dir, tmp_path, caplog):
    copy = copy_run(run_dir, tmp_path)
    results = only_file(model_folder(copy), "results_*.json")
    data = json.loads(results.read_text())
    data["results"][TASK]["brier,semcal"] += 0.01
    results.write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING, logger="lm_eval_semcal"):
        paths = write_reports(copy, bootstrap_iters=0)
    warnings = [r.getMessage() for r in caplog.records if "lm-eval reported" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith(f"{TASK}: brier recomputed")
    assert "Differs from lm-eval's results JSON: brier" in paths[2].read_text()


def test_several_models_get_their_own_files(run_dir, tmp_path):
    out = tmp_path / "out"
    for name in ("base", "instruct"):
        shutil.copytree(model_folder(run_dir), out / name)
        results = only_file(out / name, "results_*.json")
        data = json.loads(results.read_text())
        data["model_name"], data["model_name_sanitized"] = f"org/{name}", name
        results.write_text(json.dumps(data))
    paths = write_reports(out, bootstrap_iters=0)
    # Named by the hub id, its slash made a file name's underscore.
    assert [p.name for p in paths] == [
        f"org_base__{TASK}_reliability.png", f"org_base__{TASK}_risk_coverage.png", f"org_base__{TASK}.md",
        f"org_instruct__{TASK}_reliability.png", f"org_instruct__{TASK}_risk_coverage.png", f"org_instruct__{TASK}.md",
        "summary.md",
    ]
    summary = paths[-1].read_text()
    rows = markdown_rows(summary, "| task |")
    assert [row[:2] for row in rows] == [[TASK, "org/base"], [TASK, "org/instruct"]]
    header = next(line for line in summary.splitlines() if line.startswith("| task |"))
    assert header.count("|") == summary.splitlines()[summary.splitlines().index(header) + 1].count("|")
    assert all(len(row) == header.count("|") - 1 for row in rows)
    assert "| debiased_l2_ce |" in header
    assert rows[0][-1] == f"[org_base__{TASK}.md](org_base__{TASK}.md)"


def test_local_model_paths_are_named_by_what_tells_them_apart(run_dir, tmp_path):
    out = tmp_path / "out"
    models = {"base": "/root/.cache/lm_eval_semcal/demo/77a53aee6d8200ab/base",
              "tuned": "/root/.cache/lm_eval_semcal/demo/77a53aee6d8200ab/tuned",
              "ckpt": "/data/run7/checkpoint-100/model", "ckpt2": "/data/run8/checkpoint-100/model"}  # fmt: skip
    for folder, model in models.items():
        shutil.copytree(model_folder(run_dir), out / folder)
        results = only_file(out / folder, "results_*.json")
        data = json.loads(results.read_text())
        data["model_name"], data["model_name_sanitized"] = model, model.replace("/", "__")
        results.write_text(json.dumps(data))
    names = {run.model: run.name for run in load_run(out)}
    assert names == {
        models["base"]: "base", models["tuned"]: "tuned",
        models["ckpt"]: "run7/checkpoint-100/model", models["ckpt2"]: "run8/checkpoint-100/model",
    }  # fmt: skip
    two = [run for run in load_run(out) if run.model in (models["base"], models["tuned"])]
    assert [run.name for run in label_models(two)] == ["base", "tuned"]
    given = label_models(two, {models["base"]: "Base", str(out / "tuned"): "Tuned (DPO)"})
    assert [run.name for run in given] == ["Base", "Tuned (DPO)"]
    # The figure's title says the name, not the path.
    paths = write_reports(out / "base", bootstrap_iters=0)
    assert "| base |" in paths[-1].read_text()


def test_one_model_run_twice_is_told_apart_by_its_output_folder(run_dir, tmp_path):
    for output in ("direct", "cot"):
        shutil.copytree(model_folder(run_dir), tmp_path / output / "model")
    runs = label_models([*load_run(tmp_path / "direct"), *load_run(tmp_path / "cot")])
    assert [run.name for run in runs] == ["scripted/lm [direct]", "scripted/lm [cot]"]


def test_an_edited_record_is_refused_with_its_line(run_dir, tmp_path):
    copy = copy_run(run_dir, tmp_path)
    samples = only_file(model_folder(copy), "samples_*.jsonl")
    lines = samples.read_text().splitlines()
    sample = json.loads(lines[1])
    record = logged_record(sample).to_dict()
    record["confidence"] = 0.5  # its class ids say 3/4
    sample["filtered_resps"] = [json.dumps(record)]
    lines[1] = json.dumps(sample)
    samples.write_text("\n".join(lines) + "\n")
    with pytest.raises(RunDirError, match=r"jsonl:2: damaged semcal record: it stores confidence=0.5 but its classes give 0.75"):
        load_run(copy)


def test_questions_with_different_m_are_reported_as_such(run_dir, tmp_path, caplog):
    copy = copy_run(run_dir, tmp_path)
    samples = only_file(model_folder(copy), "samples_*.jsonl")
    lines = []
    for line in samples.read_text().splitlines():
        sample = json.loads(line)
        if sample["doc_id"] == 3:
            record = logged_record(sample)
            five = SemanticClasses.from_keys(["Madrid"] * 5, ["madrid"] * 5)
            sample["filtered_resps"] = [str(QuestionRecord(five, record.class_correct, record.grouping))]
        lines.append(json.dumps(sample))
    samples.write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING, logger="lm_eval_semcal"):
        paths = write_reports(copy, bootstrap_iters=0)
    assert any("different numbers of samples, M = 4-5" in r.getMessage() for r in caplog.records)
    text = paths[2].read_text()
    assert "| samples per question (M) | 4-5 (differs between questions) |" in text
    assert "k* on the first floor(M/2) samples, share on the rest" in text


def cut_samples(run_dir: Path, tmp_path: Path, keep: int) -> tuple[Path, Path]:
    """A copy of the run whose samples file keeps its first `keep` lines, as a copy cut short leaves it."""
    copy = copy_run(run_dir, tmp_path)
    samples = only_file(model_folder(copy), "samples_*.jsonl")
    samples.write_text("".join(line + "\n" for line in samples.read_text().splitlines()[:keep]))
    return copy, samples


def test_a_samples_file_that_lost_rows_is_an_error(run_dir, tmp_path, capsys):
    copy, samples = cut_samples(run_dir, tmp_path, keep=3)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["report", str(copy), "--bootstrap-iters", "0"])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == (
        f"semcal report: error: {samples} holds 3 questions of {TASK}, its results file 4: the samples file "
        "lost rows; rerun the task, or pass --allow-partial to go on with the 3\n"
    )
    assert not (copy / "semcal_report").exists()


def test_allow_partial_reports_on_the_questions_left_and_says_so_first(run_dir, tmp_path, caplog):
    copy, samples = cut_samples(run_dir, tmp_path, keep=3)
    with caplog.at_level(logging.WARNING, logger="lm_eval_semcal"):
        assert cli.main(["report", str(copy), "--bootstrap-iters", "0", "--allow-partial"]) == 0
    sentence = (
        f"**Partial run: {samples} holds 3 questions of {TASK}, its results file 4: the samples file lost rows; "
        "every number here is over the 3 left.**"
    )
    page = (copy / "semcal_report" / f"{TASK}.md").read_text().splitlines()
    assert page[:3] == [f"# {TASK}: {MODEL}", "", sentence]
    assert "| questions (n) | 3 |" in page
    # The first three questions: confidence 3/4, 3/4, 2/4, correct 1, 1, 0.
    assert markdown_table("\n".join(page), "| metric |")["acc"][0] == f"{2 / 3:.4f}"
    assert "Not checked against lm-eval's results JSON: its numbers are over all 4 questions." in "\n".join(page)
    assert not any("Differs" in line for line in page)
    assert sentence in (copy / "semcal_report" / "summary.md").read_text()
    warning = (
        f"{samples} holds 3 questions of {TASK}, its results file 4: the samples file lost rows; going on with the 3 "
        "(--allow-partial)"
    )
    assert [r.getMessage() for r in caplog.records if "lost rows" in r.getMessage()] == [warning]
    assert not [r for r in caplog.records if "lm-eval reported" in r.getMessage()]


def test_a_results_file_that_counts_no_questions_is_not_checked(run_dir, tmp_path):
    # A results JSON without `n-samples` (written by other tools or older versions) cannot say rows are missing.
    copy, _ = cut_samples(run_dir, tmp_path, keep=3)
    results = only_file(model_folder(copy), "results_*.json")
    data = json.loads(results.read_text())
    del data["n-samples"]
    results.write_text(json.dumps(data))
    (run,) = load_run(copy)
    assert run.n_questions == 3 and run.results_questions is None and run.lost_rows is None


@pytest.mark.parametrize("given", ["output folder", "model folder"])
def test_a_rescore_beside_its_run_is_reported_beside_it(tmp_path, given):
    out = shutil.copytree(Path(__file__).parent / "fixtures" / "runs" / "lm-eval-0.4.13", tmp_path / "out")
    assert cli.main(["rescore", str(out / "scripted__lm"), "--grouping", "exact", "--bootstrap-iters", "0"]) == 0
    where = out if given == "output folder" else out / "scripted__lm"
    runs = load_run(where)
    assert [(run.results_file.parent.name, run.records[0].grouping) for run in runs] == [
        ("scripted__lm", "normalize"), ("rescored-exact", "exact"),
    ]
    assert cli.main(["report", str(where), "--bootstrap-iters", "0"]) == 0
    rows = [line for line in (where / "semcal_report" / "summary.md").read_text().splitlines() if line.startswith("| semcal_")]
    # Exact strings: confidences 1/4, 2/4, 4/4, 1/4 (mean 0.5); classes by meaning: 3/4, 2/4, 4/4, 1/4 (0.625).
    assert [row.split(" | ")[1:7] for row in rows] == [
        ["scripted/lm", "4", "4", "normalize", "0.7500", "0.6250"],
        ["scripted/lm (rescored-exact)", "4", "4", "exact", "0.7500", "0.5000"],
    ]
