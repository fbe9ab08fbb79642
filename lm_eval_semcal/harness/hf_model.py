"""`hf-semcal`: lm-eval's `hf` model, drawing a question's M samples from one prompt encoding.

lm-eval runs `repeats: M` by sending M identical requests; the stock `hf` backend encodes
the same few-shot prompt M times. Here the identical requests are grouped, each distinct
prompt is run through the model once (all but its last token, a batch of questions at a
time), the resulting KV cache is copied to one row per sample, and `generate` continues
from it. Everything after the prompt is the stock path: the same `generate` call with the
same logits processors, stopping criteria and decoding, so the samples come from the
same distribution (tested in `tests/test_hf_model.py`).

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


@register_model(MODEL_NAME)
class SemcalHFLM(HFLM):
    """lm-eval's `hf` model with prompt sharing across identical generation requests.

    Every `--model_args` option of `hf` works unchanged; loglikelihood requests are the
    stock ones.
    """

    _shares_prompt_cache = True

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

        generated = self._model_generate(
            context=context_enc[sample_rows],
            attention_mask=attention_mask[sample_rows],
            stop=until,
            max_length=max_length,
            **cache_kwargs,
            **kwargs,
        )
        return [self._response_text(tokens[prompt_length:], until) for tokens in generated.tolist()]

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
