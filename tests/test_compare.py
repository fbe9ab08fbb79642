"""`semcal compare`: two models' saved runs, their metrics, paired differences and one page.

Two scripted models answer the TriviaQA fixture's four questions (M = 4). Every number
below is worked out by hand from their answers.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import relplot
from conftest import (
    FIXTURES,
    binned_l2_plug_in,
    hand_aurc,
    hand_brier,
    hand_ece,
    loop_debiased_squared_ce,
    reference_bootstrap,
    reference_paired_bootstrap,
    save_scripted_run,
)

from lm_eval_semcal import cli
from lm_eval_semcal.core.calibration import (
    brier_decomposition,
    calibration_test,
    detectable_overconfidence,
    selective_accuracy,
)
from lm_eval_semcal.runs.compare import CompareError, compare_runs, parse_labels, parse_pairs
from lm_eval_semcal.runs.saved import doc_hash, load_run

# lm-eval itself runs here: CI runs this module under every supported release.
pytestmark = pytest.mark.harness

TASK = "semcal_triviaqa"
FRANCE, ROME = "What is the capital city of France?", "Which city was the capital of the Roman Empire?"
BERLIN, LISBON = "In which city is the Brandenburg Gate?", "What is the capital of Portugal?"
# base: France right (1.0), Rome right on a tie it wins by coming first (0.5), Berlin wrong
# (0.75), Lisbon wrong (0.5: Porto).
BASE = {
    FRANCE: [" Paris"] * 4,
    ROME: [" Rome", " Milan", " Rome", " Milan"],
    BERLIN: [" Munich", " Munich", " Berlin", " Munich"],
    LISBON: [" Porto", " Lisbon", " Porto", " Faro"],
}
# tuned: one answer per question, two of them wrong: confidence 1 everywhere.
TUNED = {FRANCE: [" Paris"] * 4, ROME: [" Milan"] * 4, BERLIN: [" Munich"] * 4, LISBON: [" Lisbon"] * 4}
BASE_CONF, BASE_CORRECT = [1.0, 0.5, 0.75, 0.5], [1.0, 1.0, 0.0, 0.0]
TUNED_CONF, TUNED_CORRECT = [1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 1.0]
# ECE by hand: base's bins 9 (gap 0), 5 (0.5 vs 0.5: 0), 7 (0.75 vs 0): 0.75 / 4;
# tuned's one bin: 1 vs 0.5.
HAND = {
    "base": {"acc": 0.5, "conf": 0.6875, "overconfidence": 0.1875, "ece": 0.1875},
    "tuned": {"acc": 0.5, "conf": 1.0, "overconfidence": 0.5, "ece": 0.5},
}
ANSWERS = {"base": (BASE_CONF, BASE_CORRECT), "tuned": (TUNED_CONF, TUNED_CORRECT)}


def hand_auroc(pairs):
    """Each right answer's confidence against each wrong one's (ties count half); NaN with one class."""
    right = [c for c, y in pairs if y == 1.0]
    wrong = [c for c, y in pairs if y == 0.0]
    if not right or not wrong:
        return math.nan
    return sum(1.0 if r > w else 0.5 if r == w else 0.0 for r in right for w in wrong) / (len(right) * len(wrong))


@cache
def relplot_smece(pairs: tuple) -> float:
    # relplot defines smECE; resamples of four questions repeat, so each is scored once.
    conf, correct = zip(*pairs)
    return float(relplot.smECE(np.array(conf), np.array(correct)))


def debiased_squared(pairs):
    return loop_debiased_squared_ce(*zip(*pairs))


def root(squared):
    return math.sqrt(max(squared, 0.0))


# The metrics of metrics.csv, in its order, each by hand from a list of (confidence, correct) pairs.
HAND_METRICS = {
    "acc": lambda pairs: sum(y for _, y in pairs) / len(pairs),
    "conf": lambda pairs: sum(c for c, _ in pairs) / len(pairs),
    "overconfidence": lambda pairs: sum(c - y for c, y in pairs) / len(pairs),
    "ece": hand_ece,
    "debiased_l2_ce": lambda pairs: root(debiased_squared(pairs)),
    "smece": lambda pairs: relplot_smece(tuple(pairs)),
    "brier": hand_brier,
    "auroc": hand_auroc,
    "aurc": hand_aurc,
}
# After them in metrics.csv, without an interval: the curve metrics and the calibration test.
UNBOUNDED_METRICS = (
    "brier_miscalibration", "brier_discrimination", "brier_uncertainty", "acc_at_50_coverage", "acc_at_80_coverage",
    "smece_p_value", "smece_noise_floor", "smece_noise_p95", "smece_detectable_overconfidence",
)  # fmt: skip


def expected_unbounded(name, conf, correct, iters):
    """A row of UNBOUNDED_METRICS as the core functions give it (their own tests check them by hand)."""
    parts = brier_decomposition(conf, correct)
    test = calibration_test(conf, correct, metric="smece", iters=iters, seed=0)
    return {
        "brier_miscalibration": parts.miscalibration, "brier_discrimination": parts.discrimination,
        "brier_uncertainty": parts.uncertainty, "acc_at_50_coverage": selective_accuracy(conf, correct, 0.5),
        "acc_at_80_coverage": selective_accuracy(conf, correct, 0.8), "smece_p_value": test.p_value,
        "smece_noise_floor": test.median, "smece_noise_p95": test.null_high,
        "smece_detectable_overconfidence": detectable_overconfidence(conf, iters=iters, seed=0).overconfidence,
    }[name]  # fmt: skip


def expected_interval(name, conf, correct, iters):
    """A model's interval of metric `name` by the method docs/metrics.md gives it, on the reference bootstrap."""
    if name == "ece":
        # The basic interval: the percentile one reflected about the estimate, clipped to [0, 1].
        q_low, q_high = reference_bootstrap(hand_ece, conf, correct, iters)
        estimate = hand_ece(list(zip(conf, correct)))
        return max(0.0, 2 * estimate - q_high), min(1.0, 2 * estimate - q_low)
    if name == "debiased_l2_ce":
        # Built on the squared error, shifted by the plug-in's bias, then rooted.
        q_low, q_high = reference_bootstrap(debiased_squared, conf, correct, iters)
        shift = loop_debiased_squared_ce(conf, correct) - binned_l2_plug_in(conf, correct)
        return root(q_low + shift), root(q_high + shift)
    return reference_bootstrap(HAND_METRICS[name], conf, correct, iters)


