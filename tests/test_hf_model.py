"""`hf-semcal` draws the samples stock `hf` draws, faster, in the order the harness expects.

The distribution checks use a model with a small output space: 8 single-character
tokens and at most 3 new tokens, so a complete output is one of ~250 strings whose exact
probabilities are computed by enumeration. Its weights are random but large, so the
next-token distributions are far from uniform and a wrong temperature or top-p shifts
them by much more than sampling noise (the power tests show it).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from conftest import FIXTURES, generation_request
from lm_eval import simple_evaluate
from lm_eval.api.registry import get_model
from lm_eval.models.huggingface import HFLM
from scipy import stats
from test_tasks_end_to_end import semcal_task_manager

import lm_eval_semcal.harness.models  # noqa: F401  (registers hf-semcal)
from lm_eval_semcal.demo.tiny_model import build_tiny_model
from lm_eval_semcal.harness.hf_model import SemcalHFLM
from lm_eval_semcal.runs.saved import logged_record

# lm-eval itself runs here: CI runs this module under every supported release.
pytestmark = pytest.mark.harness

CHARACTERS = ["a", "b", "c", "d", " ", "\n", "<eos>", "<pad>"]
MAX_NEW = 3
PROMPTS = ["abcab dca", "da"]  # different lengths: batches are left-padded
SAMPLES = 4000
ALPHA = 1e-3  # a correct sampler fails one check in a thousand


def sampling(temperature=1.0, top_p=1.0, top_k=0, max_gen_toks=MAX_NEW):
    return {
        "until": ["\n"],
        "max_gen_toks": max_gen_toks,
        "do_sample": True,
        "temperature": temperature,
        "top_p": top_p,
        "top_k": top_k,
    }


def build_small_output_model(out_dir) -> str:
    from tokenizers import Tokenizer, decoders, models
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(CHARACTERS)}, merges=[]))
    tokenizer.decoder = decoders.Fuse()
    hf_tokenizer = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<eos>", pad_token="<pad>")
    hf_tokenizer.save_pretrained(out_dir)
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(CHARACTERS), n_positions=64, n_embd=16, n_layer=1, n_head=2,
        initializer_range=0.3,
        eos_token_id=CHARACTERS.index("<eos>"), bos_token_id=CHARACTERS.index("<eos>"),
        pad_token_id=CHARACTERS.index("<pad>"),
    )
    GPT2LMHeadModel(config).save_pretrained(out_dir)
    return str(out_dir)


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    return build_small_output_model(tmp_path_factory.mktemp("small-output-model"))


@pytest.fixture(scope="module")
def stock_lm(small_model):
    return HFLM(pretrained=small_model, device="cpu", batch_size=SAMPLES)


@pytest.fixture(scope="module")
def semcal_lm(small_model):
    return SemcalHFLM(pretrained=small_model, device="cpu", batch_size=SAMPLES)


def requests_for(prompts, n, gen_kwargs):
    """n copies of each prompt, interleaved the way no backend would order them."""
    return [
        generation_request({}, (prompt, dict(gen_kwargs)), doc_id=doc_id)
        for _ in range(n)
        for doc_id, prompt in enumerate(prompts)
    ]


def sample(lm, prompts, n, gen_kwargs, seed):
    """{prompt: Counter of its n responses}."""
    requests = requests_for(prompts, n, gen_kwargs)
    torch.manual_seed(seed)
    responses = lm.generate_until(requests, disable_tqdm=True)
    counts = {prompt: Counter() for prompt in prompts}
    for request, response in zip(requests, responses, strict=True):
        counts[request.args[0]][response] += 1
    return counts


def exact_distribution(lm, prompt, temperature=1.0):
    """P(response) for T-scaled sampling without top-p/top-k, by enumerating token paths."""
    model, tokenizer = lm.model, lm.tokenizer
    stop_ids = {CHARACTERS.index("\n"), CHARACTERS.index("<eos>")}
    prompt_ids = tokenizer(prompt)["input_ids"]
    probabilities: Counter = Counter()

    def walk(path, p):
        if len(path) == MAX_NEW or (path and path[-1] in stop_ids):
            kept = path[:-1] if path and path[-1] in stop_ids else path
            probabilities[tokenizer.decode(kept, skip_special_tokens=True)] += p
            return
        with torch.no_grad():
            logits = model(torch.tensor([prompt_ids + path])).logits[0, -1].double()
        next_p = torch.softmax(logits / temperature, dim=-1)
        for token, q in enumerate(next_p.tolist()):
            walk(path + [token], p * q)

    walk([], 1.0)
    return probabilities


def two_sample_p(a: Counter, b: Counter) -> float:
    """Chi-square test of homogeneity; outputs seen fewer than 10 times in all are pooled."""
    keys = sorted(set(a) | set(b), key=lambda k: -(a[k] + b[k]))
    common = [k for k in keys if a[k] + b[k] >= 10]
    rare = [k for k in keys if a[k] + b[k] < 10]
    table = [[a[k] for k in common] + [sum(a[k] for k in rare)], [b[k] for k in common] + [sum(b[k] for k in rare)]]
    table = np.array([row for row in np.array(table).T if row.sum() > 0]).T
    return stats.chi2_contingency(table).pvalue


def goodness_of_fit_p(observed: Counter, expected: Counter) -> float:
    """Chi-square goodness of fit; outputs expected fewer than 5 times are pooled."""
    n = sum(observed.values())
    assert set(observed) <= set(expected), set(observed) - set(expected)
    common = [k for k in expected if expected[k] * n >= 5]
    rare = [k for k in expected if expected[k] * n < 5]
    f_obs = [observed[k] for k in common] + ([sum(observed[k] for k in rare)] if rare else [])
    f_exp = [expected[k] * n for k in common] + ([sum(expected[k] for k in rare) * n] if rare else [])
    return stats.chisquare(f_obs, f_exp).pvalue


def test_the_model_has_a_peaked_small_output_space(stock_lm):
    exact = exact_distribution(stock_lm, PROMPTS[0])
    assert sum(exact.values()) == pytest.approx(1.0, abs=1e-9)
    top = sorted(exact.values(), reverse=True)
    # far from uniform: a handful of outputs carry most of the mass
    assert sum(top[:10]) > 0.4 and len(exact) > 50


@pytest.mark.parametrize(
    "settings",
    [sampling(), sampling(temperature=0.7, top_p=0.9), sampling(temperature=1.3, top_k=3)],
    ids=["T1", "T0.7-top_p0.9", "T1.3-top_k3"],
)
def test_same_distribution_as_stock_hf(stock_lm, semcal_lm, settings):
    stock = sample(stock_lm, PROMPTS, SAMPLES, settings, seed=1)
    shared = sample(semcal_lm, PROMPTS, SAMPLES, settings, seed=2)
    for prompt in PROMPTS:
        assert stock[prompt] != shared[prompt]  # independent draws, not the same stream
        assert two_sample_p(stock[prompt], shared[prompt]) > ALPHA, prompt


def test_both_backends_match_the_exact_distribution(stock_lm, semcal_lm):
    for lm, seed in ((stock_lm, 11), (semcal_lm, 12)):
        counts = sample(lm, PROMPTS, SAMPLES, sampling(), seed=seed)
        for prompt in PROMPTS:
            assert goodness_of_fit_p(counts[prompt], exact_distribution(lm, prompt)) > ALPHA, (lm, prompt)


def test_rows_leaving_the_batch_after_eos_keep_the_exact_distribution(semcal_lm, monkeypatch):
    # One token a segment: after each step the rows that sampled <eos> leave the batch
    # and its cache, and the rest go on from their own rows of the cache.
    monkeypatch.setattr(semcal_lm, "decode_segment_tokens", 1)
    rows_per_step = generate_batch_sizes(semcal_lm, monkeypatch)
    counts = sample(semcal_lm, PROMPTS, SAMPLES, sampling(), seed=13)
    first_pass = rows_per_step[:MAX_NEW]  # batch_size is SAMPLES: one prompt's samples a pass
    assert first_pass[0] == SAMPLES and first_pass[0] > first_pass[1] > first_pass[2]
    for prompt in PROMPTS:
        assert goodness_of_fit_p(counts[prompt], exact_distribution(semcal_lm, prompt)) > ALPHA, prompt


def generate_batch_sizes(lm, monkeypatch) -> list[int]:
    """The rows of each `generate` call `lm` makes from now on."""
    sizes = []
    original = lm._model_generate
    monkeypatch.setattr(lm, "_model_generate", lambda **kwargs: sizes.append(kwargs["context"].shape[0]) or original(**kwargs))
    return sizes


@pytest.fixture(scope="module")
def varied_model(tmp_path_factory):
    """A random model with large weights: its greedy answers differ from prompt to prompt."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    out_dir = tmp_path_factory.mktemp("varied")
    tokenizer = AutoTokenizer.from_pretrained(build_tiny_model(out_dir / "tiny"))
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_embd=64, n_layer=2, n_head=2, initializer_range=0.5,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
    )
    GPT2LMHeadModel(config).save_pretrained(out_dir / "model")
    tokenizer.save_pretrained(out_dir / "model")
    return str(out_dir / "model")


