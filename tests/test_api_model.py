"""`semcal-completions` against a fake OpenAI-compatible completions server.

Checks that the M identical copies of a question become one POST with `n` = M and no
seed, that every returned sample lands on the right request, that `max_n` splits a
group, that failures are retried and then end in an error (never a silent wrong answer)
with the samples already received saved to the rescue file, how a reply is validated,
and a semcal task run through lm-eval's `simple_evaluate` with hand-checked metrics.
"""

from __future__ import annotations

import copy
import json
import logging
import random
import time
import traceback
from collections.abc import Callable

import pytest
import requests
from conftest import FIXTURES, generation_request
from fake_server import FakeServer, Reply
from lm_eval import simple_evaluate
from lm_eval.api.instance import Instance
from lm_eval.tasks import TaskManager

from lm_eval_semcal.harness.api_model import (
    REQUEST_LOGGERS,
    SemcalCompletionsAPI,
    ServerReplyError,
    completions_from_reply,
)
from lm_eval_semcal.harness.evaluate import evaluate_and_save
from lm_eval_semcal.runs.saved import load_run, logged_record
from lm_eval_semcal.tasks import TASKS_DIR

# lm-eval itself runs here: CI runs this module under every supported release.
pytestmark = pytest.mark.harness

COMPLETIONS_PATH = "/v1/completions"

# The semcal tasks' generation settings (lm_eval_semcal/tasks/semcal/semcal_triviaqa.yaml).
GEN_KWARGS = {"until": ["\n", "Q:"], "max_gen_toks": 32, "do_sample": True, "temperature": 1.0, "top_p": 1.0, "top_k": 0}


def choices_reply(texts: list[str]) -> dict:
    return {"object": "text_completion", "choices": [{"index": i, "text": t} for i, t in enumerate(texts)]}


def echo(payload: dict) -> Reply:
    """Each choice says which prompt and which index it answers."""
    return 200, choices_reply([f"{payload['prompt']}|{i}" for i in range(payload["n"])])


@pytest.fixture
def server():
    fake = FakeServer(COMPLETIONS_PATH, echo)
    yield fake
    fake.close()


def make_model(server: FakeServer, **kwargs) -> SemcalCompletionsAPI:
    options = {"base_url": server.url, "model": "fake", "tokenizer_backend": None, "max_retries": 2}
    return SemcalCompletionsAPI(**(options | kwargs))


def instances(contexts: list[str], gen_kwargs: dict = GEN_KWARGS) -> list[Instance]:
    # A fresh dict per copy: grouping must go by equal settings, not by the same object.
    doc_ids = {context: doc_id for doc_id, context in enumerate(dict.fromkeys(contexts))}
    return [
        generation_request({"q": context}, (context, copy.deepcopy(gen_kwargs)), i, doc_id=doc_ids[context])
        for i, context in enumerate(contexts)
    ]


def echo_expected(contexts: list[str]) -> list[str]:
    """What `echo` gives each request: the k-th copy of a prompt gets choice k."""
    seen: dict[str, int] = {}
    expected = []
    for context in contexts:
        expected.append(f"{context}|{seen.get(context, 0)}")
        seen[context] = seen.get(context, 0) + 1
    return expected


# Three questions, four copies each, interleaved.
INTERLEAVED = ["B", "A", "C", "A", "B", "C", "C", "A", "B", "A", "B", "C"]


def test_one_request_of_n_samples_per_question(server):
    requests = instances(INTERLEAVED)
    got = make_model(server).generate_until(requests, disable_tqdm=True)

    assert got == echo_expected(INTERLEAVED)
    assert got[:4] == ["B|0", "A|0", "C|0", "A|1"]
    assert [p["prompt"] for p in server.payloads] == ["B", "A", "C"]
    for payload in server.payloads:
        assert payload["n"] == 4
        assert "seed" not in payload
        assert payload["model"] == "fake"
        assert payload["max_tokens"] == 32
        assert payload["temperature"] == 1.0 and payload["top_p"] == 1.0 and payload["top_k"] == 0
        assert payload["stop"] == ["\n", "Q:"]
        assert "do_sample" not in payload and "until" not in payload and "max_gen_toks" not in payload
    # The payload is built from a copy: the requests' own settings are left whole.
    assert all(r.args[1] == GEN_KWARGS for r in requests)


