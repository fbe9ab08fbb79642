"""`semcal compare`: several models' saved runs side by side, with paired differences.

Reads lm-eval output folders (any number of models, rescored runs too) and writes:

- `metrics.csv`: per model, task and metric, the value, its 95% interval and n (the
  Brier parts, the accuracy at 50% and 80% coverage and the calibration test's rows
  have no interval: empty bounds);
- `pairs.csv`: per pair of models, task and metric, the difference (model_b minus
  model_a) on the questions both answered, with a paired bootstrap interval: the same
  resampled questions for both models, so a question hard for both does not widen it;
- `comparison.md` and `comparison.html` (one self-contained page: figures inline, opens
  from disk): the models-by-tasks table, each model's calibration test (noise floor,
  verdict, detectable overconfidence), Brier parts, AURC and accuracy at 50% and 80%
  coverage, overlaid reliability diagrams per task, smECE per model with pairs joined
  (`--pair A=B`), each task's risk-coverage curves (one per model), and the pairs table
  with the differences whose interval excludes zero marked.

Questions are matched across runs by lm-eval's hash of their document, never by their
position. `compare_numbers` computes every number, `compare_page` builds the page; this
module reads the runs, draws the figures and writes the files.
"""

from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import relplot

from lm_eval_semcal.core import calibration
from lm_eval_semcal.core.settings import CI_PERCENT, DEFAULT_BOOTSTRAP_ITERS
from lm_eval_semcal.runs.compare_numbers import CompareError, Comparison, Entry, compare, entries_by_task
from lm_eval_semcal.runs.compare_page import Image, page_blocks, write_page
from lm_eval_semcal.runs.saved import TaskRun, label_models, load_run
from lm_eval_semcal.runs.show import FONT_SIZE, figure, file_name, plotting

__all__ = ["CompareError", "compare_runs", "parse_labels", "parse_pairs"]

METRICS_HEADER = ("model", "task", "metric", "value", "low", "high", "n")
PAIRS_HEADER = ("task", "metric", "model_a", "model_b", "difference", "low", "high", "n_shared")
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def parse_labels(texts: Sequence[str]) -> dict[str, str]:
    """`--label NAME=LABEL` options as {NAME: LABEL}; one line with the fix for a malformed one."""
    labels = {}
    for text in texts:
        name, sep, label = text.rpartition("=")
        if not sep or not name.strip() or not label.strip():
            raise CompareError(f"--label {text!r}: give the model's name, path or folder and its label as NAME=LABEL")
        labels[name.strip()] = label.strip()
    return labels


def parse_pairs(texts: Sequence[str]) -> list[tuple[str, str]]:
    """`--pair A=B` options as (A, B) names; one line with the fix for a malformed one."""
    pairs = []
    for text in texts:
        a, sep, b = text.partition("=")
        if not sep or not a.strip() or not b.strip():
            raise CompareError(f"--pair {text!r}: give two model names as A=B (e.g. Qwen2.5-7B=Qwen2.5-7B-Instruct)")
        pairs.append((a.strip(), b.strip()))
    return pairs


def _resolve_pairs(pairs: Sequence[tuple[str, str]], names: set[str]) -> None:
    for a, b in pairs:
        for name in (a, b):
            if name not in names:
                raise CompareError(f"--pair {a}={b}: no model named {name!r}; the models are {', '.join(sorted(names))}")


def _read_runs(run_dirs: Sequence[str | Path], labels: dict[str, str] | None, allow_partial: bool) -> list[TaskRun]:
    """Every semcal task of the folders, each run once, labelled so that their models can be told apart."""
    # A rescore is found from its model's folder and from its own: each run counts once.
    found = {(run.results_file, run.task, run.filter): run for run_dir in run_dirs for run in load_run(run_dir, allow_partial)}
    return label_models(list(found.values()), labels)


