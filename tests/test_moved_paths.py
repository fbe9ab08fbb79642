"""Release 0.1's module paths keep working for one more release.

Task YAMLs written against 0.1 name `!function lm_eval_semcal.lm_eval_task.SemcalTask`
and friends; Python code imports `lm_eval_semcal.calibration` or
`lm_eval_semcal.collapsing`. Each old path is the module that now holds the code.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import subprocess
import sys
import textwrap

import pytest
from conftest import FIXTURES, REPO_ROOT, ScriptedLM
from lm_eval import simple_evaluate
from lm_eval.tasks import TaskManager

from lm_eval_semcal._moved import MOVED
from lm_eval_semcal.runs.saved import logged_record
from lm_eval_semcal.tasks import TASKS_DIR

# lm-eval itself runs here: CI runs this module under every supported release.
pytestmark = pytest.mark.harness


def test_every_old_path_is_the_new_module_and_warns_once():
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent("""
            import importlib, json, warnings
            from lm_eval_semcal._moved import MOVED
            found = {}
            for old, new in MOVED.items():
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    module = importlib.import_module(f"lm_eval_semcal.{old}")
                    again = importlib.import_module(f"lm_eval_semcal.{old}")
                found[old] = {
                    "same": module is again is importlib.import_module(f"lm_eval_semcal.{new}"),
                    "spec": module.__spec__.name,
                    "warnings": [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)],
                }
            print(json.dumps(found))
        """)],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(found) == set(MOVED)
    for old, new in MOVED.items():
        assert found[old]["same"], old
        assert found[old]["spec"] == f"lm_eval_semcal.{new}", old
        assert found[old]["warnings"] == [
            f"lm_eval_semcal.{old} moved to lm_eval_semcal.{new}; the old path is kept for one release"
        ], old


@pytest.fixture
def aliases_forgotten(monkeypatch):
    """Each old path imported anew in the test, so that it warns whatever ran before."""
    for old in MOVED:
        monkeypatch.delitem(sys.modules, f"lm_eval_semcal.{old}", raising=False)


def test_the_paths_the_readme_documented_in_0_1(aliases_forgotten):
    with pytest.warns(DeprecationWarning, match="lm_eval_semcal.calibration moved to lm_eval_semcal.core.calibration"):
        calibration = importlib.import_module("lm_eval_semcal.calibration")
    assert calibration.binned_ece([0.5, 1.0], [1, 1]) == pytest.approx(0.25)
    for name in ("binned_ece", "smece", "brier", "auroc", "bootstrap_ci"):
        assert callable(getattr(calibration, name))
    with pytest.warns(DeprecationWarning, match="lm_eval_semcal.collapsing moved to lm_eval_semcal.grouping"):
        collapsing = importlib.import_module("lm_eval_semcal.collapsing")
    assert collapsing.register_collapser is importlib.import_module("lm_eval_semcal.grouping").register_collapser
    with pytest.warns(DeprecationWarning, match="lm_eval_semcal.lm_eval_models moved to lm_eval_semcal.harness.models"):
        importlib.import_module("lm_eval_semcal.lm_eval_models")
    from lm_eval.api.registry import model_registry

    assert "hf-semcal" in model_registry and "semcal-completions" in model_registry


# A task YAML as a user wrote it against release 0.1: every `!function` an old path.
OLD_TASK = """
task: my_old_triviaqa
class: !function lm_eval_semcal.lm_eval_task.SemcalTask
custom_dataset: !function lm_eval_semcal.data.load_triviaqa
validation_split: validation
output_type: generate_until
doc_to_text: "Q: {{semcal_question}}\\nA:"
doc_to_target: "{{semcal_golds[0]}}"
num_fewshot: 1
fewshot_config:
  sampler: first_n
  samples: !function lm_eval_semcal.exemplars.open_qa
  doc_to_target: "{{concise}}"
repeats: 4
process_results: !function lm_eval_semcal.lm_eval_metrics.process_results
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: conf
    aggregation: mean
    higher_is_better: null
  - metric: ece
    aggregation: semcal_ece
    higher_is_better: false
generation_kwargs:
  until: ["\\n"]
  do_sample: true
  temperature: 1.0
  top_k: 0
filter_list:
  - name: semcal
    filter:
      - function: semcal_classes
        collapse: normalize
"""

# Paris 3/4 right; Rome 2/4 right; Berlin 4/4 right; Madrid 2/4 wrong (tie with Lisbon, seen first).
SCRIPT = {
    "What is the capital city of France?": ["Paris", "paris.", "Lyon", "Paris"],
    "Which city was the capital of the Roman Empire?": ["Rome", "Milan", "rome", "Turin"],
    "In which city is the Brandenburg Gate?": ["Berlin"] * 4,
    "What is the capital of Portugal?": ["Madrid", "Lisbon", "Madrid", "Lisbon"],
}


@pytest.mark.parametrize("kind", ["old !function paths", "include of ours"])
def test_a_users_task_yaml_from_0_1_still_runs(tmp_path, kind, aliases_forgotten):
    yaml_text = OLD_TASK if kind == "old !function paths" else (
        f"include: {TASKS_DIR / 'semcal' / 'semcal_triviaqa.yaml'}\ntask: my_old_triviaqa\nnum_fewshot: 1\n"
    )
    (tmp_path / "my_old_triviaqa.yaml").write_text(yaml_text)
    manager = TaskManager(
        include_path=[str(TASKS_DIR), str(tmp_path)], include_defaults=False,
        metadata={"data_files": str(FIXTURES / "triviaqa.jsonl"), "repeats": 4},
    )
    with pytest.warns(DeprecationWarning) if kind == "old !function paths" else contextlib.nullcontext():
        results = simple_evaluate(model=ScriptedLM(SCRIPT), tasks=["my_old_triviaqa"], task_manager=manager)
    got = results["results"]["my_old_triviaqa"]
    assert got["acc,semcal"] == 3 / 4
    assert got["conf,semcal"] == (0.75 + 0.5 + 1.0 + 0.5) / 4
    # bins 7 (right), 5 (right), 9 (right), 5 (wrong): bin 5 averages 0.5 against 1/2.
    assert got["ece,semcal"] == pytest.approx(0.25 / 4 + 0.0 + 0.0, abs=1e-12)
    record = logged_record(results["samples"]["my_old_triviaqa"][3]).to_dict()
    assert record["representatives"] == ["Madrid", "Lisbon"] and record["correct"] is False

