"""`semcal report`: reliability diagrams and Markdown tables from a finished lm-eval run.

`lm_eval ... --output_path OUT --log_samples` writes, per run, `OUT/<model>/results_<date>.json`
and one `OUT/<model>/samples_<task>_<date>.jsonl` per task. The per-question records in the
samples file (see `lm_eval_semcal.records`) are all the report needs: every number is
recomputed from them with `lm_eval_semcal.calibration`, checked against the point values
lm-eval put in the results JSON, and given a 95% bootstrap interval over questions.

For each semcal task the report writes `<task>_reliability.png` (relplot's smoothed
reliability curve with its bootstrap band) and `<task>.md` (the SPEC's metrics, and the
split-half estimator that shows how much the plurality confidence is inflated at small M),
plus one `summary.md` over all tasks. When the folder holds runs of several models, each
file name starts with the model's folder name (`<model>__<task>...`).
"""

from __future__ import annotations

import json
import logging
import math
import re
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import matplotlib as mpl
import numpy as np
import relplot
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tqdm import tqdm

from lm_eval_semcal import calibration
from lm_eval_semcal.lm_eval_metrics import BOOTSTRAP_SEED, CALIBRATION_METRICS, CI_LEVEL, warnings_logged
from lm_eval_semcal.records import read_record

__all__ = [
    "RunDirError",
    "SplitEstimate",
    "TaskReport",
    "TaskRun",
    "disagreements",
    "load_run",
    "point_metrics",
    "split_half_choice",
    "split_half_estimates",
    "summarize",
    "write_reports",
]

log = logging.getLogger(__name__)

REPORT_DIR_NAME = "semcal_report"
AGREEMENT_TOLERANCE = 1e-9

# The SPEC's corpus metrics, in its order, with the direction that is better.
METRICS: dict[str, str] = {
    "acc": "higher",
    "conf": "-",
    "ece": "lower",
    "smece": "lower",
    "brier": "lower",
    "auroc": "higher",
    "sem_entropy": "-",
    "n_classes": "-",
    "no_answer": "lower",
}

# lm-eval stamps every file of a run with datetime.now().isoformat(), ':' made '-'; the
# stamp is the only link between a results JSON and its samples files.
_DATE_RE = re.compile(r"_(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(?:\.\d+)?)\.json$")


class RunDirError(Exception):
    """The given path is not a reportable lm-eval run; the message says what to do."""


# --------------------------------------------------------------------------------------
# Reading a run


@dataclass(frozen=True, eq=False)
class TaskRun:
    """One semcal task of an lm-eval run, read back from its results and samples files.

    `confidence`, `correct`, `sample_counts` and `records` hold one entry per question in
    doc_id order; `reported` maps each metric name (filter suffix dropped, e.g. "ece",
    "ece_ci_low") to the value lm-eval wrote into the results JSON.
    """

    task: str
    filter: str
    model: str
    model_dir: str
    results_file: Path
    samples_file: Path
    doc_ids: tuple[int, ...]
    records: tuple[dict, ...]
    confidence: np.ndarray
    correct: np.ndarray
    sample_counts: np.ndarray
    reported: dict[str, float]

    @property
    def n_questions(self) -> int:
        return len(self.records)

    @property
    def M(self) -> int | None:  # noqa: N802 - the SPEC's name for samples per question
        """Samples per question, or None when questions were sampled a different number of times."""
        counts = set(self.sample_counts.tolist())
        return counts.pop() if len(counts) == 1 else None

    @property
    def m_label(self) -> str:
        if self.M is not None:
            return str(self.M)
        return f"{self.sample_counts.min()}-{self.sample_counts.max()} (differs between questions)"

    @property
    def collapse(self) -> str:
        return ", ".join(sorted({str(record["collapse"]) for record in self.records}))


