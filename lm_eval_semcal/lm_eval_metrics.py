"""lm-eval adapters for the metrics: `process_results` and the registered aggregations.

`process_results` turns the filter's per-question record into one item per metric; the
aggregations are thin wrappers over `lm_eval_semcal.calibration`. Each calibration
metric X (ece, smece, brier, auroc) also gets `X_ci_low` and `X_ci_high`: the 95%
percentile-bootstrap interval over questions. The bootstrap runs
`SEMCAL_BOOTSTRAP_ITERS` resamples (default 1000; 0 turns the intervals off, NaN) with a
fixed seed, so a run's intervals are reproducible.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
from lm_eval.api.registry import register_aggregation

from lm_eval_semcal import calibration
from lm_eval_semcal.records import read_record

log = logging.getLogger(__name__)

BOOTSTRAP_ITERS_ENV = "SEMCAL_BOOTSTRAP_ITERS"
DEFAULT_BOOTSTRAP_ITERS = 1000
CI_LEVEL = 0.95
BOOTSTRAP_SEED = 0

CALIBRATION_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "ece": calibration.binned_ece,
    "smece": calibration.smece,
    "brier": calibration.brier,
    "auroc": calibration.auroc,
}
MEAN_METRICS = ("acc", "conf", "sem_entropy", "n_classes", "no_answer")


def bootstrap_iters() -> int:
    """The bootstrap resample count, from SEMCAL_BOOTSTRAP_ITERS (default 1000)."""
    raw = os.environ.get(BOOTSTRAP_ITERS_ENV, str(DEFAULT_BOOTSTRAP_ITERS))
    try:
        iters = int(raw)
    except ValueError:
        iters = -1
    if iters < 0:
        raise ValueError(f"{BOOTSTRAP_ITERS_ENV}={raw!r}: set it to a whole number >= 0")
    return iters


def process_results(doc: dict, results: Sequence[dict]) -> dict:
    """One question's metric items, from the `semcal_classes` filter's record."""
    if len(results) != 1:
        raise ValueError(
            f"semcal process_results expects one record per question, got {len(results)}; "
            "keep `filter: - function: semcal_classes` in the task's filter_list"
        )
    record = read_record(results[0])
    pair = (float(record["confidence"]), float(record["correct"]))
    items = {
        "acc": float(record["correct"]),
        "conf": float(record["confidence"]),
        "sem_entropy": float(record["entropy"]),
        "n_classes": float(record["n_classes"]),
        "no_answer": float(record["no_answer_share"]),
    }
    for name in CALIBRATION_METRICS:
        items[name] = pair
        items[f"{name}_ci_low"] = pair
        items[f"{name}_ci_high"] = pair
    return items


def _pairs_to_arrays(items: Sequence[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    pairs = np.asarray(items, dtype=float).reshape(-1, 2)
    return pairs[:, 0], pairs[:, 1]


@contextmanager
def warnings_logged(label: str) -> Iterator[None]:
    """Log the calibration module's warnings raised inside, once each, led by `label`.

    The calibration functions do not know which task or metric they score: the label
    names it, where a bare RuntimeWarning would point at this file.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for message in dict.fromkeys(str(w.message) for w in caught):
        log.warning("%s: %s", label, message)


_interval_cache: dict[tuple[str, int, str], tuple[float, float]] = {}


def _interval(name: str, items: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """The bootstrap interval of metric `name`, computed once for its low and high rows."""
    confidence, correct = _pairs_to_arrays(items)
    iters = bootstrap_iters()
    digest = hashlib.sha1(confidence.tobytes() + correct.tobytes()).hexdigest()
    key = (name, iters, digest)
    if key not in _interval_cache:
        if len(_interval_cache) > 64:
            _interval_cache.clear()
        with warnings_logged(f"semcal {name} interval over {len(confidence)} questions"):
            _interval_cache[key] = calibration.bootstrap_ci(
                CALIBRATION_METRICS[name],
                confidence,
                correct,
                iters=iters,
                seed=BOOTSTRAP_SEED,
                level=CI_LEVEL,
            )
    return _interval_cache[key]


def _register_calibration_aggregations(name: str, metric: Callable) -> None:
    def point(items: Sequence[tuple[float, float]]) -> float:
        confidence, correct = _pairs_to_arrays(items)
        with warnings_logged(f"semcal {name} over {len(confidence)} questions"):
            return float(metric(confidence, correct))

    def low(items: Sequence[tuple[float, float]]) -> float:
        return float(_interval(name, items)[0])

    def high(items: Sequence[tuple[float, float]]) -> float:
        return float(_interval(name, items)[1])

    for suffix, fn in (("", point), ("_ci_low", low), ("_ci_high", high)):
        fn.__name__ = fn.__qualname__ = f"semcal_{name}{suffix}"
        register_aggregation(fn.__name__)(fn)


for _name, _metric in CALIBRATION_METRICS.items():
    _register_calibration_aggregations(_name, _metric)
