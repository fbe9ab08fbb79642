"""`semcal plan`: how many questions a run needs for its calibration test to see an overconfidence.

The confidences of a pilot (a saved run's semcal tasks, or a file of numbers) stand for
the planned run's: `questions_needed` finds the least n whose calibration test of smECE
detects the given overconfidence with the wanted power. Each input is checked before
any simulation runs, and a bad one is a `PlanError` whose message is one line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lm_eval_semcal.core import calibration
from lm_eval_semcal.core.settings import BOOTSTRAP_SEED, DEFAULT_BOOTSTRAP_ITERS, TEST_ALPHA, TEST_POWER
from lm_eval_semcal.runs.saved import RunDirError, load_run

__all__ = ["Pilot", "PlanError", "check_overconfidence", "pilots_from_file", "pilots_from_run", "plan", "plan_sentence"]


class PlanError(ValueError):
    """An input `semcal plan` cannot use; the message says which and what to give instead."""


@dataclass(frozen=True)
class Pilot:
    """Confidences that stand for a planned run's, and where they come from."""

    source: str
    confidence: np.ndarray


def pilots_from_file(path: str | Path) -> list[Pilot]:
    """The confidences in a text file: numbers in [0, 1] separated by spaces, commas or new lines.

    Lines starting with '#' are comments. Raises PlanError when the file cannot be read,
    holds something that is not a number, holds none, or a number outside [0, 1].
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise PlanError(f"cannot read --confidences {path}: {getattr(err, 'strerror', None) or err}") from None
    tokens = [
        token for line in text.splitlines() if not line.lstrip().startswith("#")
        for token in re.split(r"[\s,]+", line.strip()) if token
    ]  # fmt: skip
    values = []
    for token in tokens:
        try:
            values.append(float(token))
        except ValueError:
            raise PlanError(f"--confidences {path}: {token!r} is not a number; give confidences in [0, 1]") from None
    if not values:
        raise PlanError(f"--confidences {path} holds no confidence; give numbers in [0, 1], one a line")
    bad = [value for value in values if not 0.0 <= value <= 1.0]
    if bad:
        raise PlanError(f"--confidences {path}: {bad[0]!r} is not a confidence in [0, 1]")
    return [Pilot(str(path), np.asarray(values))]


def pilots_from_run(run_dir: str | Path) -> list[Pilot]:
    """Each semcal task's confidences in a saved run (`load_run`); RunDirError as PlanError."""
    try:
        runs = load_run(run_dir)
    except RunDirError as err:
        raise PlanError(str(err).strip().splitlines()[0]) from None
    return [Pilot(f"{run.task} ({run.name}, {run.n_questions} questions, M = {run.m_label})", run.confidence) for run in runs]


def check_overconfidence(value: float) -> float:
    """`value` as the shift to detect; PlanError unless it lies in (0, 1]."""
    if not (isinstance(value, (int, float)) and not math.isnan(value) and 0.0 < value <= 1.0):
        raise PlanError(f"--overconfidence must be a shift in (0, 1], e.g. 0.03, got {value!r}")
    return float(value)


def plan_sentence(
    pilot: Pilot,
    overconfidence: float,
    power: float = TEST_POWER,
    alpha: float = TEST_ALPHA,
    iters: int = DEFAULT_BOOTSTRAP_ITERS,
    seed: int = BOOTSTRAP_SEED,
) -> str:
    """The answer for one pilot, in one line: the questions needed (`questions_needed`, smECE).

    Examples
    --------
    >>> plan_sentence(Pilot("a file", np.array([0.8] * 10)), 0.3, iters=200)  # doctest: +ELLIPSIS
    'a file: 19 questions detect an overconfidence of 0.3 with 80% power at the 5% level (smECE test, ...)'
    """
    found = calibration.questions_needed(
        pilot.confidence, overconfidence, metric="smece", power=power, alpha=alpha, iters=iters, seed=seed
    )
    goal = f"an overconfidence of {overconfidence:g} with {power:.0%} power at the {alpha:.0%} level"
    if found.questions is None:
        return f"{pilot.source}: more than {found.max_questions:,} questions would be needed to detect {goal}"
    return (
        f"{pilot.source}: {found.questions:,} questions detect {goal} "
        f"(smECE test, estimated power {found.achieved_power:.3f} from {iters} simulated runs)"
    )


def plan(
    overconfidence: float,
    pilots: Sequence[Pilot],
    power: float = TEST_POWER,
    alpha: float = TEST_ALPHA,
    iters: int = DEFAULT_BOOTSTRAP_ITERS,
) -> list[str]:
    """One line per pilot (`plan_sentence`)."""
    return [plan_sentence(pilot, overconfidence, power, alpha, iters) for pilot in pilots]
