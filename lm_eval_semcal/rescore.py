"""Regroup a saved run's samples under another collapsing function B, without generating.

Sampling M answers per question is the expensive part of a run. lm-eval's samples files
(`--log_samples`) keep every raw response and document, so classes, records and every
metric can be recomputed under any B. `rescore_run` writes the result in lm-eval's own
layout, in `<model folder>/rescored-<B>/`, so `semcal report` reads it like a run;
`agreement` compares several B on the same samples.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from lm_eval.api.metrics import mean, mean_stderr
from lm_eval.api.registry import get_aggregation

from lm_eval_semcal import lm_eval_metrics
from lm_eval_semcal.lm_eval_filter import FILTER_NAME, SemanticClassesFilter
from lm_eval_semcal.records import read_record
from lm_eval_semcal.report import RunDirError, TaskRun, load_run


@dataclass
class Regrouped:
    """One task's questions regrouped under one B: the samples with their new records."""

    run: TaskRun
    collapse: str
    settings: dict[str, Any]
    samples: list[dict]
    records: list[dict]

    def metrics(self) -> dict[str, float]:
        """Every metric the task reports, aggregated as lm-eval aggregates it.

        The means also get lm-eval's standard error (`<name>_stderr`); the calibration
        metrics get their bootstrap interval rows, with SEMCAL_BOOTSTRAP_ITERS resamples.
        """
        items: dict[str, list] = {}
        for sample, record in zip(self.samples, self.records, strict=True):
            for name, item in lm_eval_metrics.process_results(sample["doc"], [record]).items():
                items.setdefault(name, []).append(item)
        results = {}
        for name, values in items.items():
            if name in lm_eval_metrics.MEAN_METRICS:
                results[name] = float(mean(values))
                results[f"{name}_stderr"] = float(mean_stderr(values)) if len(values) > 1 else math.nan
            else:
                with lm_eval_metrics.warnings_logged(f"semcal {name} over {len(values)} questions"):
                    results[name] = float(get_aggregation(f"semcal_{name}")(values))
        return results


def filter_settings(results: dict, task: str, filter_name: str) -> dict[str, Any]:
    """The `semcal_classes` settings of `task`'s pipeline `filter_name` in a results JSON."""
    pipelines = results.get("configs", {}).get(task, {}).get("filter_list") or []
    for pipeline in pipelines:
        if pipeline.get("name") != filter_name:
            continue
        steps = pipeline.get("filter") or []
        if [step.get("function") for step in steps] != [FILTER_NAME]:
            raise RunDirError(
                f"{task}: filter pipeline {filter_name!r} runs {[s.get('function') for s in steps]}; "
                f"rescoring replays pipelines made of {FILTER_NAME} alone"
            )
        return {key: value for key, value in steps[0].items() if key != "function"}
    raise RunDirError(f"{task}: the results JSON has no filter pipeline named {filter_name!r}")


@dataclass
class SavedTask:
    """One task's logged samples (doc_id order) and its `semcal_classes` settings."""

    run: TaskRun
    settings: dict[str, Any]
    samples: list[dict]


def read_saved(run: TaskRun) -> SavedTask:
    """What a regrouping needs from `run`'s files, read once."""
    results = json.loads(run.results_file.read_text(encoding="utf-8"))
    samples = []
    with run.samples_file.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip() and (sample := json.loads(line)).get("filter", "none") == run.filter:
                samples.append(sample)
    samples.sort(key=lambda sample: int(sample["doc_id"]))
    return SavedTask(run, filter_settings(results, run.task, run.filter), samples)


def regrouping_settings(
    saved: SavedTask, collapse: str, collapse_args: dict | None = None, gold_match: str | None = None
) -> dict[str, Any]:
    """The saved task's filter settings with B (and, when given, the gold rule) replaced."""
    settings = saved.settings | {"collapse": collapse, "collapse_args": collapse_args}
    return settings if gold_match is None else settings | {"gold_match": gold_match}


def regroup(saved: SavedTask, settings: dict[str, Any]) -> Regrouped:
    """The saved questions, their raw responses grouped again under the filter `settings`."""
    samples = saved.samples
    grouping = SemanticClassesFilter(**settings)
    records = grouping.apply([sample["resps"][0] for sample in samples], [sample["doc"] for sample in samples])
    # Record the rule the filter applied (a B that extracts short answers is judged by class).
    settings = settings | {"gold_match": grouping.gold_match}
    return Regrouped(saved.run, settings["collapse"], settings, samples, records)


def read_and_check(run_dir: str | Path, collapses: dict[str, dict | None], gold_match: str | None) -> list[SavedTask]:
    """Every semcal task of `run_dir`, each B's settings checked on each before any model is asked."""
    saved = [read_saved(run) for run in load_run(run_dir)]
    for task in saved:
        for collapse, collapse_args in collapses.items():
            try:
                SemanticClassesFilter.check_settings(**regrouping_settings(task, collapse, collapse_args, gold_match))
            except ValueError as err:
                raise ValueError(f"{task.run.task}: {err}") from None
    return saved