VARIED_PROMPTS = [
    "Q: What is the capital of France?\nA:", "Q: Who wrote Hamlet?\nA:", "Q: How many legs has a spider?\nA:",
    "Q: Name a colour.\nA:", "Q: 2+2?\nA:", "Q: Why?\nA:",
]


@pytest.mark.parametrize(("stops", "segment"), [(["e"], 1), (["a", "Q:"], 3), (["e"], 8)])
def test_rows_leave_the_batch_when_their_answer_is_settled_and_answers_match_stock(varied_model, monkeypatch, stops, segment):
    # Greedy answers of 6 prompts end after 1 to 65 tokens (["e"]); stock `hf` decodes
    # every row to the end, hf-semcal drops the finished ones. Any row of the cache, the
    # mask or the answers put in the wrong place would change an answer.
    greedy = {"until": stops, "max_gen_toks": 72, "do_sample": False, "temperature": 0.0}
    requests = requests_for(VARIED_PROMPTS, 2, greedy)
    expected = HFLM(pretrained=varied_model, device="cpu", batch_size=12).generate_until(requests, disable_tqdm=True)
    semcal = SemcalHFLM(pretrained=varied_model, device="cpu", batch_size=12)
    monkeypatch.setattr(semcal, "decode_segment_tokens", segment)
    rows_per_call = generate_batch_sizes(semcal, monkeypatch)
    assert semcal.generate_until(requests, disable_tqdm=True) == expected
    assert len({len(answer) for answer in expected}) >= 4  # the answers end at different lengths
    assert rows_per_call[0] == 12 and rows_per_call[-1] < 12 and rows_per_call == sorted(rows_per_call, reverse=True)


