"""`semcal compare`: several models' saved runs side by side, with paired differences.

Reads lm-eval output folders (any number of models, rescored runs too) and writes:

- `metrics.csv`: per model, task and metric, the value, its 95% interval and n;
- `pairs.csv`: per pair of models, task and metric, the difference (model_b minus
  model_a) on the questions both answered, with a paired bootstrap interval: the same
  resampled questions for both models, so a question hard for both does not widen it;
- `comparison.md` and `comparison.html` (one self-contained page: figures inline, opens
  from disk): the models-by-tasks table, overlaid reliability diagrams per task, smECE
  per model with pairs joined (`--pair A=B`), and the pairs table with the differences
  whose interval excludes zero marked.

Questions are matched across runs by lm-eval's hash of their document, never by their
position. Every number comes from `core.metrics` (`metric_value`, `metric_interval`,
`paired_difference`), the path the report, rescore and lm-eval's aggregations take.
"""

from __future__ import annotations

import base64
import csv
import html
import itertools
import json
import logging
import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import matplotlib as mpl
import numpy as np
import relplot
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tqdm import tqdm

from lm_eval_semcal.core.metrics import (
    COMPARED_METRICS,
    INTERVAL_NOTES,
    metric_interval,
    metric_value,
    paired_difference,
    warnings_logged,
)
from lm_eval_semcal.core.settings import DEFAULT_BOOTSTRAP_ITERS
from lm_eval_semcal.runs.report import numpy_global_seed
from lm_eval_semcal.runs.saved import RunDirError, TaskRun, label_models, load_run

__all__ = ["CompareError", "Entry", "compare_runs", "parse_labels", "parse_pairs"]

log = logging.getLogger(__name__)

METRICS_HEADER = ("model", "task", "metric", "value", "low", "high", "n")
PAIRS_HEADER = ("task", "metric", "model_a", "model_b", "difference", "low", "high", "n_shared")
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


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


# --------------------------------------------------------------------------------------
# Numbers


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float

    def excludes_zero(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high)) and (self.low > 0 or self.high < 0)


def entry_metrics(entry: Entry, bootstrap_iters: int) -> dict[str, Estimate]:
    conf, corr = entry.run.confidence, entry.run.correct
    found = {}
    for name in COMPARED_METRICS:
        with warnings_logged(f"{entry.task} {entry.name} {name}"):
            low, high = metric_interval(name, conf, corr, bootstrap_iters)
            found[name] = Estimate(metric_value(name, conf, corr), low, high)
    return found


def pair_metrics(pair: Pair, bootstrap_iters: int) -> dict[str, Estimate]:
    (conf_a, corr_a), (conf_b, corr_b) = pair.aligned(pair.a), pair.aligned(pair.b)
    found = {}
    for name in COMPARED_METRICS:
        with warnings_logged(f"{pair.a.task} {pair.b.name} minus {pair.a.name} {name}"):
            found[name] = Estimate(*paired_difference(name, conf_a, corr_a, conf_b, corr_b, bootstrap_iters))
    return found


# --------------------------------------------------------------------------------------
# Figures


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def plot_overlaid_reliability(task: str, entries: Sequence[Entry], path: Path) -> None:
    """Each model's smoothed reliability curve with its 95% band (relplot), over the diagonal."""
    with mpl.rc_context({"font.size": 11}), numpy_global_seed(0), warnings.catch_warnings():
        # relplot's bagging calls pandas the way pandas 3 deprecates; nothing to act on.
        warnings.filterwarnings("ignore", message="Passing a dict to DataFrame.from_records")
        fig = _figure(6.4, 6.0)
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
        ax.set_title(f"{task}: reliability, 95% bands")
        ax.legend(loc="upper left", fontsize=9, frameon=False)
        fig.savefig(path, dpi=110, bbox_inches="tight")


