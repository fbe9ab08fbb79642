"""The shared defaults of core.settings, and the texts that name the interval's level."""

from __future__ import annotations

import argparse
import inspect

import pytest

from lm_eval_semcal.cli import _build_parser
from lm_eval_semcal.core import bootstrap, metrics, paired_bootstrap, settings


def test_the_defaults_and_the_level_as_printed():
    assert (settings.DEFAULT_BOOTSTRAP_ITERS, settings.BOOTSTRAP_SEED, settings.CI_LEVEL) == (1000, 0, 0.95)
    assert settings.CI_PERCENT == "95%"
    assert (settings.TEST_ALPHA, settings.TEST_POWER) == (0.05, 0.8)


@pytest.mark.parametrize(
    "function",
    [
        bootstrap.bootstrap_ci,
        bootstrap.bootstrap_distribution,
        bootstrap.BootstrapDistribution.interval,
        paired_bootstrap.paired_bootstrap_ci,
        paired_bootstrap.paired_bootstrap_distributions,
        metrics.corpus_metrics,
        metrics.calibration_test_rows,
        metrics.metric_interval,
        metrics.paired_difference,
    ],
    ids=lambda f: f.__qualname__,
)
def test_bootstrap_defaults_come_from_settings(function):
    expected = {
        "iters": settings.DEFAULT_BOOTSTRAP_ITERS,
        "bootstrap_iters": settings.DEFAULT_BOOTSTRAP_ITERS,
        "seed": settings.BOOTSTRAP_SEED,
        "level": settings.CI_LEVEL,
    }
    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(function).parameters.items()
        if name in expected and parameter.default is not inspect.Parameter.empty
    }
    assert defaults, function.__name__
    assert defaults == {name: expected[name] for name in defaults}


def subcommand_helps() -> dict[str, str]:
    """Each subcommand's --help text, as argparse prints it."""
    parser = _build_parser()
    commands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    return {name: command.format_help() for name, command in commands.choices.items()}


def test_the_help_names_the_level_once_formatted():
    helps = subcommand_helps()
    # argparse %-formats help strings but not descriptions: neither may show a doubled %.
    assert not [name for name, text in helps.items() if "%%" in text]
    for name in ("run", "report", "rescore", "compare"):
        assert "95% interval" in " ".join(helps[name].split()), name