@dataclass(frozen=True)
class _ResultsFile:
    path: Path
    date: str
    data: dict

    @property
    def model_dir(self) -> str:
        return str(self.data.get("model_name_sanitized") or self.path.parent.name)

    @property
    def model(self) -> str:
        return str(self.data.get("model_name") or self.data.get("config", {}).get("model") or self.model_dir)


def _read_results_file(path: Path) -> _ResultsFile | None:
    """The file as a results JSON of lm-eval, or None when it is some other JSON."""
    match = _DATE_RE.search(path.name)
    if match is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("configs"), dict):
        return None
    return _ResultsFile(path=path, date=match.group(1), data=data)


def _results_files(path: Path) -> list[_ResultsFile]:
    if path.is_file():
        found = _read_results_file(path)
        if found is None:
            raise RunDirError(
                f"{path} is not an lm-eval results file (results_<date>.json): pass the "
                "--output_path folder of the run or one of its results JSONs"
            )
        return [found]
    # OUT holds one folder per model; OUT may also be that model folder itself.
    candidates = sorted({*path.glob("*.json"), *path.glob("*/*.json")})
    return [found for found in map(_read_results_file, candidates) if found is not None]


def _newest_per_task(files: Sequence[_ResultsFile]) -> dict[tuple[str, str], _ResultsFile]:
    """For each (model folder, task), the newest results file that holds the task."""
    newest: dict[tuple[str, str], _ResultsFile] = {}
    # ISO stamps of one fixed layout sort as text in time order.
    for found in sorted(files, key=lambda f: f.date):
        for task in found.data["configs"]:
            newest[(found.model_dir, task)] = found
    return newest


def _records_by_filter(samples_file: Path) -> dict[str, list[tuple[int, dict]]]:
    """Per filter, the (doc_id, record) of every question; filters without records are left out.

    A filter's samples are semcal records either all or not at all; a mix means a damaged
    file, and is an error rather than a task to skip.
    """
    records: dict[str, list[tuple[int, dict]]] = defaultdict(list)
    others: Counter[str] = Counter()
    with samples_file.open(encoding="utf-8") as lines:
        for line_no, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                sample = json.loads(line)
            except json.JSONDecodeError as err:
                raise RunDirError(f"{samples_file}:{line_no} is not JSON ({err}); is the file complete?") from None
            name = str(sample.get("filter", "none"))
            responses = sample.get("filtered_resps")
            try:
                if not isinstance(responses, list) or len(responses) != 1:
                    raise ValueError("one record per question expected")
                record = read_record(responses[0])
            except ValueError:
                others[name] += 1
                continue
            records[name].append((int(sample["doc_id"]), record))
    mixed = sorted(set(records) & set(others))
    if mixed:
        raise RunDirError(
            f"{samples_file}: filter {mixed[0]!r} has {len(records[mixed[0]])} semcal records and "
            f"{others[mixed[0]]} samples that are not; the file looks damaged"
        )
    return dict(records)


def _reported_metrics(task_results: dict, filter_name: str) -> dict[str, float]:
    suffix = f",{filter_name}"
    return {
        key[: -len(suffix)]: float(value)
        for key, value in task_results.items()
        if key.endswith(suffix)
        and not key[: -len(suffix)].endswith("_stderr")
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
    }


def _task_run(task: str, found: _ResultsFile, samples_file: Path, name: str, rows: list[tuple[int, dict]]) -> TaskRun:
    rows = sorted(rows, key=lambda row: row[0])
    records = tuple(record for _, record in rows)
    return TaskRun(
        task=task,
        filter=name,
        model=found.model,
        model_dir=found.model_dir,
        results_file=found.path,
        samples_file=samples_file,
        doc_ids=tuple(doc_id for doc_id, _ in rows),
        records=records,
        confidence=np.array([float(r["confidence"]) for r in records]),
        correct=np.array([float(bool(r["correct"])) for r in records]),
        sample_counts=np.array([len(r["class_ids"]) for r in records]),
        reported=_reported_metrics(found.data.get("results", {}).get(task, {}), name),
    )


