"""Stock `hf` against `hf-semcal` (and vLLM, the peer) on the same model and questions, in one run.

Three workloads: concise (prompt ~300 tokens, 16 new tokens, M = 20) and
chain-of-thought (prompt ~600 tokens, 128 new tokens, M = 20), as in issue 4, where every
sample runs to the token budget; and chain-of-thought ending at a stop string
(`cot-stop`: the same, with "\n" as the stop), where samples end at different lengths
as real chains of thought do. The model is randomly initialised and GPT-2-small-sized
(12 layers, 768 wide, 50257-token output layer, 125M parameters), built offline, with
one change: "\n" is made to come with probability about 1/40 at each step (a bias on
its logit; see `make_token_likely`), so `cot-stop`'s lengths are roughly geometric,
mean about 38 tokens, capped at 128. The other workloads have no stop string, so the
change costs them nothing. Both backends run at the same batch sizes, M times 1, 2 and
4 questions (as many as the workload has), and the ratio compares their best times.
Prints wall time, the ratio, generated tokens per second and peak memory (CUDA: peak
allocated; CPU: peak resident set above the level before the run).

    python scripts/bench_generation.py                 # CPU, about 10 minutes on 2 cores
    python scripts/bench_generation.py --device cuda   # a GPU, larger batches worth trying
    python scripts/bench_generation.py --store         # hf-semcal with and without the sample store
    python scripts/bench_generation.py --vllm          # also lm-eval's `vllm` backend, where vLLM is installed

`--vllm` times lm-eval's `vllm` backend on the same weights and requests after the two hf
backends (on a CPU, vLLM's CPU build set up as docs/backends.md says; the engine starts
once, after the hf runs and before its own timing). Its engine runs in a process of its
own, so its peak memory is not measured. It is timed at the engine's own batching (all requests in one `generate`
call), and its best time is compared with each hf backend's best.

`--store` runs hf-semcal through the sample store of `semcal run --use_cache` (a fresh
store each time, so every sample is drawn and written) and prints the share of each run
the store itself takes, timed inside the run; then the store alone: samples filed and
written per second, in questions of M = 50, which bounds its share of any faster run.

The model samples at T = 1. Without a stop string (a random model almost never emits
EOS) every sequence generates exactly the new-token budget and the backends do the same
decoding work; with one, stock `hf` goes on decoding every row of a batch until all have
stopped, while hf-semcal and vLLM drop the rows that have finished.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass

import psutil
import torch
from lm_eval.api.instance import Instance
from lm_eval.api.model import LM
from lm_eval.models.huggingface import HFLM

from lm_eval_semcal.demo.tiny_model import build_tiny_model
from lm_eval_semcal.harness.hf_model import SemcalHFLM
from lm_eval_semcal.harness.resume import ResumableLM
from lm_eval_semcal.harness.sample_store import PendingSamples

GPT2_SMALL = {"n_layer": 12, "n_embd": 768, "n_head": 12, "model_vocab_size": 50257}


@dataclass
class Workload:
    name: str
    prompt_tokens: int
    new_tokens: int
    samples: int
    questions: int
    stop: str | None = None


STOP = "\n"
STOP_PER_STEP = 1 / 40
WORKLOADS = [
    Workload("concise", 300, 16, 20, questions=4),
    Workload("cot", 600, 128, 20, questions=2),
    Workload("cot-stop", 600, 128, 20, questions=2, stop=STOP),
]


def make_token_likely(model_dir: str, text: str, per_step: float) -> float:
    """Give the one token spelling `text` probability about `per_step` at every position; return the mean reached.

    GPT-2's output layer has no bias, and a random model's logits are nearly uniform over
    50257 tokens. The final layer norm's bias gets a direction u, scaled by beta, and the
    token's (tied) embedding row alpha * u: its logit gains alpha * beta at every
    position and every other logit about 0.02 * beta noise. beta is set by bisection on
    the prompt positions of a few texts.
    """
    from transformers import AutoTokenizer, GPT2LMHeadModel

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    (token,) = tokenizer(text)["input_ids"]
    model = GPT2LMHeadModel.from_pretrained(model_dir)
    generator = torch.Generator().manual_seed(0)
    direction = torch.randn(model.config.n_embd, generator=generator)
    direction /= direction.norm()
    alpha = 0.5
    model.transformer.wte.weight.data[token] = alpha * direction
    ids = torch.randint(0, len(tokenizer), (4, 64), generator=generator)
    normed = model.transformer(ids).last_hidden_state  # after the final layer norm, whose bias is still 0
    embeddings = model.transformer.wte.weight

    def mean_probability(beta: float) -> float:
        logits = (normed + beta * direction) @ embeddings.T
        return torch.softmax(logits, dim=-1)[..., token].mean().item()

    low, high = 0.0, 50.0
    for _ in range(40):
        beta = (low + high) / 2
        low, high = (beta, high) if mean_probability(beta) < per_step else (low, beta)
    model.transformer.ln_f.bias.data = beta * direction
    model.save_pretrained(model_dir)
    return mean_probability(beta)


class PeakMemory:
    """Peak memory of the block: CUDA allocator peak, or sampled RSS growth on CPU."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")
        self.peak_bytes = 0

    def __enter__(self):
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            self.process = psutil.Process()
            self.base = self.process.memory_info().rss
            self.running = True
            self.sampler = threading.Thread(target=self._sample, daemon=True)
            self.sampler.start()
        return self

    def _sample(self):
        while self.running:
            self.peak_bytes = max(self.peak_bytes, self.process.memory_info().rss - self.base)
            time.sleep(0.005)

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize()
            self.peak_bytes = torch.cuda.max_memory_allocated() - self.base
        else:
            self.running = False
            self.sampler.join()


