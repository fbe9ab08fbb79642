"""B = `llm`: a reader model's short answers, grouped by a string B; the SimpleQA-style judge.

The grouping logic runs with a scripted reader whose replies are known; the OpenAI-compatible
client against a fake chat server on 127.0.0.1 (payload, key, concurrency, a 500, a
timeout, malformed replies, a refused or missing key); the local HF client on a tiny random
model (batching must not change a greedy reply); and a semcal task YAML with `grouping:
llm`, through lm-eval and through `semcal rescore`, with every metric worked out by hand.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time

import pytest
from conftest import filter_records, save_scripted_run
from fake_server import DROPPED, FakeServer, Reply

from lm_eval_semcal import cli
from lm_eval_semcal.grouping import GoldRequest, GroupingRequest, check_grouping, get_grouping
from lm_eval_semcal.grouping.judgement_cache import JudgementCache
from lm_eval_semcal.harness.filter import SemanticClassesFilter
from lm_eval_semcal.grouping.llm import (
    LlmGrouping,
    extraction_prompt,
    grading_prompt,
    parse_extraction,
    parse_grade,
)
from lm_eval_semcal.grouping import llm_clients
from lm_eval_semcal.grouping.llm_clients import HFChatClient, LlmServerError, OpenAIChatClient
from lm_eval_semcal.runs.saved import load_run
from lm_eval_semcal.tasks import TASKS_DIR
from lm_eval_semcal.demo.tiny_model import build_tiny_model

CHAT_PATH = "/v1/chat/completions"
KEY_ENV = "SEMCAL_TEST_LLM_KEY"
SECRET = "sk-test-0123456789-secret"

# What the scripted reader answers for each response (anything else: NO_ANSWER).
READS = {
    "The capital of France is Paris.": "Paris",
    "It is Paris.": "paris.",
    "Paris, of course.": "Short answer: Paris",
    "Rome was the capital.": "Rome",
    "The capital was Milan.": "Milan",
    "Milan.": "Milan",
    "It was Rome.": "Rome",
    "The Brandenburg Gate is in Berlin.": "Berlin",
    "Madrid is the capital.": "Madrid",
    "The capital of Portugal is Madrid.": "Madrid",
    "Lisbon.": "Lisbon",
    "It is Madrid.": "Madrid",
    "6 boxes at $3 each make $18 in all.": "$18",
    "She earns 18.00 dollars.": "18.00",
    "That is 20 dollars.": "20",
    "It is the City of Rome.": "City of Rome",
}

RESPONSE_RE = re.compile(r"\nResponse: (.*)\nShort final answer:$", re.DOTALL)
PREDICTED_RE = re.compile(r"\nGold target: (.*?)\n(?:Also accepted: (.*)\n)?Predicted answer: (.*)\nGrade", re.DOTALL)


def scripted_reply(prompt: str) -> str:
    """The reader's reply to an extraction prompt; a grade (A or B by alias match) to a grading one."""
    if match := RESPONSE_RE.search(prompt):
        return READS.get(match.group(1), "NO_ANSWER")
    if not (match := PREDICTED_RE.search(prompt)):
        return "NO_ANSWER"
    gold, others, predicted = match.groups()
    aliases = [gold] + (others.split("; ") if others else [])
    if predicted == "gibberish":
        return "I would rather not say"
    return "A" if any(alias.lower() in predicted.lower() for alias in aliases) else "B: wrong city"


class ScriptedClient:
    """A ChatClient answering from `scripted_reply`; records every prompt it is sent."""

    fingerprint = "scripted-reader"

    def __init__(self, fail_after: int | None = None):
        self.prompts: list[str] = []
        self.fail_after = fail_after

    def complete(self, prompts):
        for index, prompt in enumerate(prompts):
            if self.fail_after is not None and len(self.prompts) >= self.fail_after:
                raise RuntimeError("the reader went away")
            self.prompts.append(prompt)
            yield index, scripted_reply(prompt)


def scripted(group_by="auto", judge=False, cache_path=None, client=None):
    client = client or ScriptedClient()
    return LlmGrouping(client, group_by, judge, JudgementCache(cache_path, client.fingerprint)), client


def group(grouping, responses, question="Q?"):
    (classes,) = grouping.group([GroupingRequest(question, [None] * len(responses), responses)])
    return classes


# --- parsing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "answer"),
    [
        ("Paris", "Paris"),
        ("  Short answer: Paris\nBecause the response says so.", "Paris"),
        ('"Paris, France".', "Paris, France"),
        ("Final answer: 18", "18"),
        ("<think>The response names Paris.</think>\nParis", "Paris"),
        ("NO_ANSWER", None),
        ("No answer.", None),
        ("[NO_ANSWER]", None),
        ("", None),
        ("\n  \n", None),
    ],
)
def test_the_short_answer_is_read_from_a_reply(reply, answer):
    assert parse_extraction(reply) == answer


@pytest.mark.parametrize(
    ("reply", "answer"),
    [
        ("(NO_ANSWER)", None),
        ("<NO_ANSWER>", None),
        ("NO_ANSWER - the response is cut off", None),
        ("NO_ANSWER: the response says it does not know", None),
        ("**Answer:** Paris", "Paris"),
        ("**Paris**", "Paris"),
        ("Answer:\nParis", "Paris"),
        ("Short final answer:\n\nParis", "Paris"),
        ("<think>The response names", None),  # cut off while reasoning: no answer
        ("Okay, the response says Paris.\n</think>\n\nParis", "Paris"),  # the template opened <think>
    ],
)
def test_reader_replies_that_peers_write(reply, answer):
    assert parse_extraction(reply) == answer


