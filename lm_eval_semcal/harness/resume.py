"""`semcal run --use_cache PATH`: sampled generations kept in a sample store, runs resumable.

lm-eval wraps the model in its `CachingLM` when `--use_cache PATH` is given, and that
cache skips every request with `do_sample: true` (its key is the request's arguments,
the same for the M copies of a question). Under `semcal run` the wrapper is
`ResumableLM` instead: loglikelihood and greedy requests go to lm-eval's cache as
before; sampled requests are looked up in the sample store at `PATH_semcal_samples.db`
(`sample_store`), per sample, and only the samples a request lacks reach the model.

The backend reports each sample as it is drawn through lm-eval's cache hook (`hf`,
`hf-semcal`, `vllm`, `semcal-completions` and lm-eval's API backends all do), and a
question's samples are written as soon as its last one arrives; a backend that reports
nothing has its samples written when its call returns.

A store is read only by the model that wrote it: the key of a request holds the
model's identity (`model_identity`), the prompt and the generation settings.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import lm_eval.api.model as lm_eval_model
import requests
from lm_eval.api.instance import Instance
from lm_eval.api.model import LM, CacheHook, CachingLM
from lm_eval.models.api_models import TemplateAPI
from lm_eval.utils import simple_parse_args_string

from lm_eval_semcal.grouping.llm_clients import served_weights
from lm_eval_semcal.harness.request_groups import group_identical_requests, settings_key
from lm_eval_semcal.harness.sample_store import (
    PendingSamples,
    SampleStore,
    file_fingerprint,
    request_key,
)

__all__ = ["ResumableLM", "model_identity", "resumable_sampling", "store_path"]

# Under lm-eval's logger, whose level and handler `lm_eval run` sets: its INFO lines show.
log = logging.getLogger(f"lm_eval.{__name__}")

STORE_SUFFIX = "_semcal_samples.db"
# Model arguments that place or pace the model and leave its samples' distribution as
# it is: a run resumed with another batch size, device or concurrency reads the store.
PLACEMENT_ARGS = frozenset(
    {
        "batch_size", "max_batch_size", "device", "parallelize", "device_map", "device_map_option",
        "max_memory_per_gpu", "max_cpu_memory", "offload_folder", "num_concurrent", "max_retries",
        "timeout", "max_n", "tensor_parallel_size", "data_parallel_size", "pipeline_parallel_size",
        "gpu_memory_utilization", "swap_space", "max_num_seqs", "verify_certificate",
    }
)  # fmt: skip


def store_path(cache_db: str | Path) -> Path:
    """The sample store of `--use_cache PATH`: `PATH_semcal_samples.db`, from PATH or from
    the cache lm-eval names after it (`PATH_rank0.db`).

    lm-eval gives each process its own `_rankN.db`; the processes share one sample store,
    so a run resumed with another number of processes finds every sample.
    """
    return Path(re.sub(r"_rank\d+\.db$", "", str(cache_db)) + STORE_SUFFIX)


def model_identity(model: str, model_args: Mapping[str, Any] | str, lm: LM) -> dict[str, Any]:
    """What tells this model's samples from another's: backend, arguments, weights.

    - `backend` and `args`: the `--model` and `--model_args` given, but for the
      arguments in `PLACEMENT_ARGS`;
    - `files`: for each argument naming a local file or folder (weights, an adapter, a
      tokenizer), its `file_fingerprint`, so weights trained again in place are a new
      model;
    - `loaded`: the name and hub commit of the weights an HF backend loaded, where it
      knows them (a hub id without a revision then still names one snapshot);
    - `served`: for an API backend, the weights the server names behind the model name
      (`served_weights`: vLLM's `root` in `GET /v1/models`), in place of `base_url`. The
      URL says where a model is served, not which: a server restarted on another host
      or port naming the same weights is served the samples kept, one naming other
      weights under the same name never is. Where the server names none, the URL stays
      in the identity, and the log says so.
    """
    args = simple_parse_args_string(model_args) if isinstance(model_args, str) else dict(model_args or {})
    kept = {name: str(value) for name, value in sorted(args.items()) if name not in PLACEMENT_ARGS}
    files = {name: file_fingerprint(value) for name, value in kept.items() if value and Path(value).exists()}
    config = getattr(getattr(lm, "model", None), "config", None)
    loaded = {
        "name_or_path": getattr(config, "_name_or_path", None),
        "commit": getattr(config, "_commit_hash", None),
    }
    identity = {"backend": model, "args": kept, "files": files, "loaded": loaded}
    if isinstance(lm, TemplateAPI) and isinstance(getattr(lm, "base_url", None), str):
        served = _weights_behind(lm)
        if served is not None:
            kept.pop("base_url", None)
            identity["served"] = served
    return identity


def _weights_behind(lm: TemplateAPI) -> str | None:
    """The weights `lm`'s server names behind its model name, or None (logged): then its URL keys the samples."""
    try:
        served = served_weights(lm.base_url, lm.model, lm.header, timeout=30)
    except requests.RequestException as err:
        served, why = None, f"cannot be asked ({type(err).__name__})"
    else:
        why = "has no `root` for it"
    if served is None:
        log.info(
            "semcal: %s names no weights behind the model %r (GET /v1/models %s): its samples are kept "
            "for this URL, and a server restarted elsewhere draws them again",
            lm.base_url, lm.model, why,
        )
    return served


def _prompt_text(context: Any) -> str:
    # lm-eval's chat backends pass the messages as a JsonChatStr (a named tuple of the JSON).
    return context if isinstance(context, str) else getattr(context, "prompt", str(context))


def _is_sampled(request: Instance) -> bool:
    args = request.args
    return len(args) == 2 and isinstance(args[1], dict) and bool(args[1].get("do_sample"))


class _StoreHook(CacheHook):
    """lm-eval's cache hook, with sampled generations filed in the sample store."""

    def __init__(self, resumable: ResumableLM) -> None:
        super().__init__(resumable)
        self._resumable = resumable

    def add_partial(self, attr: str, req: Any, res: Any) -> None:
        pending = self._resumable.pending
        if attr == "generate_until" and pending is not None and isinstance(res, str):
            try:
                if pending.receive(_prompt_text(req[0]), req[1] if isinstance(req[1], dict) else {}, res):
                    return
            except Exception as err:  # noqa: BLE001 - the store must never stop the sampling
                self._resumable.store_failed(err)
                return
        super().add_partial(attr, req, res)


class ResumableLM(CachingLM):
    """lm-eval's `CachingLM`, with sampled generation requests kept per sample (see the module)."""

    def __init__(self, lm: LM, cache_db: str, *, model: str, model_args: Mapping[str, Any] | str) -> None:
        super().__init__(lm, cache_db)
        self.identity = model_identity(model, model_args, lm)
        self.model_key = hashlib.sha256(json.dumps(self.identity, sort_keys=True).encode()).hexdigest()
        self.store = SampleStore(store_path(cache_db))
        self.pending: PendingSamples | None = None
        lm.set_cache_hook(_StoreHook(self))
        log.info("semcal: sampled generations are kept in %s (a rerun with it resumes)", self.store.path)

    def store_failed(self, err: Exception) -> None:
        """A write to the store failed: the run goes on, what it draws next is not kept."""
        log.warning(
            "semcal: could not write to the sample store %s (%s: %s); the run goes on, but the samples "
            "drawn from now on in this call are not kept for a rerun",
            self.store.path, type(err).__name__, err,
        )  # fmt: skip
        self.pending = None

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        is_sampled = [_is_sampled(request) for request in requests]
        sampled = [index for index, flag in enumerate(is_sampled) if flag]
        others = [index for index, flag in enumerate(is_sampled) if not flag]
        results: list[str | None] = [None] * len(requests)
        if others:
            cached_generate = CachingLM.__getattr__(self, "generate_until")
            for index, text in zip(others, cached_generate([requests[i] for i in others]), strict=True):
                results[index] = text
        if sampled:
            for index, text in zip(sampled, self._sample([requests[i] for i in sampled], disable_tqdm), strict=True):
                results[index] = text
        return results

    def _sample(self, requests: list[Instance], disable_tqdm: bool) -> list[str]:
        """Each request's sample: the stored ones first, then the model's for the rest."""
        groups = group_identical_requests((_prompt_text(r.args[0]), r.args[1]) for r in requests)
        results: list[str | None] = [None] * len(requests)
        plan, asked = [], []
        for group in groups:
            key = request_key(self.model_key, group.context, group.gen_kwargs)
            stored = self.store.samples(key)
            served = [text for _, text in stored[: group.n_samples]]
            for index, text in zip(group.indices, served):
                results[index] = text
            if missing := group.indices[len(served) :]:
                first_index = stored[-1][0] + 1 if stored else 0
                plan.append((key, group.context, settings_key(group.gen_kwargs), first_index, len(missing)))
                asked.append((key, missing))
        to_draw = [index for _, missing in asked for index in missing]
        log.info(
            "semcal sample store %s: %d of %d samples served from it (%d of %d prompts whole); %d to draw",
            self.store.path, len(requests) - len(to_draw), len(requests), len(groups) - len(asked), len(groups), len(to_draw),
        )  # fmt: skip
        if not to_draw:
            return results

        self.pending = pending = PendingSamples(self.store, plan)
        try:
            drawn = self.lm.generate_until([requests[index] for index in to_draw], disable_tqdm=disable_tqdm)
        except BaseException:
            self.pending = None
            self._keep(pending.save_received)
            raise
        self.pending = None
        by_index = dict(zip(to_draw, drawn, strict=True))
        self._keep(partial(pending.finish, {key: [by_index[i] for i in missing] for key, missing in asked}))
        for index, text in by_index.items():
            results[index] = text
        return results

    def _keep(self, write) -> None:
        # Samples already drawn are worth more than the store: a failed write is a warning.
        try:
            write()
        except Exception as err:  # noqa: BLE001
            self.store_failed(err)


@contextmanager
def resumable_sampling(model: str, model_args: Mapping[str, Any] | str | None) -> Iterator[None]:
    """lm-eval's `--use_cache` wraps the model in `ResumableLM` instead of `CachingLM` meanwhile.

    lm-eval 0.4.13 builds its cache wrapper as `lm_eval.api.model.CachingLM(lm, path)` in
    `simple_evaluate`, with no other way in; the name is restored on the way out.
    """
    original = lm_eval_model.CachingLM
    lm_eval_model.CachingLM = partial(ResumableLM, model=model, model_args=model_args or {})
    try:
        yield
    finally:
        lm_eval_model.CachingLM = original
