"""The public API: plain Python, without lm-eval, torch, transformers or tenacity.

`import lm_eval_semcal` exports the scorer, the record, the corpus metrics and the
registry of B; the README's example runs as printed; the CLI starts without numpy.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import subprocess
import sys
import textwrap
from collections.abc import Sequence

import numpy as np
import pytest
from conftest import REPO_ROOT
from lm_eval.api.metrics import mean as lm_eval_mean
from lm_eval.api.metrics import mean_stderr as lm_eval_mean_stderr

import lm_eval_semcal
from lm_eval_semcal import (
    Grouping,
    Question,
    QuestionRecord,
    SemanticClasses,
    corpus_metrics,
    get_grouping,
    score_question,
    score_questions,
)
from lm_eval_semcal.core.calibration import aurc, bootstrap_ci, calibration_test, detectable_overconfidence
from lm_eval_semcal.core.records import DamagedRecord
from lm_eval_semcal.core.semantic_classes import plurality
from lm_eval_semcal.grouping.base import group_by_first_appearance
from lm_eval_semcal.grouping.registry import available_groupings, check_grouping

BLOCKED = ("lm_eval", "torch", "transformers", "tenacity", "sentence_transformers")


def run_python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=REPO_ROOT, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_api_works_with_the_heavy_libraries_blocked():
    out = run_python(f"""
        import importlib.abc, json, sys

        class Blocker(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {BLOCKED!r}:
                    raise ImportError(f"blocked: {{name}}")

        sys.meta_path.insert(0, Blocker())
        import lm_eval_semcal
        exported = {{name: getattr(lm_eval_semcal, name) for name in lm_eval_semcal.__all__}}
        from lm_eval_semcal import Question, corpus_metrics, get_grouping, score_questions
        from lm_eval_semcal.grouping import check_grouping
        for name in ("embedding", "nli"):
            check_grouping(name)  # their modules load; their models would only at build
        records = score_questions(
            [Question("2+2?", ["4", "4.0", "5"], ["4"]), Question("3+3?", ["7", "6", "$6"], ["6"])],
            get_grouping("numeric"), answer_type="number",
        )
        print(json.dumps({{
            "exported": len(exported),
            "records": [[r.confidence, r.correct] for r in records],
            "acc": corpus_metrics(records, bootstrap_iters=0).values["acc"],
            "loaded": sorted(m for m in sys.modules if m.split(".")[0] in {BLOCKED!r}),
        }}))
    """)
    got = json.loads(out.strip().splitlines()[-1])
    assert got["exported"] == len(lm_eval_semcal.__all__) > 20
    assert got["records"] == [[2 / 3, True], [2 / 3, True]]
    assert got["acc"] == 1.0
    assert got["loaded"] == []


def test_importing_the_package_imports_nothing_numerical():
    out = run_python("""
        import sys
        import lm_eval_semcal
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("numpy", "relplot", "lm_eval", "torch")))
    """)
    assert out.strip() == "[]"


@pytest.mark.parametrize("argv", [["--help"], ["tasks-dir"], ["report", "--help"]])
def test_the_cli_starts_without_numerical_libraries(argv):
    out = run_python(f"""
        import contextlib, io, sys
        from lm_eval_semcal.cli import main
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                main({argv!r})
            except SystemExit as done:
                assert done.code in (0, None), done.code
        heavy = ("numpy", "scipy", "relplot", "matplotlib", "sklearn", "lm_eval", "torch", "transformers", "datasets")
        print(sorted({{m.split(".")[0] for m in sys.modules}} & set(heavy)))
    """)
    assert out.strip() == "[]"


def printing_examples() -> list[tuple[str, str]]:
    """(where, code): the README's api-example block and each docs/python-api.md block that prints."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- api-example -->\s*```python\n(.*?)```\s*<!-- /api-example -->", readme, re.S)
    assert block, "README.md needs the <!-- api-example --> block"
    examples = [("README.md api-example", block.group(1))]
    page = (REPO_ROOT / "docs" / "python-api.md").read_text(encoding="utf-8")
    for number, code in enumerate(re.findall(r"```python\n(.*?)```", page, re.S), 1):
        if "\nprint(" in "\n" + code:
            examples.append((f"docs/python-api.md block {number}", code))
    return examples


@pytest.mark.parametrize(("where", "code"), [pytest.param(*example, id=example[0]) for example in printing_examples()])
def test_each_documented_example_prints_what_it_says(where, code):
    expected = [line.split("#")[-1].strip() for line in code.splitlines() if line.startswith("print(")]
    printed = run_python(code).strip().splitlines()
    assert printed[-len(expected):] == expected, where