@pytest.mark.parametrize(
    ("reply", "grade"),
    [
        ("Grade (A, B or C): B", "INCORRECT"),  # the prompt's last line echoed
        ("Grade (A, B or C): C", "NOT_ATTEMPTED"),
        ("Grade(A/B/C): B", "INCORRECT"),
        ("A wrong answer: the gold target is Rome, so B.", None),
        ("A predicted answer of Milan contradicts the gold target.</think>\nB", "INCORRECT"),
        ("<think>Milan is not Rome", None),
        ("A\nBecause it names the gold target.", "CORRECT"),
        ("A", "CORRECT"),
        ("B: the city is wrong", "INCORRECT"),
        ("**C**", "NOT_ATTEMPTED"),
        ("(A)", "CORRECT"),
        ("CORRECT", "CORRECT"),
        ("Incorrect.", "INCORRECT"),
        ("not attempted", "NOT_ATTEMPTED"),
        ("The grade is A.", "CORRECT"),
        ("Grade: **B**", "INCORRECT"),
        ("**Grade:** A", "CORRECT"),
        ("a wrong answer", None),  # a lower-case article is no grade
        ("Apple", None),
        ("CORRECTLY stated", None),
        ("I cannot grade this", None),
    ],
)
def test_a_grade_is_read_strictly(reply, grade):
    assert parse_grade(reply) == grade


# Replies that OpenAI's simple-evals grades right (it takes the first A, B or C anywhere)
# and that the strict reader of earlier versions called unreadable.
@pytest.mark.parametrize(
    ("reply", "grade"),
    [
        ("A (CORRECT)", "CORRECT"),
        ("A - CORRECT", "CORRECT"),
        ("A, CORRECT", "CORRECT"),
        ("A – CORRECT", "CORRECT"),  # an en dash
        ("A **CORRECT**", "CORRECT"),
        ("A (correct)", "CORRECT"),
        ("Grade: A (CORRECT)", "CORRECT"),
        ("B (INCORRECT)", "INCORRECT"),
        ("B - INCORRECT", "INCORRECT"),
        ("C - NOT_ATTEMPTED", "NOT_ATTEMPTED"),
        ("C (not attempted)", "NOT_ATTEMPTED"),
        ("Final grade: A", "CORRECT"),
        ("**Final grade:** C", "NOT_ATTEMPTED"),
        ("The final grade is B.", "INCORRECT"),
        ("Grade (A, B or C): A (CORRECT)", "CORRECT"),
        ("<think>Rome is the gold target.</think>\nFinal grade: A (CORRECT)", "CORRECT"),
    ],
)
def test_a_grade_letter_with_its_word_or_a_label_is_read(reply, grade):
    assert parse_grade(reply) == grade


@pytest.mark.parametrize(
    "reply",
    [
        "A (INCORRECT)",
        "A: INCORRECT, the gold target is Rome",
        "B (CORRECT)",
        "C - CORRECT",
        "A\nIncorrect.",
        "CORRECT (B)",
        "Grade: A (NOT_ATTEMPTED)",
        "A correct answer would be Rome, so B",  # the article, and a word after it: no grade
    ],
)
def test_a_letter_and_a_word_that_contradict_each_other_are_unreadable(reply):
    assert parse_grade(reply) is None


def test_the_prompts_carry_the_question_response_and_every_alias():
    prompt = extraction_prompt("Capital of France?", "  It is Paris.\n")
    assert prompt.endswith("Question: Capital of France?\nResponse: It is Paris.\nShort final answer:")
    assert "NO_ANSWER" in prompt and "digits" not in prompt
    assert "A number answer is written in digits" in extraction_prompt("How much?", "eighteen dollars", "number")
    grading = grading_prompt("Capital of France?", ["Paris", "City of Light"], "paris")
    assert "Gold target: Paris\nAlso accepted: City of Light\nPredicted answer: paris\n" in grading
    assert "\nAlso accepted:" not in grading_prompt("Q?", ["Paris"], "paris")


# --- grouping, with a scripted reader ----------------------------------------------------


def test_short_answers_are_grouped_by_normalize():
    b, client = scripted()
    grouping = group(b, ["The capital of France is Paris.", "It is Paris.", "I am not sure.", "", "Paris, of course."])
    # Paris / paris. / "Short answer: Paris" read as one meaning; NO_ANSWER and the empty
    # response are the no-answer class; the empty response is never sent.
    assert list(grouping.class_ids) == [0, 0, 1, 1, 0]
    assert grouping.no_answer_class == 1
    assert grouping.answers == ("Paris", "paris.", None, None, "Paris")
    assert grouping.plurality_share == 3 / 5
    assert len(client.prompts) == 4


def test_each_distinct_response_is_read_once():
    b, client = scripted()
    responses = ["Rome was the capital."] * 30 + ["The capital was Milan."] * 15 + ["It was Rome."] * 5
    requests = [GroupingRequest(f"Q{i}?", [None] * 50, responses) for i in range(3)]
    grouped = b.group(requests)
    assert all(list(g.counts) == [35, 15] for g in grouped)
    assert b.calls == len(client.prompts) == 3 * 3  # 3 distinct responses per question, not 50


def test_the_whole_response_is_read_when_given_else_the_extracted_answer():
    b, client = scripted()
    (grouping,) = b.group([GroupingRequest("Q?", ["Lisbon."], None)])
    assert grouping.answers == ("Lisbon",)
    assert "Response: Lisbon.\n" in client.prompts[0]


MATH = ["6 boxes at $3 each make $18 in all.", "She earns 18.00 dollars.", "That is 20 dollars."]


def test_math_answers_are_grouped_as_numbers():
    b, _ = scripted(group_by="numeric")
    assert list(group(b, MATH).class_ids) == [0, 0, 1]
    assert b.matches_gold([GoldRequest("Q?", "$18", ["18"]), GoldRequest("Q?", "20", ["18"])]) == [True, False]


def test_auto_compares_a_number_tasks_answers_as_numbers_and_text_as_text():
    b, _ = scripted()
    number, text = b.group(
        [GroupingRequest("Q?", [None] * 3, MATH, answer_type="number"), GroupingRequest("Q?", [None] * 3, MATH)]
    )
    assert list(number.class_ids) == [0, 0, 1]
    assert list(text.class_ids) == [0, 1, 2]  # normalize reads "$18" as "18" and "18.00" as "1800"
    assert b.matches_gold(
        [GoldRequest("Q?", "18.00", ["18"], answer_type="number"), GoldRequest("Q?", "18.00", ["18"])]
    ) == [True, False]


