"""`semcal run --use_cache PATH`: an interrupted run resumes, asking the model only for what is missing.

A scripted backend draws fresh random answers (as a sampling model does), reports each
through lm-eval's cache hook (as every real backend does) and dies where a test says:
by raising part way through a question, or, in a subprocess, by a signal. The rerun is
counted request by request, and its results are compared with a third run served
wholly from the store.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import FIXTURES, GSM8K_TEST, SEMCAL_COMMAND_SEMCAL_INDEX
from fake_server import DROPPED, FakeServer
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from lm_eval_semcal.harness.evaluate import run_lm_eval
from lm_eval_semcal.harness.resume import log as resume_log
from lm_eval_semcal.harness.resume import model_identity, store_path
from lm_eval_semcal.harness.sample_store import SampleStore

# lm-eval itself runs here: CI runs this module under every supported release.
pytestmark = pytest.mark.harness

QUESTIONS = 12
M = 5


class Interrupted(RuntimeError):
    """The scripted backend's death."""


@register_model("semcal-test-sampler")
class ScriptedSampler(LM):
    """Answers each request with a fresh random number; `die_after` samples, then raises.

    Class attributes are the test's controls and counters: `drawn` lists the prompt of
    every request the model was asked for; `reports` turns the cache hook off.
    """

    drawn: list[str] = []
    die_after: int | None = None
    reports = True

    def __init__(self, name: str = "a", **kwargs) -> None:
        super().__init__()
        self.name = name

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        texts = []
        for request in requests:
            if ScriptedSampler.die_after is not None and len(ScriptedSampler.drawn) >= ScriptedSampler.die_after:
                raise Interrupted(f"died after {len(ScriptedSampler.drawn)} samples")
            ScriptedSampler.drawn.append(request.args[0])
            text = f" The answer is {random.randint(1, 4)}."
            if ScriptedSampler.reports:
                self.cache_hook.add_partial("generate_until", request.args, text)
            texts.append(text)
        return texts

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError


@pytest.fixture(autouse=True)
def fresh_sampler(in_process_run):
    ScriptedSampler.drawn, ScriptedSampler.die_after, ScriptedSampler.reports = [], None, True


def semcal_run(cache: Path, out: Path | None = None, *extra: str, model_args: str = "name=a") -> None:
    args = [
        "run", "--model", "semcal-test-sampler", "--model_args", model_args,
        "--tasks", "semcal_gsm8k", "--metadata", json.dumps({"data_files": str(GSM8K_TEST)}),
        "--limit", str(QUESTIONS), "--use_cache", str(cache), *extra,
    ]  # fmt: skip
    if out is not None:
        args += ["--output_path", str(out), "--log_samples"]
    run_lm_eval(args, repeats=M, bootstrap_iters=0)


def saved(out: Path, task: str = "semcal_gsm8k") -> tuple[dict, dict[int, list[str]]]:
    """The metrics and each question's samples of a run saved in `out`."""
    results = json.loads(next(out.rglob("results_*.json")).read_text())["results"][task]
    samples = [json.loads(line) for line in next(out.rglob(f"samples_{task}_*.jsonl")).read_text().splitlines()]
    return results, {sample["doc_id"]: sample["resps"][0] for sample in samples}


def questions_drawn() -> int:
    return len(set(ScriptedSampler.drawn))


@pytest.mark.parametrize("reports", [True, False], ids=["backend-reports-samples", "backend-reports-nothing"])
def test_a_run_that_raised_part_way_resumes_with_only_the_missing_samples(tmp_path, reports):
    cache = tmp_path / "cache"
    ScriptedSampler.reports = reports
    ScriptedSampler.die_after = 4 * M + 2  # four whole questions and two samples of a fifth
    with pytest.raises(Interrupted):
        semcal_run(cache)
    # Only what the backend reported is kept from a call that failed.
    assert SampleStore(store_path(cache)).count() == (4 * M + 2 if reports else 0)

    ScriptedSampler.drawn, ScriptedSampler.die_after = [], None
    semcal_run(cache, tmp_path / "resumed")
    if reports:
        assert len(ScriptedSampler.drawn) == QUESTIONS * M - (4 * M + 2)
        assert questions_drawn() == QUESTIONS - 4
    else:
        assert len(ScriptedSampler.drawn) == QUESTIONS * M

    ScriptedSampler.drawn = []
    semcal_run(cache, tmp_path / "from_store")
    assert ScriptedSampler.drawn == []
    resumed, from_store = saved(tmp_path / "resumed"), saved(tmp_path / "from_store")
    assert resumed == from_store
    assert sorted(from_store[1]) == list(range(QUESTIONS))
    assert all(len(responses) == M for responses in from_store[1].values())


