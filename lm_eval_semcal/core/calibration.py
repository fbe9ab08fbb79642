"""Corpus calibration metrics over questions, their bootstrap intervals and the calibration test: the public path.

Every metric takes the same two arrays, one entry per question: `confidence` (the share
of samples in the plurality semantic class, in [0, 1]) and `correct` (1 when the gold
answer lands in that class, else 0; bool also accepted). Definitions: docs/metrics.md,
"The metrics".

Import them from here (or from `lm_eval_semcal`); the code lives in modules of their own,
whose private names may change:

- `atoms`: input checks; the questions as atoms, distinct (confidence, correct) pairs
  with counts, and each metric's formula written once as a weighted function of them;
- `smece_kernel`: relplot's smECE smoother mirrored on atom weights, for the bootstrap;
- `point_metrics`: the metrics below, each its weighted formula at the observed counts
  (smECE delegated to `relplot`, the reference implementation);
- `bootstrap`: `bootstrap_distribution` draws the resamples once, as multinomial counts
  over the atoms, and its `interval` builds a percentile, basic or bias-corrected (BC)
  interval from them; `bootstrap_ci` is that in one call;
- `paired_bootstrap`: `paired_bootstrap_distributions` resamples the same questions for
  two models and gives the distribution of each and of their difference;
  `paired_bootstrap_ci` is the difference's interval in one call;
- `consistency_resampling`: `calibration_test`, whether the verdicts fit the
  confidences, against the same metric on verdicts drawn from a calibrated model;
- `power`: the test's power, `detectable_overconfidence` (the least overconfidence a
  run detects) and `questions_needed` (the questions to detect a given one);
- `brier_decomposition`: the Brier score split into miscalibration, discrimination and
  uncertainty through the isotonic (CORP) recalibration of the confidences;
- `selective`: the risk-coverage curve, its area `aurc` (bootstrapped on atoms like the
  metrics above) and `selective_accuracy`.

`scripts/coverage.py` measures how often each method's interval covers the truth in
simulated worlds.
"""

from __future__ import annotations

from lm_eval_semcal.core.bootstrap import (
    INTERVAL_METHODS,
    BootstrapDistribution,
    bootstrap_ci,
    bootstrap_distribution,
)
from lm_eval_semcal.core.brier_decomposition import BrierDecomposition, brier_decomposition
from lm_eval_semcal.core.consistency_resampling import TEST_METRICS, CalibrationTest, calibration_test
from lm_eval_semcal.core.paired_bootstrap import (
    PairedBootstrap,
    paired_bootstrap_ci,
    paired_bootstrap_distributions,
)
from lm_eval_semcal.core.point_metrics import (
    accuracy,
    auroc,
    binned_ece,
    brier,
    debiased_l2_ce,
    mean_confidence,
    overconfidence,
    smece,
)
from lm_eval_semcal.core.power import (
    DetectableOverconfidence,
    QuestionsNeeded,
    detectable_overconfidence,
    questions_needed,
)
from lm_eval_semcal.core.selective import aurc, risk_coverage_curve, selective_accuracy

__all__ = [
    "INTERVAL_METHODS",
    "TEST_METRICS",
    "BootstrapDistribution",
    "BrierDecomposition",
    "CalibrationTest",
    "DetectableOverconfidence",
    "PairedBootstrap",
    "QuestionsNeeded",
    "accuracy",
    "aurc",
    "auroc",
    "binned_ece",
    "bootstrap_ci",
    "bootstrap_distribution",
    "brier",
    "brier_decomposition",
    "calibration_test",
    "debiased_l2_ce",
    "detectable_overconfidence",
    "mean_confidence",
    "overconfidence",
    "paired_bootstrap_ci",
    "paired_bootstrap_distributions",
    "questions_needed",
    "risk_coverage_curve",
    "selective_accuracy",
    "smece",
]