@pytest.mark.harness  # the filter as lm-eval calls it
def test_the_filter_tells_the_reader_a_number_task_from_a_text_task(server):
    options = {"model": "reader", "base_url": base_url(server), "cache": None}
    doc = {"semcal_question": "How much does she earn?", "semcal_golds": ["18"]}
    responses = [MATH[1], MATH[0], MATH[2]]  # "18.00" first: the plurality's representative
    for answer_type, class_ids, correct in (("number", [0, 0, 1], True), ("text", [0, 1, 2], False)):
        semcal_filter = SemanticClassesFilter(style="cot", answer_type=answer_type, grouping="llm", grouping_args=options)
        (record,) = filter_records(semcal_filter, [responses], [doc])
        assert list(record.classes.class_ids) == class_ids and record.correct is correct


def test_without_the_judge_the_gold_goes_through_the_same_string_b():
    b, client = scripted()
    verdicts = b.matches_gold(
        [GoldRequest("Q?", "paris.", ["Paris"]), GoldRequest("Q?", "City of Rome", ["Rome", "Roma"])]
    )
    assert verdicts == [True, False]
    assert client.prompts == []  # no model call to judge


def test_the_judge_grades_each_class_and_unreadable_grades_count_as_wrong(caplog):
    b, client = scripted(judge=True)
    requests = [
        GoldRequest("Which city?", "City of Rome", ["Rome", "Roma"]),  # A: normalize alone would say no
        GoldRequest("Which city?", "Milan", ["Rome", "Roma"]),  # B
        GoldRequest("Which city?", "gibberish", ["Rome"]),  # an unreadable grade
        GoldRequest("Which city?", "", ["Rome"]),  # nothing to grade, never sent
    ]
    with caplog.at_level(logging.WARNING):
        assert b.matches_gold(requests) == [True, False, False, False]
    assert len(client.prompts) == 3
    assert "1 of 3 grades were unreadable and count as not correct" in caplog.text


def test_the_grading_prompt_states_the_simpleqa_graders_rules_with_examples():
    b, client = scripted(judge=True)
    b.grade_gold([GoldRequest("Which city?", "Milan", ["Rome", "Roma", "City of Rome"])])
    (prompt,) = client.prompts
    assert prompt.endswith(
        "Question: Which city?\nGold target: Rome\nAlso accepted: Roma; City of Rome\nPredicted answer: Milan\n"
        "Grade (A, B or C):"
    )
    rules = {
        "the three grades": ["A = CORRECT", "B = INCORRECT", "C = NOT_ATTEMPTED"],
        "numbers to the gold's last significant figure": [
            "to the gold target's last significant figure",
            'The gold target "84 thousand" is given by 84,000, 83,600 or 84,450',
            "contradicted by 82,000 or 84,600",
            'The gold target "206" is given by 206 alone; 205 contradicts it.',
        ],
        "typos in names": ["a small typo", '"Antonin Dvorjak" gives the gold target "Antonín Dvořák"'],
        "an omission the question implies": [
            "leaving out what the question already says is fine",
            '"Cleveland, Ohio", the answer "Cleveland" is CORRECT',
        ],
        "a gold target that says more than asked": [
            "the predicted answer only has to answer the question",
            '"27 May 1937", the answer "1937" is CORRECT',
        ],
        "hedged answers": [
            '"I think", "probably"', "is CORRECT when it gives the gold target and nothing that contradicts it",
        ],
        "vague numbers": [
            "rounded to the approximation's precision",
            '"around 200" is NOT_ATTEMPTED and "about 300" is INCORRECT',
            '"about 206" gives the gold target and is CORRECT',
        ],
        "ranges and bounds": [
            "NOT_ATTEMPTED when the gold target lies inside it and INCORRECT when it lies outside",
            '"between 200 and 250" and "more than 150" are NOT_ATTEMPTED, "fewer than 150" is INCORRECT',
        ],
        "partial answers": ['"Phobos, and I forget the other" is NOT_ATTEMPTED'],
        "several candidates": [
            "more than one candidate, any of them wrong, is INCORRECT even when the gold target is among them",
            '"Dvorak or Smetana"',
            '"Phobos and Titan"',
        ],
        "refusals": ['"I don\'t know", "I would have to look it up"'],
        "the reply's form": ["Reply with the single letter A, B or C and nothing else."],
    }
    missing = {rule: phrase for rule, phrases in rules.items() for phrase in phrases if phrase not in prompt}
    assert missing == {}


VAGUE_READS = READS | {"Somewhere in Italy, I think.": "somewhere in Italy", "Florence, surely.": "Florence"}
# The three-way judge's reply to each short answer.
GRADE_REPLIES = {
    "Rome": "A",
    "somewhere in Italy": "C - NOT_ATTEMPTED",
    "Milan": "B (INCORRECT)",
    "Florence": "A (INCORRECT)",  # contradicts itself: no grade
}


class ThreeWayJudge(ScriptedClient):
    """Reads responses as VAGUE_READS says, and grades each short answer as GRADE_REPLIES says."""

    def complete(self, prompts):
        for index, prompt in enumerate(prompts):
            self.prompts.append(prompt)
            if match := PREDICTED_RE.search(prompt):
                yield index, GRADE_REPLIES[match.group(3)]
            else:
                yield index, VAGUE_READS.get(RESPONSE_RE.search(prompt).group(1), "NO_ANSWER")


ROMAN_RESPONSES = [
    "Rome was the capital.", "Somewhere in Italy, I think.", "The capital was Milan.", "I am not sure.",
    "It was Rome.", "Somewhere in Italy, I think.", "Florence, surely.", "Rome was the capital.",
]


