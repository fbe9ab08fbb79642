"""`semcal rescore` and `semcal agree`: a saved run regrouped under another B, nothing generated.

A scripted LM answers the four TriviaQA fixture questions with surface variants
("Paris", "paris."), so `normalize` and `exact` group them differently; every number
below is worked out by hand.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from conftest import save_scripted_run
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import adjusted_rand_score

from lm_eval_semcal import cli
from lm_eval_semcal.runs.saved import RunDirError, load_run
from lm_eval_semcal.runs.agree import adjusted_rand_index, agreement
from lm_eval_semcal.runs.rescore import rescore_run
from lm_eval_semcal.tasks import TASKS_DIR

# lm-eval itself runs here: CI runs this module under every supported release.
pytestmark = pytest.mark.harness

TASK = "semcal_triviaqa"
BOOTSTRAP_ITERS = "200"
SCRIPT = {
    "What is the capital city of France?": ["Paris", "paris.", "Paris", "Lyon"],
    "Which city was the capital of the Roman Empire?": ["Rome", "rome", "ROME", "Milan"],
    "In which city is the Brandenburg Gate?": ["Berlin"] * 4,
    "What is the capital of Portugal?": ["Madrid", "madrid", "Lisbon", "Madrid"],
}
# normalize: paris 3/4 right; rome 3/4 right; berlin 4/4 right; madrid 3/4 wrong.
NORMALIZE = {"acc": 3 / 4, "conf": (0.75 + 0.75 + 1 + 0.75) / 4}
# exact: "Paris" 2/4 right; Rome/rome/ROME/Milan tie, the first ("Rome") 1/4 right;
# Berlin 4/4 right; "Madrid" 2/4 wrong.
EXACT = {"acc": 3 / 4, "conf": (0.5 + 0.25 + 1 + 0.5) / 4}
CLASS_IDS = {
    "normalize": [[0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 1, 0]],
    "exact": [[0, 1, 0, 2], [0, 1, 2, 3], [0, 0, 0, 0], [0, 1, 2, 0]],
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """An lm-eval output folder as `lm_eval run --output_path OUT --log_samples` writes it."""
    return save_scripted_run(tmp_path_factory.mktemp("lm_eval_out"), SCRIPT, TASK, BOOTSTRAP_ITERS)


def same(a, b) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def test_the_same_b_reproduces_every_reported_number(run_dir):
    (original,) = load_run(run_dir, rescores=False)
    # The run recorded the resample count its intervals used, and rescore reads it back
    # (the environment says 0 in this suite: it is not consulted).
    recorded = json.loads(original.results_file.read_text())["configs"][TASK]["metadata"]["bootstrap_iters"]
    assert recorded == int(BOOTSTRAP_ITERS)
    written = rescore_run(run_dir, "normalize")
    results = json.loads(written[0].read_text())
    before = json.loads(original.results_file.read_text())["results"][TASK]
    after = results["results"][TASK]
    assert before.keys() == after.keys()
    assert all(same(before[key], after[key]) for key in before), {k: (before[k], after[k]) for k in before}
    assert isinstance(after["ece_ci_low,semcal"], float) and after["ece_ci_low,semcal"] <= after["ece,semcal"]
    (rescored,) = load_run(written[0])
    assert rescored.records == original.records
    assert results["semcal_rescore"]["grouping"] == "normalize"


def test_the_resample_count_can_be_overridden(run_dir):
    # rescored-normalize holds the rescore of the test above, made with the run's own count.
    written = rescore_run(run_dir, "normalize", bootstrap_iters=0, overwrite=True)
    after = json.loads(written[0].read_text())["results"][TASK]
    assert math.isnan(after["ece_ci_low,semcal"]) and math.isnan(after["smece_ci_high,semcal"])
    assert after["ece,semcal"] == pytest.approx(json.loads(load_run(run_dir)[0].results_file.read_text())["results"][TASK]["ece,semcal"])


def test_another_b_regroups_the_saved_responses(run_dir):
    written = rescore_run(run_dir, "exact")
    assert written[0].parent.name == "rescored-exact"
    results = json.loads(written[0].read_text())["results"][TASK]
    assert results["acc,semcal"] == pytest.approx(EXACT["acc"])
    assert results["conf,semcal"] == pytest.approx(EXACT["conf"])
    (rescored,) = load_run(written[0])
    assert [list(r.classes.class_ids) for r in rescored.records] == CLASS_IDS["exact"]
    assert {r.grouping for r in rescored.records} == {"exact"}
    config = json.loads(written[0].read_text())["configs"][TASK]["filter_list"][0]["filter"][0]
    assert config["grouping"] == "exact"
    # The original run is untouched.
    (original,) = load_run(run_dir, rescores=False)
    assert original.confidence.mean() == pytest.approx(NORMALIZE["conf"])


def test_agreement_reports_metrics_per_b_and_the_mean_ari(run_dir):
    (found,) = agreement(run_dir, ["normalize", "exact"])
    assert found.metrics["normalize"]["conf"] == pytest.approx(NORMALIZE["conf"])
    assert found.metrics["exact"]["conf"] == pytest.approx(EXACT["conf"])
    expected = sum(adjusted_rand_score(a, b) for a, b in zip(*CLASS_IDS.values(), strict=True)) / 4
    assert found.ari[("normalize", "exact")] == pytest.approx(expected)


@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=40))
def test_adjusted_rand_index_equals_sklearn(pairs):
    a, b = zip(*pairs, strict=True)
    assert adjusted_rand_index(a, b) == pytest.approx(adjusted_rand_score(a, b), abs=1e-12)


def test_adjusted_rand_index_by_hand():
    # One grouping splits the other's pair: contingency [[1, 1], [0, 1]], n = 3.
    # index 0, row pairs 1, column pairs 1, expected 1/3, maximum 1: (0 - 1/3) / (2/3).
    assert adjusted_rand_index([0, 0, 1], [0, 1, 1]) == pytest.approx(-0.5)
    with pytest.raises(ValueError, match="same length"):
        adjusted_rand_index([0, 1], [0])


def test_cli_rescore_then_report_reads_the_rescored_run(run_dir, capsys, tmp_path):
    assert cli.main(["rescore", str(run_dir), "--grouping", "exact"]) == 0
    paths = capsys.readouterr().out.split()
    assert paths[0].endswith(".json") and "rescored-exact" in paths[0]
    assert cli.main(["report", str(Path(paths[0]).parent), "--out", str(tmp_path / "report")]) == 0
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert f"{EXACT['conf']:.4f}" in summary and "| exact |" in summary


def test_cli_agree_prints_both_tables(run_dir, capsys):
    assert cli.main(["agree", str(run_dir), "--grouping", "normalize,exact"]) == 0
    out = capsys.readouterr().out
    assert f"| normalize | {NORMALIZE['acc']:.4f} | {NORMALIZE['conf']:.4f} |" in out
    assert f"| exact | {EXACT['acc']:.4f} | {EXACT['conf']:.4f} |" in out
    assert "| normalize | exact |" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["rescore", "{run}", "--grouping", "nonsense"], "unknown grouping 'nonsense'"),
        (["rescore", "{missing}", "--grouping", "exact"], "does not exist: pass the --output_path folder"),
        (["agree", "{run}", "--grouping", "exact"], "needs two or more groupings"),
        (["rescore", "{run}", "--grouping", "exact", "--grouping-args", '{{"threshold": 0.8}}'], "threshold"),
        (["agree", "{run}", "--grouping", "exact,normalize", "--grouping-args", '{{"nli": {{}}}}'], "not among --grouping"),
    ],
)
def test_cli_errors_are_one_line(run_dir, tmp_path, capsys, argv, message):
    argv = [a.format(run=run_dir, missing=tmp_path / "missing") for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code != 0
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("command", ["rescore", "agree"])
@pytest.mark.parametrize("bug", [ValueError, TypeError])
def test_a_bug_keeps_its_traceback(run_dir, tmp_path, monkeypatch, command, bug):
    # Only bad input is one line: an error the input did not cause must show where it came from.
    from lm_eval_semcal.grouping.scoring_step import ScoringStep

    def broken(step, questions):
        raise bug("a bug in the scorer")

    monkeypatch.setattr(ScoringStep, "score", broken)
    classes = "exact" if command == "rescore" else "exact,normalize"
    with pytest.raises(bug, match="a bug in the scorer"):
        cli.main([command, str(copy_run(run_dir, tmp_path)), "--grouping", classes])


def test_a_pipeline_with_other_steps_is_refused(run_dir, tmp_path):
    import shutil

    copy = tmp_path / "out"
    shutil.copytree(run_dir, copy)
    (results_file,) = copy.glob("*/results_*.json")
    results = json.loads(results_file.read_text())
    results["configs"][TASK]["filter_list"][0]["filter"].insert(0, {"function": "lowercase"})
    results_file.write_text(json.dumps(results))
    with pytest.raises(RunDirError, match="rescoring replays pipelines made of semcal_grouping alone"):
        rescore_run(copy, "exact")


def test_a_model_based_b_rescores_too(run_dir):
    # The scripted answers differ only in case and punctuation: embedding (on normalised
    # text) groups them exactly as normalize does.
    (found,) = agreement(run_dir, ["normalize", "embedding"])
    assert found.ari[("normalize", "embedding")] == 1.0
    assert found.metrics["embedding"]["conf"] == pytest.approx(NORMALIZE["conf"])
    assert found.metrics["embedding"]["acc"] == pytest.approx(NORMALIZE["acc"])


def test_every_filter_of_a_task_keeps_its_samples(tmp_path):
    # Two pipelines on one task share one samples file; both must survive the rescore.
    tasks_dir = tmp_path / "tasks"
    tasks_dir.mkdir()
    pipelines = "".join(
        f"  - name: {name}\n    filter:\n      - function: semcal_grouping\n        grouping: {b}\n"
        for name, b in (("semcal", "normalize"), ("semcal_exact", "exact"))
    )
    (tasks_dir / "two_filters.yaml").write_text(
        f"include: {TASKS_DIR / 'semcal' / 'semcal_triviaqa.yaml'}\ntask: semcal_two_filters\nfilter_list:\n{pipelines}"
    )
    out = save_scripted_run(tmp_path / "out", SCRIPT, "semcal_two_filters", BOOTSTRAP_ITERS, tasks_dir=tasks_dir)
    written = rescore_run(out, "exact")
    assert [path.name.split("_")[0] for path in written] == ["results", "samples", "rescore.json"]
    rescored = {run.filter: run for run in load_run(written[0])}
    assert sorted(rescored) == ["semcal", "semcal_exact"]
    assert all(run.n_questions == 4 for run in rescored.values())
    assert [list(r.classes.class_ids) for r in rescored["semcal"].records] == CLASS_IDS["exact"]


# --- a rescore of its own folder ----------------------------------------------------------


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "out"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("rescored-*"))
    return copy


def rescore_record(written: list[Path]) -> tuple[dict, dict]:
    """The options file and the results JSON's `semcal_rescore` entry of a rescore."""
    results, _, options = written
    return json.loads(options.read_text()), json.loads(results.read_text())["semcal_rescore"]


