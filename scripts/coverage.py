"""Measure how often each reported 95% bootstrap interval covers the truth, and how often the
calibration test rejects, by simulation.

Three worlds, each a model whose confidence lies on the k/50 grid (the plugin's M = 50
samples) with P(confidence = k/50) proportional to the Beta(3, 1.5) density at
(k - 0.5)/50 (mass skewed towards high confidence, mean about 0.66, as semantic
confidences of LLMs are), and P(correct | confidence c):

- calibrated:    c
- overconfident: 0.8 c
- mixed:         0.15 + 0.7 c   (underconfident below 0.5, overconfident above)

Two models answer the same questions in pairs of worlds: (calibrated, overconfident)
and (mixed, mixed). Question i has a difficulty u_i ~ U(0, 1) shared by both models, and
a model is correct when u_i < P(correct | its confidence), so the two models' verdicts
are positively correlated; their confidences come from uniforms v_a, v_b through each
world's confidence distribution, with v_b = v_a for a random 60% of the questions (else
drawn afresh). Each model on its own is exactly a draw from its world, so the truth of a
difference is the difference of the two worlds' truths.

Each corpus of n questions is resampled once by
`paired_bootstrap_distributions`, which gives the bootstrap distribution of each model
and of their difference from the same resamples (a model's marginal resamples are a
plain bootstrap of that model); every method's interval is built from it. Single-world
rows use model a of the pair for calibrated and mixed, model b for overconfident.

The truth of each metric is computed from the world's exact distribution: ECE, the L2
binned error (debiased_l2_ce's target), Brier and AUROC by their formulas over the 50
confidence levels; smECE by `relplot.smECE` on 10^7 questions in the world's exact
proportions (counts rounded to integers).

smECE's bootstrap costs about 2 s per model per corpus (1000 resamples), so it runs on
the first `--smece-corpora` corpora of each cell only; the other metrics on all.

    python scripts/coverage.py [--quick] [--corpora 200] [--smece-corpora 40] [--resamples 1000] [--metrics ...]

It prints every method's coverage, then the coverage of the intervals `semcal run`,
`semcal report` and `semcal compare` report, one row per world and n (docs/metrics.md's table),
and writes the latter, as counts of covered corpora, to
lm_eval_semcal/core/interval_coverage.json: the figures the notes printed beside the
intervals quote (`core.metrics.INTERVAL_NOTES`). `--json PATH` writes it elsewhere;
`--quick` writes it only with `--json`, so that a quick look never replaces the figures
the package ships.

Runtime (one core of a shared 2-core machine, nice 10): 623 s with the defaults, of which
smECE takes about half; 45 s with --quick.

`--calibration-test` measures the calibration test (`calibration_test`) instead: how often
it rejects at the 5% level, with `--null-draws` calibrated draws, in three worlds of the
confidence distribution above (each corpus drawn afresh, one model):

- calibrated:    P(correct | c) = c, where it should reject 5% of the time or less;
- overconfident: c - 0.05 (clipped at 0);
- mixed:         c + 0.05 below the median confidence 0.7 (48% of the questions) and
                 c - 0.05 from it on (52%): miscalibrated by 0.05 everywhere, with a
                 mean gap conf - acc of only 0.002.

It prints, per world, n and metric (smece, ece, debiased_l2_ce), the share of corpora
rejected; then, per n and metric, the least overconfidence shift the test detects with
80% power (`detectable_overconfidence`, with `--null-draws` draws) for a typical run of
the distribution (its quantiles at (i + 1/2) / n); and writes nothing. smECE's test costs about 0.3 to 0.4 s a corpus (200 draws),
so it runs on the first `--smece-corpora` corpora of each cell only. With
OPENBLAS_NUM_THREADS=1 (numpy's matrix products over a few dozen atoms only lose time to
threads), `--corpora 200 --smece-corpora 60 --null-draws 200` takes about 2.5 minutes.

    python scripts/coverage.py --calibration-test [--corpora 200] [--smece-corpora 60] [--null-draws 200]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np

from lm_eval_semcal.core.calibration import (
    INTERVAL_METHODS,
    TEST_METRICS,
    calibration_test,
    detectable_overconfidence,
    paired_bootstrap_distributions,
    smece,
)
from lm_eval_semcal.core.metrics import COMPARED_METRICS, COVERAGE_FILE, INTERVAL_METHOD, interval_notes
from lm_eval_semcal.core.settings import CI_LEVEL, DEFAULT_BOOTSTRAP_ITERS

M = 50
GRID = np.arange(1, M + 1) / M
_MIDPOINTS = (np.arange(1, M + 1) - 0.5) / M
CONFIDENCE_PROBABILITY = _MIDPOINTS ** (3 - 1) * (1 - _MIDPOINTS) ** (1.5 - 1)
CONFIDENCE_PROBABILITY /= CONFIDENCE_PROBABILITY.sum()

WORLDS = {
    "calibrated": lambda c: c,
    "overconfident": lambda c: 0.8 * c,
    "mixed": lambda c: 0.15 + 0.7 * c,
}
PAIRS = [("calibrated", "overconfident"), ("mixed", "mixed")]
# Which model of which pair stands for each world in the single-world rows.
WORLD_SOURCES = {"calibrated": (0, "a"), "overconfident": (0, "b"), "mixed": (1, "a")}
# Every metric `semcal compare` reports with an interval, and what `semcal run` reports.
METRICS = COMPARED_METRICS
SHARED_CONFIDENCE = 0.6
# The level the package reports, whose coverage is measured.
LEVEL = CI_LEVEL
N_BINS = 10
TRUTH_QUESTIONS = 10**7

# The calibration test's worlds (`--calibration-test`): P(correct | stated confidence c).
TEST_SHIFT = 0.05
MEDIAN_CONFIDENCE = GRID[np.searchsorted(np.cumsum(CONFIDENCE_PROBABILITY), 0.5)]
TEST_WORLDS = {
    "calibrated": lambda c: c,
    "overconfident": lambda c: np.clip(c - TEST_SHIFT, 0.0, 1.0),
    "mixed": lambda c: np.clip(np.where(c < MEDIAN_CONFIDENCE, c + TEST_SHIFT, c - TEST_SHIFT), 0.0, 1.0),
}
# The level the test's rejections are counted at.
TEST_LEVEL = 0.05


def world_truths(accuracy_at) -> dict[str, float]:
    """Every metric of a world, from its exact distribution over the 50 levels."""
    p = CONFIDENCE_PROBABILITY
    acc = accuracy_at(GRID)
    bins = np.minimum(np.floor(GRID * N_BINS + 1e-9), N_BINS - 1)
    gaps = [(p[bins == b] * (GRID - acc)[bins == b]).sum() for b in range(N_BINS)]
    masses = [p[bins == b].sum() for b in range(N_BINS)]
    ece = sum(abs(g) for g in gaps)
    l2 = np.sqrt(sum(g * g / m for g, m in zip(gaps, masses) if m > 0))
    brier_score = (p * (acc * (1 - GRID) ** 2 + (1 - acc) * GRID**2)).sum()
    # Mann-Whitney: a right answer at level k beats every wrong one below it, ties half.
    right, wrong = p * acc, p * (1 - acc)
    wrong_below = np.cumsum(wrong) - wrong
    auc = (right * (wrong_below + 0.5 * wrong)).sum() / (right.sum() * wrong.sum())
    counts_right = np.round(right * TRUTH_QUESTIONS).astype(np.int64)
    counts_wrong = np.round(wrong * TRUTH_QUESTIONS).astype(np.int64)
    conf = np.concatenate([np.repeat(GRID, counts_right), np.repeat(GRID, counts_wrong)])
    correct = np.concatenate([np.ones(counts_right.sum()), np.zeros(counts_wrong.sum())])
    mean_conf, mean_acc = float((p * GRID).sum()), float((p * acc).sum())
    return {
        "acc": mean_acc,
        "conf": mean_conf,
        "overconfidence": mean_conf - mean_acc,
        "ece": float(ece),
        "debiased_l2_ce": float(l2),
        "smece": float(smece(conf, correct)),
        "brier": float(brier_score),
        "auroc": float(auc),
        "aurc": float(exact_aurc(p, wrong)),
    }


def exact_aurc(mass: np.ndarray, wrong: np.ndarray) -> float:
    """AURC of a world: levels from the most confident down, each adding its mass at the
    error rate of all the questions at or above it."""
    covered, wrong_covered = np.cumsum(mass[::-1]), np.cumsum(wrong[::-1])
    present = mass[::-1] > 0
    return float((wrong_covered[present] / covered[present] * mass[::-1][present]).sum())


def confidences(v: np.ndarray) -> np.ndarray:
    """The confidence distribution's quantiles at uniforms v: confidences drawn from it."""
    return GRID[np.minimum(np.searchsorted(np.cumsum(CONFIDENCE_PROBABILITY), v, side="right"), M - 1)]


