"""The real vLLM engine behind lm-eval's `vllm` backend, and `vllm serve` behind ours.

Runs only where vLLM is installed (CI's third environment, `.ci/run`; how to build one on
a CPU: docs/backends.md). One engine serves the whole module: a tiny GPT-2-style model
(head size 32, the least vLLM's CPU attention takes) whose embedding is scaled up so that
its next-token distribution is peaked, as in test_hf_model.py. The sampled distribution
of the first new token is compared with the exact one, computed by transformers from the
same weights: a top_k, top_p or temperature that vLLM did not honour shifts it by far more
than sampling noise.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import torch
from conftest import FIXTURES, GSM8K_TEST, generation_request
from lm_eval import simple_evaluate
from test_hf_model import goodness_of_fit_p
from test_tasks_end_to_end import semcal_task_manager

from lm_eval_semcal.demo.tiny_model import build_tiny_model
from lm_eval_semcal.harness.evaluate import run_lm_eval
from lm_eval_semcal.runs.saved import logged_record

pytestmark = pytest.mark.vllm

SAMPLES = 3000
ALPHA = 1e-3  # a correct sampler fails one check in a thousand
PROMPT = "Q: How many apples are there?\nA:"
# vLLM's CPU backend reserves this share of the machine's memory for its KV cache
# (`gpu_memory_utilization`, despite the name); its default, 0.9, fails beside anything else.
# enforce_eager: no graph compilation, which costs a tiny model more than it saves.
ENGINE_ARGS = "dtype=float32,max_model_len=1024,gpu_memory_utilization=0.05,seed=0,enforce_eager=True"
SERVE_ARGS = ("--dtype", "float32", "--max-model-len", "1024", "--gpu-memory-utilization", "0.05", "--enforce-eager")


def build_peaked_model(out_dir) -> str:
    """The tiny model with its (tied) embedding scaled 6x: logits far from uniform."""
    from transformers import GPT2LMHeadModel

    build_tiny_model(out_dir)
    model = GPT2LMHeadModel.from_pretrained(out_dir)
    with torch.no_grad():
        model.transformer.wte.weight.mul_(6.0)
    model.save_pretrained(out_dir)
    return str(out_dir)


@pytest.fixture(scope="module")
def peaked_model(tmp_path_factory):
    return build_peaked_model(tmp_path_factory.mktemp("peaked-model"))


@pytest.fixture(scope="module")
def vllm_lm(peaked_model):
    from lm_eval.models.vllm_causallms import VLLM

    return VLLM.create_from_arg_string(f"pretrained={peaked_model},{ENGINE_ARGS}")


@functools.cache
def first_token_logits(model_dir: str, prompt: str) -> tuple[torch.Tensor, tuple[str, ...]]:
    """The next-token logits after `prompt` (float64, by transformers) and each token's text as vLLM writes it."""
    from transformers import AutoTokenizer, GPT2LMHeadModel

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = GPT2LMHeadModel.from_pretrained(model_dir, torch_dtype=torch.float64)
    with torch.no_grad():
        logits = model(torch.tensor([tokenizer(prompt)["input_ids"]])).logits[0, -1]
    # vLLM stops at the end-of-text token, writes any other token's text as it is, and
    # leaves out the bytes of a character the token only begins (decoded here as U+FFFD).
    texts = tuple(
        "" if token == tokenizer.eos_token_id else tokenizer.decode([token]).replace("\ufffd", "").split("\n")[0]
        for token in range(len(logits))
    )
    return logits, texts


def exact_first_token(model_dir: str, prompt: str, temperature: float, top_k: int = 0) -> Counter:
    """P(first new token's text, cut at a newline) under T-scaled sampling, by transformers."""
    logits, texts = first_token_logits(model_dir, prompt)
    logits = logits / temperature
    if top_k:
        logits[logits < torch.topk(logits, top_k).values[-1]] = -torch.inf
    probabilities = Counter()
    for text, p in zip(texts, torch.softmax(logits, dim=-1).tolist(), strict=True):
        if p > 0:
            probabilities[text] += p
    return probabilities


def sampled_first_token(lm, prompt: str, gen_kwargs: dict) -> Counter:
    requests = [generation_request({}, (prompt, dict(gen_kwargs)), doc_id=0) for _ in range(SAMPLES)]
    return Counter(lm.generate_until(requests, disable_tqdm=True))


def one_token(temperature=1.0, top_k=0):
    return {"until": ["\n"], "max_gen_toks": 1, "do_sample": True, "temperature": temperature, "top_k": top_k}


def test_the_model_is_peaked(peaked_model):
    top = sorted(exact_first_token(peaked_model, PROMPT, 1.0).values(), reverse=True)
    assert top[0] > 0.05 and sum(top[:20]) > 0.5


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_vllm_samples_the_exact_distribution_with_top_k_0(vllm_lm, peaked_model, temperature):
    observed = sampled_first_token(vllm_lm, PROMPT, one_token(temperature))
    assert goodness_of_fit_p(observed, exact_first_token(peaked_model, PROMPT, temperature)) > ALPHA