def plot_smece(
    by_task: dict[str, list[Entry]], numbers: dict[tuple[str, str], dict[str, Estimate]], pairs: Sequence[tuple[str, str]], path: Path
) -> None:
    """smECE per model with its interval, a panel per task; each `--pair` A=B joined A to B."""
    tasks = list(by_task)
    height = 0.9 + 0.45 * max(len(entries) for entries in by_task.values())
    with mpl.rc_context({"font.size": 11}):
        fig = _figure(6.4, height * len(tasks))
        axes = fig.subplots(len(tasks), 1, squeeze=False)[:, 0]
        for ax, task in zip(axes, tasks, strict=True):
            entries = by_task[task]
            rows = {entry.name: row for row, entry in enumerate(entries)}
            for row, entry in enumerate(entries):
                smece = numbers[(task, entry.name)]["smece"]
                color = COLORS[row % len(COLORS)]
                if not (math.isnan(smece.low) or math.isnan(smece.high)):
                    ax.plot([smece.low, smece.high], [row, row], color=color, linewidth=2)
                ax.plot([smece.value], [row], "o", color=color, markersize=7)
            for a, b in pairs:
                for first, second in itertools.product(entries, entries):
                    if (first.run.name, second.run.name) == (a, b) and first.run.filter == second.run.filter:
                        values = [numbers[(task, entry.name)]["smece"].value for entry in (first, second)]
                        ax.annotate("", xy=(values[1], rows[second.name]), xytext=(values[0], rows[first.name]),
                                    arrowprops={"arrowstyle": "->", "color": "0.3", "linewidth": 1.2})  # fmt: skip
            ax.set_yticks(range(len(entries)), [entry.name for entry in entries])
            ax.set_ylim(len(entries) - 0.5, -0.5)
            ax.set_xlim(left=0)
            ax.set_title(f"{task}: smECE, 95% interval (lower is better)", fontsize=11)
            ax.grid(axis="x", color="0.9")
        axes[-1].set_xlabel("smECE")
        fig.tight_layout()
        fig.savefig(path, dpi=110, bbox_inches="tight")


# --------------------------------------------------------------------------------------
# The page: one list of blocks, written as Markdown and as HTML


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: list[tuple[str, ...]]


@dataclass(frozen=True)
class Image:
    path: Path
    alt: str


def _number(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def _with_interval(estimate: Estimate) -> str:
    if math.isnan(estimate.low) or math.isnan(estimate.high):
        return _number(estimate.value)
    return f"{_number(estimate.value)} [{_number(estimate.low)}, {_number(estimate.high)}]"


def _confidence_gap(estimate: Estimate) -> str:
    if not estimate.excludes_zero():
        return f"{_with_interval(estimate)} (within noise)"
    return f"{_with_interval(estimate)} ({'overconfident' if estimate.value > 0 else 'underconfident'})"


def _markdown(blocks: Sequence[object], out_dir: Path) -> str:
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Table):
            lines += ["| " + " | ".join(block.header) + " |", "|" + "---|" * len(block.header)]
            lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in block.rows]
        elif isinstance(block, Image):
            lines.append(f"![{block.alt}]({block.path.relative_to(out_dir).as_posix()})")
        else:
            lines.append(str(block))
        lines.append("")
    return "\n".join(lines)