# ---------------------------------------------------------------------------- the scorer


class CountingB(Grouping):
    """Groups by lower-case text; counts its batches."""

    name = "lower"

    def __init__(self, short_answers: bool = False) -> None:
        self.short_answers = short_answers
        self.group_calls: list[int] = []
        self.gold_calls: list[int] = []

    def group(self, requests):
        self.group_calls.append(len(requests))
        return [
            SemanticClasses.from_keys(r.answers, [a.lower() if a else None for a in r.answers]) for r in requests
        ]

    def matches_gold(self, requests):
        self.gold_calls.append(len(requests))
        return [any(g.lower() == r.representative.lower() for g in r.golds) for r in requests]


def test_score_questions_by_hand():
    b = CountingB()
    questions = [
        Question("Q1", ["Paris", "paris", "Lyon", ""], ["Paris"]),  # classes paris 2, lyon 1, none 1
        Question("Q2", ["", "", "Rome", "Milan"], ["Rome"]),  # none 2 (first seen), rome 1, milan 1
        Question("Q3", ["Oslo\nQ: next", " oslo "], ["Bergen"]),  # concise: first line, stripped
    ]
    records = score_questions(questions, b)
    assert b.group_calls == [3]
    # Every answered class is judged, in one batch: 2 + 2 + 1.
    assert b.gold_calls == [5]
    assert [r.confidence for r in records] == [0.5, 0.5, 1.0]
    assert [r.correct for r in records] == [True, False, False]
    assert [r.class_correct for r in records] == [(True, False, False), (False, True, False), (False,)]
    assert records[1].plurality_class == records[1].classes.no_answer_class == 0
    assert records[2].classes.answers == ("Oslo", "oslo")
    assert records[0].no_answer_share == 0.25
    assert records[0].entropy == pytest.approx(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)))


def test_contains_judges_sentences_unless_b_extracts_short_answers():
    question = ("Capital of France?", ["It is Paris.", "It is Paris."], ["paris"])
    assert score_question(*question, CountingB(), style="sentence", gold_match="contains").correct is True
    # Under same_class the whole sentence is compared with the gold, and differs.
    assert score_question(*question, CountingB(), style="sentence").correct is False
    # A B whose classes are short answers is judged by class whatever the rule says.
    short = CountingB(short_answers=True)
    assert score_question(*question, short, style="sentence", gold_match="contains").correct is False
    assert short.gold_calls == [1]


def test_the_scorer_refuses_bad_input_before_grouping():
    b = CountingB()
    with pytest.raises(TypeError, match="needs each question's M responses as a list, got str"):
        score_questions([Question("Q", "Paris", ["Paris"])], b)
    with pytest.raises(ValueError, match="style='essay'; choose one of concise, sentence, cot"):
        score_questions([Question("Q", ["Paris"], ["Paris"])], b, style="essay")
    assert b.group_calls == []


# ---------------------------------------------------------------------------- records


def test_a_record_round_trips_through_its_json_form():
    record = score_question("Q", ["Paris", "Lyon", "paris", ""], ["Paris"], get_grouping("normalize"))
    text = str(record)
    assert json.loads(text) == {
        "answers": ["Paris", "Lyon", "paris", None],
        "class_ids": [0, 1, 0, 2],
        "representatives": ["Paris", "Lyon", None],
        "no_answer_class": 2,
        "counts": [2, 1, 1],
        "class_correct": [True, False, False],
        "plurality_class": 0,
        "confidence": 0.5,
        "correct": True,
        "entropy": -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)),
        "no_answer_share": 0.25,
        "n_classes": 3,
        "grouping": "normalize",
    }
    # The JSON of a record no three-way judge graded is byte for byte what it always was.
    assert text == (
        '{"answers": ["Paris", "Lyon", "paris", null], "class_ids": [0, 1, 0, 2], '
        '"representatives": ["Paris", "Lyon", null], "no_answer_class": 2, "counts": [2, 1, 1], '
        '"class_correct": [true, false, false], "plurality_class": 0, "confidence": 0.5, "correct": true, '
        '"entropy": 1.0397207708399179, "no_answer_share": 0.25, "n_classes": 3, "grouping": "normalize"}'
    )
    assert record.class_grades is None and record.not_attempted_share is None
    assert QuestionRecord.read(text) == record == QuestionRecord.read(json.loads(text))
    with pytest.raises(ValueError, match="not a semcal question record"):
        QuestionRecord.read('{"answers": []}')
    edited = json.loads(text) | {"correct": False}
    with pytest.raises(DamagedRecord, match="stores correct=False but its classes give True"):
        QuestionRecord.read(edited)


