"""lm-eval adapters for the metrics: `process_results` and the `semcal_*` aggregations.

`process_results` turns the filter's per-question record into one item per metric; the
aggregations are thin wrappers over `lm_eval_semcal.core.metrics`, the one metrics path
that report, rescore and the demo use too. Each calibration metric X (ece,
debiased_l2_ce, smece, brier, auroc) also gets `X_ci_low` and `X_ci_high`: the 95%
bootstrap interval over questions (`core.metrics.INTERVAL_METHOD` says which), with a
fixed seed, so a run's intervals are reproducible. aurc has its interval too; the
Brier score's parts and the accuracy at 50% and 80% coverage (`CURVE_METRICS`) have
none. The rows of `TEST_ROWS` (the calibration test of smECE: p-value, noise floor, its
95th percentile, the detectable overconfidence) draw as many calibrated runs as the
intervals draw resamples, with the same seed, and are NaN when the intervals are off.

The resample count is a run setting: `--metadata bootstrap_iters=N` (what `semcal run
--bootstrap-iters N` sets), else the environment variable SEMCAL_BOOTSTRAP_ITERS, else
1000; 0 turns the intervals off (NaN). lm-eval's own `--bootstrap_iters` never reaches
a task's aggregations, so `bootstrap_iters` below is the one place this is read.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from functools import partial

import numpy as np
from lm_eval.api.registry import register_aggregation

from lm_eval_semcal.core.metrics import (
    CALIBRATION_METRICS,
    CURVE_METRICS,
    TEST_ROWS,
    calibration_test_rows,
    metric_interval,
    metric_value,
    question_items,
    warnings_logged,
)
from lm_eval_semcal.core.records import QuestionRecord
from lm_eval_semcal.core.settings import DEFAULT_BOOTSTRAP_ITERS

BOOTSTRAP_ITERS_ENV = "SEMCAL_BOOTSTRAP_ITERS"
BOOTSTRAP_ITERS_KEY = "bootstrap_iters"


def bootstrap_iters(metadata: Mapping | None = None) -> int:
    """The run's bootstrap resample count: metadata, else SEMCAL_BOOTSTRAP_ITERS, else 1000."""
    if metadata and metadata.get(BOOTSTRAP_ITERS_KEY) is not None:
        raw, source = metadata[BOOTSTRAP_ITERS_KEY], f"--metadata {BOOTSTRAP_ITERS_KEY}"
    else:
        raw, source = os.environ.get(BOOTSTRAP_ITERS_ENV, str(DEFAULT_BOOTSTRAP_ITERS)), BOOTSTRAP_ITERS_ENV
    try:
        iters = int(raw)
    except (TypeError, ValueError):
        iters = -1
    if isinstance(raw, bool) or iters < 0 or (isinstance(raw, float) and raw != iters):
        raise ValueError(f"{source}={raw!r}: set it to a whole number >= 0")
    return iters


def process_results(doc: dict, results: Sequence[QuestionRecord]) -> dict:
    """One question's metric items, from the `semcal_grouping` filter's record."""
    if len(results) != 1:
        raise ValueError(
            f"semcal process_results expects one record per question, got {len(results)}; "
            "keep `filter: - function: semcal_grouping` in the task's filter_list"
        )
    return question_items(QuestionRecord.read(results[0]))


def _pairs_to_arrays(items: Sequence[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    pairs = np.asarray(items, dtype=float).reshape(-1, 2)
    return pairs[:, 0], pairs[:, 1]


# The low and high rows of an interval are two aggregations over equal items: compute once.
_interval_cache: dict[tuple[str, int, str], tuple[float, float]] = {}


def _interval(name: str, items: Sequence[tuple[float, float]], iters: int) -> tuple[float, float]:
    confidence, correct = _pairs_to_arrays(items)
    key = (name, iters, hashlib.sha1(confidence.tobytes() + correct.tobytes()).hexdigest())
    if key not in _interval_cache:
        if len(_interval_cache) > 64:
            _interval_cache.clear()
        with warnings_logged(f"semcal {name} interval over {len(confidence)} questions"):
            _interval_cache[key] = metric_interval(name, confidence, correct, iters)
    return _interval_cache[key]


# The test's rows are aggregations over equal items too: one test per run and resample count.
_test_cache: dict[tuple[int, str], dict[str, float]] = {}


def _test_rows(items: Sequence[tuple[float, float]], iters: int) -> dict[str, float]:
    confidence, correct = _pairs_to_arrays(items)
    key = (iters, hashlib.sha1(confidence.tobytes() + correct.tobytes()).hexdigest())
    if key not in _test_cache:
        if len(_test_cache) > 64:
            _test_cache.clear()
        with warnings_logged(f"semcal calibration test over {len(confidence)} questions"):
            _test_cache[key] = calibration_test_rows(confidence, correct, iters)
    return _test_cache[key]


def test_row(name: str, items: Sequence[tuple[float, float]], iters: int | None = None) -> float:
    return _test_rows(items, bootstrap_iters() if iters is None else iters)[name]


def point(name: str, items: Sequence[tuple[float, float]]) -> float:
    confidence, correct = _pairs_to_arrays(items)
    with warnings_logged(f"semcal {name} over {len(confidence)} questions"):
        return metric_value(name, confidence, correct)


def interval_low(name: str, items: Sequence[tuple[float, float]], iters: int | None = None) -> float:
    return _interval(name, items, bootstrap_iters() if iters is None else iters)[0]


def interval_high(name: str, items: Sequence[tuple[float, float]], iters: int | None = None) -> float:
    return _interval(name, items, bootstrap_iters() if iters is None else iters)[1]


def aggregations(iters: int | None = None) -> dict[str, Callable[[Sequence], float]]:
    """The aggregation of each row that is not a mean: intervals and the calibration test
    with `iters` resamples (None: read `bootstrap_iters()` when aggregating)."""
    found = {}
    for name in CALIBRATION_METRICS:
        found[name] = partial(point, name)
        found[f"{name}_ci_low"] = partial(interval_low, name, iters=iters)
        found[f"{name}_ci_high"] = partial(interval_high, name, iters=iters)
    for name in CURVE_METRICS:
        found[name] = partial(point, name)
    for name in TEST_ROWS:
        found[name] = partial(test_row, name, iters=iters)
    return found


# The names the task YAMLs give as `aggregation: semcal_ece`, `semcal_smece_p_value`, ... A SemcalTask replaces
# them with the same functions bound to its run's resample count (`aggregations`).
for _row, _aggregate in aggregations().items():
    register_aggregation(f"semcal_{_row}")(_aggregate)
