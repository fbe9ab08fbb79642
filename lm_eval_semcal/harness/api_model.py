"""`semcal-completions` and `semcal-chat-completions`: lm-eval's `local-completions` and
`local-chat-completions`, asking for a question's M samples at once.

The stock API backends send every request with `seed` (1234 unless set), so a vLLM,
SGLang or OpenAI-compatible server gives the M identical requests of a question the same
completion: confidence 1.0 everywhere. This backend groups the M copies, sends one
request per question with `n` = M and no seed, and checks that the reply holds M
completions. Everything else (`base_url`, tokenizer options, `num_concurrent`,
`max_retries`, `timeout`, the `OPENAI_API_KEY` environment variable) is
`local-completions`' own.

Options of its own: `seed` (default none: free sampling; a number S is sent with a
question's first request, S + k with its k-th when `max_n` splits it, so no two requests
of a question share a seed) and `max_n` (the most samples one request asks for; larger
groups are split, for servers that cap `n`).

`semcal-chat-completions` is the same for a chat endpoint (`/v1/chat/completions`, an
instruct model behind vLLM or SGLang): it needs `--apply_chat_template`, as lm-eval's
chat backends do, and reads each sample from `message.content` (after
`think_end_token`, when set).
"""

from __future__ import annotations

import copy
import logging
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lm_eval.api.instance import Instance
from lm_eval.api.registry import register_model
from lm_eval.models.api_models import JsonChatStr
from lm_eval.models.openai_completions import LocalChatCompletion, LocalCompletionsAPI
from lm_eval.models.utils import postprocess_generated_text
from tenacity import retry, stop_after_attempt, wait_exponential
from tqdm import tqdm

from lm_eval_semcal.harness.rescue import write_rescue_file
from lm_eval_semcal.harness.request_groups import RequestGroup, group_identical_requests

# Under lm-eval's logger, so the harness's --verbosity shows or hides these lines.
logger = logging.getLogger(f"lm_eval.models.{__name__}")

MODEL_NAME = "semcal-completions"
CHAT_MODEL_NAME = "semcal-chat-completions"


class ServerReplyError(RuntimeError):
    """The server answered, but not with the completions that were asked for."""