def test_more_samples_per_question_asks_only_for_the_new_ones(tmp_path):
    cache = tmp_path / "cache"
    semcal_run(cache, tmp_path / "m5")
    ScriptedSampler.drawn = []
    run_lm_eval(
        ["run", "--model", "semcal-test-sampler", "--model_args", "name=a", "--tasks", "semcal_gsm8k",
         "--metadata", json.dumps({"data_files": str(GSM8K_TEST)}), "--limit", str(QUESTIONS),
         "--use_cache", str(cache), "--output_path", str(tmp_path / "m8"), "--log_samples"],
        repeats=M + 3, bootstrap_iters=0,
    )  # fmt: skip
    assert len(ScriptedSampler.drawn) == QUESTIONS * 3
    five, eight = saved(tmp_path / "m5")[1], saved(tmp_path / "m8")[1]
    assert all(eight[doc][:M] == five[doc] for doc in five)


@pytest.mark.parametrize(
    "change",
    [
        {"model_args": "name=b"},
        {"extra": ("--gen_kwargs", "temperature=0.7")},
        {"extra": ("--num_fewshot", "1")},
        {"extra": ("--system_instruction", "Answer briefly.")},
    ],
    ids=["another-model", "other-settings", "another-prompt", "a-system-instruction"],
)
def test_a_store_of_another_model_settings_or_prompt_is_never_read(tmp_path, change):
    cache = tmp_path / "cache"
    semcal_run(cache)
    assert len(ScriptedSampler.drawn) == QUESTIONS * M
    ScriptedSampler.drawn = []
    semcal_run(cache, None, *change.get("extra", ()), model_args=change.get("model_args", "name=a"))
    assert len(ScriptedSampler.drawn) == QUESTIONS * M
    # And the first model's samples are still there for it.
    ScriptedSampler.drawn = []
    semcal_run(cache)
    assert ScriptedSampler.drawn == []


def test_placement_arguments_leave_the_identity_alone_and_weights_change_it(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"\x00" * 1000)
    lm = ScriptedSampler()
    one = model_identity("hf", {"pretrained": str(folder), "batch_size": 8, "device": "cuda:0"}, lm)
    assert one == model_identity("hf", f"pretrained={folder},batch_size=64,device=cpu", lm)
    assert one != model_identity("hf", {"pretrained": str(folder), "dtype": "float16"}, lm)
    assert one != model_identity("hf-semcal", {"pretrained": str(folder)}, lm)
    (folder / "model.safetensors").write_bytes(b"\x01" * 1000)
    assert one != model_identity("hf", {"pretrained": str(folder)}, lm)


def test_the_store_is_named_after_the_cache_path_and_shared_by_the_ranks(tmp_path):
    assert store_path(f"{tmp_path}/runs/cache") == tmp_path / "runs" / "cache_semcal_samples.db"
    assert store_path(f"{tmp_path}/runs/cache_rank0.db") == tmp_path / "runs" / "cache_semcal_samples.db"
    assert store_path(f"{tmp_path}/runs/cache_rank1.db") == tmp_path / "runs" / "cache_semcal_samples.db"


def test_a_file_that_cannot_be_the_store_stops_semcal_run_in_one_line_before_the_model(tmp_path, monkeypatch, capsys):
    (tmp_path / "cache_semcal_samples.db").write_text("notes, not samples\n" * 100)
    monkeypatch.setattr(ScriptedSampler, "__init__", lambda *a, **k: pytest.fail("the model was built"))
    with pytest.raises(SystemExit) as stopped:
        semcal_run(tmp_path / "cache")
    assert str(stopped.value) == (
        f"semcal run: error: --use_cache {tmp_path / 'cache'}: {tmp_path / 'cache_semcal_samples.db'} cannot be used "
        "as a sample store (DatabaseError: file is not a database); pass another --use_cache path"
    )


