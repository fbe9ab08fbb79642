"""Per-question classes, the groupings and the filter, without a model."""

from __future__ import annotations

import math

import pytest
from conftest import filter_records
from hypothesis import given, settings
from hypothesis import strategies as st

from lm_eval_semcal.grouping import (
    GoldRequest,
    GroupingRequest,
    available_groupings,
    get_grouping,
    register_grouping,
)
from lm_eval_semcal.core.extraction import extract_answer
from lm_eval_semcal.core.scoring import gold_in_sentence, score_question
from lm_eval_semcal.harness.filter import SemanticClassesFilter
from lm_eval_semcal.core.records import QuestionRecord
from lm_eval_semcal.core.semantic_classes import SemanticClasses


def test_classes_numbered_by_first_appearance_with_no_answer_reserved():
    grouping = SemanticClasses.from_keys(["b", None, "a", "b", None, None], ["b", None, "a", "b", None, None])
    assert grouping.class_ids == (0, 1, 2, 0, 1, 1)
    assert grouping.representatives == ("b", None, "a")
    assert grouping.no_answer_class == 1
    assert grouping.counts == (2, 3, 1)
    # No-answer holds the plurality: confidence 3/6, and its representative is None.
    assert grouping.plurality_class == 1
    assert grouping.plurality_is_no_answer
    assert grouping.plurality_share == 0.5
    assert grouping.no_answer_share == 0.5
    assert grouping.n_classes == 3
    assert grouping.entropy == pytest.approx(-(2 / 6 * math.log(2 / 6) + 3 / 6 * math.log(3 / 6) + 1 / 6 * math.log(1 / 6)))


def test_plurality_tie_goes_to_the_class_seen_first():
    grouping = SemanticClasses.from_keys(["x", "y", "y", "x", "z"], ["x", "y", "y", "x", "z"])
    assert grouping.counts == (2, 2, 1)
    assert grouping.plurality_class == 0 and grouping.plurality_answer == "x"
    assert grouping.plurality_share == pytest.approx(0.4)


def test_round_trip_and_validation():
    grouping = SemanticClasses.from_keys(["a", "A", None], ["a", "a", None])
    assert SemanticClasses.from_dict(grouping.to_dict()) == grouping
    with pytest.raises(ValueError, match="must be exactly 0..1"):
        SemanticClasses(answers=("a", "b"), class_ids=(0, 2), representatives=("a", "b"))
    with pytest.raises(ValueError, match="at least one sample"):
        SemanticClasses(answers=(), class_ids=(), representatives=())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.sampled_from(["a", "b", "c", "d"])), min_size=1, max_size=30))
def test_properties_of_any_grouping(answers):
    grouping = SemanticClasses.from_keys(answers, answers)
    assert sum(grouping.counts) == len(answers)
    assert 1 / len(answers) <= grouping.plurality_share <= 1
    assert grouping.counts[grouping.plurality_class] == max(grouping.counts)
    assert 0 <= grouping.entropy <= math.log(len(answers)) + 1e-12
    first_seen = [grouping.class_ids.index(k) for k in range(grouping.n_classes)]
    assert first_seen == sorted(first_seen)


@pytest.mark.parametrize(
    ("grouping", "answers", "class_ids"),
    [
        ("exact", ["Paris", "paris", "Paris", ""], [0, 1, 0, 2]),
        ("normalize", ["Paris", "paris.", "The Paris", "Lyon", "!!"], [0, 0, 0, 1, 2]),
        ("numeric", ["18", "$18.00", "18 dollars", "1,800", "eighteen"], [0, 0, 0, 1, 2]),
    ],
)
def test_builtin_groupings(grouping, answers, class_ids):
    [classes] = get_grouping(grouping).group([GroupingRequest("q", answers)])
    assert list(classes.class_ids) == class_ids


def test_unanswerable_keys_fall_in_no_answer():
    # An empty exact string, punctuation only under normalize, no digits under numeric.
    for grouping, answer in (("exact", ""), ("normalize", "?!"), ("numeric", "eighteen")):
        [classes] = get_grouping(grouping).group([GroupingRequest("q", [answer, "7"])])
        assert classes.no_answer_class == 0, grouping


def test_gold_matching_goes_through_the_same_function():
    normalize, numeric = get_grouping("normalize"), get_grouping("numeric")
    assert normalize.matches_gold(
        [GoldRequest("q", "the Eiffel Tower!", ["Eiffel Tower"]), GoldRequest("q", "Paris", ["Lyon", "Lille"])]
    ) == [True, False]
    assert numeric.matches_gold([GoldRequest("q", "$1,234.0", ["1234"]), GoldRequest("q", "3/4", ["0.75"])]) == [True, True]


def test_the_issue_cases_land_in_the_answer_s_class_under_normalize():
    normalize = get_grouping("normalize")
    responses = [
        "Shaquille O'Neal", "Shaquille O\u00b4Neal", "Shaquille O\u2019Neal", "Shaq O'Neal",
        "Rolls-Royce", "Rolls Royce", "Pa\u200bris", "\u202eParis\u202c", "Paris", "\ufeff", "\x00",
    ]
    [grouping] = normalize.group([GroupingRequest("q", [extract_answer(r, "concise") for r in responses])])
    assert list(grouping.class_ids) == [0, 0, 0, 1, 2, 2, 3, 3, 3, 4, 4]
    assert grouping.no_answer_class == 4
    assert grouping.counts == (3, 1, 2, 3, 2)


