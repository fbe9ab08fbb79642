"""What `semcal compare` computes: each model's entry per task, the pairs, and their numbers.

Questions are matched across runs by lm-eval's hash of their document, never by their
position. Every number comes from `core.metrics` (`metric_value`, `metric_interval`,
`paired_difference`), the path the report, rescore and lm-eval's aggregations take.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lm_eval_semcal.core.metrics import (
    COMPARED_METRICS,
    CURVE_METRICS,
    TEST_ROWS,
    calibration_test_rows,
    metric_interval,
    metric_value,
    paired_difference,
    warnings_logged,
)
from lm_eval_semcal.runs.saved import RunDirError, TaskRun

__all__ = ["CompareError", "Comparison", "Entry", "Estimate", "Pair", "compare", "entries_by_task", "pair_up"]


class CompareError(RunDirError):
    """Runs that cannot be compared as asked; the message says why and what to do."""


@dataclass(frozen=True, eq=False)
class Entry:
    """One model's run of one task (and filter), under the name the page shows."""

    run: TaskRun
    name: str

    @property
    def task(self) -> str:
        return self.run.task


@dataclass(frozen=True)
class Pair:
    """Two entries of one task on the questions both answered, and what else differs."""

    a: Entry
    b: Entry
    shared: tuple[str, ...]
    differs: tuple[str, ...]

    def aligned(self, entry: Entry) -> tuple[np.ndarray, np.ndarray]:
        """`entry`'s confidence and correctness on the shared questions, in `shared` order."""
        position = {hashed: index for index, hashed in enumerate(entry.run.doc_hashes)}
        rows = [position[hashed] for hashed in self.shared]
        return entry.run.confidence[rows], entry.run.correct[rows]


@dataclass(frozen=True)
class Estimate:
    """A metric's value (or a difference) and its bootstrap interval; NaN bounds without resamples."""

    value: float
    low: float
    high: float

    def excludes_zero(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high)) and (self.low > 0 or self.high < 0)


@dataclass(frozen=True)
class Comparison:
    """Everything `semcal compare` writes: the entries per task, each one's metrics, the pairs and their differences.

    `numbers` holds each entry's metrics (`entry_metrics`: `COMPARED_METRICS` with
    intervals, `CURVE_METRICS` and `TEST_ROWS` without). `chosen` maps each `--pair`
    (A, B) to its position among them; `pairs` lists every pair of each task, those chosen
    first, each with the difference B minus A of every metric of `COMPARED_METRICS`.
    """

    by_task: dict[str, list[Entry]]
    numbers: dict[tuple[str, str], dict[str, Estimate]]
    pairs: list[tuple[Pair, dict[str, Estimate]]]
    chosen: dict[tuple[str, str], int]
    bootstrap_iters: int

    @property
    def entries(self) -> list[Entry]:
        return _entries(self.by_task)

    def estimates(self, entry: Entry) -> dict[str, Estimate]:
        """`entry`'s value and interval of each metric."""
        return self.numbers[(entry.task, entry.name)]

    def shown_pairs(self) -> list[tuple[Pair, dict[str, Estimate]]]:
        """The pairs the page shows: with --pair, those asked for (filter by filter); else all."""
        if not self.chosen:
            return self.pairs
        return [
            (pair, differences) for pair, differences in self.pairs
            if (pair.a.run.name, pair.b.run.name) in self.chosen and pair.a.run.filter == pair.b.run.filter
        ]  # fmt: skip


def _entries(by_task: dict[str, list[Entry]]) -> list[Entry]:
    """Every entry, task by task."""
    return [entry for entries in by_task.values() for entry in entries]


@cache
def _fewshot(results_file: Path, task: str) -> object:
    config = json.loads(results_file.read_text(encoding="utf-8")).get("configs", {}).get(task, {})
    return config.get("num_fewshot")


def _settings(run: TaskRun) -> dict[str, object]:
    return {"M": run.m_label, "B": run.grouping, "shots": _fewshot(run.results_file, run.task)}


def entries_by_task(runs: Sequence[TaskRun]) -> dict[str, list[Entry]]:
    """The runs grouped by task; a model with several filters of a task gets one entry each."""
    by_task: dict[str, list[Entry]] = {}
    for task in dict.fromkeys(run.task for run in runs):
        of_task = [run for run in runs if run.task == task]
        names = [run.name for run in of_task]
        by_task[task] = [
            Entry(run, run.name if names.count(run.name) == 1 else f"{run.name} ({run.filter})") for run in of_task
        ]
    return by_task


