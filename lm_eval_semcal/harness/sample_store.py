"""The sample store: every sampled generation on disk, so that an interrupted run resumes.

lm-eval's own cache (`--use_cache`) keys a response by the request's arguments, which
are the same for the M copies of a question, so it skips sampled requests altogether.
Here the M samples of a request are M entries: the request's key (the model's identity,
the prompt, the generation settings) and the sample's index among its draws. A rerun
reads what a request has and asks the model only for the rest.

Why SQLite, in WAL mode, with `synchronous=NORMAL`:

- each question's samples are written in one short transaction, as soon as the last of
  them arrives: an interrupted run loses at most the questions in flight;
- a process killed at any moment leaves the file consistent (SQLite's journal), which an
  append-only file only gets with a reader that repairs a cut last line;
- the processes of one `accelerate launch` can share one file: SQLite locks the writers
  in turn (each waits up to `BUSY_TIMEOUT_S`), and WAL lets them read meanwhile;
- `synchronous=NORMAL` syncs the log at checkpoints, not at every commit: a commit
  survives the process being killed, and only a power cut may undo the last few, whose
  samples a rerun draws again.

WAL needs shared memory between the processes: keep the store on a local disk, not on
a network file system. No torch or lm-eval import here.
"""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lm_eval_semcal.grouping.judgement_cache import cache_root
from lm_eval_semcal.harness.request_groups import settings_key

__all__ = [
    "BUSY_TIMEOUT_S", "PendingSamples", "SampleStore", "SampleStoreError", "file_digests_path", "file_fingerprint", "request_key",
]

BUSY_TIMEOUT_S = 120.0
SCHEMA_VERSION = "1"
_READ_BYTES = 1 << 20


def request_key(model: str, context: str, gen_kwargs: Mapping[str, Any]) -> str:
    """The key of one request's samples: a hash of the model's identity, prompt and settings."""
    text = json.dumps([model, context, settings_key(dict(gen_kwargs))], ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def file_digests_path() -> Path:
    """Where the sha256 of each weights file read is kept: `file_digests.sqlite` in the package's cache folder."""
    return cache_root() / "file_digests.sqlite"


def _open_digest_cache() -> sqlite3.Connection | None:
    """`file_digests_path()` opened, or None where it cannot be (a read-only home): then
    every digest is computed afresh."""
    try:
        path = file_digests_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        cache = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        cache.execute(
            "CREATE TABLE IF NOT EXISTS digests (path TEXT PRIMARY KEY, size INTEGER, inode INTEGER, "
            "mtime_ns INTEGER, ctime_ns INTEGER, sha256 TEXT)"
        )
        return cache
    except (sqlite3.Error, OSError):
        return None


def _file_sha256(file: Path, cache: sqlite3.Connection | None) -> str:
    """The sha256 of every byte of `file`, read once for each version of the file.

    The digest is kept in `cache` by the file's path, size, inode and modification and
    change times (ns). Weights written again, even in place and at the same size, get a
    new change time, so they are read again; a file renamed or only touched is read again
    too, which costs time, never a wrong key.
    """
    stat = file.stat()
    path, version = str(file.resolve()), (stat.st_size, stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns)
    try:
        row = cache.execute(
            "SELECT sha256 FROM digests WHERE path = ? AND size = ? AND inode = ? AND mtime_ns = ? AND ctime_ns = ?",
            (path, *version),
        ).fetchone() if cache is not None else None
    except sqlite3.Error:
        row = None
    if row is not None:
        return row[0]
    digest = hashlib.sha256()
    with file.open("rb") as handle:
        while block := handle.read(_READ_BYTES):
            digest.update(block)
    try:
        if cache is not None:
            cache.execute("INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?, ?, ?)", (path, *version, digest.hexdigest()))
    except sqlite3.Error:
        pass  # kept next time, or computed again: the digest itself is right either way
    return digest.hexdigest()


def file_fingerprint(path: str | Path) -> str:
    """A hash of a file, or of a folder's top-level files, that tells apart two models' weights.

    Each file counts by its name and the sha256 of all its bytes, read once and then kept
    by the file's identity (`_file_sha256`), so a second run over 100 GB of weights reads
    none of them. A folder's hidden files and subfolders are left out.
    """
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    digest = hashlib.sha256()
    cache = _open_digest_cache()
    try:
        for file in files:
            digest.update(f"{file.name}\0{_file_sha256(file, cache)}\0".encode())
    finally:
        if cache is not None:
            cache.close()
    return digest.hexdigest()


class SampleStoreError(ValueError):
    """A file that cannot serve as the sample store; one line with the fix."""


class SampleStore:
    """Sampled responses keyed by (request key, sample index), in one SQLite file.

    Safe to use from several threads (one connection behind a lock) and from several
    processes (SQLite's locks; see the module).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, check_same_thread=False, isolation_level=None)
            self._create()
        except (sqlite3.DatabaseError, OSError) as err:
            raise SampleStoreError(
                f"{self.path} cannot be used as a sample store ({type(err).__name__}: {err}); "
                "pass another --use_cache path"
            ) from err
        (version,) = self._db.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
        if version != SCHEMA_VERSION:
            raise SampleStoreError(
                f"{self.path} is a sample store of schema {version}, this version reads {SCHEMA_VERSION}; "
                "pass another --use_cache path"
            )

    def _create(self) -> None:
        self._use_wal()
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self._transaction():
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS samples (request TEXT NOT NULL, sample INTEGER NOT NULL, "
                "response BLOB NOT NULL, PRIMARY KEY (request, sample)) WITHOUT ROWID"
            )
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))

    def _use_wal(self) -> None:
        # Switching a new file to WAL takes its lock without waiting (SQLite calls no busy
        # handler there): two processes opening one new store at once retry in turn.
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01 + random.random() * 0.05)

    def _transaction(self):
        return _Transaction(self._db, self._lock)

    def samples(self, key: str) -> list[tuple[int, str]]:
        """The stored `(index, response)` samples of request `key`, in index order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT sample, response FROM samples WHERE request = ? ORDER BY sample", (key,)
            ).fetchall()
        return [(index, response.decode("utf-8", "surrogatepass")) for index, response in rows]

    def put(self, rows: Iterable[tuple[str, int, str]]) -> None:
        """Store `(key, index, response)` rows in one transaction (a row replaces its index's)."""
        # UTF-8 bytes that keep a lone surrogate (a server's "\ud800") as it came: the
        # run replaces it later, and a served sample must be the text the model gave.
        # A response that is no text (a backend's None) is not kept: a rerun draws it again.
        encoded = [
            (key, index, response.encode("utf-8", "surrogatepass"))
            for key, index, response in rows
            if isinstance(response, str)
        ]
        if not encoded:
            return
        with self._transaction():
            self._db.executemany("INSERT OR REPLACE INTO samples VALUES (?, ?, ?)", encoded)

    def count(self) -> int:
        with self._lock:
            (count,) = self._db.execute("SELECT COUNT(*) FROM samples").fetchone()
        return count

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _Transaction:
    """`BEGIN IMMEDIATE ... COMMIT` under the store's lock: the writer lock is taken at once,
    so two processes wait for each other at the start instead of failing mid-way."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock) -> None:
        self._db, self._lock = db, lock

    def __enter__(self) -> None:
        self._lock.acquire()
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise

    def __exit__(self, exc_type, *exc) -> None:
        try:
            self._db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self._lock.release()


@dataclass
class _Request:
    """One request's samples still to come in a model call, and those that came."""

    key: str
    settings: str
    first_index: int
    missing: int
    received: list[str] = field(default_factory=list)
    saved: int = 0


