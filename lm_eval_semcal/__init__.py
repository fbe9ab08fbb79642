"""lm-eval-semcal: semantic calibration of language models in lm-evaluation-harness.

The lm-eval parts (tasks, filter, metric adapters) live in the `lm_eval_*` modules and
are loaded by the task YAMLs; `calibration`, `extraction`, `normalization`,
`collapsing` and `semantic_classes` are plain Python usable without the harness.
"""

__version__ = "0.1.0"