def test_different_settings_for_one_prompt_are_separate_questions(server):
    cold = GEN_KWARGS | {"temperature": 0.5}
    requests = instances(["A", "A"]) + instances(["A", "A"], cold)
    got = make_model(server).generate_until(requests, disable_tqdm=True)
    assert got == ["A|0", "A|1", "A|0", "A|1"]
    assert [(p["n"], p["temperature"]) for p in server.payloads] == [(2, 1.0), (2, 0.5)]


def test_concurrent_replies_land_on_their_requests(server):
    contexts = [f"Q{q}" for q in range(8)] * 3
    random.Random(0).shuffle(contexts)

    def slow_echo(payload):
        # Later questions answer sooner, so replies arrive out of request order.
        time.sleep(0.02 * (8 - int(payload["prompt"][1:])))
        return echo(payload)

    server.behaviour = slow_echo
    got = make_model(server, num_concurrent=4).generate_until(instances(contexts), disable_tqdm=True)
    assert got == echo_expected(contexts)
    assert sorted(p["prompt"] for p in server.payloads) == sorted(set(contexts))
    assert {p["n"] for p in server.payloads} == {3}


def test_choices_out_of_index_order_are_put_back_in_order(server):
    def reversed_echo(payload):
        status, body = echo(payload)
        body["choices"].reverse()
        return status, body

    server.behaviour = reversed_echo
    got = make_model(server).generate_until(instances(["A"] * 4), disable_tqdm=True)
    assert got == ["A|0", "A|1", "A|2", "A|3"]


def test_max_n_splits_a_question_into_requests_of_at_most_max_n(server):
    serial = iter(range(100))

    def numbered(payload):
        request = next(serial)
        return 200, choices_reply([f"{payload['prompt']}|r{request}|{i}" for i in range(payload["n"])])

    server.behaviour = numbered
    contexts = ["A", "B", "A", "A", "A", "A"]
    got = make_model(server, max_n=2).generate_until(instances(contexts), disable_tqdm=True)

    assert [(p["prompt"], p["n"]) for p in server.payloads] == [("A", 2), ("A", 2), ("A", 1), ("B", 1)]
    assert got == ["A|r0|0", "B|r3|0", "A|r0|1", "A|r1|0", "A|r1|1", "A|r2|0"]


def test_max_n_below_one_is_refused(server):
    with pytest.raises(ValueError, match="max_n must be at least 1"):
        make_model(server, max_n=0)


def test_seed_is_sent_only_when_given(server):
    make_model(server, seed=5).generate_until(instances(["A", "A"]), disable_tqdm=True)
    assert server.payloads[0]["seed"] == 5
    assert server.payloads[0]["n"] == 2


def test_multimodal_requests_are_refused(server):
    request = generation_request({}, ("A", dict(GEN_KWARGS), {"visual": []}))
    with pytest.raises(ValueError, match="text prompts only"):
        make_model(server).generate_until([request], disable_tqdm=True)
    assert server.payloads == []


def test_no_requests_no_posts(server):
    assert make_model(server).generate_until([], disable_tqdm=True) == []
    assert server.payloads == []


def test_server_error_is_retried(server):
    server.failures.append((500, {"error": "overloaded"}))
    got = make_model(server).generate_until(instances(["A"] * 4), disable_tqdm=True)
    assert got == ["A|0", "A|1", "A|2", "A|3"]
    assert [p["prompt"] for p in server.payloads] == ["A", "A"]
    assert all(p["n"] == 4 for p in server.payloads)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"choices": [{"index": 0}, {"index": 1}, {"index": 2}, {"index": 3}]}, "lacks an integer `index` or its text"),
        (choices_reply(["only one"]), "asked for n=4 samples, the reply has choices [0]"),
        ("<html>bad gateway</html>", "Expecting value"),
    ],
    ids=["no-text", "fewer-choices", "not-json"],
)
def test_a_bad_reply_on_every_try_is_an_error(server, rescue_dir, body, message):
    server.behaviour = lambda payload: (200, body)
    with pytest.raises(RuntimeError) as caught:
        make_model(server).generate_until(instances(["A"] * 4), disable_tqdm=True)

    text = str(caught.value)
    assert message in text
    assert "after 2 tries" in text
    assert len(server.payloads) == 2
    rescue_files = list(rescue_dir.glob("semcal-completions-*.jsonl"))
    assert len(rescue_files) == 1 and str(rescue_files[0]) in text
    # Nothing was received, so nothing is saved.
    assert rescue_files[0].read_text() == ""