# --------------------------------------------------------------------------------------
# Files


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_tables(comparison: Comparison, out_dir: Path) -> list[Path]:
    """`metrics.csv`, each model's value of each metric with its interval, and `pairs.csv`, every pair's differences."""
    metrics = (
        (entry.name, entry.task, name, estimate.value, estimate.low, estimate.high, entry.run.n_questions)
        for entry in comparison.entries
        for name, estimate in comparison.estimates(entry).items()
    )
    pairs = (
        (pair.a.task, name, pair.a.name, pair.b.name, estimate.value, estimate.low, estimate.high, len(pair.shared))
        for pair, differences in comparison.pairs
        for name, estimate in differences.items()
    )
    return [_write_csv(out_dir / "metrics.csv", METRICS_HEADER, metrics), _write_csv(out_dir / "pairs.csv", PAIRS_HEADER, pairs)]


def plot_overlaid_reliability(task: str, entries: Sequence[Entry], path: Path) -> None:
    """Each model's smoothed reliability curve with its 95% band (relplot), over the diagonal."""
    with plotting():
        fig = figure(6.4, 6.0)
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1], color="0.55", linestyle="--", linewidth=1, label="calibrated")
        for index, entry in enumerate(entries):
            diagram = relplot.prepare_rel_diagram(entry.run.confidence, entry.run.correct, report_CE=False)
            color = COLORS[index % len(COLORS)]
            ax.fill_between(diagram["mesh"], diagram["lower"], diagram["upper"], color=color, alpha=0.18, linewidth=0)
            ax.plot(diagram["mesh"], diagram["mu"], color=color, linewidth=2, label=f"{entry.name} (n = {entry.run.n_questions})")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_xlabel("semantic confidence (plurality share)")
        ax.set_ylabel("accuracy of the plurality answer")
        ax.set_title(f"{task}: reliability, {CI_PERCENT} bands")
        ax.legend(loc="upper left", fontsize=9, frameon=False)
        fig.savefig(path, dpi=110, bbox_inches="tight")


def plot_smece(comparison: Comparison, path: Path) -> None:
    """smECE per model with its interval, a panel per task; each `--pair` A=B joined A to B."""
    by_task = comparison.by_task
    tasks = list(by_task)
    height = 0.9 + 0.45 * max(len(entries) for entries in by_task.values())
    with plotting():
        fig = figure(6.4, height * len(tasks))
        axes = fig.subplots(len(tasks), 1, squeeze=False)[:, 0]
        for ax, task in zip(axes, tasks, strict=True):
            entries = by_task[task]
            rows = {entry.name: row for row, entry in enumerate(entries)}
            for row, entry in enumerate(entries):
                smece = comparison.estimates(entry)["smece"]
                color = COLORS[row % len(COLORS)]
                if not (math.isnan(smece.low) or math.isnan(smece.high)):
                    ax.plot([smece.low, smece.high], [row, row], color=color, linewidth=2)
                ax.plot([smece.value], [row], "o", color=color, markersize=7)
            for a, b in comparison.chosen:
                for first, second in itertools.product(entries, entries):
                    if (first.run.name, second.run.name) == (a, b) and first.run.filter == second.run.filter:
                        values = [comparison.estimates(entry)["smece"].value for entry in (first, second)]
                        ax.annotate("", xy=(values[1], rows[second.name]), xytext=(values[0], rows[first.name]),
                                    arrowprops={"arrowstyle": "->", "color": "0.3", "linewidth": 1.2})  # fmt: skip
            ax.set_yticks(range(len(entries)), [entry.name for entry in entries])
            ax.set_ylim(len(entries) - 0.5, -0.5)
            ax.set_xlim(left=0)
            ax.set_title(f"{task}: smECE, {CI_PERCENT} interval (lower is better)", fontsize=FONT_SIZE)
            ax.grid(axis="x", color="0.9")
        axes[-1].set_xlabel("smECE")
        fig.tight_layout()
        fig.savefig(path, dpi=110, bbox_inches="tight")


