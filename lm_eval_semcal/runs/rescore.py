"""Regroup a saved run's samples under another grouping B, without generating.

Sampling M answers per question is the expensive part of a run. lm-eval's samples files
(`--log_samples`) keep every raw response and document, so classes, records and every
metric can be recomputed under any B. `rescore_run` writes the result in lm-eval's own
layout, in `<model folder>/rescored-<B>/`, so `semcal report` reads it like a run, with
the options it was made with in `rescore.json` beside it: a rescore under other options
does not replace it unless told to.
Scoring goes through the same `ScoringStep` as the lm-eval filter, metrics through the
same `corpus_metrics` as lm-eval's aggregations: the same B reproduces the run's numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from lm_eval_semcal.core.metrics import (
    METRICS,
    CorpusMetrics,
    corpus_metrics,
    question_items,
)
from lm_eval_semcal.core.records import QuestionRecord
from lm_eval_semcal.core.scoring import Question
from lm_eval_semcal.core.settings import DEFAULT_BOOTSTRAP_ITERS
from lm_eval_semcal.core.spellings import renamed_settings
from lm_eval_semcal.grouping.scoring_step import (
    FILTER_NAME,
    ScoringStep,
    in_todays_spelling,
    is_scoring_step,
    step_settings,
)
from lm_eval_semcal.runs.saved import RunDirError, TaskRun, load_run, read_samples

__all__ = ["RegroupingError", "SavedTask", "read_and_check", "regroup", "rescore_run"]

OPTIONS_FILE = "rescore.json"


@dataclass(frozen=True)
class SavedTask:
    """One task's logged samples (doc_id order), its scoring step and its run's resample count."""

    run: TaskRun
    step: ScoringStep
    samples: list[dict]
    bootstrap_iters: int

    def questions(self) -> list[Question]:
        return [
            Question(sample["doc"]["semcal_question"], sample["resps"][0], sample["doc"]["semcal_golds"])
            for sample in self.samples
        ]


def _scoring_step(config: dict, task: str, filter_name: str) -> ScoringStep:
    """The `semcal_grouping` step of `task`'s pipeline `filter_name` in a results JSON's config."""
    for pipeline in config.get("filter_list") or []:
        if pipeline.get("name") != filter_name:
            continue
        steps = pipeline.get("filter") or []
        if len(steps) != 1 or not is_scoring_step(steps[0]):
            raise RunDirError(
                f"{task}: filter pipeline {filter_name!r} runs {[s.get('function') for s in steps]}; "
                f"rescoring replays pipelines made of {FILTER_NAME} alone"
            )
        try:
            return ScoringStep(**step_settings(in_todays_spelling(steps[0], warn=False)))
        except TypeError as err:
            raise RunDirError(f"{task}: the run's {FILTER_NAME} settings are not this version's: {err}") from None
    raise RunDirError(f"{task}: the results JSON has no filter pipeline named {filter_name!r}")


def read_saved(run: TaskRun) -> SavedTask:
    """What a regrouping needs from `run`'s files, read once."""
    config = json.loads(run.results_file.read_text(encoding="utf-8")).get("configs", {}).get(run.task, {})
    # A SemcalTask records the resample count its aggregations used.
    iters = (config.get("metadata") or {}).get("bootstrap_iters", DEFAULT_BOOTSTRAP_ITERS)
    return SavedTask(run, _scoring_step(config, run.task, run.filter), read_samples(run), int(iters))


# One task regrouped: its saved samples, the step that scored them again, and the new records.
Regrouped = tuple[SavedTask, ScoringStep, list[QuestionRecord]]


class RegroupingError(ValueError):
    """Options that cannot regroup a saved run (an unknown B, an option B does not take); one line with the fix."""


def regrouping_step(
    saved: SavedTask, grouping: str, grouping_args: dict | None = None, gold_match: str | None = None
) -> ScoringStep:
    """The saved task's step with B (and, when given, the gold rule) replaced."""
    step = replace(saved.step, grouping=grouping, grouping_args=grouping_args)
    return step if gold_match is None else replace(step, gold_match=gold_match)


def regroup(saved: SavedTask, step: ScoringStep) -> list[QuestionRecord]:
    """The saved questions, their raw responses scored again by `step`."""
    return step.score(saved.questions())


