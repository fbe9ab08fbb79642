"""Running lm-eval itself: `semcal run`, and an evaluation saved as `lm_eval` saves it.

- `run_lm_eval`: lm-eval's own CLI in this process, with the semcal tasks on the
  include path and this package's backends registered, after the checks that would
  otherwise cost a whole generation (a backend that fixes one seed per request) or a
  model load (`check_run_args`: a task name, `--limit`, the data files), and with a
  check afterwards that lm-eval saved every sample it logged (`unsaved_samples`); with
  `--use_cache PATH`, sampled requests are kept in and served from a sample store
  (`resume`), so an interrupted run resumes.
- `evaluate_and_save`: `simple_evaluate` on semcal tasks, its results and samples
  written in `--output_path` layout (the demo's runs).
"""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import lm_eval.evaluator as lm_eval_evaluator
from lm_eval import simple_evaluate
from lm_eval._cli import HarnessCLI
from lm_eval.api.registry import get_model
from lm_eval.loggers import EvaluationTracker
from lm_eval.loggers.utils import get_commit_from_path
from lm_eval.models.api_models import TemplateAPI
from lm_eval.models.openai_completions import LocalChatCompletion
from lm_eval.tasks import TaskManager
from lm_eval.tasks._index import Kind
from lm_eval.tasks._yaml_loader import load_yaml
from lm_eval.utils import setup_logging

from lm_eval_semcal.harness import releases
from lm_eval_semcal.harness.data import (
    DataFileError,
    check_data_file,
    load_semcal_dataset,
)
from lm_eval_semcal.harness.models import (
    MODELS as SEMCAL_MODELS,  # registers the semcal backends
)
from lm_eval_semcal.harness.resume import resumable_sampling, store_path
from lm_eval_semcal.harness.sample_store import SampleStore, SampleStoreError
from lm_eval_semcal.harness.task import SemcalConfigError
from lm_eval_semcal.tasks import TASKS_DIR

__all__ = ["RunArgsError", "check_run_args", "evaluate_and_save", "fixed_seed_problem", "run_lm_eval", "unsaved_samples"]


def fixed_seed_problem(model: str) -> str | None:
    """Why lm-eval's `model` backend cannot draw M different samples, or None.

    The harness's API backends (local-completions, local-chat-completions, openai-*)
    send `seed` (1234 unless set) with every request, and a seeded server returns the
    same completion to the M identical requests of a question. `semcal-completions` and
    `semcal-chat-completions` send no seed.
    """
    backend = get_model(model)
    if not issubclass(backend, TemplateAPI) or model in SEMCAL_MODELS:
        return None
    return (
        f"--model {model} sends one fixed seed with every request, so a vLLM, SGLang or "
        "OpenAI server returns the same sample M times (confidence 1.0 everywhere); use "
        f"--model {'semcal-chat-completions' if issubclass(backend, LocalChatCompletion) else 'semcal-completions'} "
        "(same options, one request of n=M samples, no seed), "
        "or pass --allow-fixed-seed if your server ignores the seed"
    )


class RunArgsError(ValueError):
    """`semcal run` arguments that would fail once the model is loaded; one line with the fix."""


def _datasets_read(manager: TaskManager, name: str) -> set[str]:
    """The semcal datasets that task, group or tag `name` of `manager`'s index reads."""
    index = releases.task_index(manager)
    entry = index[name]
    if entry.kind is Kind.GROUP:
        members = [member for member in (entry.cfg or {}).get("task") or [] if isinstance(member, str)]
    elif entry.kind is Kind.TAG:
        members = sorted(entry.tags)
    else:
        # Only a task that loads its data itself has a semcal loader; resolving its
        # `!function`s imports what lm-eval imports to build it anyway.
        if entry.yaml_path is None or "custom_dataset" not in (entry.cfg or {}):
            return set()
        loader = load_yaml(entry.yaml_path, resolve_func=True).get("custom_dataset")
        is_semcal_loader = isinstance(loader, partial) and loader.func is load_semcal_dataset
        return {loader.args[0]} if is_semcal_loader else set()
    return set().union(*(_datasets_read(manager, member) for member in members if member in index))