def draw_pair(rng: np.random.Generator, n: int, world_a: str, world_b: str):
    """Two models' (confidence, correct) on the same n questions; see the module docstring."""
    difficulty = rng.random(n)
    v_a = rng.random(n)
    v_b = np.where(rng.random(n) < SHARED_CONFIDENCE, v_a, rng.random(n))
    out = []
    for world, v in ((world_a, v_a), (world_b, v_b)):
        conf = confidences(v)
        out += [conf, (difficulty < WORLDS[world](conf)).astype(float)]
    return out


def draw_test_corpus(world: str, n: int, corpus: int) -> tuple[np.ndarray, np.ndarray]:
    """One corpus of a calibration-test world: n confidences, then n verdicts, from
    default_rng((3, the world's index in TEST_WORLDS, n, corpus))."""
    rng = np.random.default_rng([3, list(TEST_WORLDS).index(world), n, corpus])
    conf = confidences(rng.random(n))
    return conf, (rng.random(n) < TEST_WORLDS[world](conf)).astype(float)


def rejection_rates(
    corpora: int, smece_corpora: int, null_draws: int, sizes: list[int], metrics: list[str]
) -> list[dict]:
    """Per world, n and metric: how many corpora `calibration_test` (seed: the corpus's
    number) rejects at `TEST_LEVEL`."""
    rows = []
    for world in TEST_WORLDS:
        for n in sizes:
            rejected = {name: 0 for name in metrics}
            for corpus in range(corpora):
                conf, correct = draw_test_corpus(world, n, corpus)
                for name in metrics:
                    if name == "smece" and corpus >= smece_corpora:
                        continue
                    result = calibration_test(conf, correct, metric=name, iters=null_draws, seed=corpus)
                    rejected[name] += result.p_value <= TEST_LEVEL
            for name in metrics:
                tested = smece_corpora if name == "smece" else corpora
                rows.append({"world": world, "n": n, "metric": name, "rejected": int(rejected[name]), "corpora": tested})
    return rows