def test_the_no_answer_class_is_never_correct():
    classes = SemanticClasses.from_keys(["", "Paris"], [None, "paris"])
    assert QuestionRecord(classes, (True, True), "x").class_correct == (False, True)
    assert QuestionRecord(classes, (True, True), "x", ("CORRECT", "CORRECT")).class_grades == (None, "CORRECT")


def graded_record(answers: list[str], grades: tuple[str | None, ...]) -> QuestionRecord:
    """A record of `answers` grouped by their lower case ("" = no answer), its classes graded `grades`."""
    classes = SemanticClasses.from_keys(answers, [answer.lower() or None for answer in answers])
    return QuestionRecord(classes, tuple(grade == "CORRECT" for grade in grades), "llm", grades)


def fixed_record(confidence: float, correct: bool, samples: int = 20) -> QuestionRecord:
    """A record of `samples` answers whose plurality class holds `confidence` of them and is `correct`.

    The plurality class "a" comes first; each other sample is an answer of its own (wrong).
    """
    size = round(confidence * samples)
    answers = ["a"] * size + [f"b{i}" for i in range(samples - size)]
    classes = SemanticClasses.from_keys(answers, answers)
    return QuestionRecord(classes, tuple(bool(correct) and r == "a" for r in classes.representatives), "exact")


# Rome x2, Italy, Milan: one sample of four in a class graded NOT_ATTEMPTED.
ROME = (["Rome", "Italy", "rome", "Milan"], ("CORRECT", "NOT_ATTEMPTED", "INCORRECT"))
# Oslo x2, Norway, no answer: three of four.
OSLO = (["Oslo", "oslo", "Norway", ""], ("NOT_ATTEMPTED", "NOT_ATTEMPTED", None))


def test_a_graded_record_keeps_its_grades_and_round_trips():
    record = graded_record(*ROME)
    assert record.not_attempted_share == 1 / 4
    assert graded_record(*OSLO).not_attempted_share == 3 / 4
    text = record.to_json()
    assert text == (
        '{"answers": ["Rome", "Italy", "rome", "Milan"], "class_ids": [0, 1, 0, 2], '
        '"representatives": ["Rome", "Italy", "Milan"], "no_answer_class": null, "counts": [2, 1, 1], '
        '"class_correct": [true, false, false], "class_grades": ["CORRECT", "NOT_ATTEMPTED", "INCORRECT"], '
        '"plurality_class": 0, "confidence": 0.5, "correct": true, "entropy": 1.0397207708399179, '
        '"no_answer_share": 0.0, "not_attempted_share": 0.25, "n_classes": 3, "grouping": "llm"}'
    )
    assert QuestionRecord.read(text) == record == QuestionRecord.read(json.loads(text))
    stored = json.loads(text)
    with pytest.raises(DamagedRecord, match="stores not_attempted_share=0.5 but its classes give 0.25"):
        QuestionRecord.read(stored | {"not_attempted_share": 0.5})
    with pytest.raises(DamagedRecord, match="stores no not_attempted_share but its classes give 0.25"):
        QuestionRecord.read({key: value for key, value in stored.items() if key != "not_attempted_share"})
    ungraded = {key: value for key, value in stored.items() if key != "class_grades"}
    with pytest.raises(DamagedRecord, match=r"not_attempted_share=0.25 but its classes give none \(it has no class_grades"):
        QuestionRecord.read(ungraded)
    with pytest.raises(DamagedRecord, match="class 1 is graded CORRECT but its verdict says correct=False"):
        QuestionRecord.read(stored | {"class_grades": ["CORRECT", "CORRECT", "INCORRECT"]})


@pytest.mark.parametrize(
    ("grades", "message"),
    [
        (("CORRECT", "NOT_ATTEMPTED"), r"is not one grade for each of 3 classes"),
        (("CORRECT", "WRONG", "INCORRECT"), "class 1 has grade 'WRONG'; a grade is one of CORRECT, INCORRECT, NOT_ATTEMPTED"),
        (("INCORRECT", "NOT_ATTEMPTED", "INCORRECT"), r"class 0 is graded INCORRECT but its verdict says correct=True"),
    ],
)
def test_grades_that_contradict_the_classes_or_the_verdicts_are_refused(grades, message):
    classes = SemanticClasses.from_keys(ROME[0], ["rome", "italy", "rome", "milan"])
    with pytest.raises(ValueError, match=message):
        QuestionRecord(classes, (True, False, False), "llm", grades)