def test_the_judges_three_way_grades_are_kept_in_the_record(caplog):
    from lm_eval_semcal import QuestionRecord, score_question

    b, _ = scripted(judge=True, client=ThreeWayJudge())
    assert b.grades is True and scripted()[0].grades is False
    with caplog.at_level(logging.WARNING):
        record = score_question(
            "Which city was the capital of the Roman Empire?", ROMAN_RESPONSES, ["Rome"], b, style="sentence"
        )
    # Classes by first appearance: Rome x3, somewhere in Italy x2, Milan, no answer, Florence.
    assert list(record.classes.counts) == [3, 2, 1, 1, 1] and record.classes.no_answer_class == 3
    assert record.class_grades == ("CORRECT", "NOT_ATTEMPTED", "INCORRECT", None, None)
    assert record.class_correct == (True, False, False, False, False)
    assert record.not_attempted_share == 2 / 8
    assert "1 of 4 grades were unreadable and count as not correct" in caplog.text
    stored = json.loads(str(record))
    assert stored["class_grades"] == ["CORRECT", "NOT_ATTEMPTED", "INCORRECT", None, None]
    assert stored["not_attempted_share"] == 0.25
    assert list(stored)[list(stored).index("class_correct") + 1] == "class_grades"
    assert list(stored)[list(stored).index("no_answer_share") + 1] == "not_attempted_share"
    assert QuestionRecord.read(str(record)) == record
    # The one-function path gives the same verdicts.
    requests = [GoldRequest("Q?", answer, ["Rome"]) for answer in ("Rome", "somewhere in Italy", "Milan", "Florence")]
    assert b.grade_gold(requests) == ["CORRECT", "NOT_ATTEMPTED", "INCORRECT", None]
    assert b.matches_gold(requests) == [True, False, False, False]


def test_a_rerun_and_a_new_process_call_the_model_zero_times(tmp_path):
    requests = [GroupingRequest("Q?", [None] * 4, ["Rome was the capital.", "Milan.", "It was Rome.", "Milan."])]
    first, client = scripted(cache_path=tmp_path / "cache.sqlite")
    expected = first.group(requests)
    assert len(client.prompts) == 3
    assert first.group(requests) == expected and len(client.prompts) == 3
    again, fresh = scripted(cache_path=tmp_path / "cache.sqlite")
    assert again.group(requests) == expected and fresh.prompts == []
    other_model = ScriptedClient()
    other_model.fingerprint = "another-reader"
    other, _ = scripted(cache_path=tmp_path / "cache.sqlite", client=other_model)
    assert other.group(requests) == expected and len(other_model.prompts) == 3


def test_replies_received_before_a_failure_are_kept(tmp_path):
    responses = ["Rome was the capital.", "Milan.", "It was Rome.", "The capital was Milan."]
    broken, client = scripted(cache_path=tmp_path / "cache.sqlite", client=ScriptedClient(fail_after=2))
    with pytest.raises(RuntimeError, match="the reader went away"):
        group(broken, responses)
    assert len(client.prompts) == 2
    retry, fresh = scripted(cache_path=tmp_path / "cache.sqlite")
    assert list(group(retry, responses).class_ids) == [0, 1, 0, 1]
    assert len(fresh.prompts) == 2  # only the two it never got


# --- options, checked before anything loads or is sent -----------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "llm: set grouping_args model=..."),
        ({"model": "m", "group_by": "nli"}, "group_by='nli'; choose one of auto, normalize, numeric, exact"),
        ({"model": "m", "judge": "yes"}, "judge='yes' must be true or false"),
        ({"model": "m", "num_concurrent": 0}, "num_concurrent=0 must be a whole number > 0"),
        ({"model": "m", "timeout": 0}, "timeout=0 must be a number > 0"),
        ({"model": "m", "base_url": "localhost:8000/v1"}, "must be an http:// or https:// URL"),
        ({"model": "m", "api_key_env": KEY_ENV}, r"api_key_env only applies to an endpoint \(base_url\)"),
        ({"model": "m", "num_concurrent": 4}, r"num_concurrent only applies to an endpoint"),
        ({"model": "m", "base_url": "http://127.0.0.1:9/v1", "batch_size": 32, "dtype": "float16"},
         r"batch_size, dtype only applies to a local reader \(no base_url\)"),
        ({"model": "m", "dtype": "fp16"}, "dtype='fp16'; use auto or a torch dtype name"),
        ({"model": "m", "device": "gpu"}, "device='gpu' is not a torch device"),
        ({"model": "m", "device": "cuda"}, "device='cuda' but this machine has no CUDA device"),
        (
            {"model": "m", "base_url": "http://127.0.0.1:9/v1", "api_key_env": "SEMCAL_TEST_UNSET_KEY"},
            "the environment variable SEMCAL_TEST_UNSET_KEY \\(api_key_env\\) holding the API key is not set",
        ),
    ],
)
def test_bad_options_fail_before_any_model_loads(options, message, monkeypatch):
    monkeypatch.delenv("SEMCAL_TEST_UNSET_KEY", raising=False)
    with pytest.raises(ValueError, match=message):
        check_grouping("llm", **options)


def test_a_key_given_as_an_option_is_refused_without_echoing_it():
    with pytest.raises(ValueError, match=r"bad options \['api_key', 'model'\]") as caught:
        check_grouping("llm", model="m", api_key=SECRET)
    assert SECRET not in str(caught.value)


# --- the OpenAI-compatible client against a fake chat server ---------------------------------------