def test_settings_counted_from_the_start_of_generate_decode_in_one_call(varied_model, monkeypatch):
    # min_new_tokens counts from the start of each `generate` call: segments would
    # enforce it again in each, so such requests decode in one call as stock `hf` does.
    settings = {"until": ["e"], "max_gen_toks": 24, "do_sample": False, "temperature": 0.0, "min_new_tokens": 4}
    requests = requests_for(VARIED_PROMPTS, 2, settings)
    expected = HFLM(pretrained=varied_model, device="cpu", batch_size=12).generate_until(requests, disable_tqdm=True)
    semcal = SemcalHFLM(pretrained=varied_model, device="cpu", batch_size=12)
    rows_per_call = generate_batch_sizes(semcal, monkeypatch)
    assert semcal.generate_until(requests, disable_tqdm=True) == expected
    assert rows_per_call == [12]


@pytest.mark.parametrize(
    ("wrong", "why"),
    [(sampling(temperature=0.7), "temperature 0.7 instead of 1"), (sampling(top_p=0.9), "top_p 0.9 instead of 1")],
)
def test_the_check_catches_a_wrong_sampler(stock_lm, semcal_lm, wrong, why):
    # Over 20 seed pairs the largest p was 1e-15 (T) and 7e-44 (top_p): the check has the
    # power to see these mistakes whatever the seed.
    right = sample(stock_lm, PROMPTS, SAMPLES, sampling(), seed=1)
    off = sample(semcal_lm, PROMPTS, SAMPLES, wrong, seed=2)
    assert two_sample_p(right[PROMPTS[0]], off[PROMPTS[0]]) < ALPHA, why


def test_same_seed_and_batch_layout_reproduce_stock_samples_exactly(tmp_path, monkeypatch):
    # One pass of M rows per question in both backends consumes the random stream
    # identically, so the samples coincide token for token: the same computation. (In
    # one segment: rows leaving the batch early change how later steps use the stream.)
    monkeypatch.setattr(SemcalHFLM, "decode_segment_tokens", 12)
    model_dir = str(build_tiny_model(tmp_path / "tiny"))
    prompts = ["Q: What is the capital of France?\nA:", "Q: Who wrote Hamlet?\nA:"]
    settings = sampling(max_gen_toks=12) | {"until": ["\n", "Q:"]}
    requests = requests_for(prompts, 8, settings)
    results = []
    for backend in (HFLM, SemcalHFLM):
        torch.manual_seed(0)
        results.append(backend(pretrained=model_dir, device="cpu", batch_size=16).generate_until(requests))
    assert results[0] == results[1]
    assert len(set(results[1])) > 8  # real samples, not copies