def check_run_args(
    tasks: Sequence[str] | None, include_path: str | list[str], limit: float | None, metadata: dict[str, Any]
) -> None:
    """Raise RunArgsError or DataFileError for what would stop `semcal run` after its model loads.

    lm-eval 0.4.13's `simple_evaluate` creates the model before it builds the tasks, and
    a semcal task loads its dataset as it is built, so a bad data file, an unknown task
    or `--limit 0` cost a model load and end in a traceback. Checked here instead, on
    lm-eval's parsed arguments: task names against the semcal folder's index (and the
    user's `--include_path`) alone, not lm-eval's whole index; each data file the
    requested semcal tasks read (`--metadata data_files=...`, merged over the model
    args as lm-eval merges them), read once with the standard library.

    Args:
        tasks: the `--tasks` names (globs, groups, tags; YAML paths are left to lm-eval).
        include_path: the task folders to index: the semcal folder and the user's.
        limit: `--limit`.
        metadata: the run's metadata, model args merged in.
    """
    if limit is not None and limit <= 0:
        raise RunArgsError(
            f"--limit {limit:g} leaves no question to ask; pass --limit N (the first N questions "
            "of each task) or a fraction between 0 and 1, or leave it out for every question"
        )
    manager = TaskManager(include_path=include_path, include_defaults=False)
    index = releases.task_index(manager)
    read: set[str] = set()
    for name in tasks or []:
        if name.endswith(".yaml") or Path(name).is_dir():
            continue
        # lm-eval 0.5 returns a name that matches nothing as it is, and reads `task@preset`.
        matched = [task for task in manager.match_tasks([name]) if task.split("@", 1)[0] in index]
        # No task of lm-eval's own is named semcal*: an unmatched one is a typo.
        if not matched and name.startswith("semcal"):
            close = difflib.get_close_matches(name, manager.all_tasks, n=1)
            hint = f"did you mean {close[0]}?" if close else "`lm_eval ls tasks | grep semcal` lists them"
            raise RunArgsError(f"no task {name}; {hint}")
        for task in matched:
            read |= _datasets_read(manager, task.split("@", 1)[0])
    for dataset in sorted(read):
        check_data_file(dataset, metadata.get("data_files"))


def unsaved_samples(output_path: str | Path, since: float) -> list[str]:
    """The samples lm-eval logged but did not save, one sentence per task.

    lm-eval catches any error while it writes a task's samples file and only logs a
    warning (`Could not save sample results`), leaving the file empty or cut short. Each
    results JSON written to `output_path` (a folder or a .json path, as lm-eval takes it)
    since the time `since` names its tasks and their question counts (`n-samples`); a
    task's samples file must hold one line per question and filter pipeline.
    """
    out = Path(output_path)
    if out.suffix == ".json":
        prefix, results_files = f"{out.stem}_", out.parent.glob(f"{out.stem}_*.json")
    else:
        prefix, results_files = "results_", out.glob("*/results_*.json")
    problems = []
    for results_file in sorted(results_files):
        if results_file.stat().st_mtime < since:
            continue
        results = json.loads(results_file.read_text(encoding="utf-8"))
        date_id = results_file.stem.removeprefix(prefix)
        for task, config in (results.get("configs") or {}).items():
            questions = ((results.get("n-samples") or {}).get(task) or {}).get("effective")
            expected = questions * len(config.get("filter_list") or [None]) if isinstance(questions, int) else 1
            samples_file = results_file.with_name(f"samples_{task}_{date_id}.jsonl")
            lines = samples_file.read_bytes().count(b"\n") if samples_file.is_file() else 0
            if lines < expected:
                problems.append(f"{task}: {samples_file} holds {lines} of its {expected} samples")
    return problems


def quiet_git_hash() -> str | None:
    """lm-eval's `get_git_commit_hash`, without git's `fatal: not a git repository` on stderr.

    lm-eval records the commit of the working folder in every results file by running
    `git describe --always`, whose complaint outside a repository reaches the terminal.
    """
    try:
        return subprocess.check_output(["git", "describe", "--always"], stderr=subprocess.DEVNULL).strip().decode()  # noqa: S607
    except (subprocess.CalledProcessError, FileNotFoundError):
        return get_commit_from_path(os.getcwd())


