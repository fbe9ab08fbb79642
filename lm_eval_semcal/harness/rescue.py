"""The rescue file: generated text an error is about to strand, saved before it propagates.

Sampling is the expensive part of a run. When grouping the answers fails (SemcalTask)
or a backend stops part way (`semcal-completions`), the responses already drawn are
written here, as JSON lines, so that nothing the model generated is lost.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from pathlib import Path

RESCUE_DIR_ENV = "SEMCAL_RESCUE_DIR"


def write_rescue_file(name: str, rows: Iterable[dict]) -> Path:
    """Save generated text that an error is about to strand: JSON lines in $SEMCAL_RESCUE_DIR."""
    directory = Path(os.environ.get(RESCUE_DIR_ENV, "semcal_rescue"))
    path = directory / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    # A lone surrogate in a response cannot be UTF-8; written as its JSON escape (\ud800),
    # it reads back as the same string, where a strict write would raise and lose the rows.
    with path.open("w", encoding="utf-8", errors="backslashreplace") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    return path
