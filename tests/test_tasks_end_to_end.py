"""Every semcal task through lm-eval's `simple_evaluate`, driven by a scripted LM.

The responses are chosen per question, so every per-question class, confidence and
verdict, and every corpus metric, is worked out by hand below and compared with what the
harness reports.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import relplot
from conftest import FIXTURES, GSM8K_TEST, ScriptedLM
from lm_eval import simple_evaluate
from lm_eval.tasks import TaskManager

from lm_eval_semcal.harness.releases import SCORER_PIPELINE, repeats_option
from lm_eval_semcal.harness.task import SemcalConfigError
from lm_eval_semcal.runs.saved import logged_record
from lm_eval_semcal.tasks import TASKS_DIR

# lm-eval itself runs here: CI runs this module under every supported release.
pytestmark = pytest.mark.harness

NINE_METRICS = ("acc", "conf", "ece", "smece", "brier", "auroc", "sem_entropy", "n_classes", "no_answer")


def semcal_task_manager(**metadata):
    # Indexing the harness's own thousands of task YAMLs takes seconds: leave them out
    # except where the test is about living beside them.
    return TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata=metadata)


def evaluate(lm, task, data_files, *, repeats, limit=None, **kwargs):
    task_manager = semcal_task_manager(data_files=str(data_files), repeats=repeats)
    return simple_evaluate(
        model=lm,
        tasks=[task],
        task_manager=task_manager,
        limit=limit,
        log_samples=True,
        bootstrap_iters=0,
        **kwargs,
    )


def metrics_of(results, task):
    return {key.split(",")[0]: value for key, value in results["results"][task].items() if "," in key}


TRIVIAQA_SCRIPT = {
    # normalize: paris, paris, lyon, paris -> classes 0 0 1 0; k* = "Paris", correct.
    "What is the capital city of France?": [" Paris", "paris.", "Lyon", " The Paris"],
    # Rome 2, Milan 2: the tie goes to Rome, which appeared first; correct.
    "Which city was the capital of the Roman Empire?": ["Rome", "Milan", "Milan", "Rome"],
    # Three responses with no answer: k* is no-answer, so wrong whatever Berlin says.
    "In which city is the Brandenburg Gate?": ["", "   ", "Berlin", "\n"],
    # All four samples agree on a wrong answer.
    "What is the capital of Portugal?": ["Madrid", "Madrid", "Madrid", "Madrid"],
}


def test_triviaqa_concise_metrics_match_hand_computation():
    lm = ScriptedLM(TRIVIAQA_SCRIPT)
    results = evaluate(lm, "semcal_triviaqa", FIXTURES / "triviaqa.jsonl", repeats=4)
    got = metrics_of(results, "semcal_triviaqa")

    confidence = np.array([3 / 4, 2 / 4, 3 / 4, 4 / 4])
    correct = np.array([1.0, 1.0, 0.0, 0.0])
    assert got["acc"] == pytest.approx(0.5)
    assert got["conf"] == pytest.approx(0.75)
    # bins: 0.75 -> bin 7 holds Q1 (right) and Q3 (wrong): |0.75 - 0.5| = 0.25, weight 2/4;
    # 0.5 -> bin 5: |0.5 - 1| = 0.5, weight 1/4; 1.0 -> bin 9: |1 - 0| = 1, weight 1/4.
    assert got["ece"] == pytest.approx(0.5 * 0.25 + 0.25 * 0.5 + 0.25 * 1.0)
    assert got["brier"] == pytest.approx((0.25**2 + 0.5**2 + 0.75**2 + 1.0) / 4)
    # right {0.75, 0.5} vs wrong {0.75, 1.0}: only the 0.75/0.75 pair scores, one half.
    assert got["auroc"] == pytest.approx(0.5 / 4)
    assert got["smece"] == pytest.approx(float(relplot.smECE(confidence, correct)))
    h_31 = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert got["sem_entropy"] == pytest.approx((h_31 + math.log(2) + h_31 + 0.0) / 4)
    assert got["n_classes"] == pytest.approx((2 + 2 + 2 + 1) / 4)
    assert got["no_answer"] == pytest.approx((0 + 0 + 0.75 + 0) / 4)
    for name in ("ece", "smece", "brier", "auroc", "aurc"):
        assert math.isnan(got[f"{name}_ci_low"]) and math.isnan(got[f"{name}_ci_high"])
    # The calibration test draws as many calibrated runs as the bootstrap: none.
    for name in ("smece_p_value", "smece_noise_floor", "smece_noise_p95", "smece_detectable_overconfidence"):
        assert math.isnan(got[name])

    # M = 4 samples were drawn for each of the 4 questions, with the task's sampling settings.
    assert len(lm.requests) == 16
    gen_kwargs = lm.requests[0].args[1]
    assert gen_kwargs["do_sample"] is True and gen_kwargs["temperature"] == 1.0
    assert gen_kwargs["top_k"] == 0 and gen_kwargs["top_p"] == 1.0

    samples = {s["doc"]["semcal_id"]: s for s in results["samples"]["semcal_triviaqa"]}
    record = logged_record(samples["tc_1"]).to_dict()
    assert record["class_ids"] == [0, 0, 1, 0]
    assert record["representatives"] == ["Paris", "Lyon"]
    assert record["answers"] == ["Paris", "paris.", "Lyon", "The Paris"]
    assert logged_record(samples["tc_3"]).to_dict()["class_ids"] == [0, 0, 1, 0]
    assert logged_record(samples["tc_3"]).to_dict()["representatives"] == [None, "Berlin"]
    assert logged_record(samples["tc_3"]).to_dict()["correct"] is False
    assert samples["tc_1"]["resps"][0] == TRIVIAQA_SCRIPT["What is the capital city of France?"]


def test_prompt_is_five_shot_in_the_task_style():
    lm = ScriptedLM(TRIVIAQA_SCRIPT)
    evaluate(lm, "semcal_triviaqa_sentence", FIXTURES / "triviaqa.jsonl", repeats=2, limit=1)
    prompt = lm.requests[0].args[0]
    assert prompt.count("Q: ") == 6
    assert "A: The planet known as the Red Planet is Mars.\n\n" in prompt
    assert prompt.endswith("Q: What is the capital city of France?\nA:")


def test_bootstrap_intervals_bracket_the_point_estimate(monkeypatch):
    monkeypatch.setenv("SEMCAL_BOOTSTRAP_ITERS", "200")
    script = {q: r for q, r in TRIVIAQA_SCRIPT.items()}
    lm = ScriptedLM(script)
    task_manager = semcal_task_manager(data_files=str(FIXTURES / "triviaqa.jsonl"), repeats=4)
    results = simple_evaluate(model=lm, tasks=["semcal_triviaqa"], task_manager=task_manager)
    got = metrics_of(results, "semcal_triviaqa")
    for name in ("ece", "smece", "brier"):
        assert got[f"{name}_ci_low"] <= got[name] <= got[f"{name}_ci_high"]
        assert got[f"{name}_ci_low"] < got[f"{name}_ci_high"]


def test_gsm8k_numeric_classes_on_real_test_rows():
    rows = [json.loads(line) for line in GSM8K_TEST.open()][:2]
    golds = [row["answer"].split("####")[-1].strip() for row in rows]
    assert golds == ["18", "3"]
    script = {
        # 18, $18.00 and "18 dollars" are one number; 16 is another. k* = 18: right.
        rows[0]["question"]: [" 18", " $18.00", " 18 dollars", " 16", " 16"],
        # 3 appears twice, 2 three times: k* = 2, wrong.
        rows[1]["question"]: [" 3", " 2", " 2.0", " 3.", " 2"],
    }
    lm = ScriptedLM(script)
    results = evaluate(lm, "semcal_gsm8k", GSM8K_TEST, repeats=5, limit=2)
    got = metrics_of(results, "semcal_gsm8k")
    assert got["acc"] == pytest.approx(0.5)
    assert got["conf"] == pytest.approx((3 / 5 + 3 / 5) / 2)
    assert got["n_classes"] == pytest.approx(2.0)
    assert got["brier"] == pytest.approx(((0.6 - 1) ** 2 + 0.6**2) / 2)
    records = [logged_record(s).to_dict() for s in results["samples"]["semcal_gsm8k"]]
    assert records[0]["class_ids"] == [0, 0, 0, 1, 1]
    assert records[1]["class_ids"] == [0, 1, 1, 0, 1]


def test_gsm8k_cot_takes_the_number_after_the_answer_is():
    rows = [json.loads(line) for line in GSM8K_TEST.open()][:1]
    script = {
        rows[0]["question"]: [
            " 16 - 3 - 4 = 9 eggs, 9 * 2 = 18. The answer is 18.",
            " She sells 9 eggs for $2 each. The answer is $18.",
            " 16 - 3 = 13, 13 * 2 = 26. The answer is 26.",
            " She makes 9 * 2 = 18 dollars every day.",
        ]
    }
    results = evaluate(ScriptedLM(script), "semcal_gsm8k_cot", GSM8K_TEST, repeats=4, limit=1)
    got = metrics_of(results, "semcal_gsm8k_cot")
    assert got["conf"] == pytest.approx(3 / 4)
    assert got["acc"] == pytest.approx(1.0)


def test_nq_open_and_simpleqa_local_files():
    nq = {
        "who wrote the declaration of independence": ["Thomas Jefferson", "Jefferson"],
        "how many strings does a standard violin have": ["Four", "four"],
        "what is the largest planet in the solar system": ["Saturn", "Jupiter"],
    }
    got = metrics_of(evaluate(ScriptedLM(nq), "semcal_nq_open", FIXTURES / "nq_open.jsonl", repeats=2), "semcal_nq_open")
    # Q1: tie between "thomas jefferson" and "jefferson"; the first wins and matches the gold.
    # Q2: "four" twice; gold list ["four", "4"]: right. Q3: tie, Saturn first: wrong.
    assert got["acc"] == pytest.approx(2 / 3)
    assert got["conf"] == pytest.approx((0.5 + 1.0 + 0.5) / 3)

    sq = {
        "Who was the first person to win Nobel Prizes in two different sciences?": ["Marie Curie"] * 3,
        "What is the height of Mount Everest in metres according to the 2020 survey?": ["8849", "8848", "8,849"],
    }
    results = evaluate(ScriptedLM(sq), "semcal_simpleqa", FIXTURES / "simpleqa.jsonl", repeats=3)
    got = metrics_of(results, "semcal_simpleqa")
    # The third fixture row has an empty gold answer: it is dropped, not scored.
    assert len(results["samples"]["semcal_simpleqa"]) == 2
    # "8849" and "8,849" normalise alike (punctuation dropped): 2 of 3, right.
    assert got["acc"] == pytest.approx(1.0)
    assert got["conf"] == pytest.approx((1.0 + 2 / 3) / 2)


def test_sentence_style_judges_gold_inside_the_sentence():
    script = {
        "What is the capital city of France?": ["The capital of France is Paris.", "The capital of France is Paris"],
        "Which city was the capital of the Roman Empire?": ["It was Constantinople.", "It was Constantinople."],
        "In which city is the Brandenburg Gate?": ["It stands in Berlin.", "It is in Munich."],
        "What is the capital of Portugal?": ["Lisbonne is the capital.", "Lisbonne is the capital."],
    }
    results = evaluate(ScriptedLM(script), "semcal_triviaqa_sentence", FIXTURES / "triviaqa.jsonl", repeats=2)
    got = metrics_of(results, "semcal_triviaqa_sentence")
    # Paris: right (conf 1). Constantinople: wrong (conf 1). Berlin first of a tie: right
    # (conf 0.5). "Lisbonne" is not the whole word "lisbon": wrong (conf 1).
    assert got["acc"] == pytest.approx(0.5)
    assert got["conf"] == pytest.approx((1 + 1 + 0.5 + 1) / 4)


@pytest.mark.parametrize(
    "task",
    [
        f"semcal_{d}{s}"
        for d in ("triviaqa", "nq_open", "simpleqa", "gsm8k")
        for s in ("", "_sentence", "_cot")
    ],
)
def test_every_task_reports_the_nine_metrics(task):
    data = {
        "triviaqa": FIXTURES / "triviaqa.jsonl",
        "nq_open": FIXTURES / "nq_open.jsonl",
        "simpleqa": FIXTURES / "simpleqa.jsonl",
        "gsm8k": GSM8K_TEST,
    }[task.split("_")[1] if not task.startswith("semcal_nq_open") else "nq_open"]
    lm = ScriptedLM(lambda question: ["The answer is 4.", "The answer is 5.", ""])
    results = evaluate(lm, task, data, repeats=3, limit=2)
    got = metrics_of(results, task)
    for name in NINE_METRICS:
        assert name in got
    # Every style extracts an answer from the two "The answer is N." samples: concise and
    # sentence take the whole first line (text) or its number (gsm8k); cot the text or
    # number after the phrase. Only "" is no-answer: one sample in three, both questions.
    assert got["no_answer"] == pytest.approx(1 / 3)
    # The three samples are three classes (4, 5, no-answer: "answer is 4" and "answer is
    # 5" normalise apart), so k* is the first, "The answer is 4." / "4", at share 1/3.
    assert got["conf"] == pytest.approx(1 / 3)
    assert got["n_classes"] == pytest.approx(3.0)
    assert got["sem_entropy"] == pytest.approx(math.log(3))
    # Only NQ-Open's second question ("how many strings does a standard violin have",
    # golds "four", "4") can be right: its cot answer "4" is a gold, and its sentence
    # "The answer is 4." contains "4"; the concise line "answer is 4" equals no gold.
    # No fixture gold of TriviaQA, SimpleQA or GSM8K (18, 3) is 4.
    right = 1 if task in ("semcal_nq_open_sentence", "semcal_nq_open_cot") else 0
    assert got["acc"] == pytest.approx(right / 2)
    # One confidence level, 1/3: ECE = |1/3 - acc|, Brier = mean of (1/3 - correct)^2.
    assert got["ece"] == pytest.approx(abs(1 / 3 - right / 2))
    assert got["brier"] == pytest.approx((right * (2 / 3) ** 2 + (2 - right) * (1 / 3) ** 2) / 2)
    if right:
        assert got["auroc"] == pytest.approx(0.5)  # one right, one wrong, tied confidence
    else:
        assert math.isnan(got["auroc"])  # all wrong: undefined
    config = results["configs"][task]
    assert config["repeats"] == 3
    assert config["generation_kwargs"]["top_k"] == 0


DATA_FILES = {
    "triviaqa": str(FIXTURES / "triviaqa.jsonl"),
    "nq_open": str(FIXTURES / "nq_open.jsonl"),
    "simpleqa": str(FIXTURES / "simpleqa.jsonl"),
    "gsm8k": str(GSM8K_TEST),
}


@pytest.mark.slow  # indexes lm-eval's thousands of task YAMLs, twice
def test_groups_and_tags_resolve_beside_the_harness_suites(monkeypatch):
    task_manager = TaskManager(include_path=str(TASKS_DIR), metadata={"data_files": DATA_FILES})
    assert "semcal" in task_manager.all_groups
    assert {"semcal_sentence", "semcal_cot"} <= set(task_manager.all_tags)
    loaded = task_manager.load(["semcal"])
    # lm-eval 0.5 names a task loaded as a member of a group `group::task`.
    members = ["semcal_gsm8k", "semcal_nq_open", "semcal_simpleqa", "semcal_triviaqa"]
    assert sorted(loaded["tasks"]) == [f"semcal::{task}" if SCORER_PIPELINE else task for task in members]
    loaded = task_manager.load(["semcal_cot"])
    assert sorted(loaded["tasks"]) == [
        "semcal_gsm8k_cot", "semcal_nq_open_cot", "semcal_simpleqa_cot", "semcal_triviaqa_cot"
    ]
    # No semcal name shadows a harness task, group or tag.
    # lm-eval's own index: without the startup hook, which adds our folder beside it.
    from lm_eval.tasks._index import TaskIndex

    monkeypatch.setattr(TaskIndex, "build", staticmethod(getattr(TaskIndex.build, "__wrapped__", TaskIndex.build)))
    stock = set(TaskManager().all_tasks)
    ours = set(task_manager.all_tasks) - stock
    assert "semcal" in ours and "leaderboard" in stock
    # 4 datasets x 3 styles, semcal_synthetic, the group and the two tags.
    assert len(ours) == 4 * 3 + 1 + 1 + 2


@pytest.mark.parametrize(
    ("metadata", "gen_kwargs", "message"),
    [
        ({"repeats": 1}, None, r"semcal_triviaqa: repeats=1 .*" + re.escape(repeats_option(50))),
        ({}, "do_sample=False", r"semcal_triviaqa: do_sample=False .*do_sample=True"),
        ({}, "temperature=0", r"semcal_triviaqa: temperature=0 .*temperature=1.0"),
        ({}, "seed=7", r"semcal_triviaqa: seed=7 in the generation settings .*use --seed"),
    ],
)
def test_sampling_misconfiguration_is_rejected_before_generation(metadata, gen_kwargs, message):
    lm = ScriptedLM(TRIVIAQA_SCRIPT)
    task_manager = semcal_task_manager(data_files=str(FIXTURES / "triviaqa.jsonl"), **metadata)
    with pytest.raises(SemcalConfigError, match=message):
        simple_evaluate(model=lm, tasks=["semcal_triviaqa"], task_manager=task_manager, gen_kwargs=gen_kwargs)
    assert lm.requests == []


def test_identical_samples_warn(caplog):
    script = {q: ["Paris"] for q in TRIVIAQA_SCRIPT}
    with caplog.at_level("WARNING"):
        evaluate(ScriptedLM(script), "semcal_triviaqa", FIXTURES / "triviaqa.jsonl", repeats=3)
    assert any("samples look identical" in r.getMessage() for r in caplog.records)


def test_hostile_responses_never_break_aggregation():
    hostile = ["", "   \n  ", "日本の首都は東京です", "x" * 10_000, "\x00\x1b[31m", "🙂🙂", "The answer is"]
    lm = ScriptedLM(lambda question: hostile)
    results = evaluate(lm, "semcal_triviaqa", FIXTURES / "triviaqa.jsonl", repeats=len(hostile))
    got = metrics_of(results, "semcal_triviaqa")
    assert got["acc"] == 0.0
    # "", whitespace and "\x00..." (no word characters survive) are no-answer or a class;
    # either way every sample is counted and the record is complete.
    for sample in results["samples"]["semcal_triviaqa"]:
        record = logged_record(sample).to_dict()
        assert len(record["class_ids"]) == len(hostile)
        assert sum(record["counts"]) == len(hostile)
    assert math.isnan(got["auroc"])


def test_grouping_override_from_metadata():
    script = {q: ["Paris", "paris", "PARIS."] for q in TRIVIAQA_SCRIPT}
    for grouping, expected_conf in (("normalize", 1.0), ("exact", 1 / 3)):
        task_manager = semcal_task_manager(
            data_files=str(FIXTURES / "triviaqa.jsonl"), repeats=3, grouping=grouping
        )
        results = simple_evaluate(
            model=ScriptedLM(script), tasks=["semcal_triviaqa"], task_manager=task_manager, bootstrap_iters=0
        )
        assert metrics_of(results, "semcal_triviaqa")["conf"] == pytest.approx(expected_conf)


def test_release_0_1_metadata_collapse_overrides_with_a_warning():
    script = {q: ["Paris", "paris", "PARIS."] for q in TRIVIAQA_SCRIPT}
    task_manager = semcal_task_manager(data_files=str(FIXTURES / "triviaqa.jsonl"), repeats=3, collapse="exact")
    with pytest.warns(FutureWarning, match="collapse is now spelled grouping"):
        results = simple_evaluate(
            model=ScriptedLM(script), tasks=["semcal_triviaqa"], task_manager=task_manager, bootstrap_iters=0
        )
    assert metrics_of(results, "semcal_triviaqa")["conf"] == pytest.approx(1 / 3)
    both = semcal_task_manager(data_files=str(FIXTURES / "triviaqa.jsonl"), repeats=3, collapse="exact", grouping="exact")
    with pytest.raises(SemcalConfigError, match="semcal_triviaqa: both collapse and grouping are given: keep grouping"):
        simple_evaluate(model=ScriptedLM(script), tasks=["semcal_triviaqa"], task_manager=both, bootstrap_iters=0)


def test_gold_match_override_from_metadata():
    # Ties go to the first sentence; France, Rome and Berlin's contain their gold, Portugal's
    # names Madrid. A whole sentence never equals a gold alias under same_class.
    script = {
        "What is the capital city of France?": ["The capital is Paris.", "It is Lyon."],
        "Which city was the capital of the Roman Empire?": ["It was Rome.", "Milan."],
        "In which city is the Brandenburg Gate?": ["In Berlin."] * 2,
        "What is the capital of Portugal?": ["Madrid is.", "Lisbon is."],
    }
    for gold_match, expected_acc in (("contains", 3 / 4), ("same_class", 0.0)):
        task_manager = semcal_task_manager(
            data_files=str(FIXTURES / "triviaqa.jsonl"), repeats=2, gold_match=gold_match
        )
        results = simple_evaluate(
            model=ScriptedLM(script), tasks=["semcal_triviaqa_sentence"], task_manager=task_manager, bootstrap_iters=0
        )
        assert metrics_of(results, "semcal_triviaqa_sentence")["acc"] == pytest.approx(expected_acc)


def test_a_failing_grouping_keeps_every_generated_response(tmp_path, monkeypatch):
    from lm_eval_semcal.grouping import Grouping, GroupingSpec, registry

    class BrokenJudge(Grouping):
        name = "broken_judge"

        def group(self, requests):
            raise ConnectionError("judge server went away")

        def matches_gold(self, requests):
            raise AssertionError("never reached")

    # Registered for this test only, so other tests see the stock registry.
    monkeypatch.setitem(registry._REGISTRY, "broken_judge", GroupingSpec(BrokenJudge))
    monkeypatch.setenv("SEMCAL_RESCUE_DIR", str(tmp_path))
    task_manager = semcal_task_manager(
        data_files=str(FIXTURES / "triviaqa.jsonl"), repeats=4, grouping="broken_judge"
    )
    with pytest.raises(RuntimeError, match=r"semcal_triviaqa: grouping the answers failed \(ConnectionError"):
        simple_evaluate(model=ScriptedLM(TRIVIAQA_SCRIPT), tasks=["semcal_triviaqa"], task_manager=task_manager)
    [rescue] = tmp_path.glob("semcal_triviaqa-*.jsonl")
    rows = [json.loads(line) for line in rescue.open()]
    assert {row["semcal_question"]: row["resps"] for row in rows} == TRIVIAQA_SCRIPT
    assert all(row["prompt"].endswith(f"Q: {row['semcal_question']}\nA:") for row in rows)


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"grouping": "nlii"}, r"semcal_triviaqa: unknown grouping 'nlii'; choose one of .*normalize"),
        ({"grouping_args": {"threshold": 0.9}}, r"semcal_triviaqa: grouping 'normalize': bad options"),
        ({"grouping_args": "strict"}, r"grouping_args='strict' must be a mapping"),
    ],
)
def test_a_bad_grouping_is_rejected_before_generation(metadata, message):
    lm = ScriptedLM(TRIVIAQA_SCRIPT)
    task_manager = semcal_task_manager(data_files=str(FIXTURES / "triviaqa.jsonl"), repeats=2, **metadata)
    with pytest.raises(SemcalConfigError, match=message):
        simple_evaluate(model=lm, tasks=["semcal_triviaqa"], task_manager=task_manager)
    assert lm.requests == []


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        (["majority_vote"], r"filter pipeline 'mine' must end with `- function: semcal_grouping`"),
        (["take_first", "semcal_grouping"], r"runs `take_first` before semcal_grouping, which would leave it one response"),
    ],
)
def test_a_filter_list_that_breaks_the_records_is_rejected(tmp_path, steps, message):
    # A user's own task built on ours, with another filter pipeline.
    (tmp_path / "my_task.yaml").write_text(
        f"include: {TASKS_DIR / 'semcal' / '_triviaqa.yaml'}\n"
        "task: my_semcal_task\n"
        "filter_list:\n"
        "  - name: mine\n"
        "    filter:\n" + "".join(f"      - function: {step}\n" for step in steps)
    )
    task_manager = TaskManager(
        include_path=[str(TASKS_DIR), str(tmp_path)],
        include_defaults=False,
        metadata={"data_files": str(FIXTURES / "triviaqa.jsonl")},
    )
    with pytest.raises(SemcalConfigError, match=message):
        task_manager.load(["my_semcal_task"])


def test_an_unreadable_bootstrap_setting_is_rejected_before_generation(monkeypatch):
    monkeypatch.setenv("SEMCAL_BOOTSTRAP_ITERS", "1k")
    lm = ScriptedLM(TRIVIAQA_SCRIPT)
    task_manager = semcal_task_manager(data_files=str(FIXTURES / "triviaqa.jsonl"), repeats=2)
    with pytest.raises(SemcalConfigError, match=r"SEMCAL_BOOTSTRAP_ITERS='1k': set it to a whole number >= 0"):
        simple_evaluate(model=lm, tasks=["semcal_triviaqa"], task_manager=task_manager)
    assert lm.requests == []


def test_the_bootstrap_count_is_run_metadata_and_recorded(monkeypatch):
    # The environment says 0 (no intervals); the run's metadata says 200 and wins.
    monkeypatch.setenv("SEMCAL_BOOTSTRAP_ITERS", "0")
    task_manager = semcal_task_manager(data_files=str(FIXTURES / "triviaqa.jsonl"), repeats=4, bootstrap_iters=200)
    results = simple_evaluate(model=ScriptedLM(TRIVIAQA_SCRIPT), tasks=["semcal_triviaqa"], task_manager=task_manager)
    got = metrics_of(results, "semcal_triviaqa")
    assert got["brier_ci_low"] < got["brier"] < got["brier_ci_high"]
    assert results["configs"]["semcal_triviaqa"]["metadata"]["bootstrap_iters"] == 200
    # Without the metadata, the environment's count is used and recorded.
    results = evaluate(ScriptedLM(TRIVIAQA_SCRIPT), "semcal_triviaqa", FIXTURES / "triviaqa.jsonl", repeats=4)
    assert math.isnan(metrics_of(results, "semcal_triviaqa")["brier_ci_low"])
    assert results["configs"]["semcal_triviaqa"]["metadata"]["bootstrap_iters"] == 0


@pytest.mark.parametrize("value", ["1k", -1, 2.5, True])
def test_an_unreadable_bootstrap_metadata_is_rejected_before_generation(value):
    lm = ScriptedLM(TRIVIAQA_SCRIPT)
    task_manager = semcal_task_manager(data_files=str(FIXTURES / "triviaqa.jsonl"), repeats=2, bootstrap_iters=value)
    with pytest.raises(SemcalConfigError, match=r"--metadata bootstrap_iters=.*: set it to a whole number >= 0"):
        simple_evaluate(model=lm, tasks=["semcal_triviaqa"], task_manager=task_manager)
    assert lm.requests == []


def test_the_group_and_a_tag_run_together_on_local_files():
    task_manager = semcal_task_manager(data_files=DATA_FILES, repeats=3)
    # Paris / 4 / Paris: on the numeric GSM8K tasks "Paris" has no number (no-answer).
    results = simple_evaluate(
        model=ScriptedLM(lambda question: ["Paris", "The answer is 4.", "Paris"]),
        tasks=["semcal", "semcal_cot"],
        task_manager=task_manager,
        limit=2,
    )
    # lm-eval 0.5 names a task run as a member of a group `group::task`; 0.4.13 `task`.
    def in_group(task: str) -> str:
        return f"semcal::{task}" if SCORER_PIPELINE else task

    assert results["group_subtasks"]["semcal"] == [
        in_group(task) for task in ("semcal_triviaqa", "semcal_nq_open", "semcal_simpleqa", "semcal_gsm8k")
    ]
    assert len(results["results"]) == 1 + 8
    assert metrics_of(results, in_group("semcal_gsm8k"))["no_answer"] == pytest.approx(2 / 3)
    # cot on numbers: "Paris" has neither the phrase nor a number to fall back on.
    assert metrics_of(results, "semcal_gsm8k_cot")["no_answer"] == pytest.approx(2 / 3)
    assert metrics_of(results, in_group("semcal_triviaqa"))["conf"] == pytest.approx(2 / 3)
    # cot on text: only "The answer is 4." has the phrase; the two others are no-answer.
    assert metrics_of(results, "semcal_triviaqa_cot")["no_answer"] == pytest.approx(2 / 3)
