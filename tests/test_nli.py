"""B = `nli`: the clustering rule with a scripted judge, the model plumbing on a tiny random model.

The scripted judge answers from a table, including a non-transitive chain ("paris" ~
"paris france" ~ "city of light", but "paris" !~ "city of light"), one-way entailment
(strict and lenient differ) and a contradiction; the pair counts, rounds and cache hits
below are worked out by hand.
"""

from __future__ import annotations

import pytest
import torch
from conftest import filter_records

from lm_eval_semcal.grouping import GoldRequest, GroupingRequest, check_grouping, get_grouping
from lm_eval_semcal.grouping.judgement_cache import JudgementCache
from lm_eval_semcal.harness.filter import SemanticClassesFilter
from lm_eval_semcal.grouping.nli import NliGrouping, hf_judge
from lm_eval_semcal.demo.tiny_model import build_tiny_model

BOTH_WAYS = {("paris", "paris france"), ("paris france", "city of light"), ("rome", "roma")}
ONE_WAY = {("paris france", "france")}  # the first entails the second, not back
CONTRADICTIONS = {("paris", "lyon")}


class ScriptedJudge:
    """Labels from the tables above; records every call."""

    def __init__(self):
        self.calls: list[int] = []

    def __call__(self, pairs):
        self.calls.append(len(pairs))
        labels = []
        for _, a, b in pairs:
            if (a, b) in BOTH_WAYS or (b, a) in BOTH_WAYS or (a, b) in ONE_WAY or a == b:
                labels.append("entailment")
            elif (a, b) in CONTRADICTIONS or (b, a) in CONTRADICTIONS:
                labels.append("contradiction")
            else:
                labels.append("neutral")
        return labels


def scripted_nli(mode="strict", cache_path=None):
    judge = ScriptedJudge()
    return NliGrouping(judge, mode, JudgementCache(cache_path, "scripted")), judge


def ids(b, answers, question="Q?"):
    (grouping,) = b.group([GroupingRequest(question, answers)])
    return list(grouping.class_ids)


def test_first_appearance_settles_a_non_transitive_chain():
    b, _ = scripted_nli()
    # "city of light" meets only the class representative "paris": not equivalent.
    assert ids(b, ["Paris", "Paris, France", "City of Light", None, "paris."]) == [0, 0, 1, 2, 0]
    b, _ = scripted_nli()
    assert ids(b, ["City of Light", "Paris, France", "Paris"]) == [0, 0, 1]


def test_strict_needs_both_directions_lenient_only_no_contradiction():
    strict, _ = scripted_nli("strict")
    lenient, _ = scripted_nli("lenient")
    assert ids(strict, ["Paris, France", "France"]) == [0, 1]
    assert ids(lenient, ["Paris, France", "France"]) == [0, 0]
    assert ids(lenient, ["Paris", "Lyon"]) == [0, 1]  # a contradiction separates in both modes
    assert ids(lenient, ["Paris", "Berlin"]) == [0, 0]  # neutral both ways: lenient merges


def test_pairs_and_rounds_are_counted_by_hand():
    b, judge = scripted_nli()
    # 50 samples, 4 distinct answers: "paris" alone; "paris france" vs paris (2 pairs,
    # joins); "rome" vs paris (2, new class); "roma" vs paris and rome (4, joins rome).
    answers = (["Paris"] * 20 + ["Paris, France"] * 10 + ["Rome"] * 10 + ["Roma"] * 10)[:50]
    requests = [GroupingRequest(f"Q{i}?", answers) for i in range(3)]
    grouped = b.group(requests)
    assert all(list(g.counts) == [30, 20] for g in grouped)
    assert b.pairs_judged == 3 * (2 + 2 + 4)  # against 50 * 49 = 2450 pairs per question naively
    assert judge.calls == [6, 6, 12]  # one call per round, all three questions together


def test_a_rerun_and_a_new_process_call_the_model_zero_times(tmp_path):
    requests = [GroupingRequest("Q?", ["Paris", "Paris, France", "Rome", "Roma"])]
    first, judge = scripted_nli(cache_path=tmp_path / "nli.sqlite")
    expected = first.group(requests)
    assert judge.calls
    judge.calls.clear()
    assert first.group(requests) == expected and judge.calls == []
    again, fresh_judge = scripted_nli(cache_path=tmp_path / "nli.sqlite")  # a later run, same file
    assert again.group(requests) == expected and fresh_judge.calls == []


def test_gold_goes_through_the_same_relation():
    b, _ = scripted_nli()
    verdicts = b.matches_gold(
        [
            GoldRequest("Q?", "Paris", ["Paris, France"]),
            GoldRequest("Q?", "Paris", ["City of Light"]),  # not equivalent to the representative
            GoldRequest("Q?", "Roma", ["Lisbon", "Rome"]),
            GoldRequest("Q?", "", ["Rome"]),
        ]
    )
    assert verdicts == [True, False, True, False]