def test_the_check_catches_a_sampler_that_drops_the_tail(vllm_lm, peaked_model):
    # Power: samples truncated to the 20 likeliest tokens fail the check against the full
    # distribution, so a top_k lost on the way to vLLM would be seen.
    observed = sampled_first_token(vllm_lm, PROMPT, one_token(top_k=20))
    assert goodness_of_fit_p(observed, exact_first_token(peaked_model, PROMPT, 1.0, top_k=20)) > ALPHA
    assert goodness_of_fit_p(observed, exact_first_token(peaked_model, PROMPT, 1.0)) < ALPHA


def test_a_semcal_task_runs_through_the_vllm_backend(vllm_lm):
    repeats, limit = 10, 4
    results = simple_evaluate(
        model=vllm_lm,
        tasks=["semcal_gsm8k"],
        task_manager=semcal_task_manager(data_files=str(GSM8K_TEST), repeats=repeats),
        limit=limit,
        log_samples=True,
        bootstrap_iters=0,
    )
    samples = results["samples"]["semcal_gsm8k"]
    assert len(samples) == limit
    for sample in samples:
        assert len(sample["resps"][0]) == repeats
        assert sum(logged_record(sample).classes.counts) == repeats
    # A random model's ten samples are not ten copies: vLLM drew them independently.
    assert all(len(set(sample["resps"][0])) > 1 for sample in samples)
    metrics = results["results"]["semcal_gsm8k"]
    assert 0 <= metrics["conf,semcal"] <= 1 and metrics["n_classes,semcal"] > 1


def test_an_interrupted_vllm_run_resumes_from_the_sample_store(vllm_lm, peaked_model, tmp_path, monkeypatch):
    # lm-eval's vllm backend files each chunk's samples through the cache hook as the
    # chunk returns. Interrupted in its third chunk (of four, a question each), the run has
    # kept two questions; the rerun asks the engine for the other two only, and returns
    # the kept samples as they were drawn.
    from lm_eval_semcal.harness.resume import ResumableLM
    from lm_eval_semcal.harness.sample_store import request_key

    monkeypatch.setattr(vllm_lm, "cache_hook", vllm_lm.cache_hook)  # restored for the other tests
    monkeypatch.setattr(vllm_lm, "batch_size", 6)
    settings = {"until": ["\n"], "max_gen_toks": 4, "do_sample": True, "temperature": 1.0, "top_k": 0}
    prompts = [f"Q: How many apples are in basket {number}?\nA:" for number in range(4)]
    requests = [generation_request({}, (prompt, dict(settings)), doc_id=i) for i, prompt in enumerate(prompts) for _ in range(6)]
    engine = vllm_lm._model_generate
    asked = []

    def interrupted_in_third_chunk(requests, *args, **kwargs):
        asked.append(len(requests))
        if len(asked) == 3:
            raise KeyboardInterrupt  # what Ctrl-C, or SIGINT to a preempted job, raises
        return engine(requests, *args, **kwargs)

    def resumable() -> ResumableLM:
        return ResumableLM(vllm_lm, str(tmp_path / "cache" / "run"), model="vllm", model_args=f"pretrained={peaked_model}")

    with monkeypatch.context() as patch:
        patch.setattr(vllm_lm, "_model_generate", interrupted_in_third_chunk)
        first = resumable()
        with pytest.raises(KeyboardInterrupt):
            first.generate_until(requests, disable_tqdm=True)
        kept = {prompt: [text for _, text in first.store.samples(request_key(first.model_key, prompt, settings))] for prompt in prompts}
        first.store.close()
    assert asked == [6, 6, 6]
    assert sorted(len(texts) for texts in kept.values()) == [0, 0, 6, 6]

    def counted(requests, *args, **kwargs):
        asked.append(len(requests))
        return engine(requests, *args, **kwargs)

    asked.clear()
    monkeypatch.setattr(vllm_lm, "_model_generate", counted)
    second = resumable()
    responses = second.generate_until(requests, disable_tqdm=True)
    assert asked == [6, 6]  # the two questions the first run did not finish
    assert second.store.count() == 24
    second.store.close()
    for prompt, texts in kept.items():
        if texts:
            assert [r for request, r in zip(requests, responses) if request.args[0] == prompt] == texts


# --- `vllm serve` behind semcal-completions and semcal-chat-completions -------------------

M = 5
# A chat template for the tiny model, which has none: vLLM's chat endpoint needs one.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