def detectable_table(null_draws: int, sizes: list[int], metrics: list[str]) -> str:
    """Per n, per metric: the least overconfidence the test detects with 80% power in a
    typical run of n questions, the distribution's quantiles at (i + 1/2) / n."""
    lines = ["| n | " + " | ".join(metrics) + " |", "|---:|" + "---:|" * len(metrics)]
    for n in sizes:
        typical = confidences((np.arange(n) + 0.5) / n)
        found = [detectable_overconfidence(typical, metric=name, iters=null_draws) for name in metrics]
        lines.append(f"| {n} | " + " | ".join(f"{f.overconfidence:.3f}" for f in found) + " |")
    return "\n".join(lines)


def rejection_table(rows: list[dict]) -> str:
    """One row per world and n, a column per metric: the share of corpora rejected."""
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    by_row: dict[tuple[str, int], dict[str, str]] = {}
    for r in rows:
        share = f"{100 * r['rejected'] / r['corpora']:.1f}% ({r['rejected']}/{r['corpora']})"
        by_row.setdefault((r["world"], r["n"]), {})[r["metric"]] = share
    lines = ["| world | n | " + " | ".join(metrics) + " |", "|---|---:|" + "---:|" * len(metrics)]
    for (world, n), by_metric in by_row.items():
        lines.append(f"| {world} | {n} | " + " | ".join(by_metric[m] for m in metrics) + " |")
    return "\n".join(lines)