@register_model(MODEL_NAME)
class SemcalCompletionsAPI(LocalCompletionsAPI):
    """`local-completions` with one `n`-sample request per question and no fixed seed."""

    backend_name = MODEL_NAME

    def __init__(self, seed: int | None = None, max_n: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._seed = None if seed is None else int(seed)
        self.max_n = None if max_n is None else int(max_n)
        if self.max_n is not None and self.max_n < 1:
            raise ValueError(f"{self.backend_name}: max_n must be at least 1, got {max_n}")

    def _create_payload(
        self,
        messages,
        generate: bool = False,
        gen_kwargs: dict | None = None,
        seed: int | None = None,
        eos=None,
        n: int = 1,
        part: int = 0,
        **kwargs: Any,
    ) -> dict:
        payload = super()._create_payload(messages, generate=generate, gen_kwargs=gen_kwargs, seed=seed, eos=eos, **kwargs)
        if seed is None:
            payload.pop("seed", None)
        else:
            payload["seed"] = seed + part
        if generate:
            payload["n"] = n
        return payload

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        if any(len(request.args) > 2 for request in requests):
            raise ValueError(f"{self.backend_name} serves text prompts only; use lm-eval's own backend for multimodal requests")
        self._check_prompts(requests)
        groups = group_identical_requests(request.args[:2] for request in requests)
        jobs = [
            (group, self._prompt(group.context, group.gen_kwargs), part, chunk)
            for group in groups
            for part, chunk in enumerate(self._chunks(group.indices))
        ]
        responses: list[str | None] = [None] * len(requests)
        progress = tqdm(total=len(requests), disable=disable_tqdm, desc=f"Requesting n samples ({len(jobs)} requests)")

        def run(job: tuple[RequestGroup, str | list[int], int, list[int]]) -> None:
            group, prompt, part, indices = job
            texts = self._request_samples(group, prompt, len(indices), part)
            for index, text in zip(indices, texts, strict=True):
                responses[index] = text
                self.cache_hook.add_partial("generate_until", (group.context, group.gen_kwargs), text)
            progress.update(len(indices))

        try:
            with ThreadPoolExecutor(max_workers=max(1, self._concurrent)) as pool:
                for _ in pool.map(run, jobs):
                    pass
        except Exception as err:
            path = self._rescue(requests, groups, responses)
            raise RuntimeError(
                f"{self.backend_name}: a request failed after {self.max_retries} tries ({type(err).__name__}: {err}); "
                f"the samples received so far are saved in {path}"
            ) from err
        finally:
            progress.close()
        return responses

    def _chunks(self, indices: list[int]) -> list[list[int]]:
        size = self.max_n or len(indices)
        return [indices[start : start + size] for start in range(0, len(indices), size)]

    def _prompt(self, context: str, gen_kwargs: dict) -> str | list[int]:
        if not self.tokenized_requests:
            return context
        max_gen_toks = gen_kwargs.get("max_gen_toks", self._max_gen_toks)
        tokens = self.tok_encode(context, add_special_tokens=self.add_bos_token)
        kept = tokens[-(self.max_length - max_gen_toks) :]
        if len(kept) < len(tokens):
            logger.warning("%s: a prompt of %d tokens was left-truncated to %d", self.backend_name, len(tokens), len(kept))
        return kept

    def _request_samples(self, group: RequestGroup, prompt: str | list[int], n: int, part: int) -> list[str]:
        @retry(
            stop=stop_after_attempt(self.max_retries),
            wait=wait_exponential(multiplier=0.5, min=1, max=10),
            reraise=True,
        )
        def attempt() -> list[str]:
            reply = self.model_call(
                messages=[prompt], generate=True, gen_kwargs=copy.deepcopy(group.gen_kwargs), n=n, part=part
            )
            return completions_from_reply(reply, n, self._sample_text)

        return attempt()

    def _check_prompts(self, requests: list[Instance]) -> None:
        """Raise ValueError before any request for prompts this endpoint cannot take."""
        if any(isinstance(request.args[0], JsonChatStr) for request in requests):
            raise ValueError(
                f"{self.backend_name} sends text to a completions endpoint, and this run renders chat "
                f"conversations (--apply_chat_template): use --model {CHAT_MODEL_NAME} for a chat endpoint"
            )

    def _sample_text(self, choice: dict) -> str | None:
        """One sample's text in a choice of the reply (None: the choice has none)."""
        return choice.get("text")

    def _rescue(self, requests: list[Instance], groups: list[RequestGroup], responses: list[str | None]) -> Path:
        rows = []
        for group in groups:
            received = [responses[i] for i in group.indices if responses[i] is not None]
            if received:
                first = requests[group.indices[0]]
                rows.append(
                    {
                        "task": first.task_name,
                        "doc_id": first.doc_id,
                        "prompt": group.context.prompt if isinstance(group.context, JsonChatStr) else group.context,
                        "gen_kwargs": group.gen_kwargs,
                        "resps": received,
                    }
                )
        return write_rescue_file(self.backend_name, rows)


@register_model(CHAT_MODEL_NAME)
class SemcalChatCompletionsAPI(SemcalCompletionsAPI, LocalChatCompletion):
    """`local-chat-completions` with one `n`-sample request per question and no fixed seed."""

    backend_name = CHAT_MODEL_NAME

    def _check_prompts(self, requests: list[Instance]) -> None:
        if not all(isinstance(request.args[0], JsonChatStr) for request in requests):
            raise ValueError(
                f"{self.backend_name} sends chat conversations: add --apply_chat_template (or use "
                f"--model {MODEL_NAME} for a completions endpoint)"
            )

    def _sample_text(self, choice: dict) -> str | None:
        message = choice.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            return None
        return postprocess_generated_text(content, stop=None, think_end_token=self.think_end_token)

def completions_from_reply(
    reply: Any, n: int, sample_text: Callable[[dict], str | None] = lambda choice: choice.get("text")
) -> list[str]:
    """The `n` sample texts of an OpenAI (chat) completions reply, in `index` order.

    `sample_text` reads a choice's text (`text`, or a chat choice's `message.content`).
    Raises ServerReplyError naming what is wrong when the reply is not an object with
    exactly the choices 0..n-1, each with a text: a short reply is an error, never a
    short sample.
    """
    choices = reply.get("choices") if isinstance(reply, dict) else None
    if not isinstance(choices, list):
        raise ServerReplyError(f"the reply has no `choices` list: {str(reply)[:200]!r}")
    texts: dict[int, str] = {}
    indices: list[int] = []
    for choice in choices:
        index = choice.get("index") if isinstance(choice, dict) else None
        text = sample_text(choice) if isinstance(choice, dict) else None
        if not isinstance(index, int) or not isinstance(text, str):
            raise ServerReplyError(f"a choice lacks an integer `index` or its text: {str(choice)[:200]!r}")
        texts[index] = text
        indices.append(index)
    if sorted(indices) != list(range(n)):
        raise ServerReplyError(
            f"asked for n={n} samples, the reply has choices {sorted(indices)[:10]}"
            f"{'...' if len(indices) > 10 else ''}; does the server support `n`? "
            "(set max_n=1 to ask for one sample per request)"
        )
    return [texts[index] for index in range(n)]