def test_a_backend_returning_no_text_loses_nothing_else(tmp_path, monkeypatch):
    drawn = ScriptedSampler.generate_until
    monkeypatch.setattr(ScriptedSampler, "generate_until", lambda self, requests, **kw: [None, *drawn(self, requests)[1:]])
    ScriptedSampler.reports = False
    semcal_run(tmp_path / "cache", tmp_path / "out")
    assert SampleStore(store_path(tmp_path / "cache")).count() == QUESTIONS * M - 1


def test_the_rerun_says_what_the_store_served(tmp_path, caplog):
    cache = tmp_path / "cache"
    ScriptedSampler.die_after = 3 * M
    with pytest.raises(Interrupted):
        semcal_run(cache)
    ScriptedSampler.die_after = None
    with caplog.at_level(logging.INFO, logger=resume_log.name):
        semcal_run(cache)
    assert (
        f"{3 * M} of {QUESTIONS * M} samples served from it (3 of {QUESTIONS} prompts whole); "
        f"{(QUESTIONS - 3) * M} to draw"
    ) in caplog.text


# --- a run killed by a signal, through the API backend -----------------------------------


def choices(payload: dict) -> dict:
    return {"choices": [{"index": i, "text": f" {random.choice(['Paris', 'Lyon', 'Rome'])}"} for i in range(payload.get("n", 1))]}


@pytest.mark.slow  # three `semcal run` processes
def test_a_run_killed_by_a_signal_resumes_where_it_stopped(tmp_path):
    from lm_eval_semcal.demo.tiny_model import build_tiny_model

    tokenizer = build_tiny_model(tmp_path / "tiny")
    killed_at = 3
    process: subprocess.Popen | None = None

    def kill_at_question(payload: dict):
        # The client sends the next question only after it has filed the last one's samples.
        if len(server.payloads) == killed_at + 1 and process is not None:
            os.kill(process.pid, signal.SIGKILL)
        return 200, choices(payload)

    server = FakeServer("/v1/completions", kill_at_question)
    data = tmp_path / "triviaqa.jsonl"
    rows = [json.loads(line) for line in (FIXTURES / "triviaqa.jsonl").read_text().splitlines()]
    data.write_text("".join(json.dumps({**row, "question": f"{row['question']} ({n})"}) + "\n" for n in range(2) for row in rows))

    def run(out: str) -> subprocess.Popen:
        command = [
            *SEMCAL_COMMAND_SEMCAL_INDEX, "run", "--repeats", str(M), "--bootstrap-iters", "0",
            "--model", "semcal-completions", "--model_args",
            f"model=gen,tokenizer_backend=huggingface,tokenizer={tokenizer},base_url={server.url}",
            "--tasks", "semcal_triviaqa", "--metadata", json.dumps({"data_files": str(data)}),
            "--use_cache", str(tmp_path / "cache"), "--output_path", str(tmp_path / out), "--log_samples",
        ]  # fmt: skip
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)

    try:
        process = run("killed")
        output, _ = process.communicate(timeout=300)
        assert process.returncode == -signal.SIGKILL, output[-2000:]
        assert len(server.payloads) == killed_at + 1
        assert SampleStore(store_path(tmp_path / "cache")).count() == killed_at * M

        server.payloads.clear()
        process = None
        resumed = run("resumed")
        output, _ = resumed.communicate(timeout=300)
        assert resumed.returncode == 0, output[-3000:]
        assert len(server.payloads) == len(rows) * 2 - killed_at
        assert all(payload["n"] == M for payload in server.payloads)

        server.payloads.clear()
        from_store = run("from_store")
        output, _ = from_store.communicate(timeout=300)
        assert from_store.returncode == 0, output[-3000:]
        assert server.payloads == []
    finally:
        server.close()

    assert saved(tmp_path / "resumed", "semcal_triviaqa") == saved(tmp_path / "from_store", "semcal_triviaqa")


# --- the HF backends ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from lm_eval_semcal.demo.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def dies_after(calls: int, method):
    """`method`, raising Interrupted once it has been called `calls` times."""
    count = 0

    def counted(*args, **kwargs):
        nonlocal count
        if count == calls:
            raise Interrupted(f"died after {calls} calls")
        count += 1
        return method(*args, **kwargs)

    return counted