def expected_difference(name, b, a, iters):
    """metric(b) - metric(a) on the same questions, and its paired interval by the metric's method."""
    metric = HAND_METRICS[name]
    difference = metric(list(zip(*b))) - metric(list(zip(*a)))
    q_low, q_high = reference_paired_bootstrap(metric, *b, *a, iters)
    if name == "ece":
        return difference, max(-1.0, 2 * difference - q_high), min(1.0, 2 * difference - q_low)
    if name == "debiased_l2_ce":
        shift = difference - (root(binned_l2_plug_in(*b)) - root(binned_l2_plug_in(*a)))
        return difference, q_low + shift, q_high + shift
    return difference, q_low, q_high


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    save_scripted_run(root / "base", BASE, TASK, "0", model="/models/demo/base")
    save_scripted_run(root / "tuned", TUNED, TASK, "0", model="/models/demo/tuned")
    return root


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_the_doc_hash_is_lm_evals(runs):
    sample = json.loads(next((runs / "base").rglob("samples_*.jsonl")).read_text().splitlines()[0])
    assert doc_hash({"doc": sample["doc"]}) == sample["doc_hash"]


def test_two_models_give_all_four_files_with_hand_numbers(runs, tmp_path):
    written = compare_runs([runs / "base", runs / "tuned"], tmp_path / "cmp", bootstrap_iters=200)
    names = [path.name for path in written]
    assert names[:4] == ["metrics.csv", "pairs.csv", "comparison.md", "comparison.html"]
    assert all(path.is_file() for path in written)

    rows = read_csv(tmp_path / "cmp" / "metrics.csv")
    assert list(rows[0]) == ["model", "task", "metric", "value", "low", "high", "n"]
    assert {row["model"] for row in rows} == {"base", "tuned"}
    assert [row["metric"] for row in rows if row["model"] == "base"] == [*HAND_METRICS, *UNBOUNDED_METRICS]
    for row in rows:
        model, name = row["model"], row["metric"]
        conf, correct = ANSWERS[model]
        if name in UNBOUNDED_METRICS:
            assert float(row["value"]) == expected_unbounded(name, conf, correct, 200)
            assert math.isnan(float(row["low"])) and math.isnan(float(row["high"])) and row["n"] == "4"
            continue
        if name in HAND[model]:
            assert float(row["value"]) == pytest.approx(HAND[model][name], abs=1e-12)
        assert float(row["value"]) == pytest.approx(HAND_METRICS[name](list(zip(conf, correct))), abs=1e-12)
        assert (float(row["low"]), float(row["high"])) == pytest.approx(expected_interval(name, conf, correct, 200), abs=1e-12)
        assert row["n"] == "4" and row["task"] == TASK

    pairs = read_csv(tmp_path / "cmp" / "pairs.csv")
    assert list(pairs[0]) == ["task", "metric", "model_a", "model_b", "difference", "low", "high", "n_shared"]
    by_metric = {row["metric"]: row for row in pairs}
    assert {(row["model_a"], row["model_b"], row["n_shared"]) for row in pairs} == {("base", "tuned", "4")}
    # tuned minus base, on the same four questions.
    assert float(by_metric["ece"]["difference"]) == pytest.approx(0.5 - 0.1875, abs=1e-12)
    assert float(by_metric["conf"]["difference"]) == pytest.approx(1.0 - 0.6875, abs=1e-12)
    assert float(by_metric["acc"]["difference"]) == 0.0
    # The same resampled questions for both, tuned minus base.
    assert list(by_metric) == list(HAND_METRICS)
    for name, row in by_metric.items():
        expected = expected_difference(name, ANSWERS["tuned"], ANSWERS["base"], 200)
        assert (float(row["difference"]), float(row["low"]), float(row["high"])) == pytest.approx(expected, abs=1e-12)