def test_responses_follow_request_order_and_stop_rules(stock_lm, semcal_lm):
    greedy = {"until": ["\n"], "max_gen_toks": MAX_NEW, "do_sample": False, "temperature": 0.0}
    requests = requests_for(["abcab dca", "dd", "da"], 3, greedy)
    expected = stock_lm.generate_until(requests, disable_tqdm=True)
    assert semcal_lm.generate_until(requests, disable_tqdm=True) == expected
    # "dd" is the one prompt whose greedy answer is not empty: its position checks the order
    assert expected == ["", "ddd", ""] * 3
    for response in semcal_lm.generate_until(requests_for(PROMPTS, 200, sampling()), disable_tqdm=True):
        assert "\n" not in response and len(response) <= MAX_NEW


def test_each_pass_holds_at_most_batch_size_samples(small_model, monkeypatch):
    passes = []
    original = SemcalHFLM._sample_shared
    monkeypatch.setattr(
        SemcalHFLM, "_sample_shared", lambda self, batch: passes.append([g.n_samples for g in batch]) or original(self, batch)
    )
    requests = requests_for(PROMPTS + ["abc"], 5, sampling())
    SemcalHFLM(pretrained=small_model, device="cpu", batch_size=1).generate_until(requests, disable_tqdm=True)
    assert passes == [[5], [5], [5]]
    passes.clear()
    SemcalHFLM(pretrained=small_model, device="cpu", batch_size=10).generate_until(requests, disable_tqdm=True)
    assert passes == [[5, 5], [5]]
    # A batch size below M bounds the rows anyway: each question is sampled in parts.
    passes.clear()
    responses = SemcalHFLM(pretrained=small_model, device="cpu", batch_size=4).generate_until(requests, disable_tqdm=True)
    assert passes == [[4], [1], [4], [1], [4], [1]]
    assert len(responses) == 15 and all(isinstance(r, str) for r in responses)


def test_hf_semcal_is_in_lm_evals_registry():
    assert get_model("hf-semcal") is SemcalHFLM
    assert issubclass(get_model("hf-semcal"), get_model("hf"))


def run_task(model_dir, seed):
    results = simple_evaluate(
        model="hf-semcal",
        model_args=f"pretrained={model_dir},device=cpu",
        tasks=["semcal_triviaqa"],
        task_manager=semcal_task_manager(data_files=str(FIXTURES / "triviaqa.jsonl"), repeats=6),
        limit=3,
        log_samples=True,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
    )
    return [sample["resps"] for sample in results["samples"]["semcal_triviaqa"]], results


def test_a_run_is_reproducible_with_the_same_seed(tmp_path):
    model_dir = str(build_tiny_model(tmp_path / "tiny"))
    first, results = run_task(model_dir, seed=1234)
    again, _ = run_task(model_dir, seed=1234)
    other, _ = run_task(model_dir, seed=99)
    assert first == again
    assert first != other
    assert [len(resps[0]) for resps in first] == [6, 6, 6]
    record = logged_record(results["samples"]["semcal_triviaqa"][0]).to_dict()
    assert len(record["class_ids"]) == 6


def test_batch_size_auto_sizes_passes_once(small_model):
    lm = SemcalHFLM(pretrained=small_model, device="cpu", batch_size="auto", max_batch_size=8)
    responses = lm.generate_until(requests_for(PROMPTS, 4, sampling()), disable_tqdm=True)
    assert len(responses) == 8
    assert lm.batch_sizes["generate_until"] == 8  # the largest batch that fits, capped by max_batch_size