def read_and_check(
    run_dir: str | Path, groupings: dict[str, dict | None], gold_match: str | None, allow_partial: bool = False
) -> list[SavedTask]:
    """Every semcal task of `run_dir`, each B's settings checked on each before any model is asked.

    `allow_partial` reads a samples file that lost rows, as `load_run` does. Raises
    RunDirError for a run that cannot be read, RegroupingError for options that cannot
    regroup it.
    """
    saved = [read_saved(run) for run in load_run(run_dir, allow_partial=allow_partial, rescores=False)]
    for task in saved:
        for grouping, grouping_args in groupings.items():
            try:
                regrouping_step(task, grouping, grouping_args, gold_match).check()
            except (ValueError, TypeError) as err:  # what `check` says of the options given
                raise RegroupingError(f"{task.run.task}: {err}") from None
    return saved


def _results_rows(metrics: CorpusMetrics) -> dict[str, float]:
    """The metric rows lm-eval writes for a semcal task, by metric name (filter suffix left off)."""
    rows = {}
    for name, value in metrics.values.items():
        rows[name] = value
        if name in metrics.stderrs:
            rows[f"{name}_stderr"] = metrics.stderrs[name]
        if name in metrics.intervals:
            rows[f"{name}_ci_low"], rows[f"{name}_ci_high"] = metrics.intervals[name]
    rows.update(metrics.test)
    return rows


def _options_flags(options: dict | None) -> str:
    """Rescore options as the command line that gives them."""
    if options is None:
        return "options it did not record"
    flags = [f"--grouping {options.get('grouping')}"]
    if options.get("grouping_args") is not None:
        flags.append(f"--grouping-args '{json.dumps(options['grouping_args'])}'")
    if options.get("gold_match") is not None:
        flags.append(f"--gold-match {options['gold_match']}")
    if options.get("bootstrap_iters") is not None:
        flags.append(f"--bootstrap-iters {options['bootstrap_iters']}")
    return " ".join(flags)


