"""The semcal tasks and backends in a plain `lm_eval` run, added by the startup hook.

`lm_eval_semcal_autoload` (installed with a `.pth` startup file) calls these when lm-eval
imports its task index or its model registry:

- `add_task_folder`: every task index lm-eval builds from its own task folder also reads
  the semcal task folder, right after lm-eval's own and before any `--include_path`
  folder, so `lm_eval --tasks semcal_triviaqa` needs no flag while a user's own task of
  the same name still wins (lm-eval lets a later folder override an earlier one, as the
  upstream proposal for task entry points, EleutherAI/lm-evaluation-harness#4015, does).
  An index built without lm-eval's own folder (`include_defaults=False`) stays as asked.
- `add_backends`: the semcal backends (`harness.models.MODELS`) join lm-eval's model registry by
  module path, imported on first use.

Each stands down when lm-eval already finds the plugin itself: the task folder is not
added when the index already reads it (a harness that reads the `lm_eval.tasks` entry
points, or `--include_path "$(semcal tasks-dir)"`), and the backends are not registered
when the registry loads plugins from entry points (`load_plugins`, from lm-eval's model
plugin work, EleutherAI/lm-evaluation-harness#4013), which reads the `lm_eval.models`
entry points declared in pyproject.toml.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import wraps
from pathlib import Path
from types import ModuleType

from lm_eval_semcal.tasks import TASKS_DIR


def _same_or_inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents or path in folder.parents


def with_semcal_tasks(paths: Iterable[str | Path], lm_eval_tasks: Path, semcal_tasks: Path = TASKS_DIR) -> list[Path]:
    """The folders to index: `paths`, with the semcal task folder right after lm-eval's own.

    Unchanged when lm-eval's own folder is not among them, or when the semcal folder (or
    one inside or around it) already is.
    """
    paths = [Path(p) for p in paths]
    resolved = [p.resolve() for p in paths]
    semcal_tasks, lm_eval_tasks = semcal_tasks.resolve(), lm_eval_tasks.resolve()
    if lm_eval_tasks not in resolved or any(_same_or_inside(p, semcal_tasks) for p in resolved):
        return paths
    at = resolved.index(lm_eval_tasks) + 1
    return [*paths[:at], semcal_tasks, *paths[at:]]


def add_task_folder(index_module: ModuleType) -> None:
    """Make `TaskIndex.build` (lm_eval.tasks._index) read the semcal task folder too."""
    task_index = index_module.TaskIndex
    build: Callable = task_index.build
    if getattr(build, "semcal_tasks", False):
        return
    lm_eval_tasks = Path(index_module.__file__).resolve().parent

    @wraps(build)
    def build_with_semcal(paths, *args, **kwargs):
        return build(with_semcal_tasks(paths, lm_eval_tasks), *args, **kwargs)

    build_with_semcal.semcal_tasks = True
    task_index.build = staticmethod(build_with_semcal)


def add_backends(registry_module: ModuleType) -> None:
    """Register the semcal backends in lm-eval's model registry, unless it reads plugins itself."""
    if callable(getattr(registry_module, "load_plugins", None)):
        return
    from lm_eval_semcal.harness.models import register_models

    register_models()