@contextmanager
def _quiet_git() -> Iterator[None]:
    original = lm_eval_evaluator.get_git_commit_hash
    lm_eval_evaluator.get_git_commit_hash = quiet_git_hash
    try:
        yield
    finally:
        lm_eval_evaluator.get_git_commit_hash = original


def run_lm_eval(
    lm_eval_args: Sequence[str], repeats: int | None, allow_fixed_seed: bool = False, bootstrap_iters: int | None = None
) -> None:
    """lm-eval's own CLI, in this process, with the semcal tasks on the include path.

    Problems that would waste the generation (a fixed-seed backend, a task that cannot
    sample M answers) end the command with one line before any model output is drawn;
    those `check_run_args` finds, before the model loads. A run whose samples lm-eval
    logged but could not save ends with one line and exit status 1, not 0.
    """
    setup_logging()
    argv = list(lm_eval_args)
    if not argv or argv[0] != "run":
        argv.insert(0, "run")
    saved_argv = sys.argv
    sys.argv = ["lm_eval", *releases.harness_argv(argv)]
    try:
        harness = HarnessCLI()
        args = harness.parse_args()
    finally:
        sys.argv = saved_argv
    if not allow_fixed_seed and (problem := fixed_seed_problem(getattr(args, "model", None) or "hf")):
        sys.exit(f"semcal run: error: {problem}")
    user_path = getattr(args, "include_path", None)
    args.include_path = [str(TASKS_DIR), user_path] if user_path else str(TASKS_DIR)
    run_settings = {"repeats": repeats, "bootstrap_iters": bootstrap_iters}
    if any(value is not None for value in run_settings.values()):
        args.metadata = {
            **(getattr(args, "metadata", None) or {}),
            **{key: value for key, value in run_settings.items() if value is not None},
        }
    try:
        check_run_args(
            getattr(args, "tasks", None),
            args.include_path,
            getattr(args, "limit", None),
            {**(getattr(args, "model_args", None) or {}), **(getattr(args, "metadata", None) or {})},
        )
    except (RunArgsError, DataFileError) as err:
        sys.exit(f"semcal run: error: {err}")
    if getattr(args, "use_cache", None):
        try:
            SampleStore(store_path(args.use_cache)).close()
        except SampleStoreError as err:
            sys.exit(f"semcal run: error: --use_cache {args.use_cache}: {err}")
    started = time.time()
    store = (
        resumable_sampling(getattr(args, "model", None) or "hf", getattr(args, "model_args", None))
        if getattr(args, "use_cache", None)
        else nullcontext()
    )
    try:
        with store, _quiet_git():
            harness.execute(args)
    except (SemcalConfigError, DataFileError, SampleStoreError) as err:
        sys.exit(f"semcal run: error: {err}")
    saves_samples = getattr(args, "log_samples", False) or getattr(args, "predict_only", False)
    # Only the first process of a multi-process run saves results and samples.
    problems = (
        unsaved_samples(args.output_path, started)
        if saves_samples and args.output_path and os.environ.get("RANK", "0") == "0"
        else []
    )
    if problems:
        sys.exit(
            f"semcal run: error: samples not saved ({'; '.join(problems)}): lm-eval's warning "
            "'Could not save sample results' above says why; the results JSON holds the metrics, "
            "but `semcal report` and `semcal rescore` need the samples: remove the cause and rerun"
        )


def evaluate_and_save(
    tasks: Sequence[str], output_path: str | Path, metadata: dict[str, Any], **evaluate_args: Any
) -> dict:
    """`simple_evaluate` on semcal `tasks` with run `metadata`, saved under `output_path`
    as `lm_eval --output_path OUT --log_samples` saves it; returns the results (samples removed)."""
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata=metadata)
    tracker = EvaluationTracker(output_path=str(output_path))
    with _quiet_git():
        results = simple_evaluate(
            tasks=list(tasks), task_manager=manager, log_samples=True, evaluation_tracker=tracker, **evaluate_args
        )
    samples = results.pop("samples")
    tracker.save_results_aggregated(results=results, samples=samples)
    for task in results["configs"]:
        tracker.save_results_samples(task_name=task, samples=samples[task])
    return results
