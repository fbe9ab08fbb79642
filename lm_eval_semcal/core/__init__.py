"""Layer 1, core: the math and the per-question scorer.

What a semantic-calibration number is, with nothing of lm-eval in it: answer
extraction (`extraction`), text and number normalisation (`normalization`), one
question's classes and the plurality tie rule (`semantic_classes`), the record of a
scored question (`records`), the scorer that turns M responses into a record
(`scoring`), the small-M estimators (`estimators`), and the corpus metrics with their
bootstrap intervals, the calibration test and its power, the Brier decomposition and
the risk-coverage curve (`calibration`, their public path, over `atoms`,
`smece_kernel`, `point_metrics`, `bootstrap`, `paired_bootstrap`,
`consistency_resampling`, `power`, `brier_decomposition` and `selective`; and
`metrics`, what every report computes through).

May import: the standard library, numpy and relplot (with the scipy relplot brings).
Nothing of this package above it.
"""