class VllmServer:
    """`vllm serve MODEL` as a user starts it, on a free port, serving the model as "gen"."""

    def __init__(self, model_dir: str, template: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [shutil.which("vllm"), "serve", model_dir, "--served-model-name", "gen", "--port", str(self.port),
             "--chat-template", str(template), *SERVE_ARGS],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        self._wait_until_healthy()

    def _wait_until_healthy(self, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"vllm serve exited with {self.process.returncode}"
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                time.sleep(1)
        raise TimeoutError(f"vllm serve did not answer /health in {timeout} s")

    def requests_served(self) -> int:
        """HTTP requests answered on the generation endpoints, from the server's Prometheus counters.

        (Not `vllm:request_success_total`: the engine counts each of a request's n samples.)
        """
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as reply:
            lines = reply.read().decode().splitlines()
        return round(sum(
            float(line.split()[-1]) for line in lines
            if line.startswith("http_requests_total{") and 'method="POST"' in line and "completions" in line
        ))  # fmt: skip

    def kill(self) -> None:
        """SIGKILL to the server and its engine process, as a preempted job dies (once)."""
        if self.process.returncode is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny-model")))


@pytest.fixture(scope="module")
def chat_template(tmp_path_factory):
    path = tmp_path_factory.mktemp("template") / "chat.jinja"
    path.write_text(CHAT_TEMPLATE, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def server(tiny_model, chat_template):
    served = VllmServer(tiny_model, chat_template)
    yield served
    served.kill()


def semcal_run(backend: str, server: VllmServer, out: Path, cache: Path | None = None, *, tokenizer: str = "",
               limit: int = 4, extra: tuple[str, ...] = ()) -> None:
    endpoint = "chat/completions" if "chat" in backend else "completions"
    run_lm_eval(
        ["run", "--model", backend, "--model_args", f"model=gen,base_url={server.url}/v1/{endpoint}{tokenizer}",
         "--tasks", "semcal_triviaqa", "--metadata", json.dumps({"data_files": str(FIXTURES / "triviaqa.jsonl")}),
         "--limit", str(limit), "--gen_kwargs", "max_gen_toks=8", "--output_path", str(out), "--log_samples",
         *(["--use_cache", str(cache)] if cache else []), *extra],
        repeats=M, bootstrap_iters=0,
    )  # fmt: skip


def saved_samples(out: Path) -> dict[int, list[str]]:
    lines = next(out.rglob("samples_semcal_triviaqa_*.jsonl")).read_text(encoding="utf-8").splitlines()
    return {sample["doc_id"]: sample["resps"][0] for sample in map(json.loads, lines)}


def test_semcal_completions_asks_vllm_once_per_question_for_m_samples(server, tiny_model, in_process_run, tmp_path):
    before = server.requests_served()
    semcal_run("semcal-completions", server, tmp_path / "out", tokenizer=f",tokenizer_backend=huggingface,tokenizer={tiny_model}")
    assert server.requests_served() - before == 4  # one request of n = M per question
    samples = saved_samples(tmp_path / "out")
    assert sorted(samples) == [0, 1, 2, 3] and all(len(responses) == M for responses in samples.values())
    assert all(len(set(responses)) > 1 for responses in samples.values())  # M draws, not M copies


def test_semcal_chat_completions_through_the_servers_chat_template(server, in_process_run, tmp_path):
    before = server.requests_served()
    semcal_run("semcal-chat-completions", server, tmp_path / "out", extra=("--apply_chat_template",))
    assert server.requests_served() - before == 4
    samples = saved_samples(tmp_path / "out")
    assert all(len(responses) == M and len(set(responses)) > 1 for responses in samples.values())


def test_a_server_killed_mid_run_and_restarted_is_asked_only_for_what_the_store_lacks(
    server, tiny_model, chat_template, in_process_run, tmp_path, monkeypatch
):
    # The module's server is killed here (a server start costs half a minute): last in the file.
    # It dies with SIGKILL after answering two of the run's four questions; the run fails
    # on the third (connection refused, after its retries) with the two kept in the store.
    from lm_eval_semcal.harness.api_model import SemcalCompletionsAPI

    monkeypatch.setenv("SEMCAL_RESCUE_DIR", str(tmp_path / "rescue"))
    tokenizer = f",tokenizer_backend=huggingface,tokenizer={tiny_model}"
    request_samples = SemcalCompletionsAPI._request_samples
    answered = []

    def killed_after_two_answers(self, *args, **kwargs):
        texts = request_samples(self, *args, **kwargs)
        answered.append(texts)
        if len(answered) == 2:
            server.kill()
        return texts

    with monkeypatch.context() as patch:
        patch.setattr(SemcalCompletionsAPI, "_request_samples", killed_after_two_answers)
        with pytest.raises(RuntimeError, match="a request failed after .* the samples received so far are saved"):
            semcal_run("semcal-completions", server, tmp_path / "first", tmp_path / "cache", tokenizer=tokenizer)
    assert len(answered) == 2 and server.process.returncode is not None
    # The job is rescheduled: the same weights served again, on another port.
    second = VllmServer(tiny_model, chat_template)
    try:
        semcal_run("semcal-completions", second, tmp_path / "second", tmp_path / "cache", tokenizer=tokenizer)
        assert second.requests_served() == 2  # two questions; the other two come from the store
    finally:
        second.kill()
    samples = saved_samples(tmp_path / "second")
    assert sorted(samples) == [0, 1, 2, 3]
    # the two questions answered before the kill are read back as they were received
    assert sum(responses in answered for responses in samples.values()) == 2
