"""Stock `hf` against `hf-semcal` on the same model and questions, in one process.

Two workloads, as in issue 4: concise (prompt ~300 tokens, 16 new tokens, M = 20) and
chain-of-thought (prompt ~600 tokens, 128 new tokens, M = 20), on a randomly initialised
GPT-2-small-sized model (12 layers, 768 wide, 50257-token output layer, 125M
parameters) built offline. Both backends run at the same batch sizes, M times 1, 2 and
4 questions (as many as the workload has), and the ratio compares their best times.
Prints wall time, the ratio, generated tokens per second and peak memory (CUDA: peak
allocated; CPU: peak resident set above the level before the run).

    python scripts/bench_generation.py                 # CPU, about 10 minutes on 2 cores
    python scripts/bench_generation.py --device cuda   # a GPU, larger batches worth trying
    python scripts/bench_generation.py --store         # hf-semcal with and without the sample store

`--store` times hf-semcal bare and through the sample store of `semcal run --use_cache`
(a fresh store each time, so every sample is drawn and written), alternating, and prints
the ratio of the medians; then the store alone: samples filed and written per second,
in questions of M = 50, which bounds its share of any faster run.

The model samples at T = 1 with no stop sequence (a random model almost never emits
EOS), so every sequence generates exactly the new-token budget and both backends do the
same decoding work.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass

import psutil
import torch
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM

from lm_eval_semcal.demo.tiny_model import build_tiny_model
from lm_eval_semcal.harness.hf_model import SemcalHFLM
from lm_eval_semcal.harness.request_groups import settings_key
from lm_eval_semcal.harness.resume import ResumableLM
from lm_eval_semcal.harness.sample_store import PendingSamples, SampleStore, request_key

GPT2_SMALL = {"n_layer": 12, "n_embd": 768, "n_head": 12, "model_vocab_size": 50257}


@dataclass
class Workload:
    name: str
    prompt_tokens: int
    new_tokens: int
    samples: int
    questions: int


WORKLOADS = [Workload("concise", 300, 16, 20, questions=4), Workload("cot", 600, 128, 20, questions=2)]


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
        "until": [],
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


def timed(lm, reqs: list[Instance], device: str) -> tuple[float, int]:
    torch.manual_seed(0)
    with PeakMemory(device) as memory:
        start = time.perf_counter()
        lm.generate_until(reqs, disable_tqdm=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
    return elapsed, memory.peak_bytes


def store_overhead(fast: SemcalHFLM, reqs: list[Instance], device: str, model_dir: str, rounds: int) -> None:
    """hf-semcal bare against hf-semcal through ResumableLM, `rounds` alternating pairs."""
    times: dict[str, list[float]] = {"bare": [], "store": []}
    fast.batch_size_per_gpu = len(reqs)
    for round_ in range(rounds):
        with tempfile.TemporaryDirectory() as cache:
            stored = ResumableLM(fast, f"{cache}/bench_rank0.db", model="hf-semcal", model_args={"pretrained": model_dir})
            for name, lm in (("bare", fast), ("store", stored))[:: 1 if round_ % 2 == 0 else -1]:
                times[name].append(timed(lm, reqs, device)[0])
            assert stored.store.count() == len(reqs)
            stored.store.close()
    bare, store = statistics.median(times["bare"]), statistics.median(times["store"])
    print(f"  hf-semcal bare: median {bare:.3f} s, through the store: median {store:.3f} s ({rounds} runs each)")
    print(f"  store / bare: {store / bare:.4f} ({(store / bare - 1) * 100:+.2f}%)")


def store_throughput(questions: int = 400, samples: int = 50) -> None:
    """Samples per second the store files and writes on its own (no model)."""
    settings = {"until": ["\n"], "do_sample": True, "temperature": 1.0}
    with tempfile.TemporaryDirectory() as cache:
        store = SampleStore(f"{cache}/throughput_semcal_samples.db")
        plan = [(request_key("m", f"Q{q}", settings), f"Q{q}", settings_key(settings), 0, samples) for q in range(questions)]
        pending = PendingSamples(store, plan)
        start = time.perf_counter()
        for q in range(questions):
            for s in range(samples):
                pending.receive(f"Q{q}", settings, f" The answer is {s}.")
        elapsed = time.perf_counter() - start
        assert store.count() == questions * samples
        store.close()
    print(f"\nthe store alone: {questions * samples / elapsed:,.0f} samples/s filed and written "
          f"({elapsed / (questions * samples) * 1e6:.1f} us a sample, one transaction per question of {samples})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--questions-per-batch", default="1,2,4", help="batch sizes to try, in questions of M")
    parser.add_argument("--workloads", default="concise,cot")
    parser.add_argument("--store", action="store_true", help="the sample store's cost instead (see above)")
    parser.add_argument("--rounds", type=int, default=5, help="--store: timed runs of each")
    args = parser.parse_args()
    torch.set_grad_enabled(False)

    with tempfile.TemporaryDirectory() as model_dir:
        build_tiny_model(model_dir, **GPT2_SMALL)
        model_args = {"pretrained": model_dir, "device": args.device, "dtype": args.dtype}
        stock = HFLM(**model_args)
        n_params = sum(p.numel() for p in stock.model.parameters())
        fast = SemcalHFLM(pretrained=stock.model, tokenizer=stock.tokenizer, device=args.device)
        print(f"model: GPT-2-small-sized, {n_params / 1e6:.0f}M parameters, {args.device}, {args.dtype}, "
              f"{torch.get_num_threads()} threads")

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
            for name, lm in (("hf", stock), ("hf-semcal", fast)):
                for batch_size in sizes:
                    lm.batch_size_per_gpu = batch_size
                    seconds, peak = timed(lm, reqs, args.device)
                    best[name] = min(best.get(name, seconds), seconds)
                    print(f"  {name:<9} batch {batch_size:>4}: {seconds:7.2f} s  {new_tokens / seconds:7.0f} tok/s  "
                          f"peak {peak / 2**20:7.0f} MiB")
            print(f"  best hf / best hf-semcal: {best['hf'] / best['hf-semcal']:.1f}x")
        if args.store:
            store_throughput()


if __name__ == "__main__":
    main()
