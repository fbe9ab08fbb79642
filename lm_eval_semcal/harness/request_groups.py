"""Identical generation requests, found and packed into batches.

lm-eval runs `repeats: M` by handing the model M copies of each request. A backend that
knows this can encode each prompt once and draw its M samples together. These plain
functions find the copies and plan the batches; the backends (`hf_model`, `api_model`)
do the sampling. No torch or lm-eval import here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RequestGroup:
    """Requests sharing one prompt and one set of generation settings.

    `indices` are the positions of the copies in the backend's request list, in order;
    the group's k-th sample answers request `indices[k]`.
    """

    context: str
    gen_kwargs: dict[str, Any]
    indices: list[int] = field(default_factory=list)

    @property
    def n_samples(self) -> int:
        return len(self.indices)


def settings_key(gen_kwargs: dict[str, Any]) -> str:
    """A canonical string for a generation-settings dict (equal dicts, equal keys)."""
    return json.dumps(gen_kwargs, sort_keys=True, default=repr)


def group_identical_requests(requests: Iterable[tuple[str, dict[str, Any]]]) -> list[RequestGroup]:
    """Group `(context, gen_kwargs)` requests that are the same, by first appearance.

    >>> groups = group_identical_requests([("Q1", {}), ("Q2", {}), ("Q1", {})])
    >>> [(g.context, g.indices) for g in groups]
    [('Q1', [0, 2]), ('Q2', [1])]
    """
    groups: dict[tuple[str, str], RequestGroup] = {}
    # lm-eval's M copies of a request share one settings dict: each dict is keyed once.
    keys_of: dict[int, tuple[dict, str]] = {}
    for index, (context, gen_kwargs) in enumerate(requests):
        if not isinstance(gen_kwargs, dict):
            raise TypeError(f"request {index}: generation settings must be a dict, got {type(gen_kwargs).__name__}")
        if id(gen_kwargs) not in keys_of:
            keys_of[id(gen_kwargs)] = (gen_kwargs, settings_key(gen_kwargs))
        key = (context, keys_of[id(gen_kwargs)][1])
        if key not in groups:
            groups[key] = RequestGroup(context, gen_kwargs)
        groups[key].indices.append(index)
    return list(groups.values())


def pack_groups(
    groups: Sequence[RequestGroup],
    max_rows: int | None,
    sort_key: Callable[[RequestGroup], Any] | None = None,
) -> list[list[RequestGroup]]:
    """Batches of groups sharing generation settings, each at most `max_rows` samples.

    `max_rows=None` gives each group a batch of its own. Otherwise a group larger than
    `max_rows` is cut into consecutive parts of `max_rows` samples (each part's prompt is
    encoded again in its own batch: the price of bounding memory), and the groups are
    packed greedily. Groups are first ordered by `sort_key` (stable); batches of one
    settings key come before those of the next key that appears.
    """
    if max_rows is not None and max_rows < 1:
        raise ValueError(f"max_rows must be at least 1, got {max_rows}")
    ordered = sorted(groups, key=sort_key) if sort_key else list(groups)
    if max_rows is None:
        return [[group] for group in ordered]
    by_settings: dict[str, list[RequestGroup]] = {}
    for group in ordered:
        for start in range(0, group.n_samples, max_rows):
            part = RequestGroup(group.context, group.gen_kwargs, group.indices[start : start + max_rows])
            by_settings.setdefault(settings_key(group.gen_kwargs), []).append(part)

    batches: list[list[RequestGroup]] = []
    for same_settings in by_settings.values():
        batch: list[RequestGroup] = []
        rows = 0
        for group in same_settings:
            if batch and rows + group.n_samples > max_rows:
                batches.append(batch)
                batch, rows = [], 0
            batch.append(group)
            rows += group.n_samples
        batches.append(batch)
    return batches
