"""Defaults every layer shares, importable without numpy (the CLI reads them for its help)."""

# Bootstrap intervals: resamples of the questions, the generator's seed, the coverage.
DEFAULT_BOOTSTRAP_ITERS = 1000
BOOTSTRAP_SEED = 0
CI_LEVEL = 0.95
# The level as the reports and the help print it: "95%".
CI_PERCENT = f"{CI_LEVEL:.0%}"

# The calibration test of every report (consistency resampling on smECE, as many calibrated
# draws as bootstrap resamples, the same seed): its level, and the power at which the
# detectable overconfidence is quoted.
TEST_ALPHA = 0.05
TEST_POWER = 0.8
