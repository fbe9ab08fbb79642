"""`semcal demo` end to end, from a cold cache, at its real size: the three findings must show.

This trains both demo models (about two minutes on 2 CPU cores), samples 300 questions x 50
answers from each through lm-eval, and checks what the issue asks the demo to show, plus
that its files agree with one another and with an independent recomputation.
"""

from __future__ import annotations

import csv
import json
import math
import re
import string
from collections import Counter

import numpy as np
import pytest
import relplot

from lm_eval_semcal import cli
from lm_eval_semcal.core import semantic_classes
from lm_eval_semcal.demo import models as demo_model
from lm_eval_semcal.demo import run as demo
from lm_eval_semcal.demo import world as synthetic
from lm_eval_semcal.runs.saved import load_run

# The tests on `demo_run` train both demo models and sample 2 x 300 x 50 answers: minutes.
slow = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(demo_model.CACHE_ENV, str(out / "cache"))
        assert cli.main(["demo", "--out", str(out / "run"), "--bootstrap-iters", "200"]) == 0
    return out / "run"


@slow
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


@slow
def test_the_sampled_estimate_converges_to_the_exact_probability(demo_run):
    base = json.loads((demo_run / "demo.json").read_text())["models"]["base"]
    errors = [base["convergence"][str(m)]["mean_abs_error"] for m in demo.M_STEPS]
    assert errors == sorted(errors, reverse=True) and errors[-1] < 0.05


def squad_normalize(text):
    """SQuAD normalisation written out here: lower case, no punctuation, no articles."""
    text = "".join(ch for ch in text.lower() if ch not in string.punctuation)
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def hand_plurality(keys):
    """The most frequent key (None: no answer) and its share; a tie goes to the key seen first."""
    counts = Counter(keys)
    first_seen = {key: i for i, key in reversed(list(enumerate(keys)))}
    best = max(counts, key=lambda key: (counts[key], -first_seen[key]))
    return best, counts[best] / len(keys)


def hand_scores(samples_file, world):
    """Per question, from the raw sampled responses: the plurality of the towns (a town's
    three forms one answer, any other text its own) over the first m samples for each m of
    the convergence table, and of the raw strings over all of them."""
    town_of = {squad_normalize(form): town.name for town in world.towns for form in town.forms}
    docs = sorted(
        (row for row in map(json.loads, samples_file.read_text().splitlines()) if row["filter"] == "semcal"),
        key=lambda row: row["doc_id"],
    )
    towns = {m: ([], []) for m in demo.M_STEPS}
    strings = ([], [])
    for doc in docs:
        lines = [next((line.strip() for line in r.splitlines() if line.strip()), "") for r in doc["resps"][0]]
        keys = []
        for line in lines:
            text = squad_normalize(line)
            keys.append(("town", town_of[text]) if text in town_of else (("other", text) if text else None))
        for m, (confidence, correct) in towns.items():
            top, share = hand_plurality(keys[:m])
            confidence.append(share)
            correct.append(top == ("town", doc["doc"]["answer"]["value"]))
        top, share = hand_plurality([line or None for line in lines])
        strings[0].append(share)
        strings[1].append(top in doc["doc"]["semcal_golds"])
    return {m: (np.array(c), np.array(y)) for m, (c, y) in towns.items()}, (np.array(strings[0]), np.array(strings[1]))