def pair_up(a: Entry, b: Entry) -> Pair:
    """The questions `a` and `b` share (matched by document hash), and the settings that differ."""
    in_b = set(b.run.doc_hashes)
    shared = tuple(hashed for hashed in dict.fromkeys(a.run.doc_hashes) if hashed in in_b)
    if not shared:
        raise CompareError(
            f"{a.task}: {a.name} and {b.name} share no question (matched by lm-eval's document hash): "
            "were they run on the same dataset and version of the task?"
        )
    settings_a, settings_b = _settings(a.run), _settings(b.run)
    differs = tuple(
        f"{key} {settings_a[key]} vs {settings_b[key]}" for key in settings_a if settings_a[key] != settings_b[key]
    )
    return Pair(a, b, shared, differs)


def _pairs(by_task: dict[str, list[Entry]], chosen: dict[tuple[str, str], int]) -> list[Pair]:
    """Every two entries of a task, a chosen pair (by model name) as named, listed first in its task."""
    paired: list[Pair] = []
    for entries in by_task.values():
        for a, b in itertools.combinations(entries, 2):
            if (b.run.name, a.run.name) in chosen:
                a, b = b, a
            paired.append(pair_up(a, b))
    paired.sort(key=lambda pair: (pair.a.task, chosen.get((pair.a.run.name, pair.b.run.name), len(chosen))))
    return paired


def entry_metrics(entry: Entry, bootstrap_iters: int) -> dict[str, Estimate]:
    """Each metric of `COMPARED_METRICS` on `entry`'s questions with its interval, then those
    of `CURVE_METRICS` and the rows of `TEST_ROWS` (the calibration test, `bootstrap_iters`
    calibrated runs), which have none (NaN bounds)."""
    conf, corr = entry.run.confidence, entry.run.correct
    found = {}
    for name in COMPARED_METRICS:
        with warnings_logged(f"{entry.task} {entry.name} {name}"):
            low, high = metric_interval(name, conf, corr, bootstrap_iters)
            found[name] = Estimate(metric_value(name, conf, corr), low, high)
    for name in CURVE_METRICS:
        found[name] = Estimate(metric_value(name, conf, corr), math.nan, math.nan)
    with warnings_logged(f"{entry.task} {entry.name} calibration test"):
        for name, value in calibration_test_rows(conf, corr, bootstrap_iters).items():
            found[name] = Estimate(value, math.nan, math.nan)
    return found


def pair_metrics(pair: Pair, bootstrap_iters: int) -> dict[str, Estimate]:
    """Each metric's difference, b minus a, on the pair's shared questions, with its paired interval."""
    (conf_a, corr_a), (conf_b, corr_b) = pair.aligned(pair.a), pair.aligned(pair.b)
    found = {}
    for name in COMPARED_METRICS:
        with warnings_logged(f"{pair.a.task} {pair.b.name} minus {pair.a.name} {name}"):
            found[name] = Estimate(*paired_difference(name, conf_a, corr_a, conf_b, corr_b, bootstrap_iters))
    return found


def compare(by_task: dict[str, list[Entry]], chosen: Sequence[tuple[str, str]], bootstrap_iters: int) -> Comparison:
    """Pair the entries of each task and compute every number the comparison shows.

    Parameters
    ----------
    by_task : dict of str to list of Entry
        The entries of each task (`entries_by_task`).
    chosen : sequence of (str, str)
        The `--pair` model names (A, B): each such pair is compared as named and listed first.
    bootstrap_iters : int
        Resamples for every interval; 0 leaves them out.

    Returns
    -------
    Comparison
    """
    positions = {pair: index for index, pair in enumerate(chosen)}
    paired = _pairs(by_task, positions)
    numbers = {
        (entry.task, entry.name): entry_metrics(entry, bootstrap_iters)
        for entry in tqdm(_entries(by_task), desc="semcal compare: models", unit="run")
    }
    differences = [(pair, pair_metrics(pair, bootstrap_iters)) for pair in tqdm(paired, desc="semcal compare: pairs", unit="pair")]
    return Comparison(by_task, numbers, differences, positions, bootstrap_iters)