def simulate(corpora: int, smece_corpora: int, resamples: int, sizes: list[int], metrics: list[str]) -> list[dict]:
    truths = {world: world_truths(accuracy_at) for world, accuracy_at in WORLDS.items()}
    # (row label, n, metric) -> list of (estimate, {method: (low, high)}, truth)
    outcomes: dict[tuple[str, int, str], list] = {}
    for pair_index, (world_a, world_b) in enumerate(PAIRS):
        pair_label = f"{world_a} - {world_b}"
        for n in sizes:
            for corpus in range(corpora):
                rng = np.random.default_rng([pair_index, n, corpus])
                sample = draw_pair(rng, n, world_a, world_b)
                for name in metrics:
                    metric = METRICS[name]
                    if name == "smece" and corpus >= smece_corpora:
                        continue
                    with warnings.catch_warnings():
                        # AUROC resamples with one class are dropped; not news here.
                        warnings.simplefilter("ignore", RuntimeWarning)
                        paired = paired_bootstrap_distributions(metric, *sample, resamples, corpus)
                    truth_a, truth_b = truths[world_a][name], truths[world_b][name]
                    results = {"a": (paired.a, truth_a), "b": (paired.b, truth_b)}
                    results["difference"] = (paired.difference, truth_a - truth_b)
                    for world, (source_pair, side) in WORLD_SOURCES.items():
                        if source_pair == pair_index:
                            outcomes.setdefault((world, n, name), []).append(results[side])
                    outcomes.setdefault((pair_label, n, name), []).append(results["difference"])
    rows = []
    for (label, n, name), results in outcomes.items():
        truth = results[0][1]
        estimates = [distribution.value for distribution, _ in results]
        for method in INTERVAL_METHODS:
            intervals = np.array([d.interval(method, LEVEL) for d, _ in results])
            covered = (intervals[:, 0] <= truth) & (truth <= intervals[:, 1])
            rows.append(
                {
                    "world": label,
                    "n": n,
                    "metric": name,
                    "method": method,
                    "coverage": covered.mean(),
                    "covered": int(covered.sum()),
                    "width": np.nanmean(intervals[:, 1] - intervals[:, 0]),
                    "truth": truth,
                    "estimate": float(np.mean(estimates)),
                    "corpora": len(results),
                }
            )
    order = list(WORLDS) + [f"{a} - {b}" for a, b in PAIRS]
    rows.sort(key=lambda r: (order.index(r["world"]), r["n"], list(METRICS).index(r["metric"])))
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        (
            "| world / pair (a - b) | n | metric | method | coverage | mean width | truth "
            "| mean estimate | corpora |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        flag = "" if r["coverage"] >= 0.9 else " **<90%**"
        lines.append(
            f"| {r['world']} | {r['n']} | {r['metric']} | {r['method']} | "
            f"{100 * r['coverage']:.1f}%{flag} | {r['width']:.4f} | {r['truth']:.4f} | "
            f"{r['estimate']:.4f} | {r['corpora']} |"
        )
    return "\n".join(lines)


def reported_cells(rows: list[dict]) -> list[dict]:
    """The rows of the interval each metric reports (`core.metrics.INTERVAL_METHOD`), as
    interval_coverage.json holds them: world, n, metric, method, covered and corpora."""
    keys = ("world", "n", "metric", "method", "covered", "corpora")
    return [
        {key: r[key] for key in keys} for r in rows if r["method"] == INTERVAL_METHOD.get(r["metric"], "percentile")
    ]


def reported_table(cells: list[dict]) -> str:
    """One row per world and n, a column per metric: the coverage of the interval reported,
    as docs/metrics.md shows it."""
    metrics = list(dict.fromkeys(c["metric"] for c in cells))
    by_row: dict[tuple[str, int], dict[str, str]] = {}
    for c in cells:
        coverage = c["covered"] / c["corpora"]
        flag = "" if coverage >= 0.9 else " *"
        by_row.setdefault((c["world"], c["n"]), {})[c["metric"]] = f"{100 * coverage:.1f}%{flag}"
    lines = ["| world / pair | n | " + " | ".join(metrics) + " |", "|---|---:|" + "---:|" * len(metrics)]
    for (world, n), by_metric in by_row.items():
        lines.append(f"| {world} | {n} | " + " | ".join(by_metric.get(m, "") for m in metrics) + " |")
    return "\n".join(lines)


def coverage_document(cells: list[dict], args: argparse.Namespace) -> dict:
    """What interval_coverage.json holds: the run's settings and the reported cells."""
    return {
        "about": (
            "Coverage of the interval each metric reports (core.metrics.INTERVAL_METHOD) in the "
            "simulated worlds of scripts/coverage.py, which wrote this file: per world or pair "
            "(a - b), n and metric, how many of the corpora the interval covered. "
            "core.metrics.INTERVAL_NOTES quotes it."
        ),
        "level": LEVEL,
        "resamples": args.resamples,
        "corpora": args.corpora,
        "smece_corpora": min(args.smece_corpora, args.corpora),
        "sizes": args.sizes,
        "cells": cells,
    }


def coverage_json(document: dict) -> str:
    """`document` as JSON with one cell a line (an indented json.dumps gives every field one)."""
    head = "".join(f"  {json.dumps(key)}: {json.dumps(value)},\n" for key, value in document.items() if key != "cells")
    cells = ",\n".join(f"    {json.dumps(cell)}" for cell in document["cells"])
    return "{\n" + head + '  "cells": [\n' + cells + "\n  ]\n}\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 corpora (4 smECE), 300 resamples")
    parser.add_argument("--corpora", type=int, default=200, help="corpora per world and n")
    parser.add_argument("--smece-corpora", type=int, default=40, help="of those, scored for smECE")
    parser.add_argument("--resamples", type=int, default=DEFAULT_BOOTSTRAP_ITERS, help="resamples per corpus")
    parser.add_argument("--sizes", type=int, nargs="+", default=[300, 3000], help="corpus sizes")
    parser.add_argument(
        "--metrics", nargs="+", choices=list(METRICS),
        help=f"metrics to study (default: all; with --calibration-test: {', '.join(TEST_METRICS)})",
    )  # fmt: skip
    parser.add_argument(
        "--calibration-test", action="store_true",
        help="measure the calibration test's rejection rate at the 5%% level instead of interval coverage",
    )  # fmt: skip
    parser.add_argument(
        "--null-draws", type=int, default=DEFAULT_BOOTSTRAP_ITERS, help="calibrated draws per calibration test"
    )
    parser.add_argument(
        "--json",
        type=Path,
        help="where to write the reported coverage (default: the package's core/interval_coverage.json, which "
        "the notes quote; with --quick: nowhere)",
    )
    args = parser.parse_args(argv)
    if args.calibration_test:
        run_calibration_test(parser, args)
        return
    args.metrics = args.metrics or list(METRICS)
    if args.quick:
        args.corpora, args.smece_corpora, args.resamples = 20, 4, 300
    elif args.json is None:
        args.json = COVERAGE_FILE
    start = time.perf_counter()
    rows = simulate(args.corpora, min(args.smece_corpora, args.corpora), args.resamples, args.sizes, args.metrics)
    print(markdown(rows))
    print("\nThe intervals reported (`core.metrics.INTERVAL_METHOD`; * below 90%):\n")
    cells = reported_cells(rows)
    print(reported_table(cells))
    print(
        f"\n{args.corpora} corpora per cell ({min(args.smece_corpora, args.corpora)} for smECE), "
        f"{args.resamples} resamples, level {LEVEL}; {time.perf_counter() - start:.0f} s"
    )
    if args.json is not None:
        document = coverage_document(cells, args)
        # The notes must be able to quote it: a run without their cells stops here.
        notes = interval_notes(document)
        args.json.write_text(coverage_json(document), encoding="utf-8")
        print(f"\nwrote {args.json}; the notes beside the intervals will read:\n\n" + "\n\n".join(notes))


def run_calibration_test(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """`--calibration-test`: print the test's rejection rates; write nothing."""
    metrics = args.metrics or list(TEST_METRICS)
    if not set(metrics) <= set(TEST_METRICS):
        parser.error(f"--calibration-test tests {', '.join(TEST_METRICS)} only, not {', '.join(metrics)}")
    if args.quick:
        args.corpora, args.smece_corpora, args.null_draws = 20, 4, 200
    smece_corpora = min(args.smece_corpora, args.corpora)
    start = time.perf_counter()
    rows = rejection_rates(args.corpora, smece_corpora, args.null_draws, args.sizes, metrics)
    print(f"Share of corpora the calibration test rejects at the {TEST_LEVEL:.0%} level:\n")
    print(rejection_table(rows))
    print(f"\nThe least overconfidence detected with 80% power at the {TEST_LEVEL:.0%} level (typical runs):\n")
    print(detectable_table(args.null_draws, args.sizes, metrics))
    print(
        f"\n{args.corpora} corpora per cell ({smece_corpora} for smECE), {args.null_draws} calibrated draws "
        f"per test; {time.perf_counter() - start:.0f} s"
    )


if __name__ == "__main__":
    main()
