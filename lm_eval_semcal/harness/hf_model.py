"""`hf-semcal`: lm-eval's `hf` model, drawing a question's M samples from one prompt encoding.

lm-eval runs `repeats: M` by sending M identical requests; the stock `hf` backend encodes
the same few-shot prompt M times. Here the identical requests are grouped, each distinct
prompt is run through the model once (all but its last token, a batch of questions at a
time), the resulting KV cache is copied to one row per sample, and `generate` continues
from it. Everything after the prompt is the stock path: the same `generate` call with the
same logits processors, stopping criteria and decoding, so the samples come from the
same distribution (tested in `tests/test_hf_model.py`). `generate` runs a few tokens at a
time, and between calls the rows whose response is settled (EOS, or a stop string that
no continuation can move) leave the batch and the cache: samples that end early stop
costing decoding steps, where stock `hf` decodes every row until the last has stopped.

`batch_size` counts sampled sequences, as in `hf`: a pass holds as many questions' samples
as fit, and a question with more samples than that is sampled in parts (its prompt then
encoded once per part). The default batch size of 1 means one whole question per pass.
What cannot be shared falls back to the stock path with a warning: encoder-decoder
models, caches holding recurrent or convolution state, and settings with which
`generate` builds or reshapes its own cache (beams, `num_return_sequences`,
`cache_implementation`, `max_length`).
"""

from __future__ import annotations

import inspect
import logging
from functools import cached_property

import torch
from lm_eval.api.instance import Instance
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM
from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text
from tqdm import tqdm
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

from lm_eval_semcal.harness.request_groups import RequestGroup, group_identical_requests, pack_groups

# Under lm-eval's logger, so the harness's --verbosity shows or hides these lines.
logger = logging.getLogger(f"lm_eval.models.{__name__}")

MODEL_NAME = "hf-semcal"
SHAREABLE_LAYERS = (DynamicLayer, DynamicSlidingWindowLayer)
# Generation settings that `generate` counts from the start of its call: decoding in
# segments would apply them again at each segment.
POSITION_DEPENDENT_SETTINGS = (
    "min_length", "min_new_tokens", "begin_suppress_tokens", "forced_bos_token_id", "forced_eos_token_id",
    "exponential_decay_length_penalty", "max_time",
)
# Characters at the end of a row's text that the next tokens may still change when the
# tokenizer cleans up spaces on decoding: it joins a space to the punctuation after it
# (" n't" is the longest such rule). Without clean-up only an incomplete UTF-8 sequence
# can change, and it decodes to U+FFFD, which `cut_is_settled` never counts as settled.
CLEAN_UP_UNSETTLED_CHARACTERS = 3


