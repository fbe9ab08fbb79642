"""The corpus metrics of a set of scored questions: one function for every caller.

`corpus_metrics(records)` gives the corpus metrics of docs/metrics.md, the debiased L2
calibration error beside the plug-in ECE (`not_attempted` too, when every question was
graded by a three-way judge), the Brier score's CORP parts and the accuracy at 50% and
80% coverage, a 95% bootstrap interval for each calibration metric (ece,
debiased_l2_ce, smece, brier, auroc, aurc), lm-eval's standard error for each mean, and
the calibration test of smECE with the overconfidence it can detect (`TEST_ROWS`; its
verdict in words, `calibration_verdict`, is the one every page prints).
The lm-eval aggregations, `semcal report`, `semcal rescore`, `semcal agree`, `semcal
compare` (with `paired_difference`) and the demo all compute through `metric_value` and
`metric_interval` here, so they cannot disagree.

Means are taken as lm-eval takes them (`sum(values) / len(values)`, in question order),
so a number recomputed from a saved run equals the one lm-eval wrote to the last digit.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from pathlib import Path

import numpy as np

from lm_eval_semcal.core import calibration
from lm_eval_semcal.core.records import QuestionRecord
from lm_eval_semcal.core.settings import (
    BOOTSTRAP_SEED,
    CI_LEVEL,
    CI_PERCENT,
    DEFAULT_BOOTSTRAP_ITERS,
    TEST_ALPHA,
    TEST_POWER,
)

__all__ = [
    "CALIBRATION_METRICS",
    "COMPARED_METRICS",
    "COVERAGE_FILE",
    "CURVE_METRICS",
    "DEFAULT_INTERVAL_METHOD",
    "INTERVAL_METHOD",
    "INTERVAL_NOTES",
    "MEAN_METRICS",
    "METRICS",
    "TEST_ROWS",
    "CorpusMetrics",
    "calibration_test_rows",
    "calibration_verdict",
    "corpus_metrics",
    "interval_notes",
    "mean",
    "mean_stderr",
    "metric_interval",
    "metric_value",
    "paired_difference",
    "question_items",
    "question_values",
    "warnings_logged",
]

log = logging.getLogger(__name__)

# The corpus metrics, in the order docs/metrics.md defines them, with the direction that
# is better, and
# `not_attempted`: the mean share of samples in classes a three-way judge graded
# NOT_ATTEMPTED, present only when every question was so graded. Lower is better, as
# for `no_answer`: both count samples that commit to no checkable answer.
METRICS: dict[str, str] = {
    "acc": "higher",
    "conf": "-",
    "ece": "lower",
    "debiased_l2_ce": "lower",
    "smece": "lower",
    "brier": "lower",
    "brier_miscalibration": "lower",
    "brier_discrimination": "higher",
    "brier_uncertainty": "-",
    "auroc": "higher",
    "aurc": "lower",
    "acc_at_50_coverage": "higher",
    "acc_at_80_coverage": "higher",
    "sem_entropy": "-",
    "n_classes": "-",
    "no_answer": "lower",
    "not_attempted": "lower",
}
CALIBRATION_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "ece": calibration.binned_ece,
    "debiased_l2_ce": calibration.debiased_l2_ce,
    "smece": calibration.smece,
    "brier": calibration.brier,
    "auroc": calibration.auroc,
    "aurc": calibration.aurc,
}


def _brier_miscalibration(confidence: np.ndarray, correct: np.ndarray) -> float:
    return calibration.brier_decomposition(confidence, correct).miscalibration


def _brier_discrimination(confidence: np.ndarray, correct: np.ndarray) -> float:
    return calibration.brier_decomposition(confidence, correct).discrimination


def _brier_uncertainty(confidence: np.ndarray, correct: np.ndarray) -> float:
    return calibration.brier_decomposition(confidence, correct).uncertainty


# Numbers read off one curve fitted to all the questions, shown without an interval: the
# CORP split of the Brier score (the isotonic recalibration curve, `brier_decomposition`)
# and the accuracy on the most confident half and 80% of the questions (the
# risk-coverage curve, `selective_accuracy`).
CURVE_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "brier_miscalibration": _brier_miscalibration,
    "brier_discrimination": _brier_discrimination,
    "brier_uncertainty": _brier_uncertainty,
    "acc_at_50_coverage": partial(calibration.selective_accuracy, coverage=0.5),
    "acc_at_80_coverage": partial(calibration.selective_accuracy, coverage=0.8),
}
# The calibration test of smECE (`calibration_test_rows`), with the direction that is
# better: its p-value, the median and 95th percentile of smECE over calibrated runs of
# these confidences (the noise floor), and the least overconfidence it detects with 80%
# power at 5%. Simulated like the intervals, they are NaN when the bootstrap is off.
TEST_ROWS: dict[str, str] = {
    "smece_p_value": "-",
    "smece_noise_floor": "-",
    "smece_noise_p95": "-",
    "smece_detectable_overconfidence": "lower",
}
MEAN_METRICS = ("acc", "conf", "sem_entropy", "n_classes", "no_answer", "not_attempted")
# What `semcal compare` sets side by side, each with a bootstrap interval: the means it
# needs intervals for, the signed gap conf - acc, and the calibration metrics.
COMPARED_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "acc": calibration.accuracy,
    "conf": calibration.mean_confidence,
    "overconfidence": calibration.overconfidence,
    **CALIBRATION_METRICS,
}
# The interval of each metric, chosen by measured coverage (scripts/coverage.py;
# docs/metrics.md, "Intervals: measured coverage"): the basic interval for ECE, whose
# plug-in bias it removes (93% coverage where the percentile interval had 59%, a mixed
# world at n = 300); percentile for the rest.
INTERVAL_METHOD: dict[str, str] = {"ece": "basic"}
DEFAULT_INTERVAL_METHOD = "percentile"
# The coverage of those intervals as scripts/coverage.py last measured it (it writes this
# file); the notes below quote it.
COVERAGE_FILE = Path(__file__).with_name("interval_coverage.json")


def _coverage_percents(coverage: dict, metrics: Sequence[str], world: str | None = None) -> list[Fraction]:
    """Exact coverage in percent of `metrics`' cells of `world` (None: of every world and pair)."""
    found = [
        Fraction(100 * cell["covered"], cell["corpora"])
        for cell in coverage["cells"]
        if cell["metric"] in metrics and world in (None, cell["world"])
    ]
    if not found:
        raise ValueError(f"the coverage holds no cell of {', '.join(metrics)} in {world or 'any world'}")
    return found


