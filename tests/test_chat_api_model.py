"""`semcal-chat-completions` against a fake OpenAI-compatible chat endpoint on 127.0.0.1.

The M copies of a question's conversation become one POST with `n` = M and no seed; a
reply with fewer samples is an error (the samples received are rescued), never a short
sample; the key comes from the environment; a semcal task runs through lm-eval with
`apply_chat_template` and its saved run reads back with `semcal report`.
"""

from __future__ import annotations

import copy
import json
import logging
import traceback

import pytest
from conftest import FIXTURES, generation_request
from fake_server import FakeServer, Reply
from lm_eval.api.instance import Instance
from lm_eval.models.api_models import JsonChatStr

from lm_eval_semcal.cli import main
from lm_eval_semcal.harness.api_model import SemcalChatCompletionsAPI, SemcalCompletionsAPI
from lm_eval_semcal.harness.evaluate import evaluate_and_save, fixed_seed_problem
from lm_eval_semcal.runs.saved import load_run

CHAT_PATH = "/v1/chat/completions"
GEN_KWARGS = {"until": ["\n", "Q:"], "max_gen_toks": 32, "do_sample": True, "temperature": 1.0, "top_p": 1.0, "top_k": 0}
CONCISE_TEXT = (
    "Answer each question with the answer alone: a name, a date, a number or a short phrase, on one line, "
    "with no explanation and no other words."
)

# lm-eval itself runs here: CI runs this module under every supported release.
pytestmark = pytest.mark.harness


def chat_reply(texts: list[str]) -> dict:
    return {
        "object": "chat.completion",
        "choices": [{"index": i, "message": {"role": "assistant", "content": t}} for i, t in enumerate(texts)],
    }


def echo(payload: dict) -> Reply:
    """Each choice names the last user turn it answers and its index."""
    return 200, chat_reply([f"{payload['messages'][-1]['content']}|{i}" for i in range(payload["n"])])


@pytest.fixture
def server():
    fake = FakeServer(CHAT_PATH, echo)
    yield fake
    fake.close()


def make_model(server: FakeServer, **kwargs) -> SemcalChatCompletionsAPI:
    options = {"base_url": server.url, "model": "fake-instruct", "max_retries": 2}
    return SemcalChatCompletionsAPI(**(options | kwargs))


def conversation(question: str) -> JsonChatStr:
    return JsonChatStr(json.dumps([{"role": "system", "content": "Be brief."}, {"role": "user", "content": question}]))


def instances(questions: list[str]) -> list[Instance]:
    doc_ids = {q: i for i, q in enumerate(dict.fromkeys(questions))}
    return [
        generation_request({"q": q}, (conversation(q), copy.deepcopy(GEN_KWARGS)), i, doc_id=doc_ids[q])
        for i, q in enumerate(questions)
    ]


def test_one_chat_request_of_n_samples_per_question_and_no_seed(server):
    got = make_model(server).generate_until(instances(["B", "A", "B", "A", "B", "A"]), disable_tqdm=True)
    assert got == ["B|0", "A|0", "B|1", "A|1", "B|2", "A|2"]
    assert [p["messages"] for p in server.payloads] == [
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": q}] for q in ("B", "A")
    ]
    for payload in server.payloads:
        assert payload["n"] == 3 and "seed" not in payload
        assert payload["model"] == "fake-instruct" and payload["max_tokens"] == 32
        assert payload["temperature"] == 1.0 and payload["top_p"] == 1.0 and payload["stop"] == ["\n", "Q:"]


def test_max_n_and_a_given_seed(server):
    make_model(server, max_n=2, seed=7).generate_until(instances(["A"] * 5), disable_tqdm=True)
    assert [(p["n"], p["seed"]) for p in server.payloads] == [(2, 7), (2, 8), (1, 9)]


def test_a_short_reply_is_an_error_and_the_samples_received_are_rescued(server, rescue_dir):
    server.behaviour = lambda payload: (
        (200, chat_reply(["Paris"] * payload["n"])) if "France" in payload["messages"][-1]["content"]
        else (200, chat_reply(["Rome"] * (payload["n"] - 1)))
    )
    with pytest.raises(RuntimeError, match=r"asked for n=3 samples, the reply has choices \[0, 1\]") as err:
        make_model(server, num_concurrent=1).generate_until(instances(["France"] * 3 + ["Italy"] * 3), disable_tqdm=True)
    [rescue] = rescue_dir.glob("*.jsonl")
    assert str(rescue) in str(err.value)
    [row] = [json.loads(line) for line in rescue.read_text().splitlines()]
    assert row["resps"] == ["Paris"] * 3 and json.loads(row["prompt"])[-1]["content"] == "France"


def test_a_choice_without_content_is_an_error_not_a_sample(server):
    server.behaviour = lambda payload: (200, {"choices": [{"index": 0, "message": {"content": None}}]})
    with pytest.raises(RuntimeError, match="lacks an integer `index` or its text"):
        make_model(server).generate_until(instances(["A"]), disable_tqdm=True)