class PendingSamples:
    """The samples one model call is drawing, stored as each request's last one arrives.

    A backend reports each sample as it is drawn (lm-eval's cache hook, with the prompt
    and settings but no request index): `receive` finds the request it belongs to and,
    once a request has all it asked for, writes its samples in one transaction. When the
    call returns, `finish` writes what it returned, which is what the run uses; when it
    fails, `save_received` keeps the samples of the requests left part way.
    """

    def __init__(self, store: SampleStore, requests: Sequence[tuple[str, str, str, int, int]]) -> None:
        """`requests`: (key, context, settings key, first new index, samples to draw) each."""
        self._store = store
        self._lock = threading.Lock()
        self._by_context: dict[str, list[_Request]] = {}
        self._requests: dict[str, _Request] = {}
        for key, context, settings, first_index, missing in requests:
            request = _Request(key, settings, first_index, missing)
            self._requests[key] = request
            self._by_context.setdefault(context, []).append(request)

    def receive(self, context: str, gen_kwargs: Mapping[str, Any], response: str) -> bool:
        """File one drawn sample; False when it belongs to no request of the call.

        The prompt finds the request. A backend may report settings it rewrote (vLLM drops
        `do_sample`), so they decide only between requests sharing one prompt.
        """
        with self._lock:
            candidates = [r for r in self._by_context.get(context, ()) if len(r.received) < r.missing]
            if len(candidates) > 1:
                settings = settings_key(dict(gen_kwargs))
                candidates = [r for r in candidates if r.settings == settings]
            if len(candidates) != 1:
                return False
            request = candidates[0]
            request.received.append(response)
            complete = len(request.received) == request.missing
        if complete:
            self._save(request, request.received)
        return True

    def _save(self, request: _Request, responses: list[str]) -> None:
        start = request.saved
        self._store.put(
            (request.key, request.first_index + index, response)
            for index, response in enumerate(responses[start:], start)
        )
        request.saved = len(responses)

    def save_received(self) -> None:
        """Store the samples received for requests the call left part way (it failed)."""
        with self._lock:
            partial = [r for r in self._requests.values() if r.saved < len(r.received)]
        for request in partial:
            self._save(request, list(request.received))

    def finish(self, returned: Mapping[str, list[str]]) -> None:
        """Store what the call returned for each request, where it differs from what was filed.

        The returned text is what the run scores: a backend whose reported samples differ
        from it (or came in another order, or were not reported) is overwritten by it.
        """
        rows = []
        for key, responses in returned.items():
            request = self._requests[key]
            if request.received != responses or request.saved != len(responses):
                rows += [(key, request.first_index + index, text) for index, text in enumerate(responses)]
        self._store.put(rows)