@register_model(MODEL_NAME)
class SemcalHFLM(HFLM):
    """lm-eval's `hf` model with prompt sharing across identical generation requests.

    Every `--model_args` option of `hf` works unchanged; loglikelihood requests are the
    stock ones.
    """

    _shares_prompt_cache = True
    # Tokens `generate` decodes between checks for finished rows: a finished row costs at
    # most this many steps more; each check costs one `generate` call's setup.
    decode_segment_tokens = 8

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._warned: set[str] = set()
        accelerator = getattr(self, "accelerator", None)
        if accelerator is not None and accelerator.num_processes > 1:
            # `hf` splits the questions across processes only when it counts several
            # GPUs on the machine, and by local rank. Split by global rank whenever
            # accelerate started several processes: CPU processes (gloo) and every node
            # of a multi-node run then each take their own share.
            self._rank = accelerator.process_index
            self._world_size = accelerator.num_processes

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        if self.backend != "causal":
            logger.warning("%s: %s models have no prompt cache to share; sampling as `hf` does", MODEL_NAME, self.backend)
            return super().generate_until(requests, disable_tqdm=disable_tqdm)

        groups = group_identical_requests(request.args[:2] for request in requests)
        token_counts = {group.context: len(self.tok_encode(group.context)) for group in groups}
        # Longest prompts first, as in `hf`: a batch that runs out of memory does so at once.
        batches = pack_groups(groups, self._rows_per_pass(), sort_key=lambda g: -token_counts[g.context])

        logger.info(
            "%s rank %d of %d: %d samples of %d distinct prompts, in %d passes",
            MODEL_NAME, self.rank, self.world_size, len(requests), len(groups), len(batches),
        )
        responses: list[str | None] = [None] * len(requests)
        progress = tqdm(
            total=len(requests),
            disable=disable_tqdm or self.rank != 0,
            desc=f"Sampling, prompts shared ({len(groups)} prompts)",
        )
        def sample_as_hf(indices: list[int]) -> None:
            # hf's own path records its own cache entries
            texts = HFLM.generate_until(self, [requests[index] for index in indices], True)
            for index, text in zip(indices, texts, strict=True):
                responses[index] = text
            progress.update(len(indices))

        for position, batch in enumerate(batches):
            if not self._shares_prompt_cache:
                # This model's cache cannot be shared (found on the first pass): hf's own
                # path for all that is left, in one call so that it batches them itself.
                sample_as_hf([index for later in batches[position:] for group in later for index in group.indices])
                break
            indices = [index for group in batch for index in group.indices]
            samples = self._sample_shared(batch)
            if samples is None:  # settings only hf's own path serves
                sample_as_hf(indices)
                continue
            for index, text in zip(indices, samples, strict=True):
                responses[index] = text
                self.cache_hook.add_partial("generate_until", requests[index].args[:2], text)
            progress.update(len(indices))
        progress.close()
        return responses

    def _rows_per_pass(self) -> int | None:
        """Sampled rows a pass may hold; None (the default batch size of 1): one question."""
        if self.batch_size == "auto":
            if "generate_until" not in self.batch_sizes:
                self.batch_sizes["generate_until"] = self._detect_batch_size()
                logger.info("%s: at most %d sampled sequences per pass", MODEL_NAME, self.batch_sizes["generate_until"])
            return self.batch_sizes["generate_until"]
        return int(self.batch_size) if int(self.batch_size) > 1 else None

    def _sample_shared(self, batch: list[RequestGroup]) -> list[str] | None:
        """Every sample of `batch`, group by group, or None when the cache cannot be shared."""
        kwargs = normalize_gen_kwargs(batch[0].gen_kwargs, self.max_gen_toks)
        if problem := self._unshareable_settings(kwargs):
            if problem not in self._warned:
                logger.warning("%s: %s; sampling those requests as `hf` does", MODEL_NAME, problem)
                self._warned.add(problem)
            return None
        eos = self.tok_decode(self.eot_token_id, skip_special_tokens=False)
        until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
        max_gen_toks = kwargs.pop("max_gen_toks")
        max_ctx_len = self.max_length - max_gen_toks
        if max_ctx_len <= 0:
            raise ValueError(
                f"max_gen_toks={max_gen_toks} leaves no room for a prompt in the model's "
                f"max_length={self.max_length}; lower max_gen_toks or raise max_length"
            )
        context_enc, attention_mask = self.tok_batch_encode(
            [group.context for group in batch], left_truncate_len=max_ctx_len, truncation=self.truncation
        )
        context_enc = context_enc.to(self.device)
        attention_mask = attention_mask.to(self.device)
        prompt_length = context_enc.shape[1]
        max_length = prompt_length + max_gen_toks

        samples_per_prompt = [group.n_samples for group in batch]
        sample_rows = torch.repeat_interleave(
            torch.arange(len(batch), device=self.device), torch.tensor(samples_per_prompt, device=self.device)
        )
        cache_kwargs = {}
        if prompt_length > 1:
            cache = self._prefill(context_enc[:, :-1], attention_mask[:, :-1])
            if cache is None:
                return None
            expand_prompt_cache(cache, samples_per_prompt, max_length - prompt_length + 1)
            cache_kwargs[self._cache_argument] = cache

        continuations = self._generate_until_finished(
            context_enc[sample_rows], attention_mask[sample_rows], cache_kwargs, until, max_gen_toks, kwargs
        )
        return [self._response_text(tokens, until) for tokens in continuations]

    def _generate_until_finished(
        self, context, attention_mask, cache_kwargs: dict, until: list[str], max_gen_toks: int, kwargs: dict
    ) -> list[list[int]]:
        """Each row's generated tokens, decoding in segments and dropping the rows that have finished.

        `generate` keeps stepping every row until all have stopped. Here it runs
        `decode_segment_tokens` at a time; between segments, rows whose answer can no
        longer change (EOS sampled, or a stop string settled in the text; see
        `cut_is_settled`) leave the batch and its cache, so samples that end early stop
        costing decoding steps. Each segment is the same `generate` call on the full
        sequence so far, so every step draws from the distribution stock `hf` draws from.
        """
        prompt_length = context.shape[1]
        segment = self.decode_segment_tokens
        if not cache_kwargs or self._position_dependent_setting(kwargs):
            # Without a cache to carry over (a one-token prompt), or with settings counted
            # from the start of each `generate` call, one call does it all.
            segment = max_gen_toks
        eos_ids = self._eos_token_ids(kwargs)
        rows = list(range(context.shape[0]))  # the sample row each batch row holds
        continuations: list[list[int] | None] = [None] * len(rows)
        sequences, mask = context, attention_mask
        while True:
            step = min(segment, prompt_length + max_gen_toks - sequences.shape[1])
            extended = self._model_generate(
                context=sequences, attention_mask=mask, stop=until, max_length=sequences.shape[1] + step,
                **cache_kwargs, **kwargs,
            )
            tokens = extended[:, prompt_length:].tolist()
            out_of_budget = extended.shape[1] - prompt_length >= max_gen_toks
            kept = []
            for position, row_tokens in enumerate(tokens):
                if out_of_budget or self._finished(row_tokens, until, eos_ids):
                    continuations[rows[position]] = row_tokens
                else:
                    kept.append(position)
            if not kept:
                return continuations
            new_tokens = extended.shape[1] - sequences.shape[1]
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], new_tokens))], dim=1)
            if len(kept) < len(rows):
                order = compaction_order(kept, len(rows))
                keep_cache_rows(cache_kwargs[self._cache_argument], order)
                index = torch.tensor(order, device=extended.device)
                extended, mask = extended[index], mask[index]
                rows = [rows[position] for position in order]
            sequences = extended

    def _position_dependent_setting(self, kwargs: dict) -> str | None:
        """A generation setting counted from the start of `generate`, which segments would restart."""
        config = self.model.generation_config
        for name in POSITION_DEPENDENT_SETTINGS:
            if kwargs.get(name, getattr(config, name, None)) not in (None, 0):
                return name
        return None

    def _eos_token_ids(self, kwargs: dict) -> set[int]:
        eos = kwargs.get("eos_token_id", self.model.generation_config.eos_token_id)
        if eos is None:
            return set()
        return {int(token) for token in (eos if isinstance(eos, (list, tuple)) else [eos])}

    def _finished(self, tokens: list[int], until: list[str], eos_ids: set[int]) -> bool:
        """Whether decoding more of this row can no longer change its response."""
        if eos_ids.intersection(tokens):
            return True
        if self.think_end_token is not None:
            # A stop string inside the thinking does not end the response: stock `hf`
            # goes on while other rows run, and keeps what follows the last think-end.
            return False
        return cut_is_settled(self.tok_decode(tokens), until, self._unsettled_characters)

    @cached_property
    def _unsettled_characters(self) -> int:
        return CLEAN_UP_UNSETTLED_CHARACTERS if getattr(self.tokenizer, "clean_up_tokenization_spaces", False) else 0

    def _unshareable_settings(self, kwargs: dict) -> str | None:
        """Why these generation settings need hf's own path, or None."""
        if kwargs.get("num_beams", 1) > 1 or kwargs.get("num_return_sequences", 1) > 1:
            return "beam search and num_return_sequences expand the batch inside generate"
        if kwargs.get("cache_implementation") or getattr(self.model.generation_config, "cache_implementation", None):
            return "a cache_implementation asks generate to build its own cache"
        if "max_length" in kwargs:
            return "max_length in the generation settings (use max_gen_toks)"
        return None

    @cached_property
    def _forward_parameters(self):
        # A PEFT model's forward takes **kwargs; the arguments are the base model's.
        model = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        return inspect.signature(model.forward).parameters

    @property
    def _cache_argument(self) -> str:
        # transformers 5 names the cache `cache`; 4.x calls it `past_key_values`.
        return "cache" if "cache" in self._forward_parameters else "past_key_values"

    def _prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """The KV cache of `input_ids`, computed as `generate` computes it, or None."""
        parameters = self._forward_parameters
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "use_cache": True}
        if "position_ids" in parameters:
            # generate()'s own rule, so that left padding gets the positions it would get there
            positions = attention_mask.long().cumsum(-1) - 1
            inputs["position_ids"] = positions.masked_fill(attention_mask == 0, 0)
        if "logits_to_keep" in parameters:
            inputs["logits_to_keep"] = 1
        with (
            torch.no_grad(),
            torch.autocast(
                device_type=self.device.type,
                dtype=self.mixed_precision_dtype,
                enabled=self.mixed_precision_dtype is not None,
            ),
        ):
            outputs = self.model(**inputs)
        cache = getattr(outputs, "cache", None)
        if cache is None:
            cache = getattr(outputs, "past_key_values", None)
        # Only plain attention layers hold nothing but keys and values per row; hybrid
        # layers also carry recurrent or convolution state that copying rows would miss.
        if not all(type(layer) in SHAREABLE_LAYERS for layer in getattr(cache, "layers", [None])):
            logger.warning(
                "%s: this model's cache (%s) cannot be continued from a shared prompt; sampling as `hf` does",
                MODEL_NAME,
                type(cache).__name__,
            )
            self._shares_prompt_cache = False
            return None
        return cache

    def _response_text(self, continuation: list[int], until: list[str]) -> str:
        """`hf`'s decoding of one continuation: thinking tokens, then stop sequences."""
        if isinstance(self.think_end_token, int) and self.think_end_token in continuation:
            last = len(continuation) - 1 - continuation[::-1].index(self.think_end_token)
            continuation = continuation[last + 1 :]
        text = self.tok_decode(continuation)
        if isinstance(self.think_end_token, int):
            text = text.lstrip()
        return postprocess_generated_text(
            generation=text,
            stop=until,
            think_end_token=self.think_end_token if isinstance(self.think_end_token, str) else None,
        )