def chat_reply(text: str) -> dict:
    return {"object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}


def reader(payload: dict) -> Reply:
    return 200, chat_reply(scripted_reply(payload["messages"][0]["content"]))


@pytest.fixture
def server():
    fake = FakeServer(CHAT_PATH, reader)
    yield fake
    fake.close()


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    return SECRET


def base_url(server: FakeServer) -> str:
    return server.url.removesuffix("/chat/completions")


def client(server, **options) -> OpenAIChatClient:
    return OpenAIChatClient(**({"base_url": base_url(server), "model": "reader", "max_retries": 2} | options))


def test_one_greedy_chat_request_per_prompt_with_the_key_in_its_header(server, key):
    replies = dict(client(server, api_key_env=KEY_ENV).complete([extraction_prompt("Q?", "Milan.")]))
    assert replies == {0: "Milan"}
    (payload,) = server.payloads
    assert payload == {
        "model": "reader",
        "messages": [{"role": "user", "content": extraction_prompt("Q?", "Milan.")}],
        "temperature": 0,
        "max_tokens": 32,
    }
    assert server.headers[0]["Authorization"] == f"Bearer {SECRET}"


def test_no_key_is_sent_when_none_is_named(server):
    dict(client(server).complete(["x"]))
    assert "Authorization" not in server.headers[0]
    assert client(server, base_url=server.url).url == server.url  # the full URL works too


def test_concurrent_replies_land_on_their_prompts(server):
    responses = list(READS)

    def slow_reader(payload):
        # Earlier prompts answer later, so replies arrive out of order.
        index = responses.index(RESPONSE_RE.search(payload["messages"][0]["content"]).group(1))
        time.sleep(0.01 * (len(responses) - index))
        return reader(payload)

    server.behaviour = slow_reader
    prompts = [extraction_prompt("Q?", r) for r in responses]
    replies = dict(client(server, num_concurrent=8).complete(prompts))
    assert [replies[i] for i in range(len(prompts))] == [READS[r] for r in responses]


def test_a_server_error_is_retried(server):
    server.failures.extend([(500, {"error": "busy"}), (429, {"error": "slow down"})])
    assert dict(client(server, max_retries=3).complete(["x"])) == {0: "NO_ANSWER"}
    assert len(server.payloads) == 3


def test_a_server_error_on_every_try_is_an_error(server):
    server.behaviour = lambda payload: (500, {"error": "down"})
    with pytest.raises(LlmServerError, match="failed 2 times in a row; the last: HTTP 500"):
        dict(client(server).complete(["x"]))
    assert len(server.payloads) == 2


def test_a_timeout_is_retried_then_an_error(server):
    def hang(payload):
        server.stop.wait(3)
        return reader(payload)

    server.behaviour = hang
    with pytest.raises(LlmServerError, match=r"failed 2 times in a row; the last: no reply within 0.3 s \(timeout\)"):
        dict(client(server, timeout=0.3).complete(["x"]))
    assert len(server.payloads) == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"choices": []}, "the reply is not a chat completion with choices\\[0\\].message.content"),
        ({"choices": [{"index": 0, "message": {"content": None}}]}, "not a chat completion"),
        ("<html>gateway</html>", "answered with something that is not JSON"),
    ],
)
def test_a_malformed_reply_is_an_error_not_a_class(server, body, message):
    server.behaviour = lambda payload: (200, body)
    with pytest.raises(LlmServerError, match=message):
        dict(client(server).complete(["x"]))
    assert len(server.payloads) == 1  # not retried: the same server answers the same way


def test_a_refused_key_names_the_variable_and_never_the_key(server, key, caplog):
    server.behaviour = lambda payload: (401, {"error": "invalid key"})
    with caplog.at_level(logging.DEBUG), pytest.raises(LlmServerError) as caught:
        dict(client(server, api_key_env=KEY_ENV).complete(["x"]))
    assert f"refused the request (HTTP 401): check the key in ${KEY_ENV}" in str(caught.value)
    assert SECRET not in str(caught.value) and SECRET not in caplog.text
    assert SECRET not in repr(client(server, api_key_env=KEY_ENV))
    with pytest.raises(LlmServerError, match="it wants an API key: put it in an environment variable"):
        dict(client(server).complete(["x"]))


def test_a_key_quoted_where_the_error_cuts_the_reply_is_masked_whole(server, key):
    # The error quotes the reply's first 200 characters; the key starts at 197.
    server.behaviour = lambda payload: (400, "x" * 190 + f"Bearer {SECRET}")
    with pytest.raises(LlmServerError, match="answered HTTP 400") as caught:
        dict(client(server, api_key_env=KEY_ENV).complete(["x"]))
    assert str(caught.value).endswith("xxxBearer ***'")
    assert SECRET[:3] not in str(caught.value)


