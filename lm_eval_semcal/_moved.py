"""The module paths of release 0.1, kept importable for one more release.

Task YAMLs written against 0.1 name `!function lm_eval_semcal.lm_eval_task.SemcalTask`,
`lm_eval_semcal.data.load_triviaqa`, ...; Python code imports
`lm_eval_semcal.calibration` or `lm_eval_semcal.collapsing`. Each old path is an alias
of the module that now holds its code (the same module object, so registrations and
patches made through either name are one), and importing it warns once with the new
path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

PACKAGE = "lm_eval_semcal"

MOVED: dict[str, str] = {
    "calibration": "core.calibration",
    "normalization": "core.normalization",
    "extraction": "core.extraction",
    "semantic_classes": "core.semantic_classes",
    "records": "core.records",
    "collapsing": "grouping",
    "embedding": "grouping.embedding",
    "nli": "grouping.nli",
    "llm": "grouping.llm",
    "llm_clients": "grouping.llm_clients",
    "judgement_cache": "grouping.judgement_cache",
    "torch_devices": "grouping.torch_devices",
    "lm_eval_filter": "harness.filter",
    "lm_eval_metrics": "harness.metric_hooks",
    "lm_eval_task": "harness.task",
    "lm_eval_models": "harness.models",
    "data": "harness.data",
    "exemplars": "harness.exemplars",
    "hf_model": "harness.hf_model",
    "api_model": "harness.api_model",
    "request_groups": "harness.request_groups",
    "report": "runs.report",
    "rescore": "runs.rescore",
    "synthetic": "demo.world",
    "demo_model": "demo.models",
    "tiny_model": "demo.tiny_model",
}


class _Alias(importlib.abc.Loader):
    def __init__(self, new_name: str) -> None:
        self.new_name = new_name
        self.spec = None

    def create_module(self, spec):
        module = importlib.import_module(self.new_name)
        self.spec = module.__spec__
        return module

    def exec_module(self, module) -> None:
        # The module ran under its new name; importlib has just stamped the alias's spec
        # on it: give it back its own, so reloads and tools see the real module.
        module.__spec__ = self.spec


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Finds `lm_eval_semcal.<old name>` and hands back the module at its new path."""

    def find_spec(self, fullname, path=None, target=None):
        prefix, _, old = fullname.partition(".")
        if prefix != PACKAGE or old not in MOVED:
            return None
        new_name = f"{PACKAGE}.{MOVED[old]}"
        warnings.warn(
            f"{fullname} moved to {new_name}; the old path is kept for one release",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.util.spec_from_loader(fullname, _Alias(new_name))


def install() -> None:
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
