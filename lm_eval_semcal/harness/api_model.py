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

Both replace the API key by *** in what lm-eval logs while their requests run (a server
may echo the Authorization header in a refusal, which lm-eval logs) and in the errors
they raise.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lm_eval.api.instance import Instance
from lm_eval.api.registry import register_model
from lm_eval.models.api_models import JsonChatStr
from lm_eval.models.openai_completions import LocalChatCompletion, LocalCompletionsAPI
from lm_eval.models.utils import postprocess_generated_text
from tenacity import retry, stop_after_attempt, wait_exponential
from tqdm import tqdm

from lm_eval_semcal.grouping.llm_clients import redact_key
from lm_eval_semcal.harness.request_groups import RequestGroup, group_identical_requests
from lm_eval_semcal.harness.rescue import write_rescue_file

# Under lm-eval's logger, so the harness's --verbosity shows or hides these lines.
logger = logging.getLogger(f"lm_eval.models.{__name__}")

MODEL_NAME = "semcal-completions"
CHAT_MODEL_NAME = "semcal-chat-completions"

# Where lm-eval logs while our requests run: TemplateAPI.model_call logs a refused
# request's body ("API request failed with error message: ..."), and a server may echo
# the Authorization header, key and all, in it.
REQUEST_LOGGERS = ("lm_eval.models.api_models", "lm_eval.models.openai_completions", logger.name)


class _KeyRedaction(logging.Filter):
    """Replaces the API key in a log record's message with ***."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.key in message:
            record.msg, record.args = redact_key(message, self.key), ()
        return True


@contextmanager
def _key_redacted_from_logs(key: str) -> Iterator[None]:
    """While it lasts, `key` is replaced by *** in every record of REQUEST_LOGGERS.

    A filter on a logger sees the records made on that logger only, so it goes on each
    logger that lm-eval's request code writes to; nothing is installed without a key.
    """
    if not key:
        yield
        return
    redaction = _KeyRedaction(key)
    loggers = [logging.getLogger(name) for name in REQUEST_LOGGERS]
    for each in loggers:
        each.addFilter(redaction)
    try:
        yield
    finally:
        for each in loggers:
            each.removeFilter(redaction)


def _mentions(err: BaseException, key: str) -> bool:
    """Whether the key is in the text of `err` or of an exception it was raised from."""
    seen: BaseException | None = err
    while seen is not None:
        if key in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


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

    @property
    def _sent_key(self) -> str:
        """The API key sent with each request (`OPENAI_API_KEY`), padding dropped; '' for none.

        Without its padding it still matches where a server or an error quotes the key
        (a key ending in a newline is quoted as its repr).
        """
        return (self.api_key or "").strip()

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        """Every request's sample, one request of `n` samples per question (see the module).

        The API key is replaced by *** in what lm-eval logs meanwhile and in the error
        raised when a request fails for good.
        """
        with _key_redacted_from_logs(self._sent_key):
            return self._generate_until(requests, disable_tqdm)

    def _generate_until(self, requests: list[Instance], disable_tqdm: bool) -> list[str]:
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
            message = redact_key(
                f"{self.backend_name}: a request failed after {self.max_retries} tries ({type(err).__name__}: {err}); "
                f"the samples received so far are saved in {path}",
                self._sent_key,
            )
            if self._sent_key and _mentions(err, self._sent_key):
                # A traceback prints the cause's text too: a cause that quotes the key is left out.
                raise RuntimeError(message) from None
            raise RuntimeError(message) from err
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
            return completions_from_reply(reply, n, self._sample_text, key=self._sent_key)

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

    def __init__(self, think_end_token: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # lm-eval 0.4.13's chat backend takes this option and 0.5's does not (it drops
        # unknown options silently): read it here, so both releases cut the reasoning.
        self.think_end_token = think_end_token

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
    reply: Any,
    n: int,
    sample_text: Callable[[dict], str | None] = lambda choice: choice.get("text"),
    key: str | None = None,
) -> list[str]:
    """The `n` sample texts of an OpenAI (chat) completions reply, in `index` order.

    `sample_text` reads a choice's text (`text`, or a chat choice's `message.content`).
    Raises ServerReplyError naming what is wrong when the reply is not an object with
    exactly the choices 0..n-1, each with a text: a short reply is an error, never a
    short sample. The API key `key`, when given, is replaced by *** where the error
    quotes the reply.
    """
    choices = reply.get("choices") if isinstance(reply, dict) else None
    if not isinstance(choices, list):
        raise ServerReplyError(f"the reply has no `choices` list: {redact_key(str(reply), key)[:200]!r}")
    texts: dict[int, str] = {}
    indices: list[int] = []
    for choice in choices:
        index = choice.get("index") if isinstance(choice, dict) else None
        text = sample_text(choice) if isinstance(choice, dict) else None
        if not isinstance(index, int) or not isinstance(text, str):
            raise ServerReplyError(
                f"a choice lacks an integer `index` or its text: {redact_key(str(choice), key)[:200]!r}"
            )
        texts[index] = text
        indices.append(index)
    if sorted(indices) != list(range(n)):
        raise ServerReplyError(
            f"asked for n={n} samples, the reply has choices {sorted(indices)[:10]}"
            f"{'...' if len(indices) > 10 else ''}; does the server support `n`? "
            "(set max_n=1 to ask for one sample per request)"
        )
    return [texts[index] for index in range(n)]