@pytest.mark.parametrize("backend", ["hf", "hf-semcal"])
def test_the_hf_backends_resume_from_the_store(tmp_path, monkeypatch, tiny_model, backend, caplog):
    from lm_eval.models.huggingface import HFLM

    from lm_eval_semcal.harness.hf_model import SemcalHFLM

    questions = 3

    def run(out: Path | None) -> None:
        run_lm_eval(
            ["run", "--model", backend, "--model_args", f"pretrained={tiny_model}", "--tasks", "semcal_triviaqa",
             "--metadata", json.dumps({"data_files": str(FIXTURES / "triviaqa.jsonl")}), "--limit", str(questions),
             "--gen_kwargs", "max_gen_toks=4", "--use_cache", str(tmp_path / "cache"),
             *(["--output_path", str(out), "--log_samples"] if out else [])],
            repeats=M, bootstrap_iters=0,
        )  # fmt: skip

    # hf draws one sample per call (batch size 1); hf-semcal one question's M per call.
    owner, name, calls, kept = (HFLM, "_model_generate", M + 2, M + 2) if backend == "hf" else (SemcalHFLM, "_sample_shared", 2, 2 * M)
    with monkeypatch.context() as patch:
        patch.setattr(owner, name, dies_after(calls, getattr(owner, name)))
        with pytest.raises(Interrupted):
            run(None)
    assert SampleStore(store_path(tmp_path / "cache")).count() == kept

    with caplog.at_level(logging.INFO, logger=resume_log.name):
        run(tmp_path / "resumed")
        assert f"{kept} of {questions * M} samples served from it" in caplog.text
        caplog.clear()
        run(tmp_path / "from_store")
        assert f"{questions * M} of {questions * M} samples served from it" in caplog.text

    assert saved(tmp_path / "resumed", "semcal_triviaqa") == saved(tmp_path / "from_store", "semcal_triviaqa")


# --- the API backends, chat prompts included ---------------------------------------------


def chat_choices(payload: dict) -> dict:
    texts = [f" {random.choice(['Paris', 'Lyon'])}" for _ in range(payload.get("n", 1))]
    return {"choices": [{"index": i, "message": {"role": "assistant", "content": t}} for i, t in enumerate(texts)]}


@pytest.mark.parametrize(
    "backend, path, reply, extra",
    [
        ("semcal-completions", "/v1/completions", choices, ()),
        ("semcal-chat-completions", "/v1/chat/completions", chat_choices, ("--apply_chat_template",)),
        # lm-eval's own backend: one request per sample, each reported through the hook.
        ("local-completions", "/v1/completions", choices, ()),
    ],
)
def test_the_api_backends_are_served_from_the_store(tmp_path, tiny_model, backend, path, reply, extra):
    server = FakeServer(path, lambda payload: (200, reply(payload)))
    tokenizer = "" if "chat" in backend else f",tokenizer_backend=huggingface,tokenizer={tiny_model}"

    def run(out: Path) -> None:
        run_lm_eval(
            ["run", "--model", backend, "--model_args", f"model=gen,base_url={server.url}{tokenizer}",
             "--tasks", "semcal_triviaqa", "--metadata", json.dumps({"data_files": str(FIXTURES / "triviaqa.jsonl")}),
             "--use_cache", str(tmp_path / "cache"), "--output_path", str(out), "--log_samples", *extra],
            repeats=M, bootstrap_iters=0, allow_fixed_seed=backend == "local-completions",
        )  # fmt: skip

    try:
        run(tmp_path / "first")
        asked = len(server.payloads)
        assert asked == (4 if backend.startswith("semcal") else 4 * M)
        run(tmp_path / "again")
        assert len(server.payloads) == asked
    finally:
        server.close()
    assert SampleStore(store_path(tmp_path / "cache")).count() == 4 * M
    assert saved(tmp_path / "first", "semcal_triviaqa") == saved(tmp_path / "again", "semcal_triviaqa")


def models_reply(root: str | None) -> tuple[int, dict]:
    """`GET /v1/models` of a vLLM server serving weights `root` as the model "gen" (None: no root, as some servers)."""
    return 200, {"object": "list", "data": [{"id": "gen", "object": "model", **({"root": root} if root else {})}]}


