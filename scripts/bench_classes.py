"""What grouping M = 50 answers by NLI or an LLM reader costs: model calls, throughput, cached re-runs.

    python scripts/bench_classes.py                  # 300 questions, about 20 seconds on 2 CPU cores
    python scripts/bench_classes.py --device cuda

1. Pairs judged per question by `nli` (one representative per class, both directions)
   against the naive all-pairs count M (M - 1), on synthetic answers: each question has
   1 to 4 meanings with Zipf-like shares, each meaning 1 to 3 surface forms. The judge
   here is an oracle (entailment exactly between forms of one meaning), so the count is
   the one a perfect NLI model would need; a real model's mistakes change it little.
2. Pairs per second through a Hugging Face classifier, batched (`--batch-size`) against
   one pair at a time: a randomly initialised BERT-base-sized model (110M parameters;
   no download), so the speed is real and the labels are noise.
3. Model calls when the same samples are grouped again with the on-disk cache: must be 0.
4. `llm`: reader calls per question (one per distinct response) against M, with an oracle
   reader that names each response's meaning, and calls on a cached re-run (must be 0).
5. `llm` through an OpenAI-compatible endpoint on 127.0.0.1 that answers each request
   after a fixed delay (`--latency-ms`, standing in for a real server's): prompts per
   second with `num_concurrent` requests in flight against one at a time.
6. `llm` through a local Hugging Face reader, a randomly initialised GPT-2-style model
   (6 layers, 512 wide): prompts per second in batches (`--reader-batch-size`) against one
   at a time.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from lm_eval_semcal.core.scoring import GroupingRequest
from lm_eval_semcal.grouping.judgement_cache import JudgementCache
from lm_eval_semcal.grouping.llm import LlmGrouping, extraction_prompt
from lm_eval_semcal.grouping.llm_clients import HFChatClient, OpenAIChatClient
from lm_eval_semcal.grouping.nli import NliGrouping, hf_judge
from lm_eval_semcal.demo.tiny_model import build_tiny_model

MEANING_FORMS = [
    ["Paris", "Paris, France", "the city of Paris"],
    ["Lyon", "Lyon, France"],
    ["Marseille"],
    ["Toulouse", "the city of Toulouse"],
]


def synthetic_questions(n_questions: int, samples: int, seed: int = 0) -> tuple[list[GroupingRequest], dict]:
    """Questions with 1-4 meanings (Zipf-like shares), and each form's meaning."""
    rng = random.Random(seed)
    meaning_of = {}
    requests = []
    for q in range(n_questions):
        meanings = [[f"{form} {q}" for form in forms] for forms in MEANING_FORMS[: rng.randint(1, 4)]]
        for m, forms in enumerate(meanings):
            meaning_of.update({form.lower(): (q, m) for form in forms})
        weights = [1 / (rank + 1) for rank in range(len(meanings))]
        answers = [rng.choice(rng.choices(meanings, weights)[0]) for _ in range(samples)]
        requests.append(GroupingRequest(f"Question {q}?", answers))
    return requests, meaning_of


def oracle_judge(meaning_of: dict, calls: list[int]):
    from lm_eval_semcal.core.normalization import normalize_text

    meaning = {normalize_text(form): m for form, m in meaning_of.items()}

    def judge(pairs):
        calls.append(len(pairs))
        return ["entailment" if meaning[a] == meaning[b] else "neutral" for _, a, b in pairs]

    return judge


def random_classifier(directory: Path) -> str:
    """A BERT-base-sized 3-label classifier with NLI labels and random weights."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    trainer = trainers.WordPieceTrainer(vocab_size=2000, special_tokens=specials, show_progress=False)
    tokenizer.train_from_iterator([" ".join(forms) for forms in MEANING_FORMS] * 10 + ["Q: Question A:"], trainer)
    hf_tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"
    )
    hf_tokenizer.save_pretrained(directory)
    config = BertConfig(
        vocab_size=30522, num_labels=3,
        id2label={0: "CONTRADICTION", 1: "NEUTRAL", 2: "ENTAILMENT"},
        label2id={"CONTRADICTION": 0, "NEUTRAL": 1, "ENTAILMENT": 2},
    )
    BertForSequenceClassification(config).save_pretrained(directory)
    return str(directory)


class OracleReader:
    """A reader that names each response's meaning by its first surface form; counts its prompts."""

    fingerprint = "oracle-reader"

    def __init__(self, meaning_of: dict) -> None:
        self.canonical = {}
        for form, meaning in meaning_of.items():
            self.canonical.setdefault(meaning, form)
        self.meaning_of = meaning_of
        self.prompts = 0

    def complete(self, prompts):
        for index, prompt in enumerate(prompts):
            self.prompts += 1
            response = re.search(r"\nResponse: (.*)\nShort final answer:$", prompt).group(1)
            yield index, self.canonical[self.meaning_of[response.lower()]]