def prompts(tokenizer, n_questions: int, n_tokens: int) -> list[str]:
    """`n_questions` distinct few-shot-like prompts of about `n_tokens` tokens each."""
    filler = " ".join(f"Q: What is item {i} of the list? A: It is item {i}." for i in range(400))
    ids = tokenizer(filler)["input_ids"]
    return [f"Q{q}: " + tokenizer.decode(ids[q * 7 : q * 7 + n_tokens]) + "\nA:" for q in range(n_questions)]


def requests(contexts: list[str], workload: Workload) -> list[Instance]:
    gen_kwargs = {
        "until": [workload.stop] if workload.stop else [],
        "max_gen_toks": workload.new_tokens,
        "do_sample": True,
        "temperature": 1.0,
        "top_p": 1.0,
        "top_k": 0,
    }
    return [
        Instance("generate_until", {}, (context, dict(gen_kwargs)), doc_id)
        for doc_id, context in enumerate(contexts)
        for _ in range(workload.samples)
    ]


class _LengthRecorder:
    """While active, the length of each hf-semcal sample up to its first `stop_token` (or all of it)."""

    def __init__(self, stop_token: int | None):
        self.stop_token, self.lengths = stop_token, []

    def __enter__(self):
        self.method = SemcalHFLM._generate_until_finished

        def recorded(lm, *args, **kwargs):
            continuations = self.method(lm, *args, **kwargs)
            for tokens in continuations:
                self.lengths.append(tokens.index(self.stop_token) + 1 if self.stop_token in tokens else len(tokens))
            return continuations

        SemcalHFLM._generate_until_finished = recorded
        return self

    def __exit__(self, *exc):
        SemcalHFLM._generate_until_finished = self.method


