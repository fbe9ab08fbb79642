"""The Examples in core's docstrings run, and print what they say.

Each public metric's docstring carries an Examples section whose values were worked out
by hand (or, for the bootstrap intervals, by redrawing the documented resamples with
numpy); doctest runs them here, so that a docstring cannot drift from the code.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import lm_eval_semcal.core
from lm_eval_semcal.core import bootstrap, estimators, metrics, paired_bootstrap, point_metrics

CORE_MODULES = sorted(f"lm_eval_semcal.core.{info.name}" for info in pkgutil.iter_modules(lm_eval_semcal.core.__path__))
# The modules that hold the public metrics' examples: each must run some.
WITH_EXAMPLES = {module.__name__ for module in (point_metrics, bootstrap, paired_bootstrap, metrics, estimators)}
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
]


@pytest.mark.parametrize("name", CORE_MODULES)
def test_the_module_examples_hold(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module)
    assert result.failed == 0, name
    if name in WITH_EXAMPLES:
        assert result.attempted > 0, name


@pytest.mark.parametrize("function", PUBLIC_METRICS, ids=lambda f: f.__name__)
def test_each_public_metric_is_documented_with_an_example(function):
    doc = function.__doc__
    for section in ("Parameters\n    ----------", "Returns\n    -------", "Examples\n    --------"):
        assert section in doc, f"{function.__name__}: no {section.splitlines()[0]} section"
    examples = doctest.DocTestFinder().find(function)
    assert sum(len(test.examples) for test in examples) > 0, function.__name__
