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
import re
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Protocol

from tenacity import retry, retry_if_exception_type, stop_after_attempt, stop_when_event_set, wait_exponential

from lm_eval_semcal.grouping.judgement_cache import model_fingerprint

CHAT_PATH = "/chat/completions"


def models_url(endpoint_url: str) -> str:
    """The `GET /models` URL of the server behind a completions or chat completions URL."""
    return endpoint_url.removesuffix(CHAT_PATH).removesuffix("/completions") + "/models"


def served_weights(endpoint_url: str, model: str, headers: dict[str, str], timeout: float) -> str | None:
    """What an OpenAI-compatible server names behind the model name `model`, or None.

    Servers let any name stand for any weights (TGI, SGLang's "default", vLLM's
    --served-model-name); vLLM names the weights in `GET /v1/models` (`root`). `endpoint_url`
    is the server's completions or chat completions URL. None: the server names no weights
    there. Raises `requests.RequestException` when the server cannot be reached.
    """
    import requests

    response = requests.get(models_url(endpoint_url), headers=headers, timeout=timeout)
    try:
        models = response.json().get("data") if response.status_code == 200 else None
        served = next(m for m in models if m.get("id") == model)
    except (ValueError, AttributeError, TypeError, StopIteration):
        return None
    return served["root"] if isinstance(served.get("root"), str) else None


class LlmServerError(RuntimeError):
    """The endpoint could not be used: refused, unreachable after retries, or a bad reply."""


class _Transient(Exception):
    """A failure worth another try (timeout, connection, HTTP 429 or 5xx)."""


class ChatClient(Protocol):
    fingerprint: str  # names the model and every setting that changes its replies

    def complete(self, prompts: Sequence[str]) -> Iterator[tuple[int, str]]: ...


_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# What a key becomes in any text that is logged or raised.
REDACTED_KEY = "***"


def chat_url(base_url: str) -> str:
    """The chat completions URL of `base_url` ("http://host:8000/v1" or the full URL)."""
    url = base_url.rstrip("/")
    return url if url.endswith(CHAT_PATH) else url + CHAT_PATH


def api_key(api_key_env: str | None) -> str | None:
    """The key in the environment variable `api_key_env` (None when no variable is named).

    No message here ever holds the key: a value that is not a variable's name (a key
    pasted in by mistake) is not echoed.
    """
    if api_key_env is None:
        return None
    if not isinstance(api_key_env, str) or not _ENV_NAME_RE.fullmatch(api_key_env):
        raise ValueError(
            "llm: api_key_env must be the name of an environment variable holding the key (like READER_KEY), "
            "not the key itself"
        )
    key = os.environ.get(api_key_env, "").strip()
    if not key:
        raise ValueError(f"llm: the environment variable {api_key_env} (api_key_env) holding the API key is not set")
    if any(not char.isprintable() or char.isspace() for char in key):
        raise ValueError(f"llm: the key in ${api_key_env} holds spaces or control characters; set it to the key alone")
    return key


def redact_key(text: str, key: str | None) -> str:
    """`text` with every occurrence of the API key `key` replaced by `***` (as is without a key).

    Redact a server's text before cutting it short: a cut can split the key and leave a
    piece of it that no longer matches.
    """
    return text.replace(key, REDACTED_KEY) if key else text