def load_run(path: str | Path) -> list[TaskRun]:
    """Every semcal task of an lm-eval output folder, from its newest run.

    Parameters
    ----------
    path : str or Path
        lm-eval's `--output_path` folder (holding one folder per model), one model's folder,
        or one results JSON.

    Returns
    -------
    list of TaskRun
        One per semcal task (and filter) and model folder, sorted by model folder and task,
        each read from the newest results JSON holding the task and the samples file with
        the same date stamp. Tasks whose samples are not semcal records are skipped with a
        log line.

    Raises
    ------
    RunDirError
        The path is missing, holds no results JSON, its newest results have no samples
        files, or none of its tasks is a semcal task.
    """
    path = Path(path)
    if not path.exists():
        raise RunDirError(f"{path} does not exist: pass the --output_path folder of an lm-eval run")
    newest = _newest_per_task(_results_files(path))
    if not newest:
        raise RunDirError(
            f"no lm-eval results JSON (results_<date>.json) in {path} or its subfolders: "
            "run lm_eval with --output_path"
        )

    runs: list[TaskRun] = []
    without_samples: list[str] = []
    for (_, task), found in sorted(newest.items()):
        samples_file = found.path.parent / f"samples_{task}_{found.date}.jsonl"
        if not samples_file.is_file():
            without_samples.append(task)
            log.warning("skipping %s: %s has no samples file %s", task, found.path.name, samples_file.name)
            continue
        by_filter = _records_by_filter(samples_file)
        if not by_filter:
            log.warning("skipping %s: not a semcal task (its samples hold no semcal question records)", task)
            continue
        for name, rows in sorted(by_filter.items()):
            run = _task_run(task, found, samples_file, name, rows)
            if run.M is None:
                log.warning("%s: questions have different numbers of samples, M = %s", task, run.m_label)
            runs.append(run)

    if runs:
        return runs
    if without_samples:
        raise RunDirError(
            f"{path} has results but no samples files (for {', '.join(without_samples)}): re-run "
            "with --log_samples: the report needs per-question records"
        )
    raise RunDirError(
        f"no semcal task in {path}: the samples of {', '.join(sorted(t for _, t in newest))} hold "
        "no semcal question records (from the semcal_classes filter)"
    )


# --------------------------------------------------------------------------------------
# Numbers


def point_metrics(run: TaskRun) -> dict[str, float]:
    """The SPEC's nine corpus metrics, recomputed from the run's per-question records.

    The calibration ones come from `lm_eval_semcal.calibration` (AUROC is NaN, with a
    RuntimeWarning, when every answer is right or every answer wrong); `sem_entropy`,
    `n_classes` and `no_answer` are means of the record fields.
    """
    conf, corr = run.confidence, run.correct
    return {
        "acc": calibration.accuracy(conf, corr),
        "conf": calibration.mean_confidence(conf, corr),
        **{name: float(metric(conf, corr)) for name, metric in CALIBRATION_METRICS.items()},
        "sem_entropy": float(np.mean([r["entropy"] for r in run.records])),
        "n_classes": float(np.mean([r["n_classes"] for r in run.records])),
        "no_answer": float(np.mean([r["no_answer_share"] for r in run.records])),
    }


def disagreements(
    recomputed: dict[str, float], reported: dict[str, float], tolerance: float = AGREEMENT_TOLERANCE
) -> list[str]:
    """Names of the metrics whose recomputed value is more than `tolerance` off the reported one.

    NaN agrees with NaN only; a metric missing from `reported` is not compared.
    """
    off = []
    for name, value in recomputed.items():
        if name not in reported:
            continue
        theirs = reported[name]
        if math.isnan(value) or math.isnan(theirs):
            if not (math.isnan(value) and math.isnan(theirs)):
                off.append(name)
        elif abs(value - theirs) > tolerance:
            off.append(name)
    return off


