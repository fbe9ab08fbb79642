"""lm-eval-semcal: semantic calibration of language models, in lm-evaluation-harness or alone.

The package is layered, each folder importing only the folders listed before it:

    core/      the math and the per-question scorer (numpy and relplot only)
    grouping/  the groupings B and their registry
    harness/   the lm-eval adapters: tasks, filter, metrics, backends (the only lm_eval imports)
    runs/      saved runs read back: report, rescore, agree, compare
    demo/      `semcal demo`: a synthetic world with known answers
    cli.py     the `semcal` command

The public API below is plain Python; `import lm_eval_semcal` imports none of it until a
name is used, and none of it imports lm_eval, torch, transformers or tenacity:

    from lm_eval_semcal import corpus_metrics, get_grouping, score_question
    record = score_question("Capital of France?", ["Paris", "paris.", "Lyon"], ["Paris"], get_grouping("normalize"))
    record.confidence, record.correct          # (0.666..., True)
"""

from __future__ import annotations

import importlib

from lm_eval_semcal import _moved

__version__ = "0.1.0"

# Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    # the per-question scorer and its record
    "Question": "core.scoring",
    "score_question": "core.scoring",
    "score_questions": "core.scoring",
    "QuestionRecord": "core.records",
    "SemanticClasses": "core.semantic_classes",
    "extract_answer": "core.extraction",
    "normalize_text": "core.normalization",
    "parse_number": "core.normalization",
    # corpus metrics
    "CorpusMetrics": "core.metrics",
    "corpus_metrics": "core.metrics",
    "accuracy": "core.calibration",
    "aurc": "core.calibration",
    "auroc": "core.calibration",
    "binned_ece": "core.calibration",
    "bootstrap_ci": "core.calibration",
    "brier": "core.calibration",
    "BrierDecomposition": "core.calibration",
    "brier_decomposition": "core.calibration",
    "CalibrationTest": "core.calibration",
    "calibration_test": "core.calibration",
    "debiased_l2_ce": "core.calibration",
    "DetectableOverconfidence": "core.calibration",
    "detectable_overconfidence": "core.calibration",
    "mean_confidence": "core.calibration",
    "overconfidence": "core.calibration",
    "paired_bootstrap_ci": "core.calibration",
    "QuestionsNeeded": "core.calibration",
    "questions_needed": "core.calibration",
    "risk_coverage_curve": "core.calibration",
    "selective_accuracy": "core.calibration",
    "smece": "core.calibration",
    "split_half_estimates": "core.estimators",
    # the groupings B
    "Grouping": "core.scoring",
    "GoldRequest": "core.scoring",
    "GroupingRequest": "core.scoring",
    "KeyGrouping": "grouping.base",
    "available_groupings": "grouping.registry",
    "get_grouping": "grouping.registry",
    "register_grouping": "grouping.registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        # Release 0.1's names of B's API (`get_collapser`, ...), kept for one more release.
        spellings = importlib.import_module(f"{__name__}.core.spellings")
        if spellings.OLD_PYTHON_NAMES.get(name) not in _EXPORTS:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        return __getattr__(spellings.renamed_attribute(__name__, name))
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


_moved.install()