@pytest.mark.parametrize(
    ("first_root", "second_root", "asked_again"),
    [("/weights/a", "/weights/a", 0), ("/weights/a", "/weights/b", 4), (None, None, 4)],
    ids=["same-weights-resume", "other-weights-never-served", "no-root-keyed-by-url"],
)
def test_a_server_restarted_on_another_port_resumes_by_the_weights_it_names(
    tmp_path, tiny_model, caplog, first_root, second_root, asked_again
):
    # A preempted job rescheduled on another node: the same served name, another host and port.
    def run(server: FakeServer, out: Path) -> None:
        run_lm_eval(
            ["run", "--model", "semcal-completions", "--model_args",
             f"model=gen,base_url={server.url},tokenizer_backend=huggingface,tokenizer={tiny_model}",
             "--tasks", "semcal_triviaqa", "--metadata", json.dumps({"data_files": str(FIXTURES / "triviaqa.jsonl")}),
             "--use_cache", str(tmp_path / "cache"), "--output_path", str(out), "--log_samples"],
            repeats=M, bootstrap_iters=0,
        )  # fmt: skip

    servers = [FakeServer("/v1/completions", lambda payload: (200, choices(payload))) for _ in range(2)]
    try:
        for server, root in zip(servers, (first_root, second_root)):
            server.gets["/v1/models"] = models_reply(root)
        with caplog.at_level(logging.INFO, logger=resume_log.name):
            run(servers[0], tmp_path / "first")
            servers[0].close()
            run(servers[1], tmp_path / "second")
        assert len(servers[0].payloads) == 4
        assert len(servers[1].payloads) == asked_again
        if first_root is None:
            assert "names no weights behind the model 'gen'" in caplog.text
    finally:
        servers[1].close()
    if asked_again == 0:
        assert saved(tmp_path / "first", "semcal_triviaqa") == saved(tmp_path / "second", "semcal_triviaqa")


@pytest.mark.slow  # 200 questions through a server that fails a third of the time (about 30 s)
def test_a_failing_server_under_load_loses_no_sample_and_counts_none_twice(tmp_path, tiny_model):
    # Every third request answered 500, every seventh cut off mid-reply, every eleventh
    # answered after the client's timeout; 16 requests in flight. The backend retries each
    # request until it has its n samples; the store must then hold each sample once.
    lock, count = threading.Lock(), [0]

    def unreliable(payload: dict):
        with lock:
            count[0] += 1
            number = count[0]
        if number % 3 == 0:
            return 500, {"error": "overloaded"}
        if number % 7 == 0:
            return 200, DROPPED
        if number % 11 == 0:
            time.sleep(2.5)
        return 200, {"choices": [{"index": i, "text": f" {random.choice(['18', '20', '3'])}"} for i in range(payload["n"])]}

    def run(server: FakeServer, out: Path) -> None:
        run_lm_eval(
            ["run", "--model", "semcal-completions", "--model_args",
             f"model=gen,base_url={server.url},tokenizer_backend=huggingface,tokenizer={tiny_model},"
             "num_concurrent=16,max_retries=12,timeout=2",
             "--tasks", "semcal_gsm8k", "--metadata", json.dumps({"data_files": str(GSM8K_TEST)}), "--limit", "200",
             "--use_cache", str(tmp_path / "cache"), "--output_path", str(out), "--log_samples"],
            repeats=M, bootstrap_iters=0,
        )  # fmt: skip

    failing = FakeServer("/v1/completions", unreliable)
    clean = FakeServer("/v1/completions", lambda payload: (200, choices(payload)))
    failing.gets["/v1/models"] = clean.gets["/v1/models"] = models_reply("/weights/a")  # one model, two servers
    try:
        run(failing, tmp_path / "under_load")
        run(clean, tmp_path / "from_store")
    finally:
        failing.close()
        clean.close()
    assert count[0] > 200 and len(failing.payloads) == count[0]  # failures were met, and retried
    assert clean.payloads == []  # every sample came from the store
    store = SampleStore(store_path(tmp_path / "cache"))
    assert store.count() == 200 * M
    by_prompt = {}
    for payload in failing.payloads:
        by_prompt.setdefault(json.dumps(payload["prompt"]), payload)
    assert len(by_prompt) == 200
    metrics, samples = saved(tmp_path / "under_load")
    assert len(samples) == 200 and all(len(responses) == M for responses in samples.values())
    assert saved(tmp_path / "from_store") == (metrics, samples)