def split_half_choice(class_ids: Sequence[int]) -> tuple[int, float]:
    """The split estimator of one question: (k*, its share) from disjoint halves of the samples.

    k* is the plurality class of the first floor(M/2) samples, a tie going to the class that
    appeared first; its share is measured on the remaining M - floor(M/2) samples, so it is
    an unbiased estimate of that class's probability (the plurality share c_{k*}/M, which
    picks and measures on the same samples, is biased upwards).
    """
    m = len(class_ids)
    if m < 2:
        raise ValueError(f"the split estimator needs at least 2 samples per question, got {m}")
    half = m // 2
    first = Counter(class_ids[:half])
    # Class ids are numbered by first appearance, and the first half is a prefix of the
    # samples, so among tied classes the smallest id appeared first.
    k = min(first, key=lambda c: (-first[c], c))
    second = list(class_ids[half:])
    return k, second.count(k) / len(second)


@dataclass(frozen=True, eq=False)
class SplitEstimate:
    """Per question: the split confidence and whether the split k* holds the gold answer.

    `switched` counts the questions whose split k* is not the full-sample plurality class.
    """

    confidence: np.ndarray
    correct: np.ndarray
    switched: int


def split_half_estimates(records: Sequence[dict]) -> SplitEstimate:
    """The split estimator over questions, from their records (see `split_half_choice`).

    The split k* is scored with the record's verdict on that class (`class_correct`), the
    gold pushed through the same B as for the plurality class.
    """
    confidence, correct = [], []
    switched = 0
    for record in records:
        k, share = split_half_choice(record["class_ids"])
        switched += k != record["plurality_class"]
        confidence.append(share)
        correct.append(float(record["class_correct"][k]))
    return SplitEstimate(np.array(confidence), np.array(correct), switched)


@dataclass(frozen=True, eq=False)
class TaskReport:
    """What the report shows for one task: recomputed metrics, intervals, split estimator."""

    run: TaskRun
    stem: str
    values: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    bootstrap_iters: int
    split: SplitEstimate
    split_ece: float
    disagreements: list[str]


def summarize(run: TaskRun, stem: str, bootstrap_iters: int = 1000) -> TaskReport:
    """The numbers of one task's report; logs a warning for each metric lm-eval reported differently."""
    with warnings_logged(run.task):
        values = point_metrics(run)
    intervals = {}
    for name, metric in CALIBRATION_METRICS.items():
        with warnings_logged(f"{run.task} {name} interval"):
            intervals[name] = calibration.bootstrap_ci(
                metric, run.confidence, run.correct, iters=bootstrap_iters, seed=BOOTSTRAP_SEED, level=CI_LEVEL
            )
    split = split_half_estimates(run.records)
    off = disagreements(values, run.reported)
    for name in off:
        log.warning(
            "%s: %s recomputed from %s is %r but lm-eval reported %r in %s",
            run.task, name, run.samples_file.name, values[name], run.reported[name], run.results_file.name,
        )
    return TaskReport(
        run=run,
        stem=stem,
        values=values,
        intervals=intervals,
        bootstrap_iters=bootstrap_iters,
        split=split,
        split_ece=calibration.binned_ece(split.confidence, split.correct),
        disagreements=off,
    )


# --------------------------------------------------------------------------------------
# Writing


def _stems(runs: Sequence[TaskRun]) -> list[str]:
    """A distinct file name stem per run: the task, led by the model folder when there are
    several models, followed by the filter when a task has several semcal filters."""
    several_models = len({run.model_dir for run in runs}) > 1
    filters = Counter((run.model_dir, run.task) for run in runs)
    stems = []
    for run in runs:
        stem = run.task if filters[(run.model_dir, run.task)] == 1 else f"{run.task}_{run.filter}"
        if several_models:
            stem = f"{run.model_dir}__{stem}"
        stems.append(re.sub(r"[^\w.-]+", "_", stem))
    return stems


def _number(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.4f}"