def interval_notes(coverage: dict) -> tuple[str, str]:
    """The notes said next to ECE and smECE intervals, quoting the measured `coverage`.

    Parameters
    ----------
    coverage : dict
        What scripts/coverage.py writes to `COVERAGE_FILE`: in ``"cells"``, per simulated
        world or pair (``"a - b"``), n and metric, how many of its ``"corpora"`` the
        reported interval ``"covered"``.

    Returns
    -------
    (str, str)
        On single models: the highest coverage of ECE and smECE for a calibrated model, and
        the lowest of debiased_l2_ce anywhere; on differences: the most that ECE and smECE
        missed for the pair calibrated - overconfident. Each figure is rounded to a whole
        percent away from the claim it supports: "at most" and "up to" up, "at least" down.
    """
    calibrated_hit = math.ceil(max(_coverage_percents(coverage, ("ece", "smece"), "calibrated")))
    debiased_hit = math.floor(min(_coverage_percents(coverage, ("debiased_l2_ce",))))
    pair_miss = math.ceil(100 - min(_coverage_percents(coverage, ("ece", "smece"), "calibrated - overconfident")))
    return (
        (
            "ECE and smECE are biased upward near perfect calibration: for a well-calibrated model "
            f"their {CI_PERCENT} interval usually lies entirely above the true value 0 (in simulation it "
            f"contained 0 in at most {calibrated_hit}% of cases), so an interval above 0 is not evidence of "
            "miscalibration: read debiased_l2_ce and its interval, which contained the true value in "
            f"at least {debiased_hit}% of simulated cases, 0 included."
        ),
        (
            "When one of two models is nearly calibrated, a difference in ECE or smECE understates "
            f"the gap between them, and its interval missed the true difference in up to {pair_miss}% of "
            "simulated cases: compare debiased_l2_ce instead."
        ),
    )


# Said next to the numbers wherever ECE and smECE are shown with intervals.
INTERVAL_NOTES = interval_notes(json.loads(COVERAGE_FILE.read_text(encoding="utf-8")))


def question_values(record: QuestionRecord) -> dict[str, float]:
    """One question's value of each mean metric; `not_attempted` only for a graded record."""
    values = {
        "acc": float(record.correct),
        "conf": float(record.confidence),
        "sem_entropy": float(record.entropy),
        "n_classes": float(record.n_classes),
        "no_answer": float(record.no_answer_share),
    }
    if record.not_attempted_share is not None:
        values["not_attempted"] = float(record.not_attempted_share)
    return values