class _PreallocatedLayer(DynamicLayer):
    """A DynamicLayer writing into a buffer reserved up front (see `expand_prompt_cache`)."""

    def expand(self, samples_per_prompt: list[int], n_tokens: int) -> None:
        _, heads, length, dim = self.keys.shape
        rows = sum(samples_per_prompt)
        self._key_buffer = self.keys.new_empty((rows, heads, length + n_tokens, dim))
        self._value_buffer = self.values.new_empty((rows, heads, length + n_tokens, self.values.shape[-1]))
        start = 0
        for prompt, n_samples in enumerate(samples_per_prompt):
            # broadcast: one copy of the prompt's cache into each of its sample rows
            self._key_buffer[start : start + n_samples, :, :length] = self.keys[prompt]
            self._value_buffer[start : start + n_samples, :, :length] = self.values[prompt]
            start += n_samples
        self.keys = self._key_buffer[..., :length, :]
        self.values = self._value_buffer[..., :length, :]

    def keep_rows(self, order: list[int]) -> None:
        """Keep the rows `order` names: only rows that change place are copied, within the buffer."""
        length = self.keys.shape[-2]
        if length > self._key_buffer.shape[-2]:  # grown past the buffer by DynamicLayer's own rule
            self.batch_select_indices(torch.tensor(order, device=self.keys.device))
            return
        moved = [(position, row) for position, row in enumerate(order) if position != row]
        if moved:
            targets, sources = (torch.tensor(side, device=self.keys.device) for side in zip(*moved))
            self._key_buffer[targets, :, :length] = self._key_buffer[sources, :, :length]
            self._value_buffer[targets, :, :length] = self._value_buffer[sources, :, :length]
        self._key_buffer = self._key_buffer[: len(order)]
        self._value_buffer = self._value_buffer[: len(order)]
        self.keys = self._key_buffer[..., :length, :]
        self.values = self._value_buffer[..., :length, :]

    def update(self, key_states, value_states, *args, **kwargs):
        start = self.keys.shape[-2]
        end = start + key_states.shape[-2]
        if end > self._key_buffer.shape[-2]:
            return super().update(key_states, value_states, *args, **kwargs)
        self._key_buffer[..., start:end, :] = key_states
        self._value_buffer[..., start:end, :] = value_states
        self.keys = self._key_buffer[..., :end, :]
        self.values = self._value_buffer[..., :end, :]
        return self.keys, self.values


