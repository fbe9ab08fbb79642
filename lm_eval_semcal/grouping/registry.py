"""The registry of collapsing functions B, by name, loaded on first use.

The built-in B are registered as "module:object" strings, the way lm-eval registers its
model backends: a B's module (and what it imports: sentence-transformers, an HTTP
client, torch) is imported only when that B is checked or built. A user's B registers
with the `register_collapser` decorator and is then selectable from a task YAML
(`collapse: NAME`, `collapse_args: {...}`) or the command line (`--metadata
collapse=NAME`); a "module:object" path naming a `CollapserSpec` or a factory is
accepted wherever a name is, without registering (the demo's task names its B so).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from lm_eval_semcal.grouping.base import Collapser, CollapserSpec

__all__ = [
    "available_collapsers",
    "check_collapser",
    "get_collapser",
    "preflight_collapser",
    "register_collapser",
]

_REGISTRY: dict[str, CollapserSpec | str] = {
    "exact": "lm_eval_semcal.grouping.strings:EXACT",
    "normalize": "lm_eval_semcal.grouping.strings:NORMALIZE",
    "numeric": "lm_eval_semcal.grouping.strings:NUMERIC",
    "embedding": "lm_eval_semcal.grouping.embedding:EMBEDDING",
    "nli": "lm_eval_semcal.grouping.nli:NLI",
    "llm": "lm_eval_semcal.grouping.llm:LLM",
}


def register_collapser(
    name: str, check: Callable[..., None] | None = None, preflight: Callable[..., None] | None = None
) -> Callable[[Callable[..., Collapser]], Callable[..., Collapser]]:
    """Register a factory `factory(**options) -> Collapser` under `name` (a decorator).

    `check` and `preflight` are as in `CollapserSpec`: both take every option with the
    factory's defaults filled in, and neither may load a model.
    """

    def decorate(factory: Callable[..., Collapser]) -> Callable[..., Collapser]:
        known = _REGISTRY.get(name)
        if known is not None and not (isinstance(known, CollapserSpec) and known.factory is factory):
            raise ValueError(f"collapsing function {name!r} is already registered")
        _REGISTRY[name] = CollapserSpec(factory, check, preflight)
        return factory

    return decorate


def available_collapsers() -> list[str]:
    return sorted(_REGISTRY)


def _load(path: str) -> CollapserSpec:
    module_name, _, attribute = path.partition(":")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"collapsing function {path!r} cannot be loaded ({type(err).__name__}: {err})") from None
    if isinstance(target, CollapserSpec):
        return target
    if callable(target):
        return CollapserSpec(target)
    raise ValueError(f"collapsing function {path!r} is neither a CollapserSpec nor a factory")


def _spec(name: str) -> CollapserSpec:
    if not isinstance(name, str) or (name not in _REGISTRY and ":" not in name):
        raise ValueError(
            f"unknown collapsing function {name!r}; choose one of {', '.join(available_collapsers())}"
        )
    if name not in _REGISTRY:
        return _load(name)
    known = _REGISTRY[name]
    if isinstance(known, str):
        known = _REGISTRY[name] = _load(known)
    return known


def _bound(spec: CollapserSpec, name: str, options: dict[str, Any]) -> dict[str, Any]:
    try:
        bound = inspect.signature(spec.factory).bind(**options)
    except TypeError as err:
        # Option names only: a value could be a secret the user misplaced.
        raise ValueError(f"collapsing function {name!r}: bad options {sorted(options)}: {err}") from None
    bound.apply_defaults()
    return bound.arguments


def check_collapser(name: str, **options: Any) -> None:
    """Raise ValueError unless `name` is registered (or a loadable path) and takes `options`.

    Builds nothing: lets a task reject a misspelt B or option before generation,
    without loading a model.
    """
    spec = _spec(name)
    arguments = _bound(spec, name, options)
    if spec.check is not None:
        spec.check(**arguments)


def preflight_collapser(name: str, **options: Any) -> None:
    """`check_collapser`, then whether the models or endpoints `options` name can be used.

    lm-eval builds filters only when it applies them, after generation; a task calls
    this before it generates, so an unreachable reader costs no sampling.
    """
    check_collapser(name, **options)
    spec = _spec(name)
    if spec.preflight is not None:
        spec.preflight(**_bound(spec, name, options))


def get_collapser(name: str, **options: Any) -> Collapser:
    """Build the collapsing function registered as `name` (or at "module:object") with its options."""
    check_collapser(name, **options)
    return _spec(name).factory(**options)