def question_items(record: QuestionRecord) -> dict[str, float | tuple[float, float]]:
    """Everything one question contributes to the corpus metrics, keyed as lm-eval logs it.

    The value of each mean metric, and for each calibration metric X (and its interval
    rows X_ci_low, X_ci_high) the question's (confidence, correct) pair.
    """
    items: dict[str, float | tuple[float, float]] = dict(question_values(record))
    pair = (float(record.confidence), float(record.correct))
    for name in CALIBRATION_METRICS:
        items[name] = pair
        items[f"{name}_ci_low"] = pair
        items[f"{name}_ci_high"] = pair
    for name in (*CURVE_METRICS, *TEST_ROWS):
        items[name] = pair
    return items


def mean(values: Sequence[float]) -> float:
    """The mean as lm-eval's `mean` aggregation computes it."""
    return sum(values) / len(values)


def mean_stderr(values: Sequence[float]) -> float:
    """lm-eval's standard error of the mean: sample standard deviation / sqrt(n); NaN for n < 2."""
    if len(values) < 2:
        return math.nan
    mu = mean(values)
    return math.sqrt(sum((x - mu) ** 2 for x in values) / (len(values) - 1)) / math.sqrt(len(values))


@contextmanager
def warnings_logged(label: str) -> Iterator[None]:
    """Log the calibration module's warnings raised inside, once each, led by `label`.

    The calibration functions do not know which task or metric they score: the label
    names it, where a bare RuntimeWarning would point at the calibration module.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for message in dict.fromkeys(str(w.message) for w in caught):
        log.warning("%s: %s", label, message)


def metric_value(name: str, confidence: np.ndarray, correct: np.ndarray) -> float:
    """Metric `name` of `COMPARED_METRICS` (the calibration metrics among them) or `CURVE_METRICS` of the questions."""
    function = CURVE_METRICS[name] if name in CURVE_METRICS else COMPARED_METRICS[name]
    return float(function(confidence, correct))


def calibration_test_rows(
    confidence: np.ndarray,
    correct: np.ndarray,
    bootstrap_iters: int = DEFAULT_BOOTSTRAP_ITERS,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, float]:
    """The rows of `TEST_ROWS`: the calibration test of smECE and the overconfidence it detects.

    Parameters
    ----------
    confidence, correct : np.ndarray of shape (n,)
        The questions' confidences and verdicts.
    bootstrap_iters : int, default 1000
        The calibrated runs drawn (`calibration_test`'s and `detectable_overconfidence`'s
        `iters`), as many as the intervals' resamples; 0 leaves every row out (NaN), as
        it does the intervals.
    seed : int, default 0
        The simulations' seed, the bootstrap's.

    Returns
    -------
    dict of str to float
        ``smece_p_value``, ``smece_noise_floor`` (the calibrated runs' median smECE) and
        ``smece_noise_p95`` (their 95th percentile) from ``calibration_test(confidence,
        correct, "smece", bootstrap_iters, seed)``; ``smece_detectable_overconfidence``
        from ``detectable_overconfidence(confidence, "smece", power=0.8, alpha=0.05,
        iters=bootstrap_iters, seed=seed)``, NaN where no shift reaches that power, or
        where fewer than 19 draws cannot give a p-value of 0.05.
    """
    rows = dict.fromkeys(TEST_ROWS, math.nan)
    if bootstrap_iters == 0:
        return rows
    test = calibration.calibration_test(confidence, correct, metric="smece", iters=bootstrap_iters, seed=seed)
    rows.update(smece_p_value=test.p_value, smece_noise_floor=test.median, smece_noise_p95=test.null_high)
    if 1 / (bootstrap_iters + 1) <= TEST_ALPHA:
        found = calibration.detectable_overconfidence(
            confidence, metric="smece", power=TEST_POWER, alpha=TEST_ALPHA, iters=bootstrap_iters, seed=seed
        )
        if found.overconfidence is not None:
            rows["smece_detectable_overconfidence"] = found.overconfidence
    return rows


def calibration_verdict(p_value: float, alpha: float = TEST_ALPHA) -> str:
    """The calibration test's verdict in words, as every page says it.

    Parameters
    ----------
    p_value : float
        ``smece_p_value``; NaN when the test was not run (0 resamples).
    alpha : float, default 0.05
        The level: ``p_value <= alpha`` reads "miscalibrated".

    Returns
    -------
    str
        The p-value is written with three decimals below 0.1, two above, and as
        "p < 0.001" below 0.001 (1000 draws reach no lower than 1/1001).

    Examples
    --------
    >>> calibration_verdict(0.4126)
    'within noise of calibrated (p = 0.41)'
    >>> calibration_verdict(3 / 1001), calibration_verdict(1 / 1001)
    ('miscalibrated, p = 0.003', 'miscalibrated, p < 0.001')
    >>> calibration_verdict(float("nan"))
    'not tested (0 resamples)'
    """
    if math.isnan(p_value):
        return "not tested (0 resamples)"
    if p_value < 0.001:
        written = "p < 0.001"
    else:
        written = f"p = {p_value:.3f}" if p_value < 0.1 else f"p = {p_value:.2f}"
    return f"miscalibrated, {written}" if p_value <= alpha else f"within noise of calibrated ({written})"


def metric_interval(
    name: str,
    confidence: np.ndarray,
    correct: np.ndarray,
    bootstrap_iters: int = DEFAULT_BOOTSTRAP_ITERS,
    seed: int = BOOTSTRAP_SEED,
    level: float = CI_LEVEL,
) -> tuple[float, float]:
    """The bootstrap interval of metric `name` (`INTERVAL_METHOD`'s method); (nan, nan) for 0 resamples."""
    low, high = calibration.bootstrap_ci(
        COMPARED_METRICS[name], confidence, correct, iters=bootstrap_iters, seed=seed, level=level,
        method=INTERVAL_METHOD.get(name, DEFAULT_INTERVAL_METHOD),
    )  # fmt: skip
    return float(low), float(high)


def paired_difference(
    name: str,
    confidence_a: np.ndarray,
    correct_a: np.ndarray,
    confidence_b: np.ndarray,
    correct_b: np.ndarray,
    bootstrap_iters: int = DEFAULT_BOOTSTRAP_ITERS,
    seed: int = BOOTSTRAP_SEED,
    level: float = CI_LEVEL,
) -> tuple[float, float, float]:
    """Metric `name` of model b minus that of model a on the same questions, with its paired interval.

    Both models' arrays hold the same questions in the same order; each resample draws
    the same questions for both (`calibration.paired_bootstrap_ci`), with the interval
    method of `INTERVAL_METHOD`. Returns (difference, low, high); the bounds are NaN for
    0 resamples.
    """
    difference, low, high = calibration.paired_bootstrap_ci(
        COMPARED_METRICS[name], confidence_b, correct_b, confidence_a, correct_a, iters=bootstrap_iters, seed=seed,
        level=level, method=INTERVAL_METHOD.get(name, DEFAULT_INTERVAL_METHOD),
    )  # fmt: skip
    return float(difference), float(low), float(high)


@dataclass(frozen=True)
class CorpusMetrics:
    """The metrics of n questions.

    `values` holds the metrics of `METRICS` in its order: every one of them when every
    question was graded by a three-way judge, else all but `not_attempted` (the key is
    then absent); `intervals` the bootstrap interval of each calibration metric
    (`CALIBRATION_METRICS`; (nan, nan) when the bootstrap is off); `stderrs` lm-eval's
    standard error of each mean metric in `values`; `test` the rows of `TEST_ROWS`
    (`calibration_test_rows`; NaN when the bootstrap is off); `bootstrap_iters` the
    resamples the intervals were drawn from, and the calibrated runs the test drew.
    """

    n: int
    values: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    stderrs: dict[str, float]
    test: dict[str, float]
    bootstrap_iters: int

    @property
    def verdict(self) -> str:
        """The calibration test's verdict in words (`calibration_verdict`)."""
        return calibration_verdict(self.test["smece_p_value"])


def corpus_metrics(
    records: Sequence[QuestionRecord],
    bootstrap_iters: int = DEFAULT_BOOTSTRAP_ITERS,
    seed: int = BOOTSTRAP_SEED,
    level: float = CI_LEVEL,
    label: str = "semcal",
) -> CorpusMetrics:
    """The corpus metrics (docs/metrics.md) of scored questions, intervals, standard errors.

    Parameters
    ----------
    records : sequence of QuestionRecord
        One per question (from `score_questions`, or read back from a saved run).
    bootstrap_iters : int, default 1000
        Resamples of the questions for the intervals, and calibrated runs drawn for the
        calibration test; 0 leaves both out (NaN).
    seed : int, default 0
        The bootstrap's seed, and the test's.
    level : float in (0, 1), default 0.95
        The intervals' level.
    label : str, default "semcal"
        Names the questions in the warnings logged (an undefined AUROC, say).

    Returns
    -------
    CorpusMetrics
        acc, conf, sem_entropy, n_classes and no_answer are means over questions,
        ``sum_i x_i / n`` as lm-eval takes them, each with lm-eval's standard error, and
        so is not_attempted (each record's `not_attempted_share`) when every record is
        graded; it is left out otherwise. ece, debiased_l2_ce, smece, brier and auroc
        come from `lm_eval_semcal.core.calibration` with confidence = each record's
        plurality share, correct = its verdict, each with its bootstrap interval (the
        method of `INTERVAL_METHOD`), and so does aurc (`selective.aurc`). The
        `CURVE_METRICS` (the Brier score's CORP parts, the accuracy at 50% and 80%
        coverage) have no interval. `test` holds `calibration_test_rows`, with the same
        resample count and seed.

    Examples
    --------
    Two questions of four samples each; the first's plurality class (3 of 4) holds the
    gold answer, the second's does not.

    >>> from lm_eval_semcal.core.records import QuestionRecord
    >>> from lm_eval_semcal.core.semantic_classes import SemanticClasses
    >>> def record(answers, gold):
    ...     classes = SemanticClasses.from_keys(answers, answers)
    ...     return QuestionRecord(classes, tuple(r == gold for r in classes.representatives), "exact")
    >>> records = [record(["Paris", "Paris", "Paris", "Lyon"], "Paris"), record(["4", "5", "5", "5"], "4")]
    >>> result = corpus_metrics(records, bootstrap_iters=0)
    >>> {name: round(value, 4) for name, value in result.values.items()}  # doctest: +NORMALIZE_WHITESPACE
    {'acc': 0.5, 'conf': 0.75, 'ece': 0.25, 'debiased_l2_ce': 0.0, 'smece': 0.25, 'brier': 0.3125,
     'brier_miscalibration': 0.0625, 'brier_discrimination': 0.0, 'brier_uncertainty': 0.25,
     'auroc': 0.5, 'aurc': 0.5, 'acc_at_50_coverage': 0.5, 'acc_at_80_coverage': 0.5,
     'sem_entropy': 0.5623, 'n_classes': 2.0, 'no_answer': 0.0}
    >>> result.stderrs["acc"], result.intervals["ece"], result.verdict
    (0.5, (nan, nan), 'not tested (0 resamples)')

    One bin at confidence 0.75 with accuracy 0.5: ece = |0.75 - 0.5|; debiased_l2_ce
    clips 0.25**2 - 0.5 * 0.5 / 1 < 0 to 0; brier = (0.25**2 + 0.75**2) / 2; the one
    right and the one wrong answer tie (auroc 0.5); sem_entropy = -(0.75 ln 0.75 + 0.25
    ln 0.25); the standard error of acc is sqrt(0.5) / sqrt(2). One confidence: the
    isotonic recalibration maps it to the accuracy 0.5, so miscalibration = 0.25**2 and
    nothing is discriminated, uncertainty = 0.5 * 0.5; the risk-coverage curve is one
    point at the error rate (aurc 0.5) and every coverage has accuracy 0.5.
    """
    if not records:
        raise ValueError("no questions to score: pass at least one record")
    per_question = [question_values(record) for record in records]
    values: dict[str, float] = {}
    stderrs: dict[str, float] = {}
    for name in MEAN_METRICS:
        if not all(name in row for row in per_question):
            continue
        column = [row[name] for row in per_question]
        values[name] = mean(column)
        stderrs[name] = mean_stderr(column)
    confidence = np.array([row["conf"] for row in per_question])
    correct = np.array([row["acc"] for row in per_question])
    intervals: dict[str, tuple[float, float]] = {}
    for name in CALIBRATION_METRICS:
        with warnings_logged(f"{label} {name} over {len(records)} questions"):
            values[name] = metric_value(name, confidence, correct)
        with warnings_logged(f"{label} {name} interval over {len(records)} questions"):
            intervals[name] = metric_interval(name, confidence, correct, bootstrap_iters, seed, level)
    for name in CURVE_METRICS:
        values[name] = metric_value(name, confidence, correct)
    return CorpusMetrics(
        n=len(records),
        values={name: values[name] for name in METRICS if name in values},
        intervals=intervals,
        stderrs=stderrs,
        test=calibration_test_rows(confidence, correct, bootstrap_iters, seed),
        bootstrap_iters=bootstrap_iters,
    )