def expand_prompt_cache(cache, samples_per_prompt: list[int], n_tokens: int) -> None:
    """Turn a cache of P prompts into one of sum(samples_per_prompt) sample rows.

    Row order is prompt by prompt. transformers' DynamicLayer grows by `torch.cat`,
    copying every row's whole cache at every step; with M rows of a long prompt that
    copy is most of the decoding time. Layers of exactly that type therefore get a
    buffer with room for `n_tokens` more tokens and write new ones into it; the keys and
    values they return hold the same numbers, so the computation is unchanged. Other
    layer types (sliding window, static) are expanded by transformers' own
    `batch_select_indices` and keep their growth rule.
    """
    rows = torch.repeat_interleave(torch.arange(len(samples_per_prompt)), torch.tensor(samples_per_prompt))
    for layer in cache.layers:
        if type(layer) is DynamicLayer and layer.get_seq_length() > 0:
            layer.__class__ = _PreallocatedLayer
            layer.expand(samples_per_prompt, n_tokens)
        elif getattr(layer, "keys", None) is not None:
            layer.batch_select_indices(rows.to(layer.keys.device))


def cut_is_settled(text: str, stops: list[str], unsettled_characters: int = 0) -> bool:
    r"""Whether appending tokens can no longer change where `text` is cut at a stop string.

    lm-eval cuts the text at each stop string in turn: before its first occurrence in
    what the previous ones left. Only the settled part of the text counts (all but
    trailing U+FFFD, an incomplete character, and the last `unsettled_characters`), and
    a stop string could still begin at any position from which the rest of the settled
    text is a prefix of it. The cut is settled once some stop string occurs with no
    possible start before it, and every stop string cut before it can only cut after
    that occurrence's end.

    >>> cut_is_settled("x = 5\n\n", ["\n\n", "4\n\nQ"])
    True
    >>> cut_is_settled("x = 4\n\n", ["4\n\nQ", "\n\n"])  # "4\n\nQ" may still come and cut at "4"
    False
    """
    settled = text.rstrip("\ufffd")[: -unsettled_characters or None]
    cuts_before: list[int] = []  # the earliest position each stop string cut before could cut at
    for stop in (stop for stop in stops if stop):
        found = settled.find(stop)
        starts = (found,) if found >= 0 else ()
        starts += tuple(
            start for start in range(max(0, len(settled) - len(stop) + 1), len(settled))
            if stop.startswith(settled[start:])
        )
        earliest = min(starts, default=len(settled))
        if found >= 0 and earliest == found:
            return all(cut >= found + len(stop) for cut in cuts_before)
        cuts_before.append(earliest)
    return False


def compaction_order(kept: list[int], n_rows: int) -> list[int]:
    """The old row each of the `len(kept)` remaining rows takes, moving as few rows as possible.

    Kept rows already among the first `len(kept)` stay where they are; the kept rows
    beyond fill the places of the finished ones.

    >>> compaction_order([0, 2, 3, 5], 6)
    [0, 5, 2, 3]
    """
    n_kept = len(kept)
    staying = {position for position in kept if position < n_kept}
    movers = iter(position for position in kept if position >= n_kept)
    return [position if position in staying else next(movers) for position in range(n_kept)]


def keep_cache_rows(cache, order: list[int]) -> None:
    """Reduce `cache` to the rows `order` names, in that order (see `compaction_order`)."""
    index = torch.tensor(order)
    for layer in cache.layers:
        if isinstance(layer, _PreallocatedLayer):
            layer.keep_rows(order)
        elif getattr(layer, "keys", None) is not None:
            layer.batch_select_indices(index.to(layer.keys.device))