_HTML_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
table { border-collapse: grouping; margin: 1em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }
th { background: #f3f3f3; }
img { max-width: 100%; height: auto; display: block; margin: 1em 0; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; }
.figures img { max-width: 520px; }
"""


def _inline(text: str) -> str:
    """Markdown's **bold** and `code` in a line of text, as HTML (everything else escaped)."""
    escaped = html.escape(text)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", escaped)


def _html(blocks: Sequence[object], title: str) -> str:
    body: list[str] = []
    figures: list[str] = []

    def flush() -> None:
        if figures:
            body.append('<div class="figures">' + "".join(figures) + "</div>")
            figures.clear()

    for block in blocks:
        if isinstance(block, Image):
            data = base64.b64encode(block.path.read_bytes()).decode("ascii")
            figures.append(f'<img src="data:image/png;base64,{data}" alt="{html.escape(block.alt)}">')
            continue
        flush()
        if isinstance(block, Table):
            head = "".join(f"<th>{html.escape(cell)}</th>" for cell in block.header)
            rows = "".join("<tr>" + "".join(f"<td>{_inline(cell)}</td>" for cell in row) + "</tr>" for row in block.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif str(block).startswith("#"):
            level = len(str(block)) - len(str(block).lstrip("#"))
            body.append(f"<h{level}>{_inline(str(block)[level:].strip())}</h{level}>")
        else:
            body.append(f"<p>{_inline(str(block))}</p>")
    flush()
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{html.escape(title)}</title>\n'
        f"<style>{_HTML_STYLE}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )


# --------------------------------------------------------------------------------------
# The command


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _file_name(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", text)


def _resolve_pairs(pairs: Sequence[tuple[str, str]], names: set[str]) -> None:
    for a, b in pairs:
        for name in (a, b):
            if name not in names:
                raise CompareError(f"--pair {a}={b}: no model named {name!r}; the models are {', '.join(sorted(names))}")


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
    # A rescore is found from its model's folder and from its own: each run counts once.
    found = {(run.results_file, run.task, run.filter): run for run_dir in run_dirs for run in load_run(run_dir, allow_partial)}
    runs = label_models(list(found.values()), labels)
    by_task = entries_by_task(runs)
    _resolve_pairs(pairs, {run.name for run in runs})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    # A chosen pair (by model name) is compared filter by filter, first as named, listed first.
    chosen = {pair: index for index, pair in enumerate(pairs)}
    compared: list[Pair] = []
    for entries in by_task.values():
        for a, b in itertools.combinations(entries, 2):
            if (b.run.name, a.run.name) in chosen:
                a, b = b, a
            compared.append(pair_up(a, b))
    compared.sort(key=lambda pair: (pair.a.task, chosen.get((pair.a.run.name, pair.b.run.name), len(chosen))))

    entries = [entry for task_entries in by_task.values() for entry in task_entries]
    numbers = {
        (entry.task, entry.name): entry_metrics(entry, bootstrap_iters)
        for entry in tqdm(entries, desc="semcal compare: models", unit="run")
    }
    differences = {id(pair): pair_metrics(pair, bootstrap_iters) for pair in tqdm(compared, desc="semcal compare: pairs", unit="pair")}

    written = [out_dir / "metrics.csv", out_dir / "pairs.csv"]
    with written[0].open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(METRICS_HEADER)
        for entry in entries:
            for name, estimate in numbers[(entry.task, entry.name)].items():
                writer.writerow([entry.name, entry.task, name, estimate.value, estimate.low, estimate.high, entry.run.n_questions])
    with written[1].open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(PAIRS_HEADER)
        for pair in compared:
            for name, estimate in differences[id(pair)].items():
                writer.writerow([pair.a.task, name, pair.a.name, pair.b.name, estimate.value, estimate.low, estimate.high, len(pair.shared)])

    figures = []
    for index, (task, task_entries) in enumerate(by_task.items()):
        path = out_dir / f"reliability_{index + 1:02d}_{_file_name(task)}.png"
        plot_overlaid_reliability(task, task_entries, path)
        figures.append(Image(path, f"{task}: reliability diagrams of {', '.join(e.name for e in task_entries)}"))
    smece_figure = out_dir / "smece.png"
    plot_smece(by_task, numbers, pairs, smece_figure)

    blocks: list[object] = [
        "# Semantic calibration: models compared",
        (
            f"{_count(len({run.name for run in runs}), 'model')}, {_count(len(by_task), 'task')}. Each interval "
            f"is a 95% bootstrap interval over questions ({bootstrap_iters} resamples); a difference is model_b "
            "minus model_a on the questions both answered, with the same resampled questions for both (paired)."
        ),
        "## Models and tasks",
        Table(
            ("task", "model", "n", "M", "B", "acc", "smECE", "conf minus acc"),
            [
                (entry.task, entry.name, str(entry.run.n_questions), entry.run.m_label, entry.run.grouping,
                 _with_interval(numbers[(entry.task, entry.name)]["acc"]),
                 _with_interval(numbers[(entry.task, entry.name)]["smece"]),
                 _confidence_gap(numbers[(entry.task, entry.name)]["overconfidence"]))
                for entry in entries
            ],
        ),
        *INTERVAL_NOTES,
        "## Reliability diagrams",
        *figures,
        "## smECE per model" + (" (pairs joined, arrow from the first to the second)" if pairs else ""),
        Image(smece_figure, "smECE per model with its 95% interval"),
    ]
    # With --pair, the page shows the pairs asked for; pairs.csv holds every pair.
    shown = (
        [
            pair for pair in compared
            if (pair.a.run.name, pair.b.run.name) in chosen and pair.a.run.filter == pair.b.run.filter
        ]
        if chosen
        else compared
    )  # fmt: skip
    if shown:
        blocks += [
            "## Paired differences (model_b minus model_a)",
            "**Bold**: the interval excludes zero."
            + (f" The pairs given with --pair; all {len(compared)} pairs are in pairs.csv." if chosen else ""),
            *[
                f"{pair.a.task}: {pair.a.name} and {pair.b.name}"
                + (f" differ in {', '.join(pair.differs)};" if pair.differs else "")
                + f" compared on the {len(pair.shared)} questions both answered."
                for pair in shown
                if pair.differs or len(pair.shared) < max(pair.a.run.n_questions, pair.b.run.n_questions)
            ],
            Table(
                ("task", "model_a", "model_b", "metric", "difference", "n shared"),
                [
                    (pair.a.task, pair.a.name, pair.b.name, name,
                     f"**{_with_interval(estimate)}**" if estimate.excludes_zero() else _with_interval(estimate),
                     str(len(pair.shared)))
                    for pair in shown
                    for name, estimate in differences[id(pair)].items()
                ],
            ),
        ]
    markdown, page = out_dir / "comparison.md", out_dir / "comparison.html"
    markdown.write_text(_markdown(blocks, out_dir), encoding="utf-8")
    page.write_text(_html(blocks, "Semantic calibration: models compared"), encoding="utf-8")
    return [*written, markdown, page, *(figure.path for figure in figures), smece_figure]
