"""The synthetic world of `semcal demo`, its entity B, its task, and the demo's trained models.

World facts are checked against the world's own definition (counts in twentieths, three
forms per town); the task runs through lm-eval with a scripted LM and hand-computed metrics
under both filters; the models are trained on a small world, and their exact town
probabilities are checked against a one-sequence-at-a-time computation.
"""

from __future__ import annotations

import collections
import json

import numpy as np
import pytest
import torch
from conftest import ScriptedLM
from lm_eval import simple_evaluate
from lm_eval.tasks import TaskManager

from lm_eval_semcal.demo import models as demo_model
from lm_eval_semcal.demo import entity
from lm_eval_semcal.demo import world as synthetic
from lm_eval_semcal.grouping import GroupingRequest, get_grouping
from lm_eval_semcal.tasks import TASKS_DIR

WORLD = synthetic.build_world(0, 300)


def test_the_world_is_deterministic_and_covers_the_range():
    again = synthetic.build_world(0, 300)
    assert again == WORLD and synthetic.build_world(1, 300) != WORLD
    assert synthetic.build_world(1, 50).towns == WORLD.towns  # the same towns in every world
    tops = [q.true_top_probability for q in WORLD.questions]
    assert min(tops) <= 0.3 and max(tops) == 1.0
    assert {len(q.counts) for q in WORLD.questions} == {1, 2, 3, 4}
    for q in WORLD.questions:
        counts = [c for _, c in q.counts]
        assert sum(counts) == synthetic.LINES_PER_QUESTION and counts == sorted(counts, reverse=True)
        assert q.gold in {town for town, _ in q.counts}
    assert len({q.text for q in WORLD.questions}) == 300
    forms = [form for town in WORLD.towns for form in town.forms]
    assert len(forms) == len(set(forms)) == 3 * synthetic.N_TOWNS


def test_the_corpus_states_each_answer_exactly_as_often_as_its_weight():
    lines = synthetic.training_lines(WORLD)
    assert len(lines) == 300 * synthetic.LINES_PER_QUESTION
    by_prompt = collections.defaultdict(collections.Counter)
    for prompt, answer in lines:
        by_prompt[prompt][entity.town_of(answer)] += 1
    for q in WORLD.questions:
        expected = {WORLD.towns[t].name: c for t, c in q.counts}
        assert dict(by_prompt[synthetic.prompt(q.text)]) == expected
    forms = collections.Counter(answer.strip().split(",")[0].startswith("the town") for _, answer in lines)
    assert 0.3 < forms[True] / len(lines) < 0.37  # forms taken in turn: about a third each


def test_the_evaluation_rows_name_every_form_of_the_gold_town(tmp_path):
    rows = synthetic.evaluation_rows(WORLD)
    first = WORLD.questions[0]
    assert rows[0]["question"] == first.text
    assert rows[0]["answer"]["aliases"] == list(WORLD.towns[first.gold].forms)
    path = synthetic.write_evaluation_file(WORLD, tmp_path / "world.jsonl")
    from_file = synthetic.load_synthetic(data_files=str(path))["validation"]
    in_memory = synthetic.load_synthetic()["validation"]
    assert from_file["semcal_golds"] == in_memory["semcal_golds"]
    assert from_file["semcal_question"] == [q.text for q in WORLD.questions]
    assert json.loads(path.read_text().splitlines()[0]) == rows[0]


def test_the_entity_b_groups_the_forms_of_a_town():
    town, other = WORLD.towns[0], WORLD.towns[1]
    wrong_region = next(r for r in synthetic.REGIONS if r != town.region)
    answers = [*town.forms, f"{town.name}!", f"the {town.name}", f"{town.name} in the {town.region}",
               other.name, f"{town.name}, in the {wrong_region}", "east", "the town of", "", None]
    (grouping,) = get_grouping("lm_eval_semcal.demo.entity:ENTITY").group([GroupingRequest("Q?", answers)])
    no_answer = grouping.no_answer_class
    # Case, punctuation and articles do not matter; a wrong region or a stray word is no town.
    assert list(grouping.class_ids) == [0, 0, 0, 0, 0, 0, 1, 2, 3, 4, no_answer, no_answer]
    (exact,) = get_grouping("exact").group([GroupingRequest("Q?", list(town.forms))])
    assert list(exact.class_ids) == [0, 1, 2]


