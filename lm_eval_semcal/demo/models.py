"""The demo's models: a tiny causal LM trained on the synthetic world, and its "tuned" variant.

`base`: a GPT-2-architecture model with a BPE tokenizer trained on the world's corpus
(`synthetic.training_lines`), trained with a plain next-token loss on the answers (the
prompt is context, not target), so that it learns each question's answer distribution.
`tuned`: the base model fine-tuned on its own most probable answer to every question, the
analogue of preference tuning on a model's favourite outputs: its distribution sharpens.

Both are saved with `save_pretrained` in the user's cache directory, under a hash of their
configuration, so only the first run trains. `town_probabilities` computes, without
sampling, the exact probability a model gives each town: the sum over the town's surface
forms of the probability of the form followed by the end of the line.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from lm_eval_semcal.demo import world as synthetic
from lm_eval_semcal.grouping.judgement_cache import cache_root
from lm_eval_semcal.demo.tiny_model import build_tiny_model

CACHE_ENV = "SEMCAL_DEMO_CACHE"
# Bump when the training code changes what a given configuration trains.
TRAINING_VERSION = 1
DONE_MARKER = "complete"
END_OF_ANSWER = "\n"
Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True)
class DemoConfig:
    """Everything that decides the demo's world and models; its hash names their cache folder."""

    world_seed: int = 0
    n_questions: int = 300
    vocab_size: int = 4000  # enough for every name to be one token
    n_layer: int = 2
    n_embd: int = 64
    n_head: int = 4
    epochs: int = 120
    batch_size: int = 100
    learning_rate: float = 3e-3
    tuned_epochs: int = 30
    train_seed: int = 0

    def key(self) -> str:
        """Names everything the models depend on: these settings, the world's corpus itself
        (so a change to the world's generator retrains), the training code's version and
        the libraries that run it."""
        import tokenizers
        import torch
        import transformers

        world = synthetic.build_world(self.world_seed, self.n_questions)
        corpus = hashlib.sha256(json.dumps(synthetic.training_lines(world)).encode()).hexdigest()
        versions = [TRAINING_VERSION, torch.__version__, transformers.__version__, tokenizers.__version__]
        payload = json.dumps({"config": asdict(self), "corpus": corpus, "versions": versions}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def cache_dir(config: DemoConfig) -> Path:
    """`demo/<config hash>` in the package's cache folder (`cache_root`), or under $SEMCAL_DEMO_CACHE."""
    root = Path(os.environ.get(CACHE_ENV) or cache_root() / "demo")
    return root / config.key()


def _encode(tokenizer, pairs: list[tuple[str, str]]) -> tuple[list[list[int]], list[int]]:
    """Token ids of prompt + answer + end of line, and where each answer starts."""
    sequences, starts = [], []
    for prompt, answer in pairs:
        context = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        target = tokenizer(answer + END_OF_ANSWER, add_special_tokens=False)["input_ids"]
        sequences.append(context + target)
        starts.append(len(context))
    return sequences, starts


def _batch(sequences: list[list[int]], starts: list[int], pad_id: int):
    """Right-padded ids, attention mask and labels (-100 outside the answers)."""
    import torch

    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    labels = torch.full((len(sequences), width), -100)
    for row, (sequence, start) in enumerate(zip(sequences, starts, strict=True)):
        ids[row, : len(sequence)] = torch.tensor(sequence)
        mask[row, : len(sequence)] = 1
        labels[row, start : len(sequence)] = torch.tensor(sequence[start:])
    return ids, mask, labels


def answer_token_log_probs(model, ids, mask, labels):
    """log P of every answer token (flat), and the mask of where they sit (labels shifted by one)."""
    import torch

    hidden = model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state[:, :-1]
    targets = labels[:, 1:]
    scored = targets != -100
    # The output layer only where there is a target: the prompt is context, and the
    # vocabulary (every name a token of its own) is the largest matrix.
    logits = model.get_output_embeddings()(hidden[scored]).float()
    return torch.log_softmax(logits, -1).gather(-1, targets[scored].unsqueeze(-1)).squeeze(-1), scored


def answer_log_probs(model, ids, mask, labels):
    """log P(answer | prompt) of each row."""
    import torch

    token_log_probs, scored = answer_token_log_probs(model, ids, mask, labels)
    per_row = torch.zeros(scored.shape, dtype=token_log_probs.dtype, device=token_log_probs.device)
    per_row[scored] = token_log_probs
    return per_row.sum(-1)


def train(model_dir: Path, pairs: list[tuple[str, str]], epochs: int, config: DemoConfig,
          stage: str, progress: Progress | None = None) -> None:
    """Next-token training of the model in `model_dir` on the answers of `pairs`; saved in place.

    A pair that occurs k times is one sequence whose loss counts k times: the same
    objective as the repeated corpus, at a third of the cost on the demo's corpus.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(config.train_seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).train()
    repeats: dict[tuple[str, str], int] = {}
    for pair in pairs:
        repeats[pair] = repeats.get(pair, 0) + 1
    sequences, starts = _encode(tokenizer, list(repeats))
    weights = torch.tensor(list(repeats.values()), dtype=torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.0)
    steps_per_epoch = -(-len(sequences) // config.batch_size)
    total = epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.learning_rate, total_steps=total, pct_start=0.1)
    generator = torch.Generator().manual_seed(config.train_seed)
    step = 0
    for _ in range(epochs):
        order = torch.randperm(len(sequences), generator=generator).tolist()
        for start in range(0, len(order), config.batch_size):
            chosen = order[start : start + config.batch_size]
            ids, mask, labels = _batch([sequences[i] for i in chosen], [starts[i] for i in chosen], tokenizer.pad_token_id)
            token_log_probs, scored = answer_token_log_probs(model, ids, mask, labels)
            token_weight = weights[chosen].unsqueeze(1).expand_as(scored)[scored]
            loss = -(token_log_probs * token_weight).sum() / token_weight.sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            if progress is not None:
                progress(stage, step, total)
    model.eval().save_pretrained(model_dir)


def town_probabilities(model_dir: str | Path, world: synthetic.World, device: str = "cpu",
                       batch_size: int = 512) -> np.ndarray:
    """P(town | question) for every question and town: the sum over the town's forms of
    P(" form" + end of line | prompt), by teacher forcing, no sampling."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device).eval()
    pairs = [
        (synthetic.prompt(q.text), " " + form)
        for q in world.questions
        for town in world.towns
        for form in town.forms
    ]
    sequences, starts = _encode(tokenizer, pairs)
    log_probs = np.empty(len(pairs))
    with torch.no_grad():
        for first in range(0, len(pairs), batch_size):
            ids, mask, labels = _batch(sequences[first : first + batch_size], starts[first : first + batch_size],
                                       tokenizer.pad_token_id)
            ids, mask, labels = ids.to(device), mask.to(device), labels.to(device)
            log_probs[first : first + len(ids)] = answer_log_probs(model, ids, mask, labels).cpu().numpy()
    per_form = np.exp(log_probs).reshape(len(world.questions), len(world.towns), 3)
    return per_form.sum(-1)


def favourite_answers(probabilities: np.ndarray, world: synthetic.World) -> list[tuple[str, str]]:
    """Each question with the base model's most probable town, in its first form."""
    return [
        (synthetic.prompt(q.text), " " + world.towns[int(np.argmax(row))].forms[0])
        for q, row in zip(world.questions, probabilities, strict=True)
    ]


def trained_models(config: DemoConfig = DemoConfig(), progress: Progress | None = None) -> tuple[Path, Path]:
    """The (base, tuned) model folders of `config`, trained now unless already cached.

    Training happens in a fresh scratch folder, under a lock on the cache entry, and the
    finished folder is renamed into place with a completion marker written last, so two
    demos started at once train once and a half-trained folder is never taken for a
    cached one.
    """
    import fcntl
    import tempfile

    folder = cache_dir(config)
    base, tuned = folder / "base", folder / "tuned"
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.with_name(folder.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (folder / DONE_MARKER).is_file():
            return base, tuned
        world = synthetic.build_world(config.world_seed, config.n_questions)
        pairs = synthetic.training_lines(world)
        scratch = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
        try:
            build_tiny_model(
                scratch / "base", vocab_size=config.vocab_size, n_layer=config.n_layer, n_embd=config.n_embd,
                n_head=config.n_head, n_positions=64, seed=config.train_seed,
                texts=[prompt + answer + END_OF_ANSWER for prompt, answer in pairs],
            )
            train(scratch / "base", pairs, config.epochs, config, "training the base model", progress)
            shutil.copytree(scratch / "base", scratch / "tuned")
            favourites = favourite_answers(town_probabilities(scratch / "base", world), world)
            train(scratch / "tuned", favourites, config.tuned_epochs, config, "tuning on its own answers", progress)
            (scratch / DONE_MARKER).write_text(json.dumps(asdict(config)), encoding="utf-8")
            shutil.rmtree(folder, ignore_errors=True)  # an unfinished entry of an older version
            scratch.rename(folder)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return base, tuned
