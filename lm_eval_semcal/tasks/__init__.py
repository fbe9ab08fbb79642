"""The semcal task YAMLs: pass this folder to lm-eval's `--include_path`."""

from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent
