"""`semcal report`: reliability diagrams and Markdown tables from a finished lm-eval run.

The per-question records of a saved run (`runs.saved.load_run`) are all the report
needs: every number is recomputed from them with `core.metrics.corpus_metrics` (the
path lm-eval's aggregations take too), checked against the point values lm-eval put in
the results JSON, and given a 95% bootstrap interval over questions.

For each semcal task the report writes `<task>_reliability.png` (relplot's smoothed
reliability curve with its bootstrap band, or with `diagram="corp"` the CORP diagram: the
isotonic recalibration curve, a step function, against the diagonal),
`<task>_risk_coverage.png` (the error rate among the questions answered, most confident
first) and `<task>.md` (docs/metrics.md's metrics, with `not_attempted` after
`no_answer` when a three-way judge graded the classes, the calibration test of smECE
with its verdict, and the split-half estimator that shows how much the plurality
confidence is inflated at small M), plus one `summary.md` over all tasks. When the folder holds runs of several models, each
file name starts with the model's folder name (`<model>__<task>...`).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import relplot
from tqdm import tqdm

from lm_eval_semcal.core import calibration
from lm_eval_semcal.core.estimators import SplitEstimate, split_half_estimates
from lm_eval_semcal.core.metrics import (
    CALIBRATION_METRICS,
    DEFAULT_INTERVAL_METHOD,
    INTERVAL_METHOD,
    INTERVAL_NOTES,
    METRICS,
    calibration_verdict,
    corpus_metrics,
)
from lm_eval_semcal.core.settings import BOOTSTRAP_SEED, CI_PERCENT, DEFAULT_BOOTSTRAP_ITERS, TEST_ALPHA, TEST_POWER
from lm_eval_semcal.runs.saved import TaskRun, load_run
from lm_eval_semcal.runs.show import FONT_SIZE, bounds, figure, file_name, number, plotting, with_interval

__all__ = ["DIAGRAMS", "TaskReport", "disagreements", "report_runs", "summarize", "write_reports"]

# The tables' precision, and the diagram title's (three decimals, as on the comparison page).
DIGITS = 4
TITLE_DIGITS = 3

log = logging.getLogger(__name__)

REPORT_DIR_NAME = "semcal_report"
AGREEMENT_TOLERANCE = 1e-9
# The reliability diagrams `semcal report --diagram` draws: relplot's smoothed curve
# (the default) or the CORP diagram, the isotonic recalibration curve.
DIAGRAMS = ("smooth", "corp")

# --------------------------------------------------------------------------------------
# Numbers


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


@dataclass(frozen=True, eq=False)
class TaskReport:
    """What the report shows for one task: recomputed metrics, intervals, split estimator."""

    run: TaskRun
    stem: str
    values: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    test: dict[str, float]
    bootstrap_iters: int
    split: SplitEstimate
    split_ece: float
    disagreements: list[str]


def summarize(run: TaskRun, stem: str, bootstrap_iters: int = DEFAULT_BOOTSTRAP_ITERS) -> TaskReport:
    """The numbers of one task's report; logs a warning for each metric lm-eval reported differently.

    A run whose samples file lost rows is not compared: lm-eval's numbers are over every
    question, these over the ones left.
    """
    metrics = corpus_metrics(run.records, bootstrap_iters=bootstrap_iters, label=run.task)
    split = split_half_estimates(run.records)
    off = [] if run.lost_rows else disagreements(metrics.values, run.reported)
    for name in off:
        log.warning(
            "%s: %s recomputed from %s is %r but lm-eval reported %r in %s",
            run.task, name, run.samples_file.name, metrics.values[name], run.reported[name], run.results_file.name,
        )
    return TaskReport(
        run=run,
        stem=stem,
        values=metrics.values,
        intervals=metrics.intervals,
        test=metrics.test,
        bootstrap_iters=bootstrap_iters,
        split=split,
        split_ece=calibration.binned_ece(split.confidence, split.correct),
        disagreements=off,
    )


# --------------------------------------------------------------------------------------
# Writing


def _stems(runs: Sequence[TaskRun]) -> list[str]:
    """A distinct file name stem per run: the task, led by the model's name when there are
    several models, followed by the filter when a task has several semcal filters."""
    several_models = len({run.name for run in runs}) > 1
    filters = Counter((run.name, run.task) for run in runs)
    stems = []
    for run in runs:
        stem = run.task if filters[(run.name, run.task)] == 1 else f"{run.task}_{run.filter}"
        if several_models:
            stem = f"{run.name}__{stem}"
        stems.append(file_name(stem))
    return stems


def _number(value: float) -> str:
    return number(value, DIGITS)


def _with_interval(report: TaskReport, name: str) -> str:
    if name not in report.intervals:
        return _number(report.values[name])
    return f"{_number(report.values[name])} {bounds(*report.intervals[name], DIGITS)}"


def plot_reliability(report: TaskReport, path: Path, diagram: str = "smooth") -> None:
    """Draw the task's reliability diagram to a PNG.

    `diagram` "smooth" draws relplot's smoothed curve and 95% band; "corp" the CORP
    diagram: the isotonic recalibration of correct on confidence (`brier_decomposition`),
    a step function through its value at each distinct confidence, against the diagonal,
    titled with the Brier score's miscalibration part.
    """
    if diagram not in DIAGRAMS:
        raise ValueError(f"diagram must be one of {', '.join(DIAGRAMS)}, got {diagram!r}")
    run = report.run
    smece_text = f"smECE {with_interval(report.values['smece'], *report.intervals['smece'], TITLE_DIGITS)}"
    with plotting(relplot_style=diagram == "smooth"):
        fig = figure(6, 6.4)
        ax = fig.add_subplot()
        if diagram == "smooth":
            smooth = relplot.prepare_rel_diagram(run.confidence, run.correct, report_CE=False)
            relplot.plot_rel_diagram(smooth, fig=fig, ax=ax, use_default_style=False)
        else:
            corp = calibration.brier_decomposition(run.confidence, run.correct)
            ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="calibrated")
            ax.step(corp.confidence_levels, corp.recalibrated, where="post", color="C0", linewidth=2,
                    label="isotonic recalibration (CORP)")  # fmt: skip
            ax.plot(corp.confidence_levels, corp.recalibrated, "o", color="C0", markersize=3)
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            ax.set_aspect("equal")
            ax.legend(loc="upper left")
            smece_text += f", MCB {number(report.values['brier_miscalibration'], TITLE_DIGITS)}"
        ax.set_xlabel("semantic confidence (share of samples in the plurality class)")
        ax.set_ylabel("accuracy of the plurality answer")
        ax.set_title(
            f"{run.task} | {run.name}\n{run.n_questions} questions, M = {run.m_label}, {smece_text}",
            fontsize=FONT_SIZE,
        )
        fig.savefig(path, dpi=150, bbox_inches="tight")


def plot_risk_coverage(report: TaskReport, path: Path) -> None:
    """Draw the task's risk-coverage curve (`risk_coverage_curve`) to a PNG, titled with its AURC."""
    run = report.run
    coverage, risk = calibration.risk_coverage_curve(run.confidence, run.correct)
    aurc_text = f"AURC {with_interval(report.values['aurc'], *report.intervals['aurc'], TITLE_DIGITS)}"
    with plotting():
        fig = figure(6, 4.8)
        ax = fig.add_subplot()
        ax.plot(coverage, risk, marker="o", markersize=3, color="C0", label="answering the most confident first")
        ax.axhline(1 - report.values["acc"], color="grey", linestyle="--", linewidth=1, label="answering all")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, max(1e-3, float(risk.max())) * 1.05)
        ax.set_xlabel("coverage (share of questions answered)")
        ax.set_ylabel("risk (error rate among those answered)")
        ax.legend(loc="upper left")
        ax.set_title(f"{run.task} | {run.name}\n{run.n_questions} questions, {aurc_text}", fontsize=FONT_SIZE)
        fig.savefig(path, dpi=150, bbox_inches="tight")


