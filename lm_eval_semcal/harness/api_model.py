"""`semcal-completions`: lm-eval's `local-completions`, asking for a question's M samples at once.

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
"""

from __future__ import annotations

import copy
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lm_eval.api.instance import Instance
from lm_eval.api.registry import register_model
from lm_eval.models.openai_completions import LocalCompletionsAPI
from tenacity import retry, stop_after_attempt, wait_exponential
from tqdm import tqdm

from lm_eval_semcal.harness.rescue import write_rescue_file
from lm_eval_semcal.harness.request_groups import RequestGroup, group_identical_requests

# Under lm-eval's logger, so the harness's --verbosity shows or hides these lines.
logger = logging.getLogger(f"lm_eval.models.{__name__}")

MODEL_NAME = "semcal-completions"


class ServerReplyError(RuntimeError):
    """The server answered, but not with the completions that were asked for."""


@register_model(MODEL_NAME)
class SemcalCompletionsAPI(LocalCompletionsAPI):
    """`local-completions` with one `n`-sample request per question and no fixed seed."""

    def __init__(self, seed: int | None = None, max_n: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._seed = None if seed is None else int(seed)
        self.max_n = None if max_n is None else int(max_n)
        if self.max_n is not None and self.max_n < 1:
            raise ValueError(f"{MODEL_NAME}: max_n must be at least 1, got {max_n}")

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
            raise ValueError(f"{MODEL_NAME} serves text prompts only; use local-completions for multimodal requests")
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
                f"{MODEL_NAME}: a request failed after {self.max_retries} tries ({type(err).__name__}: {err}); "
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
            logger.warning("%s: a prompt of %d tokens was left-truncated to %d", MODEL_NAME, len(tokens), len(kept))
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
            return completions_from_reply(reply, n)

        return attempt()

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
                        "prompt": group.context,
                        "gen_kwargs": group.gen_kwargs,
                        "resps": received,
                    }
                )
        return write_rescue_file(MODEL_NAME, rows)

def completions_from_reply(reply: Any, n: int) -> list[str]:
    """The `n` completion texts of an OpenAI completions reply, in `index` order.

    Raises ServerReplyError naming what is wrong when the reply is not a completions
    object with exactly the choices 0..n-1, each with a text.
    """
    choices = reply.get("choices") if isinstance(reply, dict) else None
    if not isinstance(choices, list):
        raise ServerReplyError(f"the reply has no `choices` list: {str(reply)[:200]!r}")
    texts: dict[int, str] = {}
    indices: list[int] = []
    for choice in choices:
        index = choice.get("index") if isinstance(choice, dict) else None
        text = choice.get("text") if isinstance(choice, dict) else None
        if not isinstance(index, int) or not isinstance(text, str):
            raise ServerReplyError(f"a choice lacks an integer `index` or a `text` string: {str(choice)[:200]!r}")
        texts[index] = text
        indices.append(index)
    if sorted(indices) != list(range(n)):
        raise ServerReplyError(
            f"asked for n={n} samples, the reply has choices {sorted(indices)[:10]}"
            f"{'...' if len(indices) > 10 else ''}; does the server support `n`? "
            "(set max_n=1 to ask for one sample per request)"
        )
    return [texts[index] for index in range(n)]
