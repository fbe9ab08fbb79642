"""A tiny randomly initialised causal LM, built offline, for smoke runs of the real harness.

`build_tiny_model(DIR)` trains a byte-level BPE tokenizer on a small built-in text and
saves it with a 2-layer GPT-2-architecture model of random weights, both with
`save_pretrained`, so lm-eval's `hf` backend loads DIR like any hub model. Its answers
are noise: it exists to exercise the whole pipeline (prompting, M-sample generation,
stop sequences, grouping, metrics, report) on a machine with no hub access and no GPU.
"""

from __future__ import annotations

from pathlib import Path

from lm_eval_semcal.harness import exemplars

SPECIAL_TOKENS = {"eos": "<|endoftext|>", "pad": "<|pad|>"}


def _training_text() -> list[str]:
    lines = []
    for exemplar in exemplars.open_qa() + exemplars.math():
        lines += [exemplar["semcal_question"], exemplar["concise"], exemplar["sentence"], exemplar["cot"]]
    lines += ["Q: A: The answer is", " ".join(str(i) for i in range(200)), "$ % , . + - * / = ( )"]
    return lines


def build_tiny_model(
    out_dir: str | Path,
    *,
    vocab_size: int = 512,
    n_layer: int = 2,
    n_embd: int = 64,
    n_head: int = 2,
    n_positions: int = 2048,
    model_vocab_size: int | None = None,
    seed: int = 0,
    texts: list[str] | None = None,
) -> Path:
    """Save a tokenizer and a random-weight GPT-2-style LM in `out_dir`; return it.

    `vocab_size` is the tokenizer's target; `model_vocab_size` (default: the tokenizer's
    size) lets a benchmark give the model GPT-2's 50257-row output layer. Ids the
    tokenizer does not know decode to nothing. `texts` replaces the built-in text the
    tokenizer is trained on (the demo trains it on its own corpus).
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts if texts is not None else _training_text(), trainer=trainer)
    hf_tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=SPECIAL_TOKENS["eos"],
        bos_token=SPECIAL_TOKENS["eos"],
        pad_token=SPECIAL_TOKENS["pad"],
        model_max_length=n_positions,
    )
    hf_tokenizer.save_pretrained(out_dir)

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=model_vocab_size or len(hf_tokenizer),
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        bos_token_id=hf_tokenizer.bos_token_id,
        eos_token_id=hf_tokenizer.eos_token_id,
        pad_token_id=hf_tokenizer.pad_token_id,
    )
    GPT2LMHeadModel(config).save_pretrained(out_dir)
    return out_dir