_BIAS_SENTENCE = (
    "The plurality confidence c_k*/M picks the class and measures its share on the same M "
    "samples, so it is the largest of several noisy shares and overstates the model's "
    "top-class probability, the more so the smaller M is; the split estimator picks k* on the "
    "first half of the samples and measures its share on the second half, which is unbiased "
    "for that class, so the gap between the two mean confidences shows the small-M bias."
)


def _partial_sentence(run: TaskRun) -> str:
    return f"**Partial run: {run.lost_rows}; every number here is over the {run.n_questions} left.**"


def _halves(run: TaskRun) -> str:
    """Which samples the split estimator picks k* on, and which it measures the share on."""
    if run.M is None:
        return "k* on the first floor(M/2) samples, share on the rest"
    half = run.M // 2
    return f"k* on samples 1-{half}, share on samples {half + 1}-{run.M}"


def _interval_note(report: TaskReport) -> str:
    if report.bootstrap_iters:
        methods = ", ".join(f"{method} interval for {name}" for name, method in INTERVAL_METHOD.items())
        return (
            f"{CI_PERCENT} intervals: bootstrap over questions, {report.bootstrap_iters} resamples, seed "
            f"{BOOTSTRAP_SEED} ({methods}, {DEFAULT_INTERVAL_METHOD} for the rest)."
        )
    return "Bootstrap intervals are off (0 resamples)."


def _calibration_test_lines(report: TaskReport) -> list[str]:
    """The page's section on the calibration test of smECE: its numbers and verdict."""
    lines = ["## Is it calibrated? The calibration test of smECE", ""]
    if not report.bootstrap_iters:
        return lines + ["Not tested: the calibration test draws as many calibrated runs as the bootstrap (0).", ""]
    test = report.test
    detectable = test["smece_detectable_overconfidence"]
    lines += [
        "| | |",
        "|---|---|",
        f"| smECE | {_with_interval(report, 'smece')} |",
        f"| noise floor: smECE of a calibrated model, median | {_number(test['smece_noise_floor'])} |",
        f"| noise floor: 95th percentile | {_number(test['smece_noise_p95'])} |",
        f"| p-value | {_number(test['smece_p_value'])} |",
        f"| verdict | {calibration_verdict(test['smece_p_value'])} |",
        f"| least overconfidence detected with {TEST_POWER:.0%} power at {TEST_ALPHA:.0%} | "
        f"{_number(detectable) if not math.isnan(detectable) else 'none'} |",
        "",
        f"The noise floor and the p-value come from {report.bootstrap_iters} runs of these questions whose "
        f"verdicts are drawn as Bernoulli(confidence) (consistency resampling, seed {BOOTSTRAP_SEED}): what a "
        "calibrated model with these confidences shows. The least detectable overconfidence is the shift d "
        f"(the model right with probability confidence - d) that the test finds {TEST_POWER:.0%} of the time; "
        "a run within noise rules out a larger one, not a smaller.",
        "",
    ]
    return lines


def _check_sentence(report: TaskReport) -> str:
    """Whether the recomputed numbers agree with those lm-eval wrote, or why they were not compared."""
    run = report.run
    if run.lost_rows:
        return f"Not checked against lm-eval's results JSON: its numbers are over all {run.results_questions} questions."
    if report.disagreements:
        return (
            f"**Differs from lm-eval's results JSON: {', '.join(report.disagreements)}** "
            f"(by more than {AGREEMENT_TOLERANCE:g}; see the log)."
        )
    present = [name for name in METRICS if name in report.values]
    compared = [name for name in present if name in run.reported]
    return (
        f"Recomputed point values agree with lm-eval's results JSON to {AGREEMENT_TOLERANCE:g} "
        f"({len(compared)} of {len(present)} metrics reported there)."
    )


def _task_markdown(report: TaskReport) -> str:
    run = report.run
    lines = [f"# {run.task}: {run.name}", ""]
    if run.lost_rows:
        lines += [_partial_sentence(run), ""]
    lines += [
        "| | |",
        "|---|---|",
        f"| questions (n) | {run.n_questions} |",
        f"| samples per question (M) | {run.m_label} |",
        f"| grouping (B) | {run.grouping} |",
        f"| lm-eval filter | {run.filter} |",
        f"| results | {run.results_file.name} |",
        f"| samples | {run.samples_file.name} |",
        "",
        "## Metrics",
        "",
        f"| metric | value | {CI_PERCENT} CI | better |",
        "|---|---:|---|---|",
    ]
    for name, better in METRICS.items():
        if name not in report.values:  # not_attempted, when no three-way judge graded the classes
            continue
        interval = bounds(*report.intervals[name], DIGITS) if name in report.intervals else ""
        lines.append(f"| {name} | {_number(report.values[name])} | {interval} | {better} |")
    lines += ["", _interval_note(report) + " " + _check_sentence(report), "", *(f"{note}\n" for note in INTERVAL_NOTES[:1])]
    lines += [
        "brier = brier_miscalibration - brier_discrimination + brier_uncertainty (CORP: the isotonic "
        "recalibration of correct on confidence). aurc: the area under the risk-coverage curve below; "
        "acc_at_50_coverage and acc_at_80_coverage: accuracy on the most confident 50% and 80% of the questions.",
        "",
    ]
    lines += _calibration_test_lines(report)
    lines += [
        "## Estimator bias: split-half confidence",
        "",
        "| estimator | mean confidence | acc | ECE (10 bins) |",
        "|---|---:|---:|---:|",
        f"| plurality: c_k*/M on all M samples | {_number(report.values['conf'])} | "
        f"{_number(report.values['acc'])} | {_number(report.values['ece'])} |",
        f"| split: {_halves(run)} | {_number(calibration.mean_confidence(report.split.confidence, report.split.correct))} | "
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
        "## Answering only when sure: risk-coverage",
        "",
        f"![risk-coverage curve]({report.stem}_risk_coverage.png)",
        "",
    ]
    return "\n".join(lines)