def timed(lm, reqs: list[Instance], device: str) -> tuple[float, int]:
    torch.manual_seed(0)
    with PeakMemory(device) as memory:
        start = time.perf_counter()
        lm.generate_until(reqs, disable_tqdm=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
    return elapsed, memory.peak_bytes


class _Stopwatch:
    """`method` of `owner`, timed: `seconds` accumulates the time spent inside it."""

    def __init__(self, owner, name: str):
        self.seconds = 0.0
        self.owner, self.name, self.method = owner, name, getattr(owner, name)
        setattr(owner, name, self)

    def __get__(self, instance, cls):
        return lambda *args, **kwargs: self(instance, *args, **kwargs)

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.method(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start

    def restore(self) -> None:
        setattr(self.owner, self.name, self.method)


def store_overhead(fast: SemcalHFLM, reqs: list[Instance], device: str, model_dir: str, rounds: int) -> None:
    """The share of a run through the sample store that the store itself takes, in each run.

    Wall-time pairs (bare, then through the store) differ by more than the store costs on
    a shared CPU, so the store's time is measured inside each run instead: the wrapper's
    time around the model's call (planning, reading the store, writing what the call
    returned) plus the time the model's cache hook spends filing samples.
    """
    fast.batch_size_per_gpu = len(reqs)
    shares = []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as cache:
            stored = ResumableLM(fast, f"{cache}/bench_rank0.db", model="hf-semcal", model_args={"pretrained": model_dir})
            model = _Stopwatch(SemcalHFLM, "generate_until")
            hook = _Stopwatch(PendingSamples, "receive")
            try:
                total = timed(stored, reqs, device)[0]
            finally:
                model.restore()
                hook.restore()
            assert stored.store.count() == len(reqs)
            stored.store.close()
        store_seconds = total - model.seconds + hook.seconds
        shares.append(store_seconds / total)
        print(f"  run {total:.3f} s, of which the store {store_seconds * 1e3:.2f} ms ({100 * shares[-1]:.3f}%)")
    print(f"  the store's share of the run: median {100 * statistics.median(shares):.3f}% ({rounds} runs)")


class _InstantLM(LM):
    """Answers at once, reporting each sample through the cache hook as real backends do."""

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        for request in requests:
            self.cache_hook.add_partial("generate_until", request.args, " Paris")
        return [" Paris"] * len(requests)

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError


def store_throughput(questions: int = 400, samples: int = 50) -> None:
    """Samples per second the store's wrapper handles around a model that costs nothing."""
    settings = {"until": ["\n"], "do_sample": True, "temperature": 1.0, "max_gen_toks": 32}
    reqs = [Instance("generate_until", {}, (f"Q: question {q}?\nA:", settings), q) for q in range(questions) for _ in range(samples)]
    with tempfile.TemporaryDirectory() as cache:
        stored = ResumableLM(_InstantLM(), f"{cache}/throughput_rank0.db", model="instant", model_args={})
        start = time.perf_counter()
        stored.generate_until(reqs)
        elapsed = time.perf_counter() - start
        assert stored.store.count() == questions * samples
        stored.store.close()
    print(f"\nthe store alone: {len(reqs) / elapsed:,.0f} samples/s planned, filed and written ({elapsed / len(reqs) * 1e6:.1f} us "
          f"a sample; {questions} questions of M = {samples}, one transaction each), around a model that costs nothing")


def vllm_backend(model_dir: str, device: str, dtype: str) -> LM:
    """lm-eval's `vllm` backend over the benchmark's weights (prefix caching on: the M copies share a prompt)."""
    from lm_eval.models.vllm_causallms import VLLM

    # On a CPU, gpu_memory_utilization is the share of the machine's memory the KV cache takes.
    memory = 0.3 if device == "cpu" else 0.8
    return VLLM(pretrained=model_dir, dtype=dtype, max_model_len=1024, gpu_memory_utilization=memory, seed=0,
                enable_prefix_caching=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--questions-per-batch", default="1,2,4", help="batch sizes to try, in questions of M")
    parser.add_argument("--workloads", default="concise,cot,cot-stop")
    parser.add_argument("--store", action="store_true", help="the sample store's cost instead (see above)")
    parser.add_argument("--rounds", type=int, default=5, help="--store: timed runs of each")
    parser.add_argument("--vllm", action="store_true", help="also time lm-eval's vllm backend (see above)")
    args = parser.parse_args()
    torch.set_grad_enabled(False)

    with tempfile.TemporaryDirectory() as model_dir:
        build_tiny_model(model_dir, **GPT2_SMALL)
        reached = make_token_likely(model_dir, STOP, STOP_PER_STEP)
        model_args = {"pretrained": model_dir, "device": args.device, "dtype": args.dtype}
        stock = HFLM(**model_args)
        n_params = sum(p.numel() for p in stock.model.parameters())
        fast = SemcalHFLM(pretrained=stock.model, tokenizer=stock.tokenizer, device=args.device)
        print(f"model: GPT-2-small-sized, {n_params / 1e6:.0f}M parameters, {args.device}, {args.dtype}, "
              f"{torch.get_num_threads()} threads; P({STOP!r}) about {reached:.3f} a step")

        timed_workloads = []
        for workload in (w for w in WORKLOADS if w.name in args.workloads.split(",")):
            contexts = prompts(stock.tokenizer, workload.questions, workload.prompt_tokens)
            reqs = requests(contexts, workload)
            prompt_len = sum(len(stock.tok_encode(c)) for c in contexts) / len(contexts)
            new_tokens = len(reqs) * workload.new_tokens
            print(f"\n{workload.name}: {workload.questions} questions, prompt {prompt_len:.0f} tokens, "
                  f"M = {workload.samples}, {workload.new_tokens} new tokens")
            if args.store:
                store_overhead(fast, reqs, args.device, model_dir, args.rounds)
                continue
            per_batch = [int(q) for q in args.questions_per_batch.split(",")]
            sizes = [workload.samples * q for q in per_batch if q <= workload.questions]
            best = {}
            lengths = _LengthRecorder(stock.tok_encode(workload.stop)[0] if workload.stop else None)
            for name, lm in (("hf", stock), ("hf-semcal", fast)):
                for batch_size in sizes:
                    lm.batch_size_per_gpu = batch_size
                    with lengths if lm is fast else contextlib.nullcontext():
                        seconds, peak = timed(lm, reqs, args.device)
                    best[name] = min(best.get(name, seconds), seconds)
                    print(f"  {name:<9} batch {batch_size:>4}: {seconds:7.2f} s  {new_tokens / seconds:7.0f} tok/s  "
                          f"peak {peak / 2**20:7.0f} MiB")
            if workload.stop:
                print(f"  samples' length up to the stop (hf-semcal): mean {statistics.mean(lengths.lengths):.1f}, "
                      f"median {statistics.median(lengths.lengths):.0f}, {sum(n == workload.new_tokens for n in lengths.lengths)} "
                      f"of {len(lengths.lengths)} at the budget; tok/s counts the budget")
            print(f"  best hf / best hf-semcal: {best['hf'] / best['hf-semcal']:.1f}x")
            timed_workloads.append((workload, reqs, new_tokens, best))
        if args.vllm:
            # Started after the hf runs: its engine process binds cores of its own while alive.
            peer = vllm_backend(model_dir, args.device, args.dtype)
            for workload, reqs, new_tokens, best in timed_workloads:
                seconds = timed(peer, reqs, args.device)[0]
                print(f"\n{workload.name}, vllm (one call, engine process: memory not measured): {seconds:7.2f} s  "
                      f"{new_tokens / seconds:7.0f} tok/s")
                print(f"  best hf-semcal / vllm: {best['hf-semcal'] / seconds:.2f}x   best hf / vllm: "
                      f"{best['hf'] / seconds:.2f}x  (above 1: vLLM is faster)")
        if args.store:
            store_throughput()


if __name__ == "__main__":
    main()