def rescore_run(
    run_dir: str | Path, collapse: str, collapse_args: dict | None = None, gold_match: str | None = None
) -> list[Path]:
    """Write every semcal task of `run_dir` regrouped under `collapse`; return the files.

    Each model folder gets `rescored-<collapse>/` with a results JSON (the original's,
    with the semcal tasks' metrics and filter settings replaced, and a `semcal_rescore`
    entry naming the source and B) and one samples file per task whose records are the
    new groupings. The same B reproduces the original numbers exactly. `gold_match`,
    when given, replaces each task's rule for judging the gold answer.
    """
    written: list[Path] = []
    sample_rows: dict[Path, list[str]] = {}
    by_results: dict[Path, list[Regrouped]] = {}
    for saved in read_and_check(run_dir, {collapse: collapse_args}, gold_match):
        regrouped = regroup(saved, regrouping_settings(saved, collapse, collapse_args, gold_match))
        by_results.setdefault(saved.run.results_file, []).append(regrouped)
    for results_file, regrouped in by_results.items():
        results = json.loads(results_file.read_text(encoding="utf-8"))
        out_dir = results_file.parent / f"rescored-{collapse}"
        out_dir.mkdir(exist_ok=True)
        rescored = copy.deepcopy(results)
        rescored["semcal_rescore"] = {
            "source": str(results_file), "collapse": collapse, "collapse_args": collapse_args, "gold_match": gold_match,
        }
        for one in regrouped:
            task, name = one.run.task, one.run.filter
            task_results = rescored["results"][task]
            for metric, value in one.metrics().items():
                key = f"{metric},{name}"
                # lm-eval writes a standard error only where its --bootstrap_iters allowed one
                if metric.endswith("_stderr") and not isinstance(task_results.get(key), (int, float)):
                    continue
                task_results[key] = value
            for pipeline in rescored["configs"][task]["filter_list"]:
                if pipeline.get("name") == name:
                    pipeline["filter"] = [{"function": FILTER_NAME, **one.settings}]
            # A task's filters share one samples file: collect every filter's rows first.
            rows = sample_rows.setdefault(out_dir / one.run.samples_file.name, [])
            for sample, record in zip(one.samples, one.records, strict=True):
                items = lm_eval_metrics.process_results(sample["doc"], [record])
                rows.append(json.dumps(sample | items | {"filtered_resps": [str(record)]}, ensure_ascii=False))
        results_path = out_dir / results_file.name
        results_path.write_text(json.dumps(rescored, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
        written.append(results_path)
    for samples_path, rows in sample_rows.items():
        samples_path.write_text("".join(row + "\n" for row in rows), encoding="utf-8")
        written.append(samples_path)
    return written


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
    collapses: list[str]
    metrics: dict[str, dict[str, float]]
    ari: dict[tuple[str, str], float]


def agreement(
    run_dir: str | Path,
    collapses: Sequence[str],
    collapse_args: dict[str, dict] | None = None,
    gold_match: str | None = None,
) -> list[Agreement]:
    """How much the choice of B matters, per semcal task of `run_dir`.

    `collapse_args` maps a B's name to its options (default options for the others).
    """
    options = {collapse: (collapse_args or {}).get(collapse) for collapse in collapses}
    unknown = sorted(set(collapse_args or {}) - set(collapses))
    if unknown:
        raise ValueError(f"agree: options given for {unknown}, which are not among --classes {list(collapses)}")
    found = []
    for saved in read_and_check(run_dir, options, gold_match):
        regrouped = {
            collapse: regroup(saved, regrouping_settings(saved, collapse, options[collapse], gold_match))
            for collapse in collapses
        }
        ari = {}
        for i, first in enumerate(collapses):
            for second in collapses[i + 1 :]:
                per_question = [
                    adjusted_rand_index(read_record(x)["class_ids"], read_record(y)["class_ids"])
                    for x, y in zip(regrouped[first].records, regrouped[second].records, strict=True)
                ]
                ari[(first, second)] = float(np.mean(per_question))
        metrics = {collapse: regrouped[collapse].metrics() for collapse in collapses}
        found.append(Agreement(saved.run.task, saved.run.model, list(collapses), metrics, ari))
    return found


def agreement_markdown(found: Sequence[Agreement]) -> str:
    """A table of acc / conf / ece / smece per B and one of ARIs, per task."""
    lines = []
    for one in found:
        lines += [f"## {one.task} ({one.model})", "", "| B | acc | conf | ece | smece |", "|---|---:|---:|---:|---:|"]
        for collapse in one.collapses:
            m = one.metrics[collapse]
            lines.append(f"| {collapse} | {m['acc']:.4f} | {m['conf']:.4f} | {m['ece']:.4f} | {m['smece']:.4f} |")
        lines += ["", "| B | B' | mean ARI over questions |", "|---|---|---:|"]
        lines += [f"| {a} | {b} | {value:.4f} |" for (a, b), value in one.ari.items()]
        lines.append("")
    return "\n".join(lines)