def test_encoder_decoder_models_sample_as_hf_does(tmp_path, caplog):
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    model_dir = build_tiny_model(tmp_path / "tiny")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    torch.manual_seed(0)
    config = T5Config(
        vocab_size=len(tokenizer), d_model=32, d_ff=64, d_kv=16, num_layers=1, num_heads=2,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    T5ForConditionalGeneration(config).save_pretrained(tmp_path / "t5")
    tokenizer.save_pretrained(tmp_path / "t5")
    requests = requests_for(["Q: Who wrote Hamlet?\nA:", "Q: 2+2?\nA:"], 4, sampling(max_gen_toks=6))
    results = []
    with caplog.at_level("WARNING"):
        for backend in (HFLM, SemcalHFLM):
            torch.manual_seed(0)
            lm = backend(pretrained=str(tmp_path / "t5"), device="cpu", batch_size=8)
            assert lm.backend == "seq2seq"
            results.append(lm.generate_until(requests, disable_tqdm=True))
    assert results[0] == results[1]
    assert any("seq2seq models have no prompt cache to share" in r.getMessage() for r in caplog.records)


TWO_LENGTHS = ["Q: What is the capital of France and why is it so famous?\nA:", "Q: Who wrote Hamlet?\nA:"]


def same_samples_as_hf(model_dir, settings, **model_args):
    """Both backends' samples for 2 prompts of different lengths x 4, same seed and layout."""
    requests = requests_for(TWO_LENGTHS, 4, settings)
    results = []
    for backend in (HFLM, SemcalHFLM):
        lm = backend(pretrained=str(model_dir), device="cpu", batch_size=8, **model_args)
        torch.manual_seed(0)
        results.append(lm.generate_until(requests, disable_tqdm=True))
    return results


def test_peft_adapters_keep_left_padded_positions(tmp_path):
    # A PEFT model's forward takes **kwargs; the prefill must still pass position_ids.
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model_dir = build_tiny_model(tmp_path / "tiny")
    torch.manual_seed(0)
    adapter = get_peft_model(
        AutoModelForCausalLM.from_pretrained(model_dir), LoraConfig(r=4, target_modules=["c_attn"], fan_in_fan_out=True, init_lora_weights=False)
    )
    adapter.save_pretrained(tmp_path / "lora")
    stock, shared = same_samples_as_hf(model_dir, sampling(max_gen_toks=10) | {"until": []}, peft=str(tmp_path / "lora"))
    assert stock == shared


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({"num_beams": 2}, "beam search"),
        ({"cache_implementation": "static"}, "cache_implementation"),
    ],
)
def test_settings_only_hf_serves_fall_back_to_it(tmp_path, caplog, settings, reason):
    model_dir = build_tiny_model(tmp_path / "tiny")
    with caplog.at_level("WARNING"):
        stock, shared = same_samples_as_hf(model_dir, sampling(max_gen_toks=6) | {"until": []} | settings)
    assert stock == shared
    assert any(reason in r.getMessage() and "sampling those requests as `hf` does" in r.getMessage() for r in caplog.records)


def test_hybrid_recurrent_models_fall_back_to_hf(tmp_path, caplog):
    # FalconH1 layers hold attention keys and Mamba state: copying key rows would miss the state.
    from transformers import AutoTokenizer, FalconH1Config, FalconH1ForCausalLM

    model_dir = build_tiny_model(tmp_path / "tiny")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    torch.manual_seed(0)
    config = FalconH1Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, mamba_d_ssm=64, mamba_n_heads=4, mamba_d_head=16, mamba_d_state=8,
        mamba_n_groups=1, max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
    )
    FalconH1ForCausalLM(config).save_pretrained(tmp_path / "hybrid")
    tokenizer.save_pretrained(tmp_path / "hybrid")
    with caplog.at_level("WARNING"):
        stock, shared = same_samples_as_hf(tmp_path / "hybrid", sampling(max_gen_toks=6) | {"until": []})
    assert stock == shared
    assert any("cannot be continued from a shared prompt" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("architecture", "options"),
    [
        ("LlamaConfig", {"num_attention_heads": 4, "num_key_value_heads": 2}),  # grouped-query attention
        ("MistralConfig", {"num_attention_heads": 4, "num_key_value_heads": 2, "sliding_window": 4}),
    ],
    ids=["gqa", "sliding-window-shorter-than-the-prompt"],
)
def test_other_attention_layouts_share_the_prompt_and_match_hf(tmp_path, architecture, options):
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = build_tiny_model(tmp_path / "tiny")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    torch.manual_seed(0)
    config = getattr(transformers, architecture)(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, head_dim=16,
        max_position_embeddings=512, initializer_range=0.5, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id, **options,
    )
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    prefills = []
    original = SemcalHFLM._prefill
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SemcalHFLM, "_prefill", lambda self, *a: prefills.append(a[0].shape) or original(self, *a))
        stock, shared = same_samples_as_hf(tmp_path / "model", sampling(max_gen_toks=8) | {"until": []})
    assert stock == shared
    assert len(prefills) == 1 and prefills[0][0] == 2  # one prefill of the two prompts: the shared path ran