def _interval(bounds: tuple[float, float]) -> str:
    low, high = bounds
    return "n/a" if math.isnan(low) or math.isnan(high) else f"[{low:.4f}, {high:.4f}]"


def _with_interval(report: TaskReport, name: str) -> str:
    if name not in report.intervals:
        return _number(report.values[name])
    return f"{_number(report.values[name])} {_interval(report.intervals[name])}"


@contextmanager
def _numpy_global_seed(seed: int) -> Iterator[None]:
    # relplot's bootstrap band is drawn by sklearn's BaggingRegressor from numpy's global
    # generator: seed it so that a report is reproducible, and give the caller its state back.
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def plot_reliability(report: TaskReport, path: Path) -> None:
    """Draw the task's reliability diagram (relplot's smoothed curve and 95% band) to a PNG."""
    run = report.run
    low, high = report.intervals["smece"]
    smece_text = f"smECE {report.values['smece']:.3f}"
    if not (math.isnan(low) or math.isnan(high)):
        smece_text += f" [{low:.3f}, {high:.3f}]"
    # relplot styles through matplotlib's global rcParams; rc_context gives them back.
    with mpl.rc_context(), _numpy_global_seed(0), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Passing a dict to DataFrame.from_records")
        relplot.diagrams.set_default_style()
        mpl.rcParams["font.size"] = 11
        # A Figure on an Agg canvas, not pyplot: no GUI backend, no figure left open.
        fig = Figure(figsize=(6, 6.4))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        diagram = relplot.prepare_rel_diagram(run.confidence, run.correct, report_CE=False)
        relplot.plot_rel_diagram(diagram, fig=fig, ax=ax, use_default_style=False)
        ax.set_xlabel("semantic confidence (share of samples in the plurality class)")
        ax.set_ylabel("accuracy of the plurality answer")
        ax.set_title(
            f"{run.task} | {run.model}\n{run.n_questions} questions, M = {run.m_label}, {smece_text}",
            fontsize=11,
        )
        fig.savefig(path, dpi=150, bbox_inches="tight")


_BIAS_SENTENCE = (
    "The plurality confidence c_k*/M picks the class and measures its share on the same M "
    "samples, so it is the largest of several noisy shares and overstates the model's "
    "top-class probability, the more so the smaller M is; the split estimator picks k* on the "
    "first half of the samples and measures its share on the second half, which is unbiased "
    "for that class, so the gap between the two mean confidences shows the small-M bias."
)


