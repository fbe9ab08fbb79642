"""What the supported lm-eval releases do differently: the one place that knows.

The adapters in this folder call what is defined here and never ask which release runs.
lm-eval 0.5 rebuilt the task API around scorers (each `filter_list` pipeline is a
`Scorer` that filters, scores, reduces the repeats and aggregates); 0.4.13 scores in its
evaluator. What that changes for a semcal task, release by release:

| | lm-eval 0.4.13 | lm-eval 0.5 |
|---|---|---|
| class a generation task extends | `api.task.ConfigurableTask` | `api.task.GenerateTask` |
| `maybe_delimit` | `api.utils` | `api._utils` |
| what a filter returns for each question | the value itself | a list of values |
| a metric `process_results` returns | any name in `metric_list` | a registered name must suit the output type (`acc` is a log-likelihood metric) |
| the aggregation of a metric | `Task.aggregation()` | the scorer's `Metric.aggregation` |
| a stderr for a non-mean aggregation | none | a bootstrap over questions, `--bootstrap_iters` times |
| M from the command line | `--metadata repeats=N` | `--repeats N` (`Task.set_repeats`), or the metadata |
| a target of digits (`"18"`) | the string | an int, a choice index, which a generation task's few-shot prompt refuses |
| the task index | `TaskManager.task_index` | `TaskManager._task_index` |
| `--metadata` | `key=value` or a JSON object | a JSON object |
| a task run as a member of a group | `task` | `group::task` |
| metrics with `higher_is_better: null` | no direction | read as true (`SemcalTask` keeps null) |
| `local-chat-completions`' `think_end_token` | an option | dropped (`semcal-chat-completions` reads it) |

What a run saves differs too: 0.5 logs each question's record as `[[record]]` (0.4.13
`[record]`) and a filter step's settings under `kwargs`. The readers of saved runs
(`runs.saved.logged_record`, `grouping.scoring_step.step_settings`) import no lm-eval
and take either form as they find it.

Both releases read the same task YAMLs; `SemcalTask` hands its config through
`harness_metric_list` before the harness reads it. 0.5 is told apart from 0.4.13 by its
`GenerateTask` class, so a development build of either line is classed by its API, not
by its version string.
"""

from __future__ import annotations

import argparse
import json
import shlex
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lm_eval._cli.utils import MergeDictAction
from lm_eval.api import task as task_api
from lm_eval.api.metrics import mean, mean_stderr
from lm_eval.tasks import TaskManager

SCORER_PIPELINE = hasattr(task_api, "GenerateTask")
RELEASE = "0.5" if SCORER_PIPELINE else "0.4"

if SCORER_PIPELINE:
    from lm_eval.api._utils import maybe_delimit
    from lm_eval.api.task import GenerateTask as GenerationTask
else:
    from lm_eval.api.task import ConfigurableTask as GenerationTask
    from lm_eval.api.utils import maybe_delimit

__all__ = [
    "RELEASE",
    "SCORER_PIPELINE",
    "GenerationTask",
    "NamedCallable",
    "aggregate_with_mean_stderr",
    "filter_output",
    "harness_argv",
    "harness_metric_list",
    "maybe_delimit",
    "metadata_option",
    "repeats_option",
    "task_index",
    "text_target",
]


def metadata_option(settings: Mapping[str, Any]) -> str:
    """`settings` as the running release's `lm_eval` takes them on its command line.

    >>> shlex.split(metadata_option({"repeats": 50}))[1] in ("repeats=50", '{"repeats": 50}')
    True
    """
    if SCORER_PIPELINE:
        return f"--metadata {shlex.quote(json.dumps(dict(settings)))}"
    return "--metadata " + " ".join(shlex.quote(f"{key}={value}") for key, value in settings.items())


def repeats_option(repeats: int) -> str:
    """How a user sets M for a run on the running release's command line."""
    return f"--repeats {repeats}" if SCORER_PIPELINE else metadata_option({"repeats": repeats})