# ---------------------------------------------------------------------------- metrics


def test_corpus_metrics_by_hand_and_against_lm_eval():
    b = get_grouping("normalize")
    records = score_questions(
        [
            Question("Q1", ["Paris", "paris", "Lyon", "Paris"], ["Paris"]),  # 0.75, right
            Question("Q2", ["Rome", "Milan", "Milan", ""], ["Rome"]),  # 0.5, wrong
            Question("Q3", ["Oslo"] * 4, ["Oslo"]),  # 1.0, right
        ],
        b,
    )
    got = corpus_metrics(records, bootstrap_iters=0)
    conf, correct = [0.75, 0.5, 1.0], [1.0, 0.0, 1.0]
    assert got.n == 3
    assert got.values["acc"] == 2 / 3
    assert got.values["conf"] == lm_eval_mean(conf) == sum(conf) / 3
    # bins 7, 5, 9: |0.75 - 1| + |0.5 - 0| + |1 - 1|, each a third
    assert got.values["ece"] == pytest.approx((0.25 + 0.5 + 0.0) / 3, abs=1e-15)
    assert got.values["brier"] == pytest.approx((0.25**2 + 0.5**2 + 0.0) / 3, abs=1e-15)
    # Two right, one wrong, the wrong one below both: every pair ordered.
    assert got.values["auroc"] == 1.0
    assert got.values["no_answer"] == pytest.approx(0.25 / 3)
    assert got.values["n_classes"] == pytest.approx((2 + 3 + 1) / 3)
    assert list(got.values) == [
        "acc", "conf", "ece", "debiased_l2_ce", "smece", "brier", "brier_miscalibration", "brier_discrimination",
        "brier_uncertainty", "auroc", "aurc", "acc_at_50_coverage", "acc_at_80_coverage", "sem_entropy",
        "n_classes", "no_answer",
    ]  # fmt: skip
    # Accuracy rises with confidence (wrong at 0.5, right at 0.75 and 1.0): the isotonic
    # recalibration is (0, 1, 1), whose Brier score is 0, so all of brier is
    # miscalibration and all of the uncertainty acc (1 - acc) = 2/9 is discriminated.
    assert got.values["brier_miscalibration"] == pytest.approx(got.values["brier"], abs=1e-15)
    assert got.values["brier_discrimination"] == pytest.approx(2 / 9, abs=1e-15)
    assert got.values["brier_uncertainty"] == pytest.approx(2 / 9, abs=1e-15)
    # Most confident first: right, right, wrong; risk 0, 0, 1/3 at coverage 1/3, 2/3, 1.
    assert got.values["aurc"] == pytest.approx(1 / 9, abs=1e-15)
    # 1.5 questions answered: both of them right; 2.4: 2 right of the top 2, 0.4 of a wrong one.
    assert got.values["acc_at_50_coverage"] == 1.0
    assert got.values["acc_at_80_coverage"] == pytest.approx(2 / 2.4, abs=1e-15)
    assert got.stderrs["acc"] == lm_eval_mean_stderr(correct) == pytest.approx(statistics.stdev(correct) / math.sqrt(3))
    assert all(math.isnan(low) and math.isnan(high) for low, high in got.intervals.values())
    assert list(got.intervals) == ["ece", "debiased_l2_ce", "smece", "brier", "auroc", "aurc"]
    assert list(got.test) == ["smece_p_value", "smece_noise_floor", "smece_noise_p95", "smece_detectable_overconfidence"]
    assert all(math.isnan(value) for value in got.test.values()) and got.verdict == "not tested (0 resamples)"
    resampled = corpus_metrics(records, bootstrap_iters=200)
    low, high = resampled.intervals["brier"]
    assert 0.0 <= low <= got.values["brier"] <= high <= 0.25
    assert resampled.intervals["aurc"] == bootstrap_ci(aurc, conf, correct, iters=200, seed=0)


