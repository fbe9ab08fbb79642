"""`python -m lm_eval_semcal ...` is the `semcal` command (for `accelerate launch -m`)."""

import sys

from lm_eval_semcal.cli import main

sys.exit(main())
