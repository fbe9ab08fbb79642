"""Chat models that read a prompt and reply greedily: the readers behind B = `llm`.

One interface, two kinds:

- `OpenAIChatClient`: any OpenAI-compatible chat completions endpoint (vLLM serve,
  SGLang, TGI, a hosted API) given by base URL. Requests run `num_concurrent` at a
  time; a timeout, a refused connection, HTTP 429 or a 5xx is retried with exponential
  backoff, up to `max_retries` tries in all; anything else (a refused key, a reply
  that is not a chat completion) stops with an error that says what was wrong. The key
  is read from the environment variable named by `api_key_env` and is never logged,
  stored or put in an error message.
- `HFChatClient`: a local Hugging Face causal LM, greedy `generate` in left-padded
  batches, the tokenizer's chat template applied when it has one. Its weights load at
  the first request, so a run that samples from another model first does not hold both
  in memory while it generates.

`complete(prompts)` yields `(index, reply)` pairs as replies arrive, not in order, so
the caller can keep each reply (in its cache) before a later request fails.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Protocol

from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from lm_eval_semcal.judgement_cache import model_fingerprint

CHAT_PATH = "/chat/completions"


class LlmServerError(RuntimeError):
    """The endpoint could not be used: refused, unreachable after retries, or a bad reply."""


class _Transient(Exception):
    """A failure worth another try (timeout, connection, HTTP 429 or 5xx)."""


class ChatClient(Protocol):
    fingerprint: str  # names the model and every setting that changes its replies

    def complete(self, prompts: Sequence[str]) -> Iterator[tuple[int, str]]: ...


def chat_url(base_url: str) -> str:
    """The chat completions URL of `base_url` ("http://host:8000/v1" or the full URL)."""
    url = base_url.rstrip("/")
    return url if url.endswith(CHAT_PATH) else url + CHAT_PATH


def api_key(api_key_env: str | None) -> str | None:
    """The key in the environment variable `api_key_env` (None when no variable is named)."""
    if api_key_env is None:
        return None
    key = os.environ.get(api_key_env)
    if not key:
        raise ValueError(f"llm: the environment variable {api_key_env} (api_key_env) holding the API key is not set")
    return key


def reply_text(reply: object) -> str:
    """The message text of a chat completion reply; LlmServerError when there is none."""
    try:
        content = reply["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        content = None
    if not isinstance(content, str):
        raise LlmServerError(
            f"llm: the reply is not a chat completion with choices[0].message.content: {str(reply)[:200]!r}"
        )
    return content


class OpenAIChatClient:
    """Greedy replies from an OpenAI-compatible chat completions endpoint."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = None,
        max_tokens: int = 32,
        num_concurrent: int = 8,
        max_retries: int = 3,
        timeout: float = 60.0,
    ) -> None:
        self.url = chat_url(base_url)
        self.model = model
        self.api_key_env = api_key_env
        self.max_tokens = max_tokens
        self.num_concurrent = num_concurrent
        self.max_retries = max_retries
        self.timeout = timeout
        self._key = api_key(api_key_env)
        self.fingerprint = f"openai:{self.url}|{model}|max_tokens={max_tokens}"
        self._sessions = threading.local()

    def __repr__(self) -> str:
        return f"OpenAIChatClient(url={self.url!r}, model={self.model!r}, api_key_env={self.api_key_env!r})"

    def _session(self):
        import requests

        if not hasattr(self._sessions, "session"):
            self._sessions.session = requests.Session()
        return self._sessions.session

    def _post_once(self, prompt: str) -> str:
        import requests

        payload = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": 0,
            "max_tokens": self.max_tokens,
        }
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        try:
            response = self._session().post(self.url, json=payload, headers=headers, timeout=self.timeout)
        except requests.Timeout:
            raise _Transient(f"no reply within {self.timeout} s (timeout)") from None
        except requests.ConnectionError:
            raise _Transient("could not connect") from None
        status = response.status_code
        if status in (401, 403):
            fix = (
                f"check the key in ${self.api_key_env}"
                if self._key
                else "it wants an API key: put it in an environment variable and pass api_key_env=NAME"
            )
            raise LlmServerError(f"llm: {self.url} refused the request (HTTP {status}): {fix}")
        if status == 429 or status >= 500:
            raise _Transient(f"HTTP {status}")
        if status != 200:
            raise LlmServerError(f"llm: {self.url} answered HTTP {status}: {response.text[:200]!r}")
        try:
            reply = response.json()
        except ValueError:
            raise LlmServerError(f"llm: {self.url} answered with something that is not JSON: {response.text[:200]!r}") from None
        return reply_text(reply)

    def _post(self, prompt: str) -> str:
        attempt = retry(
            retry=retry_if_exception_type(_Transient),
            stop=stop_after_attempt(self.max_retries),
            wait=wait_exponential(multiplier=0.5, min=0.5, max=10),
            reraise=True,
        )(self._post_once)
        try:
            return attempt(prompt)
        except _Transient as err:
            raise LlmServerError(f"llm: {self.url} failed {self.max_retries} times in a row; the last: {err}") from None

    def complete(self, prompts: Sequence[str]) -> Iterator[tuple[int, str]]:
        pool = ThreadPoolExecutor(max_workers=self.num_concurrent)
        futures = {pool.submit(self._post, prompt): index for index, prompt in enumerate(prompts)}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


class HFChatClient:
    """Greedy replies from a local Hugging Face causal LM, in left-padded batches."""

    def __init__(
        self,
        model: str,
        device: str | None = None,
        batch_size: int = 16,
        max_tokens: int = 32,
        dtype: str = "auto",
    ) -> None:
        self.model_name = model
        self.device = device
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.dtype = dtype
        self.fingerprint = f"hf:{model_fingerprint(model)}|dtype={dtype}|max_tokens={max_tokens}"
        self._loaded = None

    def _load(self):
        if self._loaded is None:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(self.model_name, padding_side="left")
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            model = AutoModelForCausalLM.from_pretrained(self.model_name, dtype=self.dtype).eval()
            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            self._loaded = tokenizer, model.to(device), device
        return self._loaded

    def format(self, prompt: str) -> str:
        """The text the model reads: the prompt as a user turn when the tokenizer has a chat template."""
        tokenizer, _, _ = self._load()
        if not tokenizer.chat_template:
            return prompt
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )

    def complete(self, prompts: Sequence[str]) -> Iterator[tuple[int, str]]:
        import torch

        tokenizer, model, device = self._load()
        texts = [self.format(prompt) for prompt in prompts]
        # Longest first, so that an out-of-memory error comes at once.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            # A chat template already holds the special tokens the model expects.
            inputs = tokenizer(
                [texts[i] for i in batch], return_tensors="pt", padding=True, add_special_tokens=not tokenizer.chat_template
            ).to(device)
            with torch.no_grad():
                output = model.generate(
                    **inputs,
                    do_sample=False,
                    max_new_tokens=self.max_tokens,
                    pad_token_id=tokenizer.pad_token_id,
                    temperature=None,
                    top_p=None,
                    top_k=None,
                )
            replies = tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
            yield from zip(batch, replies, strict=True)