def test_the_page_is_self_contained_and_names_the_models(runs, tmp_path):
    compare_runs([runs / "base", runs / "tuned"], tmp_path / "cmp", pairs=[("base", "tuned")], bootstrap_iters=50)
    page = (tmp_path / "cmp" / "comparison.html").read_text()
    assert "base" in page and "tuned" in page and "/models/demo" not in page
    sources = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert sources and all(source.startswith("data:image/png;base64,") for source in sources)
    markdown = (tmp_path / "cmp" / "comparison.md").read_text()
    for model, (conf, correct) in ANSWERS.items():
        pairs = list(zip(conf, correct))
        acc, smece, gap = (HAND_METRICS[name](pairs) for name in ("acc", "smece", "overconfidence"))
        (acc_low, acc_high), (smece_low, smece_high), (gap_low, gap_high) = (
            expected_interval(name, conf, correct, 50) for name in ("acc", "smece", "overconfidence")
        )
        # Over 50 resamples both gaps' intervals hold 0 (tuned's starts at it: a resample of
        # its two right answers alone), so neither model is called overconfident.
        assert gap_low <= 0.0 <= gap_high
        assert (
            f"| {TASK} | {model} | 4 | 4 | normalize | {acc:.3f} [{acc_low:.3f}, {acc_high:.3f}] | "
            f"{smece:.3f} [{smece_low:.3f}, {smece_high:.3f}] | {gap:.3f} [{gap_low:.3f}, {gap_high:.3f}] (within noise) |"
        ) in markdown
    assert "ECE and smECE are biased upward near perfect calibration" in markdown
    for model, (conf, correct) in ANSWERS.items():
        floor, high, p_value, detectable, mcb, dsc, unc, acc_50, acc_80 = (expected_unbounded(name, conf, correct, 50) for name in (
            "smece_noise_floor", "smece_noise_p95", "smece_p_value", "smece_detectable_overconfidence",
            "brier_miscalibration", "brier_discrimination", "brier_uncertainty", "acc_at_50_coverage",
            "acc_at_80_coverage",
        ))  # fmt: skip
        aurc_low, aurc_high = expected_interval("aurc", conf, correct, 50)
        verdict = f"within noise of calibrated (p = {p_value:.2f})" if p_value > 0.05 else f"miscalibrated, p = {p_value:.3f}"
        assert (
            f"| {TASK} | {model} | {floor:.3f} / {high:.3f} | {verdict} | {detectable:.3f} | "
            f"{mcb:.3f} / {dsc:.3f} / {unc:.3f} | {hand_aurc(list(zip(conf, correct))):.3f} [{aurc_low:.3f}, {aurc_high:.3f}] | "
            f"{acc_50:.3f} | {acc_80:.3f} |"
        ) in markdown
    assert f"![{TASK}: risk-coverage curves of base, tuned](risk_coverage_01_{TASK}.png)" in markdown
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown):
        assert (tmp_path / "cmp" / image).is_file()