def _summary_markdown(reports: Sequence[TaskReport]) -> str:
    lines = [
        "# Semantic calibration report",
        "",
        f"Calibration metrics with their {CI_PERCENT} bootstrap interval over questions; split: the "
        "split-half estimator (see each task's page).",
        "",
        INTERVAL_NOTES[0],
        "",
    ]
    for report in reports:
        if report.run.lost_rows:
            lines += [_partial_sentence(report.run), ""]
    lines += [
        "| task | model | n | M | B | acc | conf | " + " | ".join(CALIBRATION_METRICS)
        + " | smECE noise floor | calibration test | split conf | split ECE | details |",
        "|---|---|---:|---|---|---:|---:|" + "---|" * len(CALIBRATION_METRICS) + "---:|---|---:|---:|---|",
    ]
    for report in reports:
        run = report.run
        lines.append(
            f"| {run.task} | {run.name} | {run.n_questions} | {run.m_label} | {run.grouping} | "
            f"{_number(report.values['acc'])} | {_number(report.values['conf'])} | "
            + " | ".join(_with_interval(report, name) for name in CALIBRATION_METRICS)
            + f" | {_number(report.test['smece_noise_floor'])} | {calibration_verdict(report.test['smece_p_value'])}"
            + f" | {_number(calibration.mean_confidence(report.split.confidence, report.split.correct))}"
            f" | {_number(report.split_ece)} | [{report.stem}.md]({report.stem}.md) |"
        )
    return "\n".join(lines) + "\n"


def write_reports(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    bootstrap_iters: int = DEFAULT_BOOTSTRAP_ITERS,
    allow_partial: bool = False,
    diagram: str = "smooth",
) -> list[Path]:
    """Write the report of every semcal task in an lm-eval output folder.

    Parameters
    ----------
    run_dir : str or Path
        What `load_run` accepts: lm-eval's `--output_path` folder, a model folder in it, or
        a results JSON.
    out_dir : str or Path, optional
        Where to write; default `RUN_DIR/semcal_report` (beside the JSON when given one).
    bootstrap_iters : int, default 1000
        Resamples for the 95% intervals (seed 0), and calibrated runs for the calibration
        test; 0 leaves both out.
    allow_partial : bool, default False
        Report on a samples file that lost rows (fewer questions than its results JSON
        counted), saying so at the top of the task's page and of the summary, instead of
        raising RunDirError.
    diagram : {"smooth", "corp"}, default "smooth"
        The reliability diagram: relplot's smoothed curve, or the CORP isotonic curve.

    Returns
    -------
    list of Path
        Per task `<task>_reliability.png`, `<task>_risk_coverage.png` and `<task>.md`,
        then `summary.md`.
    """
    if diagram not in DIAGRAMS:
        raise ValueError(f"diagram must be one of {', '.join(DIAGRAMS)}, got {diagram!r}")
    run_dir = Path(run_dir)
    runs = load_run(run_dir, allow_partial=allow_partial)
    if out_dir is None:
        out_dir = (run_dir.parent if run_dir.is_file() else run_dir) / REPORT_DIR_NAME
    _, written = report_runs(runs, out_dir, bootstrap_iters, diagram)
    return written


def report_runs(
    runs: Sequence[TaskRun],
    out_dir: str | Path,
    bootstrap_iters: int = DEFAULT_BOOTSTRAP_ITERS,
    diagram: str = "smooth",
) -> tuple[list[TaskReport], list[Path]]:
    """Summarise each run (`summarize`) and write its diagram and table, then `summary.md`.

    Returns the reports, for a caller that shows their numbers too, and the files written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    reports: list[TaskReport] = []
    for run, stem in tqdm(list(zip(runs, _stems(runs))), desc="semcal report", unit="task"):
        report = summarize(run, stem, bootstrap_iters=bootstrap_iters)
        png = out_dir / f"{stem}_reliability.png"
        plot_reliability(report, png, diagram)
        risk_coverage = out_dir / f"{stem}_risk_coverage.png"
        plot_risk_coverage(report, risk_coverage)
        markdown = out_dir / f"{stem}.md"
        markdown.write_text(_task_markdown(report), encoding="utf-8")
        written += [png, risk_coverage, markdown]
        reports.append(report)
    summary = out_dir / "summary.md"
    summary.write_text(_summary_markdown(reports), encoding="utf-8")
    written.append(summary)
    return reports, written