def harness_argv(argv: Sequence[str]) -> list[str]:
    """`lm_eval run` arguments as the running release's parser takes them.

    `semcal run` takes `--metadata` as 0.4.13 does on either release: `key=value` words
    or a JSON object. 0.5 parses one JSON object alone, so there each `--metadata` and
    the words after it become the one JSON object 0.4.13 would have read from them.
    """
    if not SCORER_PIPELINE:
        return list(argv)
    # `--metadata=WORD` is `--metadata WORD`, as argparse reads it.
    argv = [word for arg in argv for word in (arg.split("=", 1) if arg.startswith("--metadata=") else [arg])]
    converted: list[str] = []
    at = 0
    while at < len(argv):
        if argv[at] != "--metadata":
            converted.append(argv[at])
            at += 1
            continue
        end = at + 1
        while end < len(argv) and not argv[end].startswith("--"):
            end += 1
        parsed = argparse.Namespace()
        MergeDictAction(option_strings=["--metadata"], dest="metadata")(None, parsed, argv[at + 1 : end], "--metadata")
        converted += ["--metadata", json.dumps(getattr(parsed, "metadata", None) or {})]
        at = end
    return converted


def task_index(manager: TaskManager) -> Mapping[str, Any]:
    """`manager`'s index of tasks, groups and tags by name."""
    return manager._task_index if SCORER_PIPELINE else manager.task_index


def text_target(target: Any) -> Any:
    """A generation task's target as its template rendered it: `18`, not a choice index."""
    if SCORER_PIPELINE and isinstance(target, int) and not isinstance(target, bool):
        return str(target)
    return target


def filter_output(per_question: Sequence[Any]) -> list[Any]:
    """A filter's output, one item for each question, in the shape the harness expects."""
    if SCORER_PIPELINE:
        return [[item] for item in per_question]
    return list(per_question)


class NamedCallable:
    """A function that a config names: lm-eval 0.5 reads its `__name__` and writes its
    `str` where the results JSON records the config, so `metric: acc` stays `acc` there."""

    def __init__(self, name: str, function: Callable[..., Any]) -> None:
        self.__name__ = name
        self._function = function

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._function(*args, **kwargs)

    def __str__(self) -> str:
        return self.__name__

    __repr__ = __str__


def _from_process_results(name: str) -> Callable[..., Any]:
    def never_called(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"metric {name} is computed by the task's process_results, not called")

    return NamedCallable(name, never_called)


def harness_metric_list(
    metric_list: Sequence[Mapping[str, Any]], aggregations: Mapping[str, Callable[[Sequence], float]]
) -> list[dict[str, Any]]:
    """The task YAML's `metric_list`, as the running release must be given it.

    0.4.13 takes it as written. 0.5 looks each metric name up in its registry and refuses
    one registered for another output type (its `acc` is log-likelihood accuracy), so
    each metric becomes a callable of that name (filled by `process_results`, never
    called), and each aggregation the callable it names: `aggregations[name]` for a
    `semcal_` one (bound to the run's resample count), lm-eval's own for `mean`.
    """
    if not SCORER_PIPELINE:
        return [dict(entry) for entry in metric_list]
    converted = []
    for entry in metric_list:
        entry = dict(entry)
        name, aggregation = entry["metric"], entry.get("aggregation")
        if isinstance(name, str):
            entry["metric"] = _from_process_results(name)
        if aggregation == "mean":
            entry["aggregation"] = NamedCallable("mean", mean)
        elif isinstance(aggregation, str) and aggregation.startswith("semcal_"):
            entry["aggregation"] = NamedCallable(aggregation, aggregations[aggregation.removeprefix("semcal_")])
        converted.append(entry)
    return converted


def aggregate_with_mean_stderr(
    task: Any, aggregate: Callable[..., tuple[dict[str, Any], int]], bootstrap_iters: int | None
) -> tuple[dict[str, Any], int]:
    """lm-eval 0.5's `Task.aggregate` (`aggregate`, bound to `task`), with a stderr for the mean metrics only.

    0.5 bootstraps a stderr for every aggregation but the mean, `--bootstrap_iters`
    (100,000 by default) times: over a calibration metric, and worse over an interval
    row that bootstraps itself, that does not end, and 0.4.13 reports none. The metrics
    are aggregated without it; each metric aggregated by the mean then gets lm-eval's
    closed-form stderr, as in 0.4.13. `bootstrap_iters` 0 or None: no stderr at all.
    """
    results, count = aggregate(bootstrap_iters=0)
    if not bootstrap_iters:
        return results, count
    for scorer in task.scorers:
        means = {metric.name for metric in scorer.metrics or [] if getattr(metric.aggregation, "__name__", None) == "mean"}
        for name in means:
            values = [doc[name] for doc in scorer.reduced_docs.values() if name in doc]
            if len(values) > 1:
                results[f"{name}_stderr,{scorer.name}"] = mean_stderr(values)
    return results, count