@pytest.mark.parametrize(
    ("options", "message"),
    [({"mode": "loose"}, "mode='loose'; choose one of strict, lenient"), ({"batch_size": 0}, "batch_size=0")],
)
def test_bad_options_fail_before_any_model_loads(options, message):
    with pytest.raises(ValueError, match=message):
        check_grouping("nli", **options)


@pytest.fixture(scope="module")
def tiny_nli_model(tmp_path_factory):
    """A random 3-label sequence classifier with NLI label names, saved offline."""
    from transformers import AutoTokenizer, GPT2Config, GPT2ForSequenceClassification

    directory = tmp_path_factory.mktemp("tiny-nli")
    build_tiny_model(directory / "lm")
    tokenizer = AutoTokenizer.from_pretrained(directory / "lm")
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2, num_labels=3,
        id2label={0: "CONTRADICTION", 1: "NEUTRAL", 2: "ENTAILMENT"},
        label2id={"CONTRADICTION": 0, "NEUTRAL": 1, "ENTAILMENT": 2},
        pad_token_id=tokenizer.pad_token_id, initializer_range=1.0,
    )
    GPT2ForSequenceClassification(config).save_pretrained(directory / "nli")
    tokenizer.save_pretrained(directory / "nli")
    return directory / "nli"


def test_the_hf_judge_reads_the_models_labels(tiny_nli_model):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    pairs = [("Who?", "Paris", "Lyon"), ("Who?", "Lyon", "Paris"), ("When?", "1945", "in 1945")]
    judged = hf_judge(str(tiny_nli_model), "cpu", batch_size=2)(pairs)
    tokenizer = AutoTokenizer.from_pretrained(tiny_nli_model)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_nli_model).eval()
    expected = []
    for q, a, b in pairs:  # one pair at a time, no padding: batching must not change labels
        inputs = tokenizer(f"Q: {q} A: {a}", f"Q: {q} A: {b}", return_tensors="pt")
        with torch.no_grad():
            expected.append(["contradiction", "neutral", "entailment"][model(**inputs).logits.argmax(-1).item()])
    assert judged == expected


@pytest.mark.harness  # the filter as lm-eval calls it
def test_the_filter_runs_nli_from_task_options(tiny_nli_model, tmp_path):
    options = {"model": str(tiny_nli_model), "device": "cpu", "cache": str(tmp_path / "c.sqlite")}
    semcal_filter = SemanticClassesFilter(grouping="nli", grouping_args=options)
    doc = {"semcal_question": "Capital of France?", "semcal_golds": ["Paris"]}
    (record,) = filter_records(semcal_filter, [["Paris", "Lyon", "Paris", "Marseille"]], [doc])
    assert len(record.classes.class_ids) == 4 and record.grouping == "nli"
    assert record.classes.class_ids[0] == record.classes.class_ids[2] == 0


def test_a_model_without_nli_labels_is_refused(tmp_path):
    from transformers import AutoTokenizer, GPT2Config, GPT2ForSequenceClassification

    build_tiny_model(tmp_path / "lm")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "lm")
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=16, n_layer=1, n_head=2, num_labels=2,
                        id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1},
                        pad_token_id=tokenizer.pad_token_id)
    GPT2ForSequenceClassification(config).save_pretrained(tmp_path / "sentiment")
    tokenizer.save_pretrained(tmp_path / "sentiment")
    with pytest.raises(ValueError, match="an NLI model with"):
        get_grouping("nli", model=str(tmp_path / "sentiment"), cache=None)


def test_the_cache_tells_two_models_in_the_same_folder_name_apart(tmp_path, monkeypatch):
    # Two different models both reached as "nli" (relative path) must not share judgements.
    from lm_eval_semcal.grouping.judgement_cache import model_fingerprint

    for seed, folder in ((0, "a"), (1, "b")):
        from transformers import AutoTokenizer, GPT2Config, GPT2ForSequenceClassification

        build_tiny_model(tmp_path / folder / "lm")
        tokenizer = AutoTokenizer.from_pretrained(tmp_path / folder / "lm")
        torch.manual_seed(seed)
        config = GPT2Config(vocab_size=len(tokenizer), n_embd=16, n_layer=1, n_head=2, num_labels=3,
                            id2label={0: "CONTRADICTION", 1: "NEUTRAL", 2: "ENTAILMENT"},
                            label2id={"CONTRADICTION": 0, "NEUTRAL": 1, "ENTAILMENT": 2},
                            pad_token_id=tokenizer.pad_token_id)
        GPT2ForSequenceClassification(config).save_pretrained(tmp_path / folder / "nli")
        tokenizer.save_pretrained(tmp_path / folder / "nli")
    keys = []
    for folder in ("a", "b"):
        monkeypatch.chdir(tmp_path / folder)
        keys.append(model_fingerprint("nli"))
    assert keys[0] != keys[1]
    assert keys[0] == model_fingerprint(str(tmp_path / "a" / "nli"))  # same folder, same key however named


def test_an_alias_equal_to_the_representative_needs_no_model():
    b, judge = scripted_nli()
    assert b.matches_gold([GoldRequest("Q?", "Lisbon.", ["lisbon"])]) == [True]
    assert judge.calls == []