def test_corpus_metrics_tests_smece_against_calibrated_runs_with_the_bootstraps_draws_and_seed():
    # 300 questions on a k/10 grid, right 0.15 less often than they say: miscalibrated.
    rng = np.random.default_rng(5)
    conf = rng.integers(3, 11, size=300) / 10
    correct = rng.random(300) < conf - 0.15
    records = [fixed_record(c, r) for c, r in zip(conf, correct)]
    got = corpus_metrics(records, bootstrap_iters=200, seed=3)
    test = calibration_test(conf, correct, metric="smece", iters=200, seed=3)
    detectable = detectable_overconfidence(conf, metric="smece", power=0.8, alpha=0.05, iters=200, seed=3)
    assert got.test == {
        "smece_p_value": test.p_value, "smece_noise_floor": test.median, "smece_noise_p95": test.null_high,
        "smece_detectable_overconfidence": detectable.overconfidence,
    }  # fmt: skip
    assert test.observed == got.values["smece"]
    # No calibrated draw of 200 reaches an smECE of about 0.15: the least p-value, 1/201.
    assert test.p_value == 1 / 201 and got.verdict == "miscalibrated, p = 0.005"
    assert 0 < test.median < test.null_high < got.values["smece"]
    # The verdicts drawn as Bernoulli(confidence) instead: within noise.
    calibrated = rng.random(300) < conf
    again = corpus_metrics([fixed_record(c, r) for c, r in zip(conf, calibrated)], bootstrap_iters=200, seed=3)
    p_value = calibration_test(conf, calibrated, iters=200, seed=3).p_value
    assert p_value > 0.05 and again.verdict == f"within noise of calibrated (p = {p_value:.2f})"
    # Fewer than 19 draws cannot reach p = 0.05: the test is quoted, no detectable shift.
    few = corpus_metrics(records, bootstrap_iters=10, seed=3)
    assert few.test["smece_p_value"] == 1 / 11 and math.isnan(few.test["smece_detectable_overconfidence"])


def test_the_brier_parts_follow_the_isotonic_regression_of_sklearn():
    sklearn_isotonic = pytest.importorskip("sklearn.isotonic")
    rng = np.random.default_rng(11)
    conf = rng.integers(2, 21, size=500) / 20
    correct = rng.random(500) < conf**2
    got = corpus_metrics([fixed_record(c, r) for c, r in zip(conf, correct)], bootstrap_iters=0).values
    recalibrated = sklearn_isotonic.IsotonicRegression(y_min=0, y_max=1).fit_transform(conf, correct)
    brier, recalibrated_brier = np.mean((conf - correct) ** 2), np.mean((recalibrated - correct) ** 2)
    uncertainty = correct.mean() * (1 - correct.mean())
    assert got["brier_miscalibration"] == pytest.approx(brier - recalibrated_brier, abs=1e-12)
    assert got["brier_discrimination"] == pytest.approx(uncertainty - recalibrated_brier, abs=1e-12)
    assert got["brier_uncertainty"] == pytest.approx(uncertainty, abs=1e-12)
    # The most confident share of the questions, the tie group at the boundary at its mean accuracy.
    assert got["acc_at_50_coverage"] == pytest.approx(expected_selective_accuracy(conf, correct, 0.5), abs=1e-12)
    assert got["acc_at_80_coverage"] == pytest.approx(expected_selective_accuracy(conf, correct, 0.8), abs=1e-12)
    assert got["acc_at_50_coverage"] > got["acc_at_80_coverage"] > correct.mean()


def expected_selective_accuracy(conf, correct, coverage):
    """Accuracy of the top `coverage` share, the boundary tie group counted at its mean accuracy."""
    answered = coverage * len(conf)
    right = 0.0
    taken = 0.0
    for level in sorted(set(conf), reverse=True):
        at_level = correct[conf == level]
        take = min(len(at_level), answered - taken)
        right += take * at_level.mean()
        taken += take
        if taken >= answered:
            break
    return right / answered


def test_not_attempted_is_reported_only_when_every_question_was_graded():
    graded = corpus_metrics([graded_record(*ROME), graded_record(*OSLO)], bootstrap_iters=0)
    assert graded.values["not_attempted"] == (1 / 4 + 3 / 4) / 2
    # Sample standard deviation of (0.25, 0.75) is sqrt(0.125); over sqrt(2): 0.25.
    assert graded.stderrs["not_attempted"] == pytest.approx(0.25)
    assert list(graded.values)[-2:] == ["no_answer", "not_attempted"]
    assert graded.values["acc"] == 1 / 2 and graded.values["no_answer"] == (0 + 1 / 4) / 2
    plain = score_question("Q", ["Rome", "Italy", "rome", "Milan"], ["Rome"], get_grouping("normalize"))
    for records in ([plain], [graded_record(*ROME), plain]):
        metrics = corpus_metrics(records, bootstrap_iters=0)
        assert "not_attempted" not in metrics.values and "not_attempted" not in metrics.stderrs
        assert len(metrics.values) == 16  # every metric of docs/metrics.md but not_attempted