def test_questions_are_matched_by_document_not_position(runs, tmp_path):
    # The same questions in another order, one left out: three shared, each matched to itself.
    rows = (FIXTURES / "triviaqa.jsonl").read_text().splitlines()
    (tmp_path / "reordered.jsonl").write_text("\n".join(rows[3:0:-1]) + "\n")
    save_scripted_run(tmp_path / "other", TUNED, TASK, "0", model="/models/demo/other", data_files=tmp_path / "reordered.jsonl")
    compare_runs([runs / "base", tmp_path / "other"], tmp_path / "cmp", bootstrap_iters=0)
    by_metric = {row["metric"]: row for row in read_csv(tmp_path / "cmp" / "pairs.csv")}
    assert by_metric["acc"]["n_shared"] == "3"
    # Rome, Berlin, Lisbon: base right on Rome only, tuned on Lisbon only.
    assert float(by_metric["acc"]["difference"]) == pytest.approx(1 / 3 - 1 / 3, abs=1e-12)
    assert float(by_metric["conf"]["difference"]) == pytest.approx(1.0 - (0.5 + 0.75 + 0.5) / 3, abs=1e-12)
    markdown = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "compared on the 3 questions both answered" in markdown


def test_runs_with_other_settings_are_compared_on_what_they_share_and_say_so(runs, tmp_path):
    two = {question: answers[:2] for question, answers in TUNED.items()}
    save_scripted_run(tmp_path / "m2", two, TASK, "0", model="/models/demo/m2", repeats=2)
    compare_runs([runs / "base", tmp_path / "m2"], tmp_path / "cmp", bootstrap_iters=0)
    assert "base and m2 differ in M 4 vs 2; compared on the 4 questions both answered." in (
        tmp_path / "cmp" / "comparison.md"
    ).read_text()


def test_runs_sharing_no_question_are_a_clear_error(runs, tmp_path):
    rows = [json.loads(line) for line in (FIXTURES / "triviaqa.jsonl").read_text().splitlines()]
    (tmp_path / "other.jsonl").write_text("".join(json.dumps({**row, "question": row["question"] + " (2)"}) + "\n" for row in rows))
    script = {f"{question} (2)": answers for question, answers in TUNED.items()}
    save_scripted_run(tmp_path / "other", script, TASK, "0", model="/models/demo/other", data_files=tmp_path / "other.jsonl")
    with pytest.raises(CompareError, match="semcal_triviaqa: base and other share no question"):
        compare_runs([runs / "base", tmp_path / "other"], tmp_path / "cmp", bootstrap_iters=0)


def test_labels_and_pairs(runs, tmp_path):
    labels = parse_labels(["/models/demo/base=Qwen base", f"{runs / 'tuned'}=Qwen instruct"])
    compare_runs([runs / "base", runs / "tuned"], tmp_path / "cmp", labels=labels, pairs=[("Qwen instruct", "Qwen base")], bootstrap_iters=0)
    pairs = read_csv(tmp_path / "cmp" / "pairs.csv")
    # The pair as the user named it: instruct first, so the difference is base minus instruct.
    assert {(row["model_a"], row["model_b"]) for row in pairs} == {("Qwen instruct", "Qwen base")}
    ece = next(row for row in pairs if row["metric"] == "ece")
    assert float(ece["difference"]) == pytest.approx(0.1875 - 0.5, abs=1e-12)
    with pytest.raises(CompareError, match="--pair base=nobody: no model named 'nobody'; the models are base, tuned"):
        compare_runs([runs / "base", runs / "tuned"], tmp_path / "cmp2", pairs=[("base", "nobody")], bootstrap_iters=0)
    with pytest.raises(CompareError, match="give two model names as A=B"):
        parse_pairs(["base"])
    with pytest.raises(CompareError, match="as NAME=LABEL"):
        parse_labels(["base"])


