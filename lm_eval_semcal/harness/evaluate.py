"""Running lm-eval itself: `semcal run`, and an evaluation saved as `lm_eval` saves it.

- `run_lm_eval`: lm-eval's own CLI in this process, with the semcal tasks on the
  include path and this package's backends registered, after the checks that would
  otherwise cost a whole generation (a backend that fixes one seed per request).
- `evaluate_and_save`: `simple_evaluate` on semcal tasks, its results and samples
  written in `--output_path` layout (the demo's runs).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lm_eval import simple_evaluate
from lm_eval._cli import HarnessCLI
from lm_eval.api.registry import get_model
from lm_eval.loggers import EvaluationTracker
from lm_eval.models.api_models import TemplateAPI
from lm_eval.models.openai_completions import LocalChatCompletion
from lm_eval.tasks import TaskManager
from lm_eval.utils import setup_logging

from lm_eval_semcal.harness.models import MODELS as SEMCAL_MODELS  # registers the semcal backends
from lm_eval_semcal.harness.task import SemcalConfigError
from lm_eval_semcal.tasks import TASKS_DIR

__all__ = ["evaluate_and_save", "fixed_seed_problem", "run_lm_eval"]


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


def run_lm_eval(
    lm_eval_args: Sequence[str], repeats: int | None, allow_fixed_seed: bool = False, bootstrap_iters: int | None = None
) -> None:
    """lm-eval's own CLI, in this process, with the semcal tasks on the include path.

    Problems that would waste the generation (a fixed-seed backend, a task that cannot
    sample M answers) end the command with one line before any model output is drawn.
    """
    setup_logging()
    argv = list(lm_eval_args)
    if not argv or argv[0] != "run":
        argv.insert(0, "run")
    saved_argv = sys.argv
    sys.argv = ["lm_eval", *argv]
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
        harness.execute(args)
    except SemcalConfigError as err:
        sys.exit(f"semcal run: error: {err}")


def evaluate_and_save(
    tasks: Sequence[str], output_path: str | Path, metadata: dict[str, Any], **evaluate_args: Any
) -> dict:
    """`simple_evaluate` on semcal `tasks` with run `metadata`, saved under `output_path`
    as `lm_eval --output_path OUT --log_samples` saves it; returns the results (samples removed)."""
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata=metadata)
    tracker = EvaluationTracker(output_path=str(output_path))
    results = simple_evaluate(
        tasks=list(tasks), task_manager=manager, log_samples=True, evaluation_tracker=tracker, **evaluate_args
    )
    samples = results.pop("samples")
    tracker.save_results_aggregated(results=results, samples=samples)
    for task in results["configs"]:
        tracker.save_results_samples(task_name=task, samples=samples[task])
    return results