def test_a_gold_made_only_of_articles_can_be_matched():
    # The The (the band): dropping the articles would leave nothing, so they stay.
    record = score_question("Who recorded Soul Mining?", ["The The", "the the.", "The", "Depeche Mode"],
                            ["The The"], get_grouping("normalize"))
    assert record.classes.class_ids == (0, 0, 1, 2)
    assert record.class_correct == (True, False, False)
    assert record.correct and record.confidence == 0.5
    assert get_grouping("normalize").matches_gold([GoldRequest("q", "THE THE", ["The The"])]) == [True]


def test_registry_errors_are_clear():
    assert {"exact", "normalize", "numeric"} <= set(available_groupings())
    with pytest.raises(ValueError, match="unknown grouping 'nlii'; choose one of"):
        get_grouping("nlii")
    with pytest.raises(ValueError, match="grouping 'exact': bad options"):
        get_grouping("exact", threshold=0.5)
    with pytest.raises(ValueError, match="already registered"):
        register_grouping("exact")(lambda: None)


@pytest.mark.parametrize(
    ("sentence", "golds", "expected"),
    [
        ("The capital of France is Paris.", ["Paris"], True),
        ("It is Lisbonne.", ["Lisbon"], False),
        ("The answer is the Eiffel Tower", ["Eiffel Tower"], True),
        ("", ["Paris"], False),
        ("Paris", ["", "..."], False),
        # A gold of articles only is sought with the sentence's articles kept.
        ("The band is The The.", ["The The"], True),
        ("The band is Depeche Mode.", ["The The"], False),
        ("Soul Mining is by The The", ["the the"], True),
    ],
)
def test_gold_in_sentence(sentence, golds, expected):
    assert gold_in_sentence(sentence, golds) is expected


@pytest.mark.harness  # the filter as lm-eval calls it
def test_filter_emits_one_json_record_per_question():
    docs = [
        {"semcal_question": "Capital of France?", "semcal_golds": ["Paris"]},
        {"semcal_question": "Capital of Italy?", "semcal_golds": ["Rome"]},
    ]
    resps = [[" Paris", "Lyon\nQ: next", " paris"], ["", "Milan", "  "]]
    records = filter_records(SemanticClassesFilter(style="concise", grouping="normalize"), resps, docs)
    first, second = (QuestionRecord.read(str(record)).to_dict() for record in records)
    assert first["answers"] == ["Paris", "Lyon", "paris"]
    assert first["class_ids"] == [0, 1, 0] and first["correct"] is True
    assert first["confidence"] == pytest.approx(2 / 3)
    assert second["representatives"] == [None, "Milan"] and second["correct"] is False
    assert second["no_answer_share"] == pytest.approx(2 / 3)


@pytest.mark.harness  # the filter as lm-eval calls it
def test_filter_rejects_bad_settings():
    with pytest.raises(ValueError, match="style='short'; choose one of concise, sentence, cot"):
        SemanticClassesFilter(style="short")
    with pytest.raises(ValueError, match="gold_match='substring'"):
        SemanticClassesFilter(gold_match="substring")


@pytest.mark.harness  # the filter as lm-eval calls it
def test_filter_refuses_a_single_string_per_question():
    # A string would otherwise be grouped character by character.
    docs = [{"semcal_question": "Largest planet?", "semcal_golds": ["Jupiter"]}]
    with pytest.raises(TypeError, match="needs each question's M responses as a list, got str"):
        SemanticClassesFilter().apply(["Jupiter"], docs)


@pytest.mark.harness  # the filter as lm-eval calls it
@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from([" Paris", "paris.", "Lyon", "", "  \n", "The Paris", "日本", "x" * 300]), min_size=2, max_size=12),
        min_size=1,
        max_size=5,
    )
)
def test_filter_records_are_consistent_for_any_responses(resps):
    docs = [{"semcal_question": f"q{i}", "semcal_golds": ["Paris"]} for i in range(len(resps))]
    records = [r.to_dict() for r in filter_records(SemanticClassesFilter(style="concise", grouping="normalize"), resps, docs)]
    assert len(records) == len(resps)
    for record, doc_resps in zip(records, resps):
        m = len(doc_resps)
        assert sum(record["counts"]) == m == len(record["class_ids"])
        assert record["confidence"] == max(record["counts"]) / m
        k = record["plurality_class"]
        assert record["counts"][k] == max(record["counts"])
        assert record["class_ids"].index(k) == min(
            record["class_ids"].index(c) for c, n in enumerate(record["counts"]) if n == max(record["counts"])
        )
        # Exactly the "paris" class is right; no-answer never is.
        assert record["correct"] == (record["representatives"][k] is not None and record["representatives"][k].lower().strip(". ").removeprefix("the ") == "paris")
        blanks = sum(1 for r in doc_resps if not r.strip())
        assert record["no_answer_share"] == blanks / m