def test_a_rescore_with_other_options_is_refused_until_overwrite(run_dir, tmp_path):
    copy = copy_run(run_dir, tmp_path)
    first = rescore_run(copy, "exact")
    out_dir = first[0].parent
    assert [path.parent for path in first] == [out_dir] * 3 and first[2].name == "rescore.json"
    assert rescore_record(first)[0] == {"grouping": "exact", "grouping_args": None, "gold_match": None, "bootstrap_iters": None}
    before = {path: path.read_bytes() for path in first}

    with pytest.raises(RunDirError) as caught:
        rescore_run(copy, "exact", gold_match="contains", bootstrap_iters=0)
    assert str(caught.value) == (
        f"{out_dir} holds a rescore made with --grouping exact, not --grouping exact --gold-match contains "
        "--bootstrap-iters 0: add --overwrite to replace it, or move that folder away first"
    )
    assert {path: path.read_bytes() for path in first} == before

    replaced = rescore_run(copy, "exact", gold_match="contains", bootstrap_iters=0, overwrite=True)
    assert replaced == first
    options, entry = rescore_record(replaced)
    assert options == {"grouping": "exact", "grouping_args": None, "gold_match": "contains", "bootstrap_iters": 0}
    assert entry["gold_match"] == "contains"


def test_a_rescore_with_the_same_options_replaces_its_folder(run_dir, tmp_path):
    copy = copy_run(run_dir, tmp_path)
    first = rescore_run(copy, "exact", None, "same_class", 0)
    before = {path: path.read_text() for path in first}
    assert rescore_run(copy, "exact", None, "same_class", 0) == first
    assert {path: path.read_text() for path in first} == before


