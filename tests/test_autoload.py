"""Plain `lm_eval` finds the semcal tasks and backends: the startup hook and what it adds."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import types
from pathlib import Path

import pytest
from conftest import GSM8K_TEST, REPO_ROOT

import lm_eval_semcal_autoload as autoload
from lm_eval_semcal.harness import plugin
from lm_eval_semcal.tasks import TASKS_DIR

# lm-eval itself runs here: CI runs this module under every supported release.
pytestmark = pytest.mark.harness

WARNING = "WARNING lm-eval-semcal:"


def python(code: str, **env: str) -> subprocess.CompletedProcess:
    """`code` in a new interpreter of this environment, started as any user's is."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
        env={**os.environ, **env}, cwd=REPO_ROOT.parent,
    )


# ------------------------------------------------------------------ the startup module


def test_the_startup_module_imports_only_what_python_has_loaded_before_any_pth_file():
    tree = ast.parse((REPO_ROOT / "lm_eval_semcal_autoload.py").read_text())
    top_level = {alias.name for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    assert top_level == {"os", "sys"}
    assert not [node for node in tree.body if isinstance(node, ast.ImportFrom)]
    # Run as site.py runs it, without site-packages: installing it loads no other module.
    result = subprocess.run(
        [sys.executable, "-S", "-c", "import os, sys; sys.path.insert(0, sys.argv[1]); before = set(sys.modules); "
         "import lm_eval_semcal_autoload as a; a.install(); print(sorted(set(sys.modules) - before))", str(REPO_ROOT)],
        capture_output=True, text=True, check=True,
    )
    assert result.stdout.strip() == "['lm_eval_semcal_autoload']"


def test_this_environment_loads_the_plugin_with_no_import_of_it():
    code = ("import lm_eval.api.registry as r, lm_eval.tasks._index as i; "
            "print('hf-semcal' in r.model_registry, 'semcal-completions' in r.model_registry, "
            "getattr(i.TaskIndex.build, 'semcal_tasks', False), r.get_model('hf').__name__)")
    on = python(code)
    assert on.stdout.split() == ["True", "True", "True", "HFLM"], on.stderr[-2000:]
    off = python(code, SEMCAL_AUTOLOAD="0")
    assert off.stdout.split() == ["False", "False", "False", "HFLM"], off.stderr[-2000:]
    assert WARNING not in on.stderr + off.stderr


def test_a_broken_plugin_is_one_warning_and_lm_eval_keeps_its_own_backends():
    # The hook's module cannot be imported: lm-eval's registry and task index still load.
    result = python(
        "import sys; sys.modules['lm_eval_semcal.harness.plugin'] = None\n"
        "from lm_eval.api.registry import get_model; import lm_eval.tasks._index\n"
        "print(get_model('hf').__name__, get_model('local-completions').__name__)"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["HFLM", "LocalCompletionsAPI"]
    warnings = [line for line in result.stderr.splitlines() if WARNING in line]
    assert len(warnings) == 1, result.stderr[-2000:]
    assert "ModuleNotFoundError" in warnings[0] and "SEMCAL_AUTOLOAD=0" in warnings[0]


def test_the_startup_files_the_wheel_installs(tmp_path):
    # What build_backend/semcal_build.py adds to every wheel, regular and editable.
    sys.path.insert(0, str(REPO_ROOT / "build_backend"))
    try:
        import semcal_build
    finally:
        sys.path.remove(str(REPO_ROOT / "build_backend"))
    assert semcal_build.STARTUP_FILES == {
        "lm_eval_semcal.pth": "import lm_eval_semcal_autoload; lm_eval_semcal_autoload.install()\n",
        "lm_eval_semcal.start": "lm_eval_semcal_autoload:install\n",
    }
    # This environment's install (editable here and in CI) put them in site-packages.
    site_packages = Path(sysconfig.get_paths()["purelib"])
    for name, text in semcal_build.STARTUP_FILES.items():
        assert (site_packages / name).read_text() == text


# ---------------------------------------------------------------- where the folder goes


def test_the_semcal_folder_goes_right_after_lm_evals_own(tmp_path):
    lm_eval_tasks, user = tmp_path / "lm_eval" / "tasks", tmp_path / "mine"
    ours = TASKS_DIR.resolve()
    assert plugin.with_semcal_tasks([lm_eval_tasks], lm_eval_tasks) == [lm_eval_tasks, ours]
    # A user's --include_path comes later, so its task of the same name wins.
    assert plugin.with_semcal_tasks([lm_eval_tasks, user], lm_eval_tasks) == [lm_eval_tasks, ours, user]
    # Already read (--include_path "$(semcal tasks-dir)", or a folder inside it): not twice.
    assert plugin.with_semcal_tasks([lm_eval_tasks, TASKS_DIR], lm_eval_tasks) == [lm_eval_tasks, TASKS_DIR]
    inner = TASKS_DIR / "semcal"
    assert plugin.with_semcal_tasks([lm_eval_tasks, inner], lm_eval_tasks) == [lm_eval_tasks, inner]
    # An index without lm-eval's own tasks (include_defaults=False) stays as asked.
    assert plugin.with_semcal_tasks([user], lm_eval_tasks) == [user]


def fake_index_module(folder: Path) -> tuple[types.ModuleType, list]:
    """A stand-in for lm_eval.tasks._index whose TaskIndex.build records the folders."""
    calls: list = []

    class TaskIndex:
        @staticmethod
        def build(paths, *, resolve_includes=True):
            calls.append(list(paths))
            return {}

    module = types.ModuleType("lm_eval.tasks._index")
    module.__file__ = str(folder / "_index.py")
    module.TaskIndex = TaskIndex
    return module, calls


def test_the_task_index_reads_the_semcal_folder_once(tmp_path):
    module, calls = fake_index_module(tmp_path)
    plugin.add_task_folder(module)
    plugin.add_task_folder(module)  # idempotent: one wrapper
    module.TaskIndex().build([tmp_path, tmp_path / "mine"], resolve_includes=False)
    assert calls == [[tmp_path, TASKS_DIR.resolve(), tmp_path / "mine"]]


def test_a_harness_that_reads_task_entry_points_finds_ours_and_the_hook_stands_down(tmp_path):
    # A future lm-eval that reads the `lm_eval.tasks` entry points (the upstream proposal):
    # built-in tasks, then plugin folders, then --include_path.
    [entry] = importlib.metadata.entry_points(group="lm_eval.tasks", name="semcal")
    plugin_folder = Path(entry.load().__file__).parent
    module, calls = fake_index_module(tmp_path)
    plugin.add_task_folder(module)
    module.TaskIndex().build([tmp_path, plugin_folder])
    assert calls == [[tmp_path, plugin_folder]]
    assert plugin_folder.resolve() == TASKS_DIR.resolve()


def test_a_registry_that_loads_plugins_itself_gets_no_second_registration(monkeypatch):
    registered = []
    monkeypatch.setattr("lm_eval_semcal.harness.models.register_models", lambda: registered.append(True))
    plugin.add_backends(types.ModuleType("lm_eval.api.registry"))
    assert registered == [True]
    # A registry with lm-eval's plugin loader (EleutherAI/lm-evaluation-harness#4013)
    # reads our `lm_eval.models` entry points itself.
    registry = types.ModuleType("lm_eval.api.registry")
    registry.load_plugins = lambda group, registry: []
    plugin.add_backends(registry)
    assert registered == [True]
    models = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="lm_eval.models")}
    from lm_eval_semcal.harness.models import MODELS

    assert {name: models.get(name) for name in MODELS} == MODELS


