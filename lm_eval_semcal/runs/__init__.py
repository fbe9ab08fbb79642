"""Layer 4, runs: a finished lm-eval run read back from disk, and what is made from it.

`saved` reads a run's results and samples files into typed records; `report` writes
reliability diagrams and tables; `rescore` regroups a run's saved responses under
another B; `agree` compares several B on the same responses; `compare` sets several
models' runs side by side (its numbers in `compare_numbers`, its page in
`compare_page`); `plan` says how many questions a run needs for its calibration test,
from a pilot's confidences. `show` is how they all show results (numbers, file names, figures).
They score with core's scorer and corpus metrics directly, never through lm-eval's
registries.

May import: core, grouping, and the standard library, numpy, matplotlib, relplot, tqdm.
"""