def slow_chat_server(latency_s: float) -> ThreadingHTTPServer:
    """A chat completions endpoint on 127.0.0.1 that answers "Paris" after `latency_s`."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(latency_s)
            body = json.dumps({"choices": [{"index": 0, "message": {"content": "Paris"}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def prompts_per_second(client, prompts) -> float:
    start = time.perf_counter()
    assert len(dict(client.complete(prompts))) == len(prompts)
    return len(prompts) / (time.perf_counter() - start)


def bench_llm(args, requests, meaning_of: dict, scratch: Path) -> None:
    cache_file = scratch / "llm.sqlite"
    reader = OracleReader(meaning_of)
    grouped = LlmGrouping(reader, "normalize", False, JudgementCache(cache_file, "oracle")).group(requests)
    classes = sum(g.n_classes for g in grouped) / len(grouped)
    print(f"llm: {reader.prompts / len(requests):.1f} reader calls per question (one per distinct response), "
          f"against M = {args.samples}; {classes:.2f} classes per question")
    again = OracleReader(meaning_of)
    assert LlmGrouping(again, "normalize", False, JudgementCache(cache_file, "oracle")).group(requests) == grouped
    print(f"  re-run on the same samples with the on-disk cache: {again.prompts} reader calls")

    prompts = [extraction_prompt(r.question, a) for r in requests for a in dict.fromkeys(r.answers)]
    timed = prompts[: args.timed_prompts]
    server = slow_chat_server(args.latency_ms / 1000)
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        rates = {n: prompts_per_second(OpenAIChatClient(url, "reader", num_concurrent=n), timed)
                 for n in (args.concurrent, 1)}
    finally:
        server.shutdown()
    print(f"  OpenAI-compatible endpoint answering in {args.latency_ms} ms: {rates[args.concurrent]:.0f} prompts/s "
          f"with {args.concurrent} in flight, {rates[1]:.1f} one at a time ({rates[args.concurrent] / rates[1]:.1f}x)")

    model = str(build_tiny_model(scratch / "reader", n_layer=6, n_embd=512, n_head=8))
    local = timed[: args.timed_local]
    rates = {}
    size = args.reader_batch_size
    for batch in (size, 1):
        client = HFChatClient(model, args.device, batch_size=batch, max_tokens=16)
        dict(client.complete(local[:2]))  # warm-up
        rates[batch] = prompts_per_second(client, local)
    print(f"  local HF reader (GPT-2-style, 6 x 512, random) on {args.device}: {rates[size]:.1f} prompts/s at "
          f"batch {size}, {rates[1]:.1f} one at a time ({rates[size] / rates[1]:.1f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--timed-pairs", type=int, default=256, help="pairs timed through the classifier")
    parser.add_argument("--timed-prompts", type=int, default=160, help="prompts timed through the endpoint")
    parser.add_argument("--timed-local", type=int, default=48, help="prompts timed through the local reader")
    parser.add_argument("--latency-ms", type=int, default=50, help="the fake endpoint's delay per request")
    parser.add_argument("--concurrent", type=int, default=8, help="requests in flight for the endpoint")
    parser.add_argument("--reader-batch-size", type=int, default=16, help="prompts per batch for the local reader")
    args = parser.parse_args()

    requests, meaning_of = synthetic_questions(args.questions, args.samples)
    with tempfile.TemporaryDirectory() as scratch:
        calls: list[int] = []
        cache_file = Path(scratch) / "nli.sqlite"
        b = NliGrouping(oracle_judge(meaning_of, calls), "strict", JudgementCache(cache_file, "oracle"))
        grouped = b.group(requests)
        naive = args.samples * (args.samples - 1)
        classes = sum(g.n_classes for g in grouped) / len(grouped)
        print(f"{args.questions} questions, M = {args.samples}, {classes:.2f} classes per question on average")
        print(f"  pairs judged per question: {b.pairs_judged / len(requests):.1f}, naive all pairs: {naive} "
              f"({naive * len(requests) / b.pairs_judged:.0f}x fewer); model calls: {len(calls)} (one per round)")

        calls.clear()
        again = NliGrouping(oracle_judge(meaning_of, calls), "strict", JudgementCache(cache_file, "oracle"))
        assert again.group(requests) == grouped
        print(f"  re-run on the same samples with the on-disk cache: {len(calls)} model calls")

        model = random_classifier(Path(scratch) / "bert")
        pairs = [(r.question, r.answers[0], r.answers[1]) for r in requests][: args.timed_pairs]
        timings = {}
        for size in (args.batch_size, 1):
            judge = hf_judge(model, args.device, size)
            judge(pairs[:8])  # warm-up
            start = time.perf_counter()
            judge(pairs)
            timings[size] = len(pairs) / (time.perf_counter() - start)
        print(f"  BERT-base-sized classifier on {args.device}: {timings[args.batch_size]:.0f} pairs/s at batch "
              f"{args.batch_size}, {timings[1]:.0f} pairs/s one at a time "
              f"({timings[args.batch_size] / timings[1]:.1f}x)")

        bench_llm(args, requests, meaning_of, Path(scratch))


if __name__ == "__main__":
    main()