def test_reasoning_is_cut_at_the_think_end_token(server):
    server.behaviour = lambda payload: (200, chat_reply(["<think>hmm</think>Paris"] * payload["n"]))
    got = make_model(server, think_end_token="</think>").generate_until(instances(["A", "A"]), disable_tqdm=True)
    assert got == ["Paris", "Paris"]


def test_the_key_comes_from_the_environment(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-123")
    make_model(server).generate_until(instances(["A"]), disable_tqdm=True)
    assert server.headers[0]["Authorization"] == "Bearer sk-test-123"


def test_a_key_the_chat_server_echoes_is_never_logged_or_raised(server, monkeypatch, caplog, capfd):
    key = "sk-test-chat-echoed-77a0"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    server.behaviour = lambda payload: (401, {"error": f"not accepted: {server.headers[-1]['Authorization']}"})
    with caplog.at_level(logging.DEBUG), pytest.raises(RuntimeError, match="401 Client Error") as caught:
        make_model(server).generate_until(instances(["A"]), disable_tqdm=True)
    assert server.headers[0]["Authorization"] == f"Bearer {key}"
    assert caplog.text.count('"not accepted: Bearer ***"') == 2
    assert key not in caplog.text and key not in "".join(capfd.readouterr())
    assert key not in "".join(traceback.format_exception(caught.value))


def test_text_prompts_and_chat_prompts_go_to_their_own_backend(server):
    text_request = [generation_request({}, ("Q: A?\nA:", dict(GEN_KWARGS)), task="t")]
    with pytest.raises(ValueError, match="add --apply_chat_template"):
        make_model(server).generate_until(text_request, disable_tqdm=True)
    completions = SemcalCompletionsAPI(base_url=server.url, model="fake", tokenizer_backend=None)
    with pytest.raises(ValueError, match="use --model semcal-chat-completions"):
        completions.generate_until(instances(["A"]), disable_tqdm=True)
    assert server.payloads == []


def test_registered_and_named_for_a_stock_chat_backend():
    from lm_eval.api.registry import get_model

    assert get_model("semcal-chat-completions") is SemcalChatCompletionsAPI
    assert fixed_seed_problem("semcal-chat-completions") is None
    assert "--model semcal-chat-completions" in fixed_seed_problem("local-chat-completions")


REPLIES = {
    # paris x3 (markdown and a label, as instruct models write), lyon: right, conf 3/4.
    "What is the capital city of France?": ["**Paris**", "Answer: Paris", "Paris", "Lyon"],
    # milan x3, rome: wrong, conf 3/4.
    "Which city was the capital of the Roman Empire?": ["Milan", "Rome", "*Milan*", "Milan"],
    "In which city is the Brandenburg Gate?": ["Berlin"] * 4,
    "What is the capital of Portugal?": ["Lisbon", "Madrid", "Lisboa", "Porto"],
}


def turns(messages: list[dict]) -> list[tuple[str, str]]:
    """Each message's role and text (lm-eval 0.5 adds `"type": "text"` to each message, 0.4.13 does not)."""
    return [(message["role"], message["content"]) for message in messages]


def test_a_chat_run_through_lm_eval_reads_back_with_semcal_report(server, tmp_path, capsys):
    def reply(payload: dict) -> Reply:
        assert turns(payload["messages"])[0] == ("system", CONCISE_TEXT)
        question = payload["messages"][-1]["content"].rsplit("Q: ", 1)[1].removesuffix("\nA:")
        return 200, chat_reply(REPLIES[question])

    server.behaviour = reply
    metadata = {"data_files": str(FIXTURES / "triviaqa.jsonl"), "repeats": 4, "bootstrap_iters": 0}
    results = evaluate_and_save(
        ["semcal_triviaqa"], tmp_path / "out", metadata, model=make_model(server), apply_chat_template=True,
        fewshot_as_multiturn=True, bootstrap_iters=0,
    )
    got = results["results"]["semcal_triviaqa"]
    assert got["acc,semcal"] == pytest.approx(3 / 4)
    assert got["conf,semcal"] == pytest.approx((0.75 + 0.75 + 1.0 + 0.25) / 4)
    assert len(server.payloads) == 4 and all(p["n"] == 4 and "seed" not in p for p in server.payloads)
    # The exemplars are turns of the conversation, in the concise style.
    assert ("assistant", "Mars") in turns(server.payloads[0]["messages"])

    (run,) = load_run(tmp_path / "out")
    assert sorted(run.confidence.tolist()) == [0.25, 0.75, 0.75, 1.0]
    assert main(["report", str(tmp_path / "out"), "--bootstrap-iters", "0"]) == 0
    [page] = (tmp_path / "out" / "semcal_report").glob("*semcal_triviaqa.md")
    assert "| acc | 0.7500 |  | higher |" in page.read_text()
