"""A judge model's answers kept on disk, so a re-run or a rescore asks the model nothing.

The model-based groupings (`nli`, `llm`) ask a model the same questions
whenever the same samples are grouped again. `JudgementCache` keeps each answer in an
SQLite file under a namespace (the model's fingerprint and whatever settings change its
answers) and a text key (an NLI pair, a prompt's hash), so a second run, a rescore of a
saved run or a second process sharing the file calls the model zero times.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import platformdirs

# Several processes (a distributed run, a rescore beside a run) may share one file.
_LOCK_TIMEOUT_S = 60


def cache_root() -> Path:
    """The package's cache folder, where each platform keeps an application's caches.

    From `platformdirs`: on Linux `$XDG_CACHE_HOME/lm_eval_semcal` (`~/.cache/lm_eval_semcal`
    when the variable is unset), on macOS `~/Library/Caches/lm_eval_semcal`, on Windows
    `%LOCALAPPDATA%\\lm_eval_semcal\\Cache`.
    """
    return Path(platformdirs.user_cache_dir("lm_eval_semcal", appauthor=False))


def default_cache_path() -> Path:
    """`judgements.sqlite` in `cache_root()`, shared by every model-based B."""
    return cache_root() / "judgements.sqlite"


def cache_file(cache: str | Path | None) -> Path | None:
    """The file a B's `cache` option names: a path, "default", or None (memory only)."""
    return default_cache_path() if cache == "default" else (None if cache is None else Path(cache))


class JudgementCache:
    """Answers on disk (SQLite) by (namespace, key), with an in-memory copy of what was read."""

    def __init__(self, path: str | Path | None, namespace: str) -> None:
        self.namespace = namespace
        self.memory: dict[str, str] = {}
        self.db = None
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(path), timeout=_LOCK_TIMEOUT_S)
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS answers (namespace TEXT, key TEXT, value TEXT, "
                "PRIMARY KEY (namespace, key))"
            )

    def get(self, key: str) -> str | None:
        if key in self.memory or self.db is None:
            return self.memory.get(key)
        row = self.db.execute(
            "SELECT value FROM answers WHERE namespace=? AND key=?", (self.namespace, key)
        ).fetchone()
        if row is not None:
            self.memory[key] = row[0]
        return self.memory.get(key)

    def put(self, answers: dict[str, str]) -> None:
        self.memory.update(answers)
        if self.db is not None and answers:
            self.db.executemany(
                "INSERT OR REPLACE INTO answers VALUES (?, ?, ?)",
                [(self.namespace, key, value) for key, value in answers.items()],
            )
            self.db.commit()


def model_fingerprint(model: str) -> str:
    """The cache namespace of `model`: a hub id with its revision, or a local folder's contents.

    A bare name or path could stand for different weights over time (a retrained folder,
    a relative path run from elsewhere); their answers must not be mixed. Resolving a
    hub id reads its config, so a model that cannot be reached fails here, before any
    generation, with transformers' own message.
    """
    folder = Path(model)
    if folder.is_dir():
        digest = hashlib.sha256()
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                stat = path.stat()
                digest.update(f"{path.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        return f"{folder.resolve()}@{digest.hexdigest()[:16]}"
    from transformers import AutoConfig

    revision = getattr(AutoConfig.from_pretrained(model), "_commit_hash", None)
    return f"{model}@{revision}" if revision else model