def hand_town_probabilities(model_dir, world, questions):
    """Per question, P(town | prompt): the sum over the town's forms of
    P(" form" + end of line | prompt), one unpadded sequence at a time."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    out = []
    with torch.no_grad():
        for question in questions:
            context = tokenizer(f"Q: {question.text}\nA:", add_special_tokens=False)["input_ids"]
            probabilities = {}
            for town in world.towns:
                total = 0.0
                for form in town.forms:
                    answer = tokenizer(f" {form}\n", add_special_tokens=False)["input_ids"]
                    logits = model(torch.tensor([context + answer])).logits[0, len(context) - 1 : -1]
                    log_probs = torch.log_softmax(logits.double(), -1)
                    total += math.exp(float(log_probs[torch.arange(len(answer)), torch.tensor(answer)].sum()))
                probabilities[town.name] = total
            out.append(probabilities)
    return out


@slow
def test_the_files_agree_with_an_independent_recomputation(demo_run):
    summary = json.loads((demo_run / "demo.json").read_text())
    base = summary["models"]["base"]
    runs = {(run.model_dir.rsplit("__", 1)[-1], run.filter): run for run in load_run(demo_run / "lm_eval")}
    assert sorted(runs) == [("base", "semcal"), ("base", "semcal_exact"), ("tuned", "semcal"), ("tuned", "semcal_exact")]
    towns = runs[("base", "semcal")]
    assert towns.n_questions == 300 and towns.M == 50
    world = synthetic.build_world()
    golds = [json.loads(line)["answer"]["aliases"] for line in (demo_run / "world.jsonl").read_text().splitlines()]
    assert golds == [list(world.towns[q.gold].forms) for q in world.questions]

    # Every number below is recomputed from the 50 raw responses per question that lm-eval
    # logged, grouped here by hand, and scored with relplot (the smECE reference).
    [samples_file] = (demo_run / "lm_eval").glob("*__base/samples_semcal_synthetic_*.jsonl")
    by_m, (string_confidence, string_correct) = hand_scores(samples_file, world)
    confidence, correct = by_m[50]
    np.testing.assert_array_equal(towns.confidence, confidence)
    np.testing.assert_array_equal(towns.correct, correct)
    metrics = base["metrics"]
    assert metrics["towns"]["conf"] == pytest.approx(confidence.mean(), abs=1e-12)
    assert metrics["towns"]["acc"] == pytest.approx(correct.mean(), abs=1e-12)
    assert metrics["towns"]["smece"] == pytest.approx(float(relplot.smECE(confidence, correct.astype(float))), abs=1e-12)
    assert metrics["strings"]["conf"] == pytest.approx(string_confidence.mean(), abs=1e-12)
    assert metrics["strings"]["acc"] == pytest.approx(string_correct.mean(), abs=1e-12)

    rows = [json.loads(line) for line in (demo_run / "per_question.jsonl").read_text().splitlines()]
    base_rows = [row for row in rows if row["model"] == "base"]
    assert len(base_rows) == 300
    assert [row["sampled_confidence"] for row in base_rows] == confidence.tolist()
    assert [row["correct"] for row in base_rows] == correct.tolist()
    assert [row["gold"] for row in base_rows] == [world.towns[q.gold].name for q in world.questions]
    # The exact probabilities, by teacher forcing written here, on the first questions.
    by_hand = hand_town_probabilities(base["model_dir"], world, world.questions[:3])
    for probabilities, row in zip(by_hand, base_rows[:3], strict=True):
        top = max(probabilities, key=probabilities.get)
        assert row["exact_top_town"] == top
        assert row["exact_top_probability"] == pytest.approx(probabilities[top], rel=1e-4)
    exact = np.array([row["exact_top_probability"] for row in base_rows])
    assert base["mean_abs_error"] == pytest.approx(np.abs(confidence - exact).mean(), abs=1e-12)
    for m, (confidence_m, correct_m) in by_m.items():
        row = base["convergence"][str(m)]
        assert row["mean_abs_error"] == pytest.approx(np.abs(confidence_m - exact).mean(), abs=1e-12)
        assert row["smece"] == pytest.approx(float(relplot.smECE(confidence_m, correct_m.astype(float))), abs=1e-12)

    diagrams = [path.name for path in (demo_run / "report").iterdir() if path.name.endswith("_reliability.png")]
    assert len(diagrams) == 4
    # Named by the models' names, not their cache paths.
    assert sorted(name.split("__")[0] for name in diagrams) == ["base", "base", "tuned", "tuned"], diagrams
    assert "- [x] tuned model overconfident" in (demo_run / "demo.md").read_text()


@slow
def test_the_demo_compares_base_and_tuned_on_one_page(demo_run):
    comparison = demo_run / "comparison"
    assert all((comparison / name).is_file() for name in ("metrics.csv", "pairs.csv", "comparison.md", "comparison.html"))
    with (comparison / "pairs.csv").open() as handle:
        pairs = list(csv.DictReader(handle))
    # base against tuned under each grouping, and the two groupings of each model.
    towns = {row["metric"]: row for row in pairs if (row["model_a"], row["model_b"]) == ("base (semcal)", "tuned (semcal)")}
    assert towns["acc"]["n_shared"] == "300"
    # The tuned model is the more overconfident, beyond the paired interval.
    assert float(towns["overconfidence"]["low"]) > 0
    summary = json.loads((demo_run / "demo.json").read_text())["models"]
    gap = {name: summary[name]["metrics"]["towns"]["conf"] - summary[name]["metrics"]["towns"]["acc"] for name in summary}
    assert float(towns["overconfidence"]["difference"]) == pytest.approx(gap["tuned"] - gap["base"], abs=1e-12)


def test_the_noise_floor_of_a_perfect_predictor_by_hand():
    # One question with a certain answer: every simulated run has confidence 1, correct.
    world = synthetic.World(0, synthetic.towns(), (synthetic.Question("q", "Q?", ((3, 20),), 3),))
    assert demo.noise_floor(world, 10, runs=5) == {"median": 0.0, "p95": 0.0}
    # The same certain answer judged against another gold town: confidence 1, always wrong.
    wrong = synthetic.World(0, synthetic.towns(), (synthetic.Question("q", "Q?", ((3, 20),), 5),))
    assert demo.noise_floor(wrong, 10, runs=5) == pytest.approx({"median": 1.0, "p95": 1.0}, abs=1e-3)
    # Both: every run is one right and one wrong answer at confidence 1, smECE |1 - 1/2|.
    both = synthetic.World(0, synthetic.towns(), world.questions + wrong.questions)
    assert demo.noise_floor(both, 10, runs=5) == pytest.approx({"median": 0.5, "p95": 0.5}, abs=1e-3)
    # The demo picks its plurality with the package's rule: a tie goes to the class seen first.
    assert semantic_classes.plurality([0, 1, 1, 0, 2]) == (0, 0.4)


def test_the_demo_replaces_nothing_it_did_not_write(tmp_path, monkeypatch, capsys):
    # `--out .` in a project folder with a report/ of the user's: one line, before any training.
    project = tmp_path / "project"
    (project / "report").mkdir(parents=True)
    (project / "report" / "mine.md").write_text("my notes")
    (project / "demo.md").write_text("my page")

    def no_training(*args, **kwargs):
        raise AssertionError("the demo trained its models before checking its output folder")

    monkeypatch.setattr(demo_model, "trained_models", no_training)
    with pytest.raises(SystemExit) as stopped:
        cli.main(["demo", "--out", str(project)])
    assert stopped.value.code == 1
    error = capsys.readouterr().err
    assert error == (
        f"semcal demo: {project} holds report, demo.md, which the demo did not write and would replace; "
        "choose another --out, or move them\n"
    )
    assert (project / "report" / "mine.md").read_text() == "my notes"
    assert (project / "demo.md").read_text() == "my page"
    assert sorted(path.name for path in project.iterdir()) == ["demo.md", "report"]


def test_the_demo_clears_what_an_earlier_demo_wrote(tmp_path):
    out = tmp_path / "out"
    demo.claim_out_dir(out)
    for folder in ("lm_eval", "report", "comparison"):
        (out / folder / "old").mkdir(parents=True)
    (out / "demo.md").write_text("an earlier demo's page")
    (out / "notes.txt").write_text("not a name the demo writes: left alone")
    demo.claim_out_dir(out)
    assert not any((out / folder).exists() for folder in ("lm_eval", "report", "comparison"))
    assert (out / "notes.txt").exists() and (out / "demo.md").exists()  # a file is replaced when written