def _task_markdown(report: TaskReport) -> str:
    run = report.run
    half = (run.M // 2) if run.M is not None else None
    halves = (
        f"k* on samples 1-{half}, share on samples {half + 1}-{run.M}"
        if half is not None
        else "k* on the first floor(M/2) samples, share on the rest"
    )
    if report.bootstrap_iters:
        ci_note = (
            f"95% intervals: percentile bootstrap over questions, {report.bootstrap_iters} "
            f"resamples, seed {BOOTSTRAP_SEED}."
        )
    else:
        ci_note = "Bootstrap intervals are off (0 resamples)."
    if report.disagreements:
        check = (
            f"**Differs from lm-eval's results JSON: {', '.join(report.disagreements)}** "
            f"(by more than {AGREEMENT_TOLERANCE:g}; see the log)."
        )
    else:
        compared = [name for name in METRICS if name in run.reported]
        check = (
            f"Recomputed point values agree with lm-eval's results JSON to {AGREEMENT_TOLERANCE:g} "
            f"({len(compared)} of {len(METRICS)} metrics reported there)."
        )
    lines = [
        f"# {run.task}: {run.model}",
        "",
        "| | |",
        "|---|---|",
        f"| questions (n) | {run.n_questions} |",
        f"| samples per question (M) | {run.m_label} |",
        f"| collapsing function (B) | {run.collapse} |",
        f"| lm-eval filter | {run.filter} |",
        f"| results | {run.results_file.name} |",
        f"| samples | {run.samples_file.name} |",
        "",
        "## Metrics",
        "",
        "| metric | value | 95% CI | better |",
        "|---|---:|---|---|",
    ]
    for name, better in METRICS.items():
        bounds = _interval(report.intervals[name]) if name in report.intervals else ""
        lines.append(f"| {name} | {_number(report.values[name])} | {bounds} | {better} |")
    lines += [
        "",
        ci_note + " " + check,
        "",
        "## Estimator bias: split-half confidence",
        "",
        "| estimator | mean confidence | acc | ECE (10 bins) |",
        "|---|---:|---:|---:|",
        f"| plurality: c_k*/M on all M samples | {_number(report.values['conf'])} | "
        f"{_number(report.values['acc'])} | {_number(report.values['ece'])} |",
        f"| split: {halves} | {_number(calibration.mean_confidence(report.split.confidence, report.split.correct))} | "
        f"{_number(calibration.accuracy(report.split.confidence, report.split.correct))} | "
        f"{_number(report.split_ece)} |",
        "",
        _BIAS_SENTENCE,
        "",
        f"The split k* differs from the full-sample plurality class on {report.split.switched} of "
        f"{run.n_questions} questions; each is scored by whether the gold answer lands in it.",
        "",
        f"![reliability diagram]({report.stem}_reliability.png)",
        "",
    ]
    return "\n".join(lines)


def _summary_markdown(reports: Sequence[TaskReport]) -> str:
    lines = [
        "# Semantic calibration report",
        "",
        "Calibration metrics with their 95% bootstrap interval over questions; split: the "
        "split-half estimator (see each task's page).",
        "",
        "| task | model | n | M | B | acc | conf | ece | smece | brier | auroc | split conf | split ECE | details |",
        "|---|---|---:|---|---|---:|---:|---|---|---|---|---:|---:|---|",
    ]
    for report in reports:
        run = report.run
        lines.append(
            f"| {run.task} | {run.model} | {run.n_questions} | {run.m_label} | {run.collapse} | "
            f"{_number(report.values['acc'])} | {_number(report.values['conf'])} | "
            + " | ".join(_with_interval(report, name) for name in CALIBRATION_METRICS)
            + f" | {_number(calibration.mean_confidence(report.split.confidence, report.split.correct))}"
            f" | {_number(report.split_ece)} | [{report.stem}.md]({report.stem}.md) |"
        )
    return "\n".join(lines) + "\n"


def write_reports(run_dir: str | Path, out_dir: str | Path | None = None, bootstrap_iters: int = 1000) -> list[Path]:
    """Write the report of every semcal task in an lm-eval output folder.

    Parameters
    ----------
    run_dir : str or Path
        What `load_run` accepts: lm-eval's `--output_path` folder, a model folder in it, or
        a results JSON.
    out_dir : str or Path, optional
        Where to write; default `RUN_DIR/semcal_report` (beside the JSON when given one).
    bootstrap_iters : int, default 1000
        Resamples for the 95% intervals (seed 0); 0 leaves them out.

    Returns
    -------
    list of Path
        Per task `<task>_reliability.png` and `<task>.md`, then `summary.md`.
    """
    run_dir = Path(run_dir)
    runs = load_run(run_dir)
    if out_dir is None:
        out_dir = (run_dir.parent if run_dir.is_file() else run_dir) / REPORT_DIR_NAME
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    written: list[Path] = []
    reports: list[TaskReport] = []
    for run, stem in tqdm(list(zip(runs, _stems(runs))), desc="semcal report", unit="task"):
        report = summarize(run, stem, bootstrap_iters=bootstrap_iters)
        png = out_dir / f"{stem}_reliability.png"
        plot_reliability(report, png)
        markdown = out_dir / f"{stem}.md"
        markdown.write_text(_task_markdown(report), encoding="utf-8")
        written += [png, markdown]
        reports.append(report)
    summary = out_dir / "summary.md"
    summary.write_text(_summary_markdown(reports), encoding="utf-8")
    written.append(summary)
    return written