def test_failure_saves_the_samples_already_received(server, rescue_dir):
    def second_question_breaks(payload):
        return echo(payload) if payload["prompt"] == "Q1" else (200, {"choices": [{"index": 0}]})

    server.behaviour = second_question_breaks
    with pytest.raises(RuntimeError) as caught:
        make_model(server, num_concurrent=1).generate_until(instances(["Q1", "Q2"] * 4), disable_tqdm=True)

    assert isinstance(caught.value.__cause__, ServerReplyError)
    assert [p["prompt"] for p in server.payloads] == ["Q1", "Q2", "Q2"]
    (rescue_file,) = rescue_dir.glob("semcal-completions-*.jsonl")
    assert str(rescue_file) in str(caught.value)
    rows = [json.loads(line) for line in rescue_file.read_text().splitlines()]
    assert rows == [
        {
            "task": "fake_task",
            "doc_id": 0,
            "prompt": "Q1",
            "gen_kwargs": GEN_KWARGS,
            "resps": ["Q1|0", "Q1|1", "Q1|2", "Q1|3"],
        }
    ]


def test_a_server_slower_than_timeout_is_an_error(server):
    def hang(payload):
        server.stop.wait(5)
        return echo(payload)

    server.behaviour = hang
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="ReadTimeout"):
        make_model(server, timeout=1).generate_until(instances(["A"] * 2), disable_tqdm=True)
    # Two tries of one second and one wait of one second, not the server's five.
    assert time.monotonic() - start < 4.5
    assert len(server.payloads) == 2


def test_unknown_paths_answer_404(server):
    base = server.url.removesuffix(COMPLETIONS_PATH)
    assert requests.get(f"{base}/tokenizer_info", timeout=5).status_code == 404
    assert requests.post(f"{base}/tokenize", json={}, timeout=5).status_code == 404


# --- the API key ----------------------------------------------------------------------

KEY = "sk-test-echoed-5b1e9c"


def echo_the_key(server: FakeServer, status: int) -> Callable[[dict], Reply]:
    """A server that quotes the request's Authorization header in its reply, as some do on a 401."""
    return lambda payload: (status, {"error": f"not accepted: {server.headers[-1]['Authorization']}"})


def test_a_key_the_server_echoes_is_never_logged_or_raised(server, monkeypatch, caplog, capfd):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    server.behaviour = echo_the_key(server, 401)
    with caplog.at_level(logging.DEBUG), pytest.raises(RuntimeError) as caught:
        make_model(server).generate_until(instances(["A"] * 2), disable_tqdm=True)

    assert [h["Authorization"] for h in server.headers] == [f"Bearer {KEY}"] * 2  # the key was sent
    # lm-eval's own warning, once per try, with the key masked.
    refused = [r.getMessage() for r in caplog.records if r.name == "lm_eval.models.api_models" and "failed" in r.getMessage()]
    assert refused == ['API request failed with error message: {"error": "not accepted: Bearer ***"}. Retrying...'] * 2
    assert KEY not in caplog.text
    assert all(KEY not in str(r.msg) and KEY not in str(r.args) for r in caplog.records)
    assert KEY not in "".join(capfd.readouterr())
    raised = "".join(traceback.format_exception(caught.value))
    assert "HTTPError: 401 Client Error" in raised and KEY not in raised
    # The filter is gone with the request: later records are left as they are.
    assert all(not each.filters for each in map(logging.getLogger, REQUEST_LOGGERS))


def test_a_key_quoted_in_a_bad_reply_is_masked_in_the_error(server, monkeypatch, rescue_dir):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    server.behaviour = echo_the_key(server, 200)
    with pytest.raises(RuntimeError) as caught:
        make_model(server).generate_until(instances(["A"] * 2), disable_tqdm=True)
    assert "the reply has no `choices` list: \"{'error': 'not accepted: Bearer ***'}\"" in str(caught.value)
    assert str(next(rescue_dir.glob("*.jsonl"))) in str(caught.value)
    assert KEY not in "".join(traceback.format_exception(caught.value))