def test_the_synthetic_task_reports_towns_and_strings_through_lm_eval():
    # Two questions, M = 3: all three forms of the gold town (towns: 1.0, right; strings:
    # 1/3, right), and two forms of a wrong town with one of the gold (towns: 2/3, wrong).
    world = synthetic.build_world(0, 2)
    q0, q1 = world.questions
    gold0, gold1 = world.towns[q0.gold], world.towns[q1.gold]
    wrong = world.towns[next(t for t in range(synthetic.N_TOWNS) if t != q1.gold)]
    script = {q0.text: [" " + f for f in gold0.forms], q1.text: [" " + wrong.forms[0], " " + wrong.forms[1], " " + gold1.name]}
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata={"repeats": 3, "n_questions": 2})
    results = simple_evaluate(model=ScriptedLM(script), tasks=["semcal_synthetic"], task_manager=manager, bootstrap_iters=0)
    got = results["results"]["semcal_synthetic"]
    assert got["acc,semcal"] == pytest.approx(0.5) and got["conf,semcal"] == pytest.approx((1 + 2 / 3) / 2)
    # Strings: q0's first form (1/3) is right; q1's three strings tie, the first is wrong.
    assert got["acc,semcal_exact"] == pytest.approx(0.5) and got["conf,semcal_exact"] == pytest.approx(1 / 3)


SMALL = demo_model.DemoConfig(n_questions=30, vocab_size=600, n_embd=32, n_head=2, epochs=40, tuned_epochs=20, batch_size=50)


@pytest.fixture(scope="module")
def small_models(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(demo_model.CACHE_ENV, str(tmp_path_factory.mktemp("demo-cache")))
        stages = collections.Counter()
        base, tuned = demo_model.trained_models(SMALL, lambda stage, done, total: stages.update([stage]))
        again = collections.Counter()
        assert demo_model.trained_models(SMALL, lambda stage, done, total: again.update([stage])) == (base, tuned)
        assert again == {}  # the second call finds both in the cache
        assert base.parent == demo_model.cache_dir(SMALL)
    return base, tuned, stages


def test_training_reports_its_progress_and_caches_by_configuration(small_models):
    _, _, stages = small_models
    steps = -(-len(set(synthetic.training_lines(synthetic.build_world(0, 30)))) // SMALL.batch_size)
    assert stages["training the base model"] == SMALL.epochs * steps
    assert stages["tuning on its own answers"] == SMALL.tuned_epochs * 1
    assert demo_model.DemoConfig(epochs=5).key() != demo_model.DemoConfig().key()


def test_the_cache_key_follows_the_world_not_only_the_settings(monkeypatch):
    before = demo_model.DemoConfig().key()
    monkeypatch.setattr(synthetic, "TEMPLATES", ("Where did {} die?",) * 4)  # another world, same settings
    assert demo_model.DemoConfig().key() != before
    monkeypatch.undo()
    monkeypatch.setattr(demo_model, "TRAINING_VERSION", demo_model.TRAINING_VERSION + 1)
    assert demo_model.DemoConfig().key() != before


def test_a_bad_device_stops_the_demo_before_it_trains(tmp_path, capsys, monkeypatch):
    from lm_eval_semcal import cli

    monkeypatch.setenv(demo_model.CACHE_ENV, str(tmp_path / "cache"))
    with pytest.raises(SystemExit):
        cli.main(["demo", "--device", "gpu", "--out", str(tmp_path / "out")])
    assert "semcal demo: device='gpu' is not a torch device" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()


def test_exact_town_probabilities_match_one_sequence_at_a_time(small_models):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base, _, _ = small_models
    world = synthetic.build_world(0, 30)
    probabilities = demo_model.town_probabilities(base, world, batch_size=97)
    assert probabilities.shape == (30, synthetic.N_TOWNS)
    assert np.all(probabilities.sum(1) <= 1 + 1e-6)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base).eval()
    for q_index, town_index in ((0, 0), (3, world.questions[3].counts[0][0]), (7, 11)):
        total = 0.0
        for form in world.towns[town_index].forms:
            context = tokenizer(synthetic.prompt(world.questions[q_index].text))["input_ids"]
            answer = tokenizer(" " + form + "\n")["input_ids"]
            with torch.no_grad():
                logits = model(torch.tensor([context + answer])).logits[0]
            log_p = torch.log_softmax(logits, -1)
            total += float(np.exp(sum(log_p[len(context) + k - 1, t].item() for k, t in enumerate(answer))))
        assert probabilities[q_index, town_index] == pytest.approx(total, rel=1e-4, abs=1e-7)


def test_the_tuned_model_is_sharper_than_the_base(small_models):
    base, tuned, _ = small_models
    world = synthetic.build_world(0, 30)
    base_top = demo_model.town_probabilities(base, world).max(1)
    tuned_top = demo_model.town_probabilities(tuned, world).max(1)
    assert tuned_top.mean() > base_top.mean() + 0.2
