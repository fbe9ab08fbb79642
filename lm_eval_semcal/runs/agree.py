"""`semcal agree`: how much the choice of B matters, on one run's saved responses.

Every semcal task of a run is scored again under each B given (as `semcal rescore`
does, nothing written), and compared: the metrics under each, and the mean over
questions of the adjusted Rand index between each pair's class assignments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lm_eval_semcal.core.metrics import corpus_metrics
from lm_eval_semcal.runs.rescore import RegroupingError, read_and_check, regroup, regrouping_step
from lm_eval_semcal.runs.show import number

__all__ = ["Agreement", "adjusted_rand_index", "agreement", "agreement_markdown"]

# The tables' precision, as in the report's.
DIGITS = 4


def adjusted_rand_index(labels_a: Sequence[int], labels_b: Sequence[int]) -> float:
    """Adjusted Rand index of two groupings of the same items (Hubert and Arabie, 1985).

    ARI = (sum_ij C(n_ij, 2) - E) / (0.5 (sum_i C(a_i, 2) + sum_j C(b_j, 2)) - E), with
    n_ij the contingency counts, a_i and b_j its margins and E = sum_i C(a_i, 2)
    sum_j C(b_j, 2) / C(n, 2). 1 for identical groupings; when both put all items in one
    class, or each item in its own, the groupings agree and the index is 1.
    """
    a, b = np.asarray(labels_a), np.asarray(labels_b)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"two label lists of the same length expected, got {a.shape} and {b.shape}")
    _, a_index = np.unique(a, return_inverse=True)
    _, b_index = np.unique(b, return_inverse=True)
    table = np.zeros((a_index.max() + 1, b_index.max() + 1))
    np.add.at(table, (a_index, b_index), 1)

    def pairs(counts: np.ndarray) -> float:
        return float((counts * (counts - 1) / 2).sum())

    index, rows, cols = pairs(table), pairs(table.sum(1)), pairs(table.sum(0))
    expected = rows * cols / (len(a) * (len(a) - 1) / 2) if len(a) > 1 else 0.0
    maximum = (rows + cols) / 2
    if maximum == expected:
        return 1.0
    return (index - expected) / (maximum - expected)


@dataclass
class Agreement:
    """Several B on one task's samples: metrics per B, mean per-question ARI per pair."""

    task: str
    model: str
    groupings: list[str]
    metrics: dict[str, dict[str, float]]
    ari: dict[tuple[str, str], float]


def agreement(
    run_dir: str | Path,
    groupings: Sequence[str],
    grouping_args: dict[str, dict] | None = None,
    gold_match: str | None = None,
    allow_partial: bool = False,
) -> list[Agreement]:
    """How much the choice of B matters, per semcal task of `run_dir`.

    `grouping_args` maps a B's name to its options (default options for the others);
    `allow_partial` reads a samples file that lost rows, as `load_run` does.
    """
    options = {grouping: (grouping_args or {}).get(grouping) for grouping in groupings}
    unknown = sorted(set(grouping_args or {}) - set(groupings))
    if unknown:
        raise RegroupingError(f"agree: options given for {unknown}, which are not among --grouping {list(groupings)}")
    found = []
    for saved in read_and_check(run_dir, options, gold_match, allow_partial=allow_partial):
        records = {
            grouping: regroup(saved, regrouping_step(saved, grouping, options[grouping], gold_match))
            for grouping in groupings
        }
        ari = {}
        for i, first in enumerate(groupings):
            for second in groupings[i + 1 :]:
                per_question = [
                    adjusted_rand_index(x.classes.class_ids, y.classes.class_ids)
                    for x, y in zip(records[first], records[second], strict=True)
                ]
                ari[(first, second)] = float(np.mean(per_question))
        # The table shows point values only: no intervals to pay for.
        metrics = {
            grouping: corpus_metrics(records[grouping], bootstrap_iters=0, label=saved.run.task).values
            for grouping in groupings
        }
        found.append(Agreement(saved.run.task, saved.run.name, list(groupings), metrics, ari))
    return found


def agreement_markdown(found: Sequence[Agreement]) -> str:
    """A table of acc / conf / ece / smece per B and one of ARIs, per task."""
    lines = []
    for one in found:
        lines += [f"## {one.task} ({one.model})", "", "| B | acc | conf | ece | smece |", "|---|---:|---:|---:|---:|"]
        for grouping in one.groupings:
            m = one.metrics[grouping]
            lines.append(f"| {grouping} | " + " | ".join(number(m[name], DIGITS) for name in ("acc", "conf", "ece", "smece")) + " |")
        lines += ["", "| B | B' | mean ARI over questions |", "|---|---|---:|"]
        lines += [f"| {a} | {b} | {number(value, DIGITS)} |" for (a, b), value in one.ari.items()]
        lines.append("")
    return "\n".join(lines)