def _check_replaceable(out_dir: Path, options: dict, overwrite: bool) -> None:
    """Raise RunDirError when `out_dir` holds a rescore made with other options and `overwrite` is off.

    A folder with rescored results but no readable options file (written before options
    were recorded, or by a rescore cut short) counts as other: its options are unknown.
    """
    if overwrite or not any(out_dir.glob("results_*.json")):
        return
    try:
        existing = json.loads((out_dir / OPTIONS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        existing = None
    # A rescore made by release 0.1 recorded B as `collapse`.
    existing = renamed_settings(existing, warn=False) if isinstance(existing, dict) else None
    if existing != options:
        raise RunDirError(
            f"{out_dir} holds a rescore made with {_options_flags(existing)}, not {_options_flags(options)}: "
            "add --overwrite to replace it, or move that folder away first"
        )


def _replace_metric_rows(task_results: dict, filter_name: str, metrics: CorpusMetrics) -> None:
    """Put the regrouped metrics in a task's rows of the results JSON, in place."""
    for metric in METRICS.keys() - metrics.values.keys():
        # A metric the new B does not give (not_attempted without a judge) is no longer reported.
        task_results.pop(f"{metric},{filter_name}", None)
        task_results.pop(f"{metric}_stderr,{filter_name}", None)
    for metric, value in _results_rows(metrics).items():
        key = f"{metric},{filter_name}"
        if metric.endswith("_stderr"):
            # lm-eval writes a standard error only where its --bootstrap_iters allowed one,
            # alike for every mean: a metric new to the run follows acc's row.
            run_stderr = task_results.get(key, task_results.get(f"acc_stderr,{filter_name}"))
            if not isinstance(run_stderr, (int, float)):
                if run_stderr is not None:
                    task_results[key] = run_stderr
                continue
        task_results[key] = value


def _rescored_results(results_file: Path, regrouped: list[Regrouped], options: dict) -> dict:
    """The results JSON with each regrouped task's metrics and filter settings replaced, and the rescore named."""
    rescored = json.loads(results_file.read_text(encoding="utf-8"))
    rescored["semcal_rescore"] = {
        "source": str(results_file), "grouping": options["grouping"], "grouping_args": options["grouping_args"],
        "gold_match": options["gold_match"],
    }  # fmt: skip
    for saved, step, records in regrouped:
        task, name = saved.run.task, saved.run.filter
        iters = saved.bootstrap_iters if options["bootstrap_iters"] is None else options["bootstrap_iters"]
        _replace_metric_rows(rescored["results"][task], name, corpus_metrics(records, iters, label=task))
        for pipeline in rescored["configs"][task]["filter_list"]:
            if pipeline.get("name") == name:
                pipeline["filter"] = [{"function": FILTER_NAME, **step.settings()}]
    return rescored


def _sample_rows(saved: SavedTask, records: list[QuestionRecord]) -> list[str]:
    """The task's logged samples as JSON lines, each with its regrouped record and items."""
    rows = []
    for sample, record in zip(saved.samples, records, strict=True):
        items = question_items(record)
        # The new B's items replace the old ones, as lm-eval logs them: listed under "metrics", then each.
        logged = {key: value for key, value in sample.items() if key not in sample.get("metrics", ())}
        row = logged | {"filtered_resps": [str(record)], "metrics": list(items)} | items
        rows.append(json.dumps(row, ensure_ascii=False))
    return rows


def _write_rescore(by_results: dict[Path, list[Regrouped]], folder: str, options: dict) -> list[Path]:
    """Write the regrouped tasks of each results file in `folder` beside it: results, samples, then options."""
    written: list[Path] = []
    # A task's filters share one samples file: collect every filter's rows first.
    sample_rows: dict[Path, list[str]] = {}
    for results_file, regrouped in by_results.items():
        out_dir = results_file.parent / folder
        out_dir.mkdir(exist_ok=True)
        # Until this rescore is whole, the folder vouches for no options.
        (out_dir / OPTIONS_FILE).unlink(missing_ok=True)
        for saved, _, records in regrouped:
            sample_rows.setdefault(out_dir / saved.run.samples_file.name, []).extend(_sample_rows(saved, records))
        results_path = out_dir / results_file.name
        rescored = _rescored_results(results_file, regrouped, options)
        results_path.write_text(json.dumps(rescored, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
        written.append(results_path)
    for samples_path, rows in sample_rows.items():
        samples_path.write_text("".join(row + "\n" for row in rows), encoding="utf-8")
        written.append(samples_path)
    # Last: a rescore cut short leaves results whose options are unknown, and a rerun must overwrite them.
    for out_dir in sorted({path.parent for path in written}):
        options_path = out_dir / OPTIONS_FILE
        options_path.write_text(json.dumps(options, indent=2) + "\n", encoding="utf-8")
        written.append(options_path)
    return written


def rescore_run(
    run_dir: str | Path,
    grouping: str,
    grouping_args: dict | None = None,
    gold_match: str | None = None,
    bootstrap_iters: int | None = None,
    overwrite: bool = False,
    allow_partial: bool = False,
) -> list[Path]:
    """Write every semcal task of `run_dir` regrouped under `grouping`; return the files.

    Each model folder gets `rescored-<grouping>/` with a results JSON (the original's,
    with the semcal tasks' metrics and filter settings replaced, and a `semcal_rescore`
    entry naming the source and B), one samples file per task whose records are the
    new groupings, and `rescore.json`, the options below. The same B reproduces the
    original numbers exactly.

    Parameters
    ----------
    run_dir : str or Path
        What `load_run` accepts; its rescores are not read again.
    grouping : str
        The grouping B to regroup under.
    grouping_args : dict, optional
        B's options.
    gold_match : str, optional
        When given, replaces each task's rule for judging the gold answer.
    bootstrap_iters : int, optional
        The resample count of the intervals (default: the run's own).
    overwrite : bool, default False
        Replace a folder that holds a rescore made with other options (RunDirError
        before anything is regrouped otherwise); one made with the same options is
        replaced either way.
    allow_partial : bool, default False
        Rescore a samples file that lost rows, as `load_run` reads it.

    Returns
    -------
    list of Path
        The results JSONs, then the samples files, then each folder's `rescore.json`.
    """
    options = {"grouping": grouping, "grouping_args": grouping_args, "gold_match": gold_match, "bootstrap_iters": bootstrap_iters}
    # Compared as a recorded rescore is read back: through JSON (a tuple comes back a list).
    options = json.loads(json.dumps(options))
    folder = f"rescored-{grouping}"
    saved_tasks = read_and_check(run_dir, {grouping: grouping_args}, gold_match, allow_partial=allow_partial)
    for results_file in {saved.run.results_file for saved in saved_tasks}:
        _check_replaceable(results_file.parent / folder, options, overwrite)
    by_results: dict[Path, list[Regrouped]] = {}
    for saved in saved_tasks:
        step = regrouping_step(saved, grouping, grouping_args, gold_match)
        by_results.setdefault(saved.run.results_file, []).append((saved, step, regroup(saved, step)))
    return _write_rescore(by_results, folder, options)