def test_a_missing_key_stops_the_filter_before_any_request(server, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    options = {"model": "reader", "base_url": base_url(server), "api_key_env": KEY_ENV, "cache": None}
    with pytest.raises(ValueError, match=f"{KEY_ENV} \\(api_key_env\\) holding the API key is not set"):
        SemanticClassesFilter(grouping="llm", grouping_args=options)
    assert server.payloads == []


# --- the local HF client on a tiny random model -----------------------------------------------


@pytest.fixture(scope="module")
def tiny_reader(tmp_path_factory):
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny-reader") / "lm"))


def test_batching_does_not_change_a_greedy_reply(tiny_reader):
    prompts = [extraction_prompt("Q?", r) for r in ("Paris.", "It was Rome, the capital of an empire.", "", "18")]
    batched = dict(HFChatClient(tiny_reader, "cpu", batch_size=3, max_tokens=6).complete(prompts))
    alone = dict(HFChatClient(tiny_reader, "cpu", batch_size=1, max_tokens=6).complete(prompts))
    assert sorted(batched) == [0, 1, 2, 3]
    assert batched == alone


def test_a_chat_template_wraps_the_prompt(tiny_reader, tmp_path):
    from transformers import AutoTokenizer

    plain = HFChatClient(tiny_reader, "cpu")
    assert plain.format("hello") == "hello"
    chat = str(shutil.copytree(tiny_reader, tmp_path / "chat"))
    tokenizer = AutoTokenizer.from_pretrained(chat)
    tokenizer.chat_template = "{% for m in messages %}<user>{{ m['content'] }}</user>{% endfor %}<bot>"
    tokenizer.save_pretrained(chat)
    templated = HFChatClient(chat, "cpu")
    assert templated.format("hello") == "<user>hello</user><bot>"
    assert templated.fingerprint != plain.fingerprint  # another model: its replies are its own


@pytest.mark.harness  # the filter as lm-eval calls it
def test_the_filter_groups_a_local_readers_own_replies(tiny_reader, tmp_path):
    options = {"model": tiny_reader, "device": "cpu", "max_tokens": 4, "cache": str(tmp_path / "c.sqlite")}
    semcal_filter = SemanticClassesFilter(style="sentence", grouping="llm", grouping_args=options)
    doc = {"semcal_question": "Capital of France?", "semcal_golds": ["Paris"]}
    responses = ["It is Paris.", "Lyon.", "It is Paris.", "Marseille, surely."]
    (record,) = filter_records(semcal_filter, [responses], [doc])
    replies = dict(HFChatClient(tiny_reader, "cpu", max_tokens=4).complete([extraction_prompt(doc["semcal_question"], r) for r in responses]))
    expected = get_grouping("normalize").group([GroupingRequest("", [parse_extraction(replies[i]) for i in range(4)])])[0]
    assert record.grouping == "llm"
    assert record.classes.answers == expected.answers and record.classes.class_ids == expected.class_ids


# --- a task YAML with grouping: llm, through lm-eval and `semcal rescore` ---------------------------------

SENTENCES = {
    "What is the capital city of France?": ["The capital of France is Paris.", "It is Paris.", "Paris, of course.", "I am not sure."],
    "Which city was the capital of the Roman Empire?": ["Rome was the capital.", "The capital was Milan.", "Milan.", "It was Rome."],
    "In which city is the Brandenburg Gate?": ["The Brandenburg Gate is in Berlin."] * 4,
    "What is the capital of Portugal?": ["Madrid is the capital.", "The capital of Portugal is Madrid.", "Lisbon.", "It is Madrid."],
}
# Read as: Paris x3 + no answer (3/4, right); Rome, Milan, Milan, Rome (a tie: the first,
# Rome, 2/4, right); Berlin x4 (1, right); Madrid x3 + Lisbon (3/4, wrong).
LLM_METRICS = {"acc": 3 / 4, "conf": (0.75 + 0.5 + 1 + 0.75) / 4, "no_answer": 1 / 16, "n_classes": (2 + 2 + 1 + 2) / 4}
# Brier by hand: (0.25^2 + 0.5^2 + 0 + 0.75^2) / 4.
LLM_BRIER = (0.0625 + 0.25 + 0.5625) / 4


def write_llm_task(tasks_dir, server, cache_path, judge=False):
    tasks_dir.mkdir(exist_ok=True)
    args = {"model": "reader", "base_url": base_url(server), "cache": str(cache_path), "judge": judge}
    (tasks_dir / "llm_task.yaml").write_text(
        f"include: {TASKS_DIR / 'semcal' / 'semcal_triviaqa_sentence.yaml'}\n"
        "task: semcal_triviaqa_llm\n"
        "filter_list:\n  - name: semcal\n    filter:\n      - function: semcal_grouping\n"
        "        style: sentence\n        grouping: llm\n        gold_match: same_class\n"
        f"        grouping_args: {json.dumps(args)}\n"
    )


def check_llm_metrics(metrics: dict) -> None:
    for name, value in LLM_METRICS.items():
        assert metrics[f"{name},semcal"] == pytest.approx(value), name
    assert metrics["brier,semcal"] == pytest.approx(LLM_BRIER)


def test_a_task_yaml_with_collapse_llm_runs_through_lm_eval(tmp_path, server):
    write_llm_task(tmp_path / "tasks", server, tmp_path / "c.sqlite")
    out = save_scripted_run(tmp_path / "out", SENTENCES, "semcal_triviaqa_llm", "0", tasks_dir=tmp_path / "tasks")
    (run,) = load_run(out)
    results = json.loads(run.results_file.read_text())["results"]["semcal_triviaqa_llm"]
    check_llm_metrics(results)
    assert not [key for key in results if key.startswith("not_attempted")]  # no judge, no three-way grades
    assert len(server.payloads) == 4 + 4 + 1 + 4  # distinct responses per question
    assert [list(r.classes.class_ids) for r in run.records] == [[0, 0, 0, 1], [0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 1, 0]]
    assert {r.class_grades for r in run.records} == {None}


def madrid_is_not_attempted(payload: dict) -> Reply:
    """The scripted reader, except that its judge grades the short answer Madrid C (NOT_ATTEMPTED)."""
    match = PREDICTED_RE.search(payload["messages"][0]["content"])
    return (200, chat_reply("C")) if match and match.group(3) == "Madrid" else reader(payload)


# The judge's grades of SENTENCES' classes: Paris / no answer; Rome / Milan; Berlin;
# Madrid (graded NOT_ATTEMPTED) / Lisbon.
JUDGED_GRADES = [("CORRECT", None), ("CORRECT", "INCORRECT"), ("CORRECT",), ("NOT_ATTEMPTED", "CORRECT")]
# Madrid holds 3 of Portugal's 4 samples; no other question has a class graded NOT_ATTEMPTED.
JUDGED_NOT_ATTEMPTED = (0 + 0 + 0 + 3 / 4) / 4


def test_a_judged_task_reports_not_attempted_beside_no_answer(tmp_path, server):
    from lm_eval_semcal.runs.report import write_reports

    server.behaviour = madrid_is_not_attempted
    write_llm_task(tmp_path / "tasks", server, tmp_path / "c.sqlite", judge=True)
    out = save_scripted_run(tmp_path / "out", SENTENCES, "semcal_triviaqa_llm", "0", tasks_dir=tmp_path / "tasks")
    (run,) = load_run(out)
    saved = json.loads(run.results_file.read_text())
    results = saved["results"]["semcal_triviaqa_llm"]
    check_llm_metrics(results)  # Madrid was wrong before and is not correct now: acc is unchanged
    assert results["not_attempted,semcal"] == JUDGED_NOT_ATTEMPTED
    keys = list(results)
    assert keys[keys.index("no_answer,semcal") : keys.index("no_answer,semcal") + 4] == [
        "no_answer,semcal", "no_answer_stderr,semcal", "not_attempted,semcal", "not_attempted_stderr,semcal",
    ]
    assert saved["higher_is_better"]["semcal_triviaqa_llm"]["not_attempted"] is False
    assert [r.class_grades for r in run.records] == JUDGED_GRADES
    assert [r.not_attempted_share for r in run.records] == [0, 0, 0, 0.75]

    write_reports(out, tmp_path / "report", bootstrap_iters=0)
    text = (tmp_path / "report" / "semcal_triviaqa_llm.md").read_text()
    assert "| no_answer | 0.0625 |  | lower |\n| not_attempted | 0.1875 |  | lower |\n" in text
    assert "(17 of 17 metrics reported there)" in text

    # Regrouped without the judge, the run reports no not_attempted and its samples log none.
    args = {"model": "reader", "base_url": base_url(server), "cache": str(tmp_path / "c.sqlite")}
    assert cli.main(["rescore", str(out), "--grouping", "llm", "--grouping-args", json.dumps(args)]) == 0
    rescored_file = next(out.rglob("rescored-llm/results_*.json"))
    rescored = json.loads(rescored_file.read_text())["results"]["semcal_triviaqa_llm"]
    check_llm_metrics(rescored)
    assert not [key for key in rescored if key.startswith("not_attempted")]
    samples = [json.loads(line) for line in next(out.rglob("rescored-llm/samples_*.jsonl")).read_text().splitlines()]
    assert all("not_attempted" not in sample and "not_attempted" not in sample["metrics"] for sample in samples)
    (regrouped,) = load_run(rescored_file)
    assert {r.class_grades for r in regrouped.records} == {None}


def test_rescore_with_llm_and_the_judge(tmp_path, server, capsys):
    # The run grouped whole sentences (normalize); the rescore reads them with the LLM.
    out = save_scripted_run(tmp_path / "out", SENTENCES, "semcal_triviaqa_sentence", "0")
    args = {"model": "reader", "base_url": base_url(server), "cache": str(tmp_path / "c.sqlite"), "judge": True}
    rescore = ["rescore", str(out), "--grouping", "llm", "--grouping-args", json.dumps(args), "--bootstrap-iters", "0"]
    assert cli.main(rescore) == 0
    capsys.readouterr()
    rescored = json.loads(next(out.rglob("rescored-llm/results_*.json")).read_text())
    check_llm_metrics(rescored["results"]["semcal_triviaqa_sentence"])
    # The run had no judge; the rescore's judge grades no class NOT_ATTEMPTED. The run's
    # bootstrap was off, so lm-eval wrote N/A for every standard error: so does the new metric.
    assert rescored["results"]["semcal_triviaqa_sentence"]["not_attempted,semcal"] == 0
    assert rescored["results"]["semcal_triviaqa_sentence"]["not_attempted_stderr,semcal"] == "N/A"
    # 13 responses read, then one grade per answered class: 1 + 2 + 1 + 2.
    assert len(server.payloads) == 13 + 6
    (step,) = rescored["configs"]["semcal_triviaqa_sentence"]["filter_list"][0]["filter"]
    # The sentence task's `contains` gives way: llm's short answers are judged by class.
    assert step["grouping_args"] == args and step["gold_match"] == "same_class"
    payloads = len(server.payloads)
    assert cli.main(rescore) == 0
    assert len(server.payloads) == payloads  # every reply and grade came from the cache


def test_agree_sets_options_per_b_and_the_gold_rule(tmp_path, server, capsys):
    from sklearn.metrics import adjusted_rand_score

    from lm_eval_semcal.runs.agree import agreement

    out = save_scripted_run(tmp_path / "out", SENTENCES, "semcal_triviaqa_sentence", "0")
    args = {"model": "reader", "base_url": base_url(server), "cache": None}
    (found,) = agreement(out, ["normalize", "llm"], {"llm": args}, gold_match="same_class")
    assert found.metrics["llm"]["acc"] == pytest.approx(LLM_METRICS["acc"])
    assert found.metrics["llm"]["conf"] == pytest.approx(LLM_METRICS["conf"])
    # normalize keeps every distinct sentence apart: classes by hand, ARI by scikit-learn.
    sentence_ids = [[0, 1, 2, 3], [0, 1, 2, 3], [0, 0, 0, 0], [0, 1, 2, 3]]
    llm_ids = [[0, 0, 0, 1], [0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 1, 0]]
    expected = sum(adjusted_rand_score(a, b) for a, b in zip(sentence_ids, llm_ids, strict=True)) / 4
    assert found.ari[("normalize", "llm")] == pytest.approx(expected)
    assert found.metrics["normalize"]["conf"] == pytest.approx((0.25 + 0.25 + 1 + 0.25) / 4)
    command = ["agree", str(out), "--grouping", "normalize,llm", "--grouping-args", json.dumps({"llm": args})]
    assert cli.main([*command, "--gold-match", "same_class"]) == 0
    assert "| llm | 0.7500 | 0.7500 |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main([*command, "--grouping-args", json.dumps({"nli": {}})])
    assert "options given for ['nli'], which are not among --grouping" in capsys.readouterr().err



def test_a_reply_cut_off_while_reasoning_is_no_answer_with_a_warning(caplog):
    class Thinker(ScriptedClient):
        def complete(self, prompts):
            for index, prompt in enumerate(prompts):
                self.prompts.append(prompt)
                yield index, "<think>The response says" if "Milan" in prompt else "</think>Rome"

    b, _ = scripted(client=Thinker())
    with caplog.at_level(logging.WARNING):
        grouping = group(b, ["It was Rome.", "Milan."])
    assert grouping.answers == ("Rome", None) and grouping.no_answer_class == 1
    assert "1 of 2 replies stopped inside <think> before any answer and count as no answer" in caplog.text


@pytest.mark.harness  # the filter as lm-eval calls it
def test_a_short_answer_is_judged_by_class_even_on_a_sentence_task(server):
    # "contains" would pass "Paris or Lyon" for the gold "Paris".
    READS_HEDGE = {"It is Paris or Lyon.": "Paris or Lyon"}
    server.behaviour = lambda payload: (200, chat_reply(READS_HEDGE.get(
        RESPONSE_RE.search(payload["messages"][0]["content"]).group(1), "NO_ANSWER")))
    options = {"model": "reader", "base_url": base_url(server), "cache": None}
    semcal_filter = SemanticClassesFilter(style="sentence", grouping="llm", grouping_args=options, gold_match="contains")
    assert semcal_filter.gold_match == "same_class"
    doc = {"semcal_question": "Capital of France?", "semcal_golds": ["Paris"]}
    (record,) = filter_records(semcal_filter, [["It is Paris or Lyon."] * 2], [doc])
    assert record.classes.answers == ("Paris or Lyon",) * 2 and record.correct is False


# --- the endpoint client: keys, failures part way, served weights -----------------------------


@pytest.mark.parametrize("value", [f"{SECRET} extra", SECRET + "\x07", f"{SECRET}\r\nX-Other: 1"])
def test_a_malformed_key_is_refused_without_showing_it(server, monkeypatch, value):
    monkeypatch.setenv(KEY_ENV, value)
    with pytest.raises(ValueError, match=f"the key in \\${KEY_ENV} holds spaces or control characters") as caught:
        check_grouping("llm", model="reader", base_url=base_url(server), api_key_env=KEY_ENV)
    assert SECRET not in str(caught.value)
    monkeypatch.setenv(KEY_ENV, f"  {SECRET}\n")  # padding around a key is dropped
    dict(client(server, api_key_env=KEY_ENV).complete(["x"]))
    assert server.headers[-1]["Authorization"] == f"Bearer {SECRET}"


def test_a_key_given_where_its_variables_name_goes_is_not_echoed():
    with pytest.raises(ValueError, match="api_key_env must be the name of an environment variable") as caught:
        check_grouping("llm", model="reader", base_url="http://127.0.0.1:9/v1", api_key_env=SECRET)
    assert SECRET not in str(caught.value)


def test_replies_received_before_a_request_fails_for_good_are_kept(server, tmp_path):
    def one_bad(payload):
        prompt = payload["messages"][0]["content"]
        if "Response: Milan." in prompt:
            return 400, {"error": "prompt too long"}
        time.sleep(0.2)  # the others are still in flight when the 400 arrives
        return reader(payload)

    server.behaviour = one_bad
    options = {"model": "reader", "base_url": base_url(server), "cache": str(tmp_path / "c.sqlite"), "num_concurrent": 4}
    b = get_grouping("llm", **options)
    responses = ["Milan.", "Rome was the capital.", "The capital was Milan.", "It was Rome.", "Lisbon.", "It is Paris."]
    with pytest.raises(LlmServerError, match="answered HTTP 400"):
        group(b, responses)
    sent = len(server.payloads)
    assert sent == 4  # nothing new is sent after the failure
    server.behaviour = reader
    again = get_grouping("llm", **options)
    assert group(again, responses).answers == ("Milan", "Rome", "Milan", "Rome", "Lisbon", "paris.")
    assert len(server.payloads) - sent == 3  # the 3 in flight were kept; only the failed one and the 2 unsent are asked


def test_a_connection_dropped_mid_reply_is_retried(server):
    server.failures.append((200, DROPPED))
    assert dict(client(server).complete([extraction_prompt("Q?", "Milan.")])) == {0: "Milan"}
    assert len(server.payloads) == 2
    server.behaviour = lambda payload: (200, DROPPED)
    with pytest.raises(LlmServerError, match=r"failed 2 times in a row; the last: connection failed or dropped"):
        dict(client(server).complete(["x"]))


def test_the_served_weights_are_part_of_the_cache_key(server, tmp_path):
    options = {"model": "reader", "base_url": base_url(server), "cache": str(tmp_path / "c.sqlite")}
    server.gets["/v1/models"] = (200, {"data": [{"id": "reader", "root": "/models/qwen-7b"}]})
    get_grouping("llm", **options).group([GroupingRequest("Q?", [None], ["Milan."])])
    assert len(server.payloads) == 1
    get_grouping("llm", **options).group([GroupingRequest("Q?", [None], ["Milan."])])
    assert len(server.payloads) == 1  # same weights behind the name: from the cache
    server.gets["/v1/models"] = (200, {"data": [{"id": "reader", "root": "/models/llama-8b"}]})
    get_grouping("llm", **options).group([GroupingRequest("Q?", [None], ["Milan."])])
    assert len(server.payloads) == 2  # other weights behind the same name: asked again


def test_an_unreachable_endpoint_fails_before_any_generation():
    with pytest.raises(LlmServerError, match="cannot reach http://127.0.0.1:9/v1/models"):
        SemanticClassesFilter(grouping="llm", grouping_args={"model": "reader", "base_url": "http://127.0.0.1:9/v1"})


def test_every_task_shares_one_loaded_local_reader(tiny_reader, monkeypatch):
    monkeypatch.setattr(llm_clients, "_LOADED_READERS", {})
    for _ in range(3):  # three tasks, three filters
        dict(HFChatClient(tiny_reader, "cpu", max_tokens=2).complete(["x"]))
    assert len(llm_clients._LOADED_READERS) == 1


def test_a_run_with_an_unreachable_reader_stops_before_it_samples(scripted_lm):
    # lm-eval builds filters only to apply them, after generation: the task checks first.
    from conftest import FIXTURES
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from lm_eval_semcal.harness.task import SemcalConfigError

    manager = TaskManager(
        include_path=str(TASKS_DIR), include_defaults=False,
        metadata={"data_files": str(FIXTURES / "triviaqa.jsonl"), "repeats": 2, "grouping": "llm",
                  "grouping_args": {"model": "reader", "base_url": "http://127.0.0.1:9/v1"}},
    )
    lm = scripted_lm(SENTENCES)
    with pytest.raises(SemcalConfigError, match="semcal_triviaqa_sentence: llm: cannot reach http://127.0.0.1:9/v1/models"):
        simple_evaluate(model=lm, tasks=["semcal_triviaqa_sentence"], task_manager=manager, bootstrap_iters=0)
    assert lm.requests == []
