"""The examples in the package's docstrings run, and print what they say.

Each public metric's docstring carries an Examples section whose values were worked out
by hand (or, for the bootstrap intervals, by redrawing the documented resamples with
numpy); doctest runs them here, and every other `>>>` example of the package, so that a
docstring cannot drift from the code.
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

import lm_eval_semcal
from lm_eval_semcal.core import (
    bootstrap,
    brier_decomposition,
    consistency_resampling,
    estimators,
    metrics,
    paired_bootstrap,
    point_metrics,
    power,
    selective,
)

PACKAGE_DIR = Path(lm_eval_semcal.__file__).parent
# Every module whose docstrings hold an example; those of harness/ import lm-eval.
MODULES_WITH_DOCTESTS = [
    pytest.param(name, marks=[pytest.mark.harness] if name.startswith("lm_eval_semcal.harness.") else [])
    for name in sorted(
        ".".join(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
        for path in PACKAGE_DIR.rglob("*.py")
        if ">>> " in path.read_text(encoding="utf-8")
    )
]
# The modules that hold the public metrics' examples: each must run some.
WITH_EXAMPLES = {
    module.__name__
    for module in (
        point_metrics, bootstrap, paired_bootstrap, metrics, estimators, selective, brier_decomposition,
        consistency_resampling, power,
    )  # fmt: skip
}
PUBLIC_METRICS = [
    point_metrics.accuracy,
    point_metrics.mean_confidence,
    point_metrics.binned_ece,
    point_metrics.overconfidence,
    point_metrics.debiased_l2_ce,
    point_metrics.smece,
    point_metrics.brier,
    point_metrics.auroc,
    bootstrap.bootstrap_ci,
    paired_bootstrap.paired_bootstrap_ci,
    metrics.corpus_metrics,
    estimators.split_half_estimates,
    selective.risk_coverage_curve,
    selective.aurc,
    selective.selective_accuracy,
    brier_decomposition.brier_decomposition,
    consistency_resampling.calibration_test,
    power.detectable_overconfidence,
    power.questions_needed,
]


def test_the_metric_modules_are_among_those_with_examples():
    assert WITH_EXAMPLES <= {param.values[0] for param in MODULES_WITH_DOCTESTS}


@pytest.mark.parametrize("name", MODULES_WITH_DOCTESTS)
def test_the_module_examples_hold(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0, name
    assert result.attempted > 0, name


@pytest.mark.parametrize("function", PUBLIC_METRICS, ids=lambda f: f.__name__)
def test_each_public_metric_is_documented_with_an_example(function):
    doc = function.__doc__
    for section in ("Parameters\n    ----------", "Returns\n    -------", "Examples\n    --------"):
        assert section in doc, f"{function.__name__}: no {section.splitlines()[0]} section"
    examples = doctest.DocTestFinder().find(function)
    assert sum(len(test.examples) for test in examples) > 0, function.__name__