def test_one_question_has_no_standard_error_and_no_questions_is_an_error():
    (record,) = score_questions([Question("Q", ["a", "a"], ["a"])], get_grouping("exact"))
    assert math.isnan(corpus_metrics([record], bootstrap_iters=0).stderrs["acc"])
    with pytest.raises(ValueError, match="no questions to score"):
        corpus_metrics([], bootstrap_iters=0)


# ---------------------------------------------------------------------------- classes


def test_one_tie_rule():
    assert plurality([0, 1, 1, 0, 2]) == (0, 0.4)  # a tie goes to the class seen first
    assert plurality([2, 1, 1]) == (1, 2 / 3)
    assert plurality([3]) == (3, 1.0)
    with pytest.raises(ValueError, match="at least one class id"):
        plurality([])
    classes = SemanticClasses.from_keys(list("abba"), list("abba"))
    assert (classes.plurality_class, classes.plurality_share) == plurality(classes.class_ids) == (0, 0.5)


def test_first_appearance_grouping_with_a_similarity_that_is_not_transitive():
    # Numbers join a class when within 1 of its representative: 1~2 and 2~3, but not 1~3.
    from lm_eval_semcal.core.scoring import GroupingRequest

    rounds: list[int] = []

    def join(pending: Sequence[tuple[int, str, Sequence[str]]]) -> list[int | None]:
        rounds.append(len(pending))
        return [
            next((k for k, rep in enumerate(reps) if abs(int(text) - int(rep)) <= 1), None)
            for _, text, reps in pending
        ]

    requests = [GroupingRequest("Q1", ["1", "2", "3", "1", None]), GroupingRequest("Q2", ["7"])]
    first, second = group_by_first_appearance(requests, [r.answers for r in requests], join)
    # "2" joins "1"; "3" is compared with the representative "1" only, and opens a class.
    assert first.class_ids == (0, 0, 1, 0, 2) and first.no_answer_class == 2
    assert first.representatives == ("1", "3", None)
    assert second.class_ids == (0,)
    assert rounds == [2, 1, 1]  # each round moves every question one distinct answer on


# ---------------------------------------------------------------------------- the registry


def test_the_registry_lists_the_users_b_and_loads_them_on_first_use():
    assert available_groupings() == ["embedding", "exact", "llm", "nli", "normalize", "numeric"]
    out = run_python("""
        import sys
        from lm_eval_semcal.grouping import get_grouping
        get_grouping("normalize")
        print(sorted(m for m in sys.modules if m.startswith("lm_eval_semcal.grouping.")))
    """)
    assert eval(out) == [  # noqa: S307 - our own subprocess's printed list
        "lm_eval_semcal.grouping.base", "lm_eval_semcal.grouping.registry", "lm_eval_semcal.grouping.strings",
    ]


def test_a_b_can_be_named_by_its_path():
    entity = get_grouping("lm_eval_semcal.demo.entity:ENTITY")
    assert entity.name == "synthetic_entity"
    check_grouping("lm_eval_semcal.grouping.strings:make_exact")
    with pytest.raises(ValueError, match="'lm_eval_semcal.demo.entity:NOPE' cannot be loaded"):
        check_grouping("lm_eval_semcal.demo.entity:NOPE")
    with pytest.raises(ValueError, match="unknown grouping 'normalise'; choose one of embedding, exact"):
        check_grouping("normalise")


# ---------------------------------------------------------------------------- the verdicts of issue 24

# The package exports these from core.calibration, their public path.
VERDICT_NAMES = [
    "BrierDecomposition", "CalibrationTest", "DetectableOverconfidence", "QuestionsNeeded", "aurc",
    "brier_decomposition", "calibration_test", "detectable_overconfidence", "questions_needed",
    "risk_coverage_curve", "selective_accuracy",
]  # fmt: skip


def test_the_verdicts_are_exported_from_their_public_path():
    from lm_eval_semcal.core import calibration

    for name in VERDICT_NAMES:
        assert name in lm_eval_semcal.__all__ and name in calibration.__all__, name
        assert getattr(lm_eval_semcal, name) is getattr(calibration, name), name