def test_a_key_with_a_newline_is_masked_where_requests_quotes_it(server, monkeypatch):
    # requests refuses the header and quotes its value, key and all, in the error.
    monkeypatch.setenv("OPENAI_API_KEY", KEY + "\n")
    with pytest.raises(RuntimeError, match="InvalidHeader") as caught:
        make_model(server).generate_until(instances(["A"]), disable_tqdm=True)
    raised = "".join(traceback.format_exception(caught.value))
    assert "'Bearer ***\\n'" in raised and KEY not in raised
    assert caught.value.__cause__ is None and server.payloads == []


def test_without_a_key_nothing_is_masked(server, monkeypatch, caplog):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server.behaviour = lambda payload: (401, {"error": "a key is needed"})
    with caplog.at_level(logging.WARNING), pytest.raises(RuntimeError) as caught:
        make_model(server).generate_until(instances(["A"]), disable_tqdm=True)
    assert 'API request failed with error message: {"error": "a key is needed"}. Retrying...' in caplog.text
    assert isinstance(caught.value.__cause__, requests.HTTPError)


# --- completions_from_reply -------------------------------------------------------


def test_reply_texts_in_index_order():
    reply = {"choices": [{"index": 1, "text": "b"}, {"index": 0, "text": "a", "logprobs": None}]}
    assert completions_from_reply(reply, 2) == ["a", "b"]


@pytest.mark.parametrize("reply", [{}, None, [], {"choices": None}, {"choices": {"0": "a"}}, "oops"])
def test_reply_without_a_choices_list(reply):
    with pytest.raises(ServerReplyError, match="no `choices` list"):
        completions_from_reply(reply, 1)


@pytest.mark.parametrize(
    "choice", [{"index": 0}, {"index": 0, "text": None}, {"text": "a"}, {"index": "0", "text": "a"}, "a"]
)
def test_choice_without_index_or_text(choice):
    with pytest.raises(ServerReplyError, match="lacks an integer `index` or its text"):
        completions_from_reply({"choices": [choice]}, 1)


@pytest.mark.parametrize(
    ("indices", "listed"),
    [([0, 0], "[0, 0]"), ([0, 2], "[0, 2]"), ([1, 2], "[1, 2]"), ([0], "[0]"), ([0, 1, 2], "[0, 1, 2]")],
    ids=["duplicate", "gap", "from-one", "too-few", "too-many"],
)
def test_choices_other_than_0_to_n_minus_1(indices, listed):
    reply = {"choices": [{"index": i, "text": str(i)} for i in indices]}
    with pytest.raises(ServerReplyError) as caught:
        completions_from_reply(reply, 2)
    message = str(caught.value)
    assert f"asked for n=2 samples, the reply has choices {listed}" in message
    assert "max_n=1" in message


# A repeated index must not overwrite a sample, even when every index 0..n-1 is present.
def test_repeated_index_beside_all_indices_is_an_error():
    reply = {"choices": [{"index": 0, "text": "a"}, {"index": 1, "text": "b"}, {"index": 1, "text": "c"}]}
    with pytest.raises(ServerReplyError):
        completions_from_reply(reply, 2)


# --- through the harness ----------------------------------------------------------

TRIVIAQA_REPLIES = {
    # paris x3 (normalised), lyon: k* = Paris, right, conf 3/4.
    "What is the capital city of France?": [" Paris", " Paris", " paris.", " Lyon"],
    # milan x3, rome: k* = Milan, wrong, conf 3/4.
    "Which city was the capital of the Roman Empire?": [" Milan", " Rome", " Milan", " Milan"],
    # all agree and are right: conf 1.
    "In which city is the Brandenburg Gate?": [" Berlin"] * 4,
    # four classes of one: the tie goes to Lisbon, which came first; right, conf 1/4.
    "What is the capital of Portugal?": [" Lisbon", " Madrid", " Lisboa", " Porto"],
}


def question_of(prompt: str) -> str:
    return prompt.rsplit("Q: ", 1)[1].removesuffix("\nA:")


