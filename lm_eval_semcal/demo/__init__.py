"""Layer 5, demo: `semcal demo`, semantic calibration shown against a known truth.

`world` is a synthetic world whose answer distributions are known, with its task
loader; `entity` is its entity B (named by the demo's task YAML alone, so it is in no
user's list of B); `tiny_model` builds a small GPT-2-style model offline; `models`
trains the demo's base and tuned models and computes their exact probabilities; `run`
samples them through lm-eval and scores everything.

May import: every layer beneath it (core, grouping, harness, runs), torch, transformers.
"""