def plot_risk_coverage(task: str, entries: Sequence[Entry], path: Path) -> None:
    """Each model's risk-coverage curve (`risk_coverage_curve`): the error rate among the
    questions answered, the most confident first, against the share answered."""
    with plotting():
        fig = figure(6.4, 4.8)
        ax = fig.add_subplot()
        for index, entry in enumerate(entries):
            coverage, risk = calibration.risk_coverage_curve(entry.run.confidence, entry.run.correct)
            ax.plot(coverage, risk, marker="o", markersize=3, linewidth=2, color=COLORS[index % len(COLORS)],
                    label=f"{entry.name} (AURC {calibration.aurc(entry.run.confidence, entry.run.correct):.3f})")  # fmt: skip
        ax.set_xlim(0, 1)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("coverage (share of questions answered)")
        ax.set_ylabel("risk (error rate among those answered)")
        ax.set_title(f"{task}: risk-coverage")
        ax.legend(loc="upper left", fontsize=9, frameon=False)
        fig.savefig(path, dpi=110, bbox_inches="tight")


def draw_figures(comparison: Comparison, out_dir: Path) -> tuple[list[Image], Image, list[Image]]:
    """Each task's overlaid reliability diagrams, the smECE figure with the `--pair` pairs
    joined, and each task's risk-coverage curves."""
    reliability, risk_coverage = [], []
    for index, (task, entries) in enumerate(comparison.by_task.items()):
        names = ", ".join(e.name for e in entries)
        path = out_dir / f"reliability_{index + 1:02d}_{file_name(task)}.png"
        plot_overlaid_reliability(task, entries, path)
        reliability.append(Image(path, f"{task}: reliability diagrams of {names}"))
        path = out_dir / f"risk_coverage_{index + 1:02d}_{file_name(task)}.png"
        plot_risk_coverage(task, entries, path)
        risk_coverage.append(Image(path, f"{task}: risk-coverage curves of {names}"))
    smece = Image(out_dir / "smece.png", f"smECE per model with its {CI_PERCENT} interval")
    plot_smece(comparison, smece.path)
    return reliability, smece, risk_coverage


# --------------------------------------------------------------------------------------
# The command


def compare_runs(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    labels: dict[str, str] | None = None,
    pairs: Sequence[tuple[str, str]] = (),
    bootstrap_iters: int = DEFAULT_BOOTSTRAP_ITERS,
    allow_partial: bool = False,
) -> list[Path]:
    """Compare the semcal tasks of several saved runs; write the four files in `out_dir`.

    Parameters
    ----------
    run_dirs : sequence of str or Path
        lm-eval output folders (or model folders, or results JSONs), as `load_run` reads them.
    out_dir : str or Path
        Where to write `metrics.csv`, `pairs.csv`, `comparison.md`, `comparison.html` and
        the figures the Markdown page links.
    labels : dict, optional
        Model name or folder -> the name to show (`--label PATH_OR_NAME=LABEL`).
    pairs : sequence of (str, str)
        Models (by the names shown) to join in the smECE figure, filter by filter, and to
        list first with the difference B minus A (`--pair A=B`, base then tuned).
    bootstrap_iters : int
        Resamples for every interval; 0 leaves them out.
    allow_partial : bool
        Read samples files that lost rows (see `load_run`).

    Returns
    -------
    list of Path
        The files written.
    """
    runs = _read_runs(run_dirs, labels, allow_partial)
    by_task = entries_by_task(runs)
    _resolve_pairs(pairs, {run.name for run in runs})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    comparison = compare(by_task, pairs, bootstrap_iters)
    tables = write_tables(comparison, out_dir)
    reliability, smece, risk_coverage = draw_figures(comparison, out_dir)
    markdown, page = write_page(page_blocks(comparison, reliability, smece, risk_coverage), out_dir)
    return [*tables, markdown, page, *(image.path for image in reliability), smece.path,
            *(image.path for image in risk_coverage)]  # fmt: skip