def test_triviaqa_through_simple_evaluate(server):
    server.behaviour = lambda payload: (200, choices_reply(TRIVIAQA_REPLIES[question_of(payload["prompt"])]))
    model = make_model(server)
    task_manager = TaskManager(
        include_path=str(TASKS_DIR),
        include_defaults=False,
        metadata={"data_files": str(FIXTURES / "triviaqa.jsonl"), "repeats": 4},
    )
    results = simple_evaluate(
        model=model, tasks=["semcal_triviaqa"], task_manager=task_manager, log_samples=True, bootstrap_iters=0
    )

    got = results["results"]["semcal_triviaqa"]
    assert got["acc,semcal"] == pytest.approx(3 / 4)
    assert got["conf,semcal"] == pytest.approx((0.75 + 0.75 + 1.0 + 0.25) / 4)
    assert got["brier,semcal"] == pytest.approx((0.25**2 + 0.75**2 + 0.0 + 0.75**2) / 4)
    assert got["n_classes,semcal"] == pytest.approx((2 + 2 + 1 + 4) / 4)

    assert sorted(question_of(p["prompt"]) for p in server.payloads) == sorted(TRIVIAQA_REPLIES)
    assert all(p["n"] == 4 and "seed" not in p for p in server.payloads)
    samples = {s["doc"]["semcal_id"]: s for s in results["samples"]["semcal_triviaqa"]}
    assert samples["tc_1"]["resps"][0] == TRIVIAQA_REPLIES["What is the capital city of France?"]
    assert logged_record(samples["tc_4"]).to_dict()["representatives"] == ["Lisbon", "Madrid", "Lisboa", "Porto"]


def test_a_saved_run_of_the_api_backend_reads_back(server, tmp_path):
    # lm-eval rebuilds every dict of the logged samples of a model with a MULTIMODAL
    # attribute (its API models) before saving them; the record is no dict, so it is
    # saved as its JSON, and the saved run reads back.
    server.behaviour = lambda payload: (200, choices_reply(TRIVIAQA_REPLIES[question_of(payload["prompt"])]))
    metadata = {"data_files": str(FIXTURES / "triviaqa.jsonl"), "repeats": 4, "bootstrap_iters": 0}
    evaluate_and_save(["semcal_triviaqa"], tmp_path, metadata, model=make_model(server), bootstrap_iters=0)
    [line, *_] = next(tmp_path.rglob("samples_semcal_triviaqa_*.jsonl")).read_text().splitlines()
    assert logged_record(json.loads(line)).to_dict()["answers"] == ["Paris", "Paris", "paris.", "Lyon"]
    (run,) = load_run(tmp_path)
    assert run.confidence.tolist() == [0.75, 0.75, 1.0, 0.25]
    assert run.correct.tolist() == [1.0, 0.0, 1.0, 1.0]


# --- registry and CLI -------------------------------------------------------------


def test_registered_and_not_flagged_as_fixed_seed():
    from lm_eval.api.registry import get_model

    import lm_eval_semcal.harness.models  # noqa: F401
    from lm_eval_semcal.harness.evaluate import fixed_seed_problem

    assert get_model("semcal-completions") is SemcalCompletionsAPI
    assert fixed_seed_problem("semcal-completions") is None
    problem = fixed_seed_problem("local-completions")
    assert problem is not None and "semcal-completions" in problem


def test_token_prompts_are_left_truncated_to_leave_room_for_the_answer(server, tmp_path, caplog):
    from transformers import AutoTokenizer

    from lm_eval_semcal.demo.tiny_model import build_tiny_model

    tokenizer_dir = str(build_tiny_model(tmp_path / "tiny"))
    context = "Q: " + " ".join(f"word{i}" for i in range(40)) + "\nA:"
    ids = AutoTokenizer.from_pretrained(tokenizer_dir)(context)["input_ids"]
    # TemplateAPI keeps max_length - 1 tokens in all; 32 of them are the answer's (max_gen_toks).
    model = make_model(server, tokenizer_backend="huggingface", tokenizer=tokenizer_dir, max_length=50)
    with caplog.at_level("WARNING"):
        got = model.generate_until(instances([context] * 3), disable_tqdm=True)
    assert len(ids) > 17
    # a batch of one tokenized prompt, as local-completions sends it
    assert [p["prompt"] for p in server.payloads] == [[ids[-17:]]]
    assert server.payloads[0]["n"] == 3 and len(got) == 3
    assert any(f"a prompt of {len(ids)} tokens was left-truncated to 17" in r.getMessage() for r in caplog.records)


def test_a_seed_differs_between_the_requests_of_one_question(server):
    # With max_n splitting a question, one seed on every part would repeat its samples.
    make_model(server, seed=7, max_n=2).generate_until(instances(["A"] * 5), disable_tqdm=True)
    assert [(p["n"], p["seed"]) for p in server.payloads] == [(2, 7), (2, 8), (1, 9)]