def test_a_folder_rescored_before_options_were_recorded_counts_as_other(run_dir, tmp_path):
    copy = copy_run(run_dir, tmp_path)
    first = rescore_run(copy, "exact")
    first[2].unlink()
    with pytest.raises(RunDirError, match="holds a rescore made with options it did not record, not --grouping exact:"):
        rescore_run(copy, "exact")


def test_cli_rescore_names_the_options_and_the_way_out(run_dir, tmp_path, capsys):
    copy = copy_run(run_dir, tmp_path)
    assert cli.main(["rescore", str(copy), "--grouping", "exact", "--gold-match", "contains"]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["rescore", str(copy), "--grouping", "exact", "--grouping-args", "{}"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err == (
        f"semcal rescore: error: {copy / 'scripted__lm' / 'rescored-exact'} holds a rescore made with --grouping exact "
        "--gold-match contains, not --grouping exact --grouping-args '{}': add --overwrite to "
        "replace it, or move that folder away first\n"
    )
    assert cli.main(["rescore", str(copy), "--grouping", "exact", "--grouping-args", "{}", "--overwrite"]) == 0


def test_a_samples_file_that_lost_rows_is_rescored_only_when_allowed(run_dir, tmp_path):
    copy = copy_run(run_dir, tmp_path)
    (samples,) = copy.glob("*/samples_*.jsonl")
    samples.write_text("".join(line + "\n" for line in samples.read_text().splitlines()[:3]))
    with pytest.raises(RunDirError, match=r"holds 3 questions of semcal_triviaqa, its results file 4: the samples file lost rows"):
        rescore_run(copy, "exact")
    assert not list(copy.glob("*/rescored-exact"))
    written = rescore_run(copy, "exact", allow_partial=True)
    # The rescore is as partial as its source, and says so when read.
    with pytest.raises(RunDirError, match="lost rows"):
        load_run(written[0])
    (rescored,) = load_run(written[0], allow_partial=True)
    assert [list(r.classes.class_ids) for r in rescored.records] == CLASS_IDS["exact"][:3]