def test_autoload_off_does_nothing(monkeypatch):
    monkeypatch.setenv("SEMCAL_AUTOLOAD", "0")
    watchers = [finder for finder in sys.meta_path if isinstance(finder, autoload.LmEvalWatcher)]
    autoload.install()
    assert [finder for finder in sys.meta_path if isinstance(finder, autoload.LmEvalWatcher)] == watchers
    for value in ("0", "false", "No", " off "):
        monkeypatch.setenv("SEMCAL_AUTOLOAD", value)
        assert not autoload.enabled()
    for value in ("1", "true", ""):
        monkeypatch.setenv("SEMCAL_AUTOLOAD", value)
        assert autoload.enabled()


# ------------------------------------------------- a wheel in a fresh virtual environment


def fresh_environment_with_the_wheel(tmp_path: Path) -> Path:
    """A new venv holding the wheel built from this checkout (not editable) and lm-eval's
    console script; the dependencies are read from this environment's site-packages."""
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO_ROOT)],
                   check=True, capture_output=True, timeout=600)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    fresh_python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(fresh_python), "install", "-q", "--no-deps",
                    str(next(wheels.glob("lm_eval_semcal-*.whl")))], check=True, capture_output=True, timeout=300)
    fresh_site = Path(subprocess.run([str(fresh_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                     check=True, capture_output=True, text=True).stdout.strip())
    # A path line adds a folder to sys.path without reading the .pth files in it, so this
    # environment's own (editable) install of the plugin stays out.
    (fresh_site / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    script = Path(shutil.which("lm_eval", path=str(Path(sys.executable).parent)))
    lines = script.read_text().splitlines()
    (venv / "bin" / "lm_eval").write_text("\n".join([f"#!{fresh_python}", *lines[1:]]) + "\n")
    (venv / "bin" / "lm_eval").chmod(0o755)
    where = subprocess.run([str(fresh_python), "-c", "import lm_eval_semcal; print(lm_eval_semcal.__file__)"],
                           check=True, capture_output=True, text=True, cwd=tmp_path).stdout
    assert where.startswith(str(fresh_site)), where
    return venv


@pytest.mark.slow  # builds a wheel, then runs the real lm_eval three times (about 90 s on 2 cores)
def test_plain_lm_eval_runs_semcal_after_a_wheel_install(tmp_path):
    venv = fresh_environment_with_the_wheel(tmp_path)
    model = tmp_path / "tiny"
    subprocess.run([str(venv / "bin" / "python"), "-m", "lm_eval_semcal.cli", "tiny-model", str(model)],
                   check=True, capture_output=True, timeout=300)
    rows = tmp_path / "gsm8k.jsonl"
    rows.write_text("".join(GSM8K_TEST.read_text().splitlines(keepends=True)[:3]))
    command = [
        str(venv / "bin" / "lm_eval"), "--model", "hf-semcal", "--model_args", f"pretrained={model},dtype=float32",
        "--device", "cpu", "--tasks", "semcal_gsm8k", "--metadata", json.dumps({"data_files": str(rows), "repeats": 2}),
        "--limit", "2", "--output_path", str(tmp_path / "out"),
    ]
    env = {key: value for key, value in os.environ.items() if key != "SEMCAL_AUTOLOAD"}
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert WARNING not in run.stderr
    [results_file] = (tmp_path / "out").rglob("results_*.json")
    results = json.loads(results_file.read_text())
    assert results["config"]["model"] == "hf-semcal"
    assert results["configs"]["semcal_gsm8k"]["repeats"] == 2
    assert set(results["results"]["semcal_gsm8k"]) >= {"acc,semcal", "smece,semcal", "no_answer,semcal"}

    # The switch off: lm-eval's own error, so the run above could not pass by accident.
    off = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path,
                         env={**env, "SEMCAL_AUTOLOAD": "0"})
    assert off.returncode != 0
    # lm-eval 0.4.13 looks the tasks up first, 0.5 the backend.
    from lm_eval_semcal.harness.releases import SCORER_PIPELINE

    if SCORER_PIPELINE:
        assert "Attempted to load model 'hf-semcal', but no model for this name found" in off.stderr
    else:
        assert "Tasks not found: semcal_gsm8k" in off.stderr

    # A broken install: one warning line, and lm_eval still lists its own tasks.
    site_packages = next((venv / "lib").glob("python3*/site-packages"))
    (site_packages / "lm_eval_semcal" / "harness" / "plugin.py").unlink()
    listing = subprocess.run([str(venv / "bin" / "lm_eval"), "ls", "tasks"], capture_output=True, text=True,
                             timeout=600, cwd=tmp_path, env=env)
    assert listing.returncode == 0, listing.stderr[-3000:]
    assert "arc_easy" in listing.stdout and "semcal_gsm8k" not in listing.stdout
    assert len([line for line in listing.stderr.splitlines() if WARNING in line]) == 1, listing.stderr[-3000:]
