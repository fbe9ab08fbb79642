"""Time the corpus metrics, their bootstrap intervals and lm-eval's aggregation path.

Builds two corpora of N questions (default 1,000,000) with confidence on the grid k/M
(default M = 50): a miscalibrated one, correct ~ Bernoulli(confidence - 0.05), and a
calibrated one, correct ~ Bernoulli(confidence), whose small smECE makes relplot pick a
small bandwidth and fine grids (the slow case for smECE). For each it times:

1. every point metric of `lm_eval_semcal.core.calibration` and its bootstrap interval;
2. the registered lm-eval aggregations as the harness calls them: one Python list of
   per-question items per metric, every metric and both interval bounds.

    python scripts/bench_calibration.py [--n 1000000] [--grid 50] [--iters 1000]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from lm_eval_semcal.core.calibration import (
    accuracy,
    auroc,
    binned_ece,
    bootstrap_ci,
    brier,
    mean_confidence,
    smece,
)


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def bench_functions(conf: np.ndarray, correct: np.ndarray, iters: int) -> None:
    header = f"{'metric':<16}{'value':>10}{'point s':>10}   {'CI':<22}{'boot s':>9}"
    print(header)
    print("-" * len(header))
    for metric in (accuracy, mean_confidence, binned_ece, brier, auroc, smece):
        value, point_s = timed(metric, conf, correct)
        (low, high), boot_s = timed(bootstrap_ci, metric, conf, correct, iters=iters)
        print(
            f"{metric.__name__:<16}{value:>10.5f}{point_s:>10.3f}   "
            f"[{low:.5f}, {high:.5f}]  {boot_s:>9.3f}"
        )


def bench_lm_eval_aggregation(conf: np.ndarray, correct: np.ndarray, iters: int) -> None:
    os.environ["SEMCAL_BOOTSTRAP_ITERS"] = str(iters)
    from lm_eval.api.metrics import mean
    from lm_eval.api.registry import get_aggregation

    import lm_eval_semcal.harness.metric_hooks  # noqa: F401  (registers the aggregations)

    pairs = list(zip(conf.tolist(), correct.tolist()))
    print(f"\n{'lm-eval aggregation':<28}{'value':>10}{'s':>9}")
    print("-" * 47)
    # acc, conf, sem_entropy, n_classes and no_answer use lm-eval's own `mean`.
    value, seconds = timed(mean, conf.tolist())
    total = 5 * seconds
    print(f"{'conf (mean; 4 more alike)':<28}{value:>10.5f}{seconds:>9.3f}")
    for name in ("ece", "smece", "brier", "auroc"):
        for suffix in ("", "_ci_low", "_ci_high"):
            aggregate = get_aggregation(f"semcal_{name}{suffix}")
            value, seconds = timed(aggregate, pairs)
            total += seconds
            print(f"{name + suffix:<28}{value:>10.5f}{seconds:>9.3f}")
    print(f"{'all 17 metrics':<28}{'':>10}{total:>9.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="questions")
    parser.add_argument("--grid", type=int, default=50, help="M: confidence on k/M")
    parser.add_argument("--iters", type=int, default=1000, help="bootstrap resamples")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    conf = rng.integers(1, args.grid + 1, args.n) / args.grid
    draws = rng.random(args.n)
    for label, p_correct in (
        ("miscalibrated, P(correct) = conf - 0.05", np.clip(conf - 0.05, 0.0, 1.0)),
        ("calibrated, P(correct) = conf", conf),
    ):
        correct = (draws < p_correct).astype(float)
        print(f"\n== {args.n:,} questions, confidence on k/{args.grid}, {label}; {args.iters} resamples\n")
        bench_functions(conf, correct, args.iters)
        bench_lm_eval_aggregation(conf, correct, args.iters)


if __name__ == "__main__":
    main()