def test_the_command_writes_the_files_and_errors_in_one_line(runs, tmp_path, capsys):
    assert cli.main(["compare", str(runs / "base"), str(runs / "tuned"), "--out", str(tmp_path / "cmp"), "--bootstrap-iters", "0", "--pair", "base=tuned"]) in (0, None)
    printed = capsys.readouterr().out.splitlines()
    assert printed[:4] == [str(tmp_path / "cmp" / name) for name in ("metrics.csv", "pairs.csv", "comparison.md", "comparison.html")]
    with pytest.raises(SystemExit) as stopped:
        cli.main(["compare", str(tmp_path / "missing"), "--out", str(tmp_path / "x")])
    assert stopped.value.code == 1
    assert capsys.readouterr().err.strip().endswith("does not exist: pass the --output_path folder of an lm-eval run")


# --- the page in a real browser ----------------------------------------------------------


def browser() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.slow  # starts a headless browser
def test_the_page_renders_in_a_real_browser(runs, tmp_path):
    binary = browser()
    if binary is None:
        if os.environ.get("SEMCAL_REQUIRE_BROWSER"):
            pytest.fail("no chromium on PATH: `apt-get install -y chromium` (CI sets SEMCAL_REQUIRE_BROWSER)")
        pytest.skip("no chromium on PATH: `apt-get install -y chromium` to run this check")
    compare_runs([runs / "base", runs / "tuned"], tmp_path / "cmp", pairs=[("base", "tuned")], bootstrap_iters=50)
    page = (tmp_path / "cmp" / "comparison.html").as_uri()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=5000",
             f"--user-data-dir={tmp_path / 'profile'}"]  # fmt: skip
    shot = tmp_path / "page.png"
    subprocess.run([binary, *flags, "--window-size=1366,2400", f"--screenshot={shot}", page], check=True, capture_output=True, timeout=120)
    # The DOM after scripts and images: every figure decoded, to a size.
    probe = tmp_path / "probe.html"
    probe.write_text(
        (tmp_path / "cmp" / "comparison.html").read_text().replace(
            "</body>",
            "<script>window.addEventListener('load', () => { document.body.dataset.figures = "
            "[...document.images].filter(i => i.complete && i.naturalWidth > 100).length + '/' + "
            "document.images.length; });</script></body>",
        )
    )
    dom = subprocess.run([binary, *flags, "--dump-dom", probe.as_uri()], check=True, capture_output=True, text=True, timeout=120).stdout
    figures = re.search(r'data-figures="(\d+)/(\d+)"', dom)
    # reliability, smECE per model, risk-coverage
    assert figures and figures.group(1) == figures.group(2) and int(figures.group(2)) == 3, dom[:500]
    assert ">base<" in dom and ">tuned<" in dom

    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[1] == 1366
    # Not blank: the page has text and figures, so many pixels are far from white.
    assert (pixels[..., :3].mean(axis=2) < 0.6).mean() > 0.01


def test_a_rescored_run_is_compared_with_its_source_under_its_own_name(runs, tmp_path):
    from lm_eval_semcal.runs.rescore import rescore_run

    source = tmp_path / "base"
    shutil.copytree(runs / "base", source)
    rescored = rescore_run(source, "exact", None, None, bootstrap_iters=0)[0].parent
    compare_runs([source, rescored], tmp_path / "cmp", bootstrap_iters=0)
    pairs = read_csv(tmp_path / "cmp" / "pairs.csv")
    assert {(row["model_a"], row["model_b"]) for row in pairs} == {("base", "base (rescored-exact)")}
    markdown = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "| semcal_triviaqa | base (rescored-exact) | 4 | 4 | exact |" in markdown
    assert "differ in B normalize vs exact" in markdown