def reply_text(reply: object) -> str:
    """The message text of a chat completion reply; LlmServerError when there is none."""
    try:
        choice = reply["choices"][0]
        content = choice["message"]["content"]
    except (KeyError, IndexError, TypeError):
        choice, content = None, None
    if not isinstance(content, str):
        hint = ""
        if isinstance(choice, dict) and choice.get("finish_reason") == "length":
            hint = " (it ran out of max_tokens: raise max_tokens, or turn the reader's reasoning off)"
        raise LlmServerError(
            f"llm: the reply is not a chat completion with choices[0].message.content{hint}: {str(reply)[:200]!r}"
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
        self._sessions = threading.local()
        self.fingerprint = f"openai:{self.url}|{model}{self._served_weights()}|max_tokens={max_tokens}"

    def __repr__(self) -> str:
        return f"OpenAIChatClient(url={self.url!r}, model={self.model!r}, api_key_env={self.api_key_env!r})"

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key}"} if self._key else {}

    def _served_weights(self) -> str:
        """What the server says stands behind the model name (`served_weights`), for the cache key.

        A new model behind the old name gets fresh replies. Asking also proves the
        endpoint is reachable before a run starts sampling.
        """
        import requests

        try:
            root = served_weights(self.url, self.model, self._headers(), min(self.timeout, 30))
        except requests.RequestException as err:
            raise LlmServerError(
                f"llm: cannot reach {models_url(self.url)} ({type(err).__name__}); is the reader's server up?"
            ) from None
        return f"@{root}" if root is not None else ""

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
        try:
            response = self._session().post(self.url, json=payload, headers=self._headers(), timeout=self.timeout)
        except requests.Timeout:
            raise _Transient(f"no reply within {self.timeout} s (timeout)") from None
        except requests.exceptions.SSLError:
            raise LlmServerError(f"llm: {self.url}: TLS error (SSLError); check the certificate or the URL's scheme") from None
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as err:
            raise _Transient(f"connection failed or dropped ({type(err).__name__})") from None
        except requests.RequestException as err:
            # The message of some of these quotes the request's headers: name the type only.
            raise LlmServerError(f"llm: {self.url}: the request could not be sent ({type(err).__name__})") from None
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
            raise LlmServerError(f"llm: {self.url} answered HTTP {status}: {redact_key(response.text, self._key)[:200]!r}")
        try:
            reply = response.json()
        except ValueError:
            raise LlmServerError(
                f"llm: {self.url} answered with something that is not JSON: {redact_key(response.text, self._key)[:200]!r}"
            ) from None
        return reply_text(reply)

    def _post(self, prompt: str, failed: threading.Event) -> str:
        attempt = retry(
            retry=retry_if_exception_type(_Transient),
            # Once another request has failed for good, the batch is ending: no more tries.
            stop=stop_after_attempt(self.max_retries) | stop_when_event_set(failed),
            wait=wait_exponential(multiplier=0.5, min=0.5, max=10),
            reraise=True,
        )(self._post_once)
        try:
            return attempt(prompt)
        except _Transient as err:
            raise LlmServerError(f"llm: {self.url} failed {self.max_retries} times in a row; the last: {err}") from None

    def complete(self, prompts: Sequence[str]) -> Iterator[tuple[int, str]]:
        """Replies as they arrive, `num_concurrent` requests in flight.

        When a request fails for good, nothing new is sent, the requests in flight run to
        their end (without further tries) and every reply received is still yielded;
        then the first error is raised.
        """
        failed = threading.Event()
        first_error: BaseException | None = None
        pending = iter(enumerate(prompts))
        with ThreadPoolExecutor(max_workers=self.num_concurrent) as pool:
            running: dict = {}

            def submit_next() -> None:
                for index, prompt in pending:
                    running[pool.submit(self._post, prompt, failed)] = index
                    return

            for _ in range(self.num_concurrent):
                submit_next()
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    index = running.pop(future)
                    try:
                        reply = future.result()
                    except Exception as err:  # noqa: BLE001 - raised once the batch has drained
                        if first_error is None:
                            first_error = err
                            failed.set()
                        continue
                    yield index, reply
                    if first_error is None:
                        submit_next()
        if first_error is not None:
            raise first_error


# Loaded local readers, by (weights fingerprint, dtype, device).
_LOADED_READERS: dict[tuple[str, str, str], tuple] = {}


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
        self._weights = model_fingerprint(model)
        self.fingerprint = f"hf:{self._weights}|dtype={dtype}|max_tokens={max_tokens}"

    def _load(self):
        import torch

        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        # One copy per process: every task of a run (and every task a rescore regroups)
        # builds its own filter, and each would otherwise load the reader again.
        key = (self._weights, self.dtype, device)
        if key not in _LOADED_READERS:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(self.model_name, padding_side="left")
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            model = AutoModelForCausalLM.from_pretrained(self.model_name, dtype=self.dtype).eval()
            _LOADED_READERS[key] = tokenizer, model.to(device), device
        return _LOADED_READERS[key]

    def format(self, prompt: str) -> str:
        """The text the model reads: the prompt as a user turn when the tokenizer has a chat template."""
        tokenizer, _, _ = self._load()
        if not tokenizer.chat_template:
            return prompt
        # enable_thinking=False: templates with a reasoning switch (Qwen3) answer at once;
        # the others ignore it.
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True, enable_thinking=False
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
