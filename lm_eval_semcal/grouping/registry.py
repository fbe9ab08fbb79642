"""The registry of groupings B, by name, loaded on first use.

The built-in B are registered as "module:object" strings, the way lm-eval registers its
model backends: a B's module (and what it imports: sentence-transformers, an HTTP
client, torch) is imported only when that B is checked or built. A user's B registers
with the `register_grouping` decorator and is then selectable from a task YAML
(`grouping: NAME`, `grouping_args: {...}`) or the command line (`--metadata
grouping=NAME`); a "module:object" path naming a `GroupingSpec` or a factory is
accepted wherever a name is, without registering (the demo's task names its B so).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from lm_eval_semcal.grouping.base import Grouping, GroupingSpec

__all__ = [
    "available_groupings",
    "check_grouping",
    "get_grouping",
    "preflight_grouping",
    "register_grouping",
]

_REGISTRY: dict[str, GroupingSpec | str] = {
    "exact": "lm_eval_semcal.grouping.strings:EXACT",
    "normalize": "lm_eval_semcal.grouping.strings:NORMALIZE",
    "numeric": "lm_eval_semcal.grouping.strings:NUMERIC",
    "embedding": "lm_eval_semcal.grouping.embedding:EMBEDDING",
    "nli": "lm_eval_semcal.grouping.nli:NLI",
    "llm": "lm_eval_semcal.grouping.llm:LLM",
}


def register_grouping(
    name: str, check: Callable[..., None] | None = None, preflight: Callable[..., None] | None = None
) -> Callable[[Callable[..., Grouping]], Callable[..., Grouping]]:
    """Register a factory `factory(**options) -> Grouping` under `name` (a decorator).

    `check` and `preflight` are as in `GroupingSpec`: both take every option with the
    factory's defaults filled in, and neither may load a model.
    """

    def decorate(factory: Callable[..., Grouping]) -> Callable[..., Grouping]:
        known = _REGISTRY.get(name)
        if known is not None and not (isinstance(known, GroupingSpec) and known.factory is factory):
            raise ValueError(f"grouping {name!r} is already registered")
        _REGISTRY[name] = GroupingSpec(factory, check, preflight)
        return factory

    return decorate


def available_groupings() -> list[str]:
    return sorted(_REGISTRY)


def _load(path: str) -> GroupingSpec:
    module_name, _, attribute = path.partition(":")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"grouping {path!r} cannot be loaded ({type(err).__name__}: {err})") from None
    if isinstance(target, GroupingSpec):
        return target
    if callable(target):
        return GroupingSpec(target)
    raise ValueError(f"grouping {path!r} is neither a GroupingSpec nor a factory")


def _spec(name: str) -> GroupingSpec:
    if not isinstance(name, str) or (name not in _REGISTRY and ":" not in name):
        raise ValueError(
            f"unknown grouping {name!r}; choose one of {', '.join(available_groupings())}"
        )
    if name not in _REGISTRY:
        return _load(name)
    known = _REGISTRY[name]
    if isinstance(known, str):
        known = _REGISTRY[name] = _load(known)
    return known


def _bound(spec: GroupingSpec, name: str, options: dict[str, Any]) -> dict[str, Any]:
    try:
        bound = inspect.signature(spec.factory).bind(**options)
    except TypeError as err:
        # Option names only: a value could be a secret the user misplaced.
        raise ValueError(f"grouping {name!r}: bad options {sorted(options)}: {err}") from None
    bound.apply_defaults()
    return bound.arguments


def check_grouping(name: str, **options: Any) -> None:
    """Raise ValueError unless `name` is registered (or a loadable path) and takes `options`.

    Builds nothing: lets a task reject a misspelt B or option before generation,
    without loading a model.
    """
    spec = _spec(name)
    arguments = _bound(spec, name, options)
    if spec.check is not None:
        spec.check(**arguments)


def preflight_grouping(name: str, **options: Any) -> None:
    """`check_grouping`, then whether the models or endpoints `options` name can be used.

    lm-eval builds filters only when it applies them, after generation; a task calls
    this before it generates, so an unreachable reader costs no sampling.
    """
    check_grouping(name, **options)
    spec = _spec(name)
    if spec.preflight is not None:
        spec.preflight(**_bound(spec, name, options))


def get_grouping(name: str, **options: Any) -> Grouping:
    """Build the grouping registered as `name` (or at "module:object") with its options."""
    check_grouping(name, **options)
    return _spec(name).factory(**options)
