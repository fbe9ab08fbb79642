"""The sample store on its own: keys, fingerprints, per-question writes, two writing processes."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import sqlite3

import pytest

from lm_eval_semcal.harness.request_groups import settings_key
from lm_eval_semcal.harness.sample_store import (
    PendingSamples,
    SampleStore,
    SampleStoreError,
    file_digests_path,
    file_fingerprint,
    request_key,
)

SETTINGS = {"until": ["\n"], "do_sample": True, "temperature": 1.0, "max_gen_toks": 16}


@pytest.fixture
def store(tmp_path):
    opened = SampleStore(tmp_path / "cache_semcal_samples.db")
    yield opened
    opened.close()


def rows_of(path) -> list[tuple]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT request, sample, response FROM samples ORDER BY request, sample").fetchall()


def test_samples_come_back_in_index_order_with_a_lone_surrogate_intact(store):
    store.put([("k", 2, "c"), ("k", 0, "a\ud800"), ("k", 1, "b"), ("other", 0, "x")])
    assert store.samples("k") == [(0, "a\ud800"), (1, "b"), (2, "c")]
    store.put([("k", 1, "B")])  # an index written again is replaced
    assert store.samples("k") == [(0, "a\ud800"), (1, "B"), (2, "c")]
    assert store.samples("absent") == []
    assert store.count() == 4


def test_a_store_is_read_again_after_it_is_closed(tmp_path):
    first = SampleStore(tmp_path / "s.db")
    first.put([("k", 0, "Paris")])
    first.close()
    assert SampleStore(tmp_path / "s.db").samples("k") == [(0, "Paris")]


def test_a_store_of_another_schema_is_refused(tmp_path):
    SampleStore(tmp_path / "s.db").close()
    with sqlite3.connect(tmp_path / "s.db") as db:
        db.execute("UPDATE meta SET value = '0' WHERE name = 'schema'")
    with pytest.raises(SampleStoreError, match="schema 0, this version reads 1; pass another --use_cache path"):
        SampleStore(tmp_path / "s.db")


def test_a_file_that_is_no_database_is_refused_in_one_line(tmp_path):
    (tmp_path / "s.db").write_text("not a database, but a run's notes\n" * 100)
    with pytest.raises(SampleStoreError, match=r"s.db cannot be used as a sample store \(DatabaseError: file is not a database\); pass another --use_cache path"):
        SampleStore(tmp_path / "s.db")


def test_a_response_that_is_no_text_is_not_kept(store):
    store.put([("k", 0, "a"), ("k", 1, None), ("k", 2, "c")])
    assert store.samples("k") == [(0, "a"), (2, "c")]


def test_request_keys_differ_by_model_prompt_and_settings_only():
    key = request_key("model-a", "Q: 1+1?\nA:", SETTINGS)
    assert key == request_key("model-a", "Q: 1+1?\nA:", dict(reversed(list(SETTINGS.items()))))
    assert key != request_key("model-b", "Q: 1+1?\nA:", SETTINGS)
    assert key != request_key("model-a", "Q: 1+2?\nA:", SETTINGS)
    assert key != request_key("model-a", "Q: 1+1?\nA:", {**SETTINGS, "temperature": 0.7})
    assert len(key) == 64


def test_file_fingerprint_sees_weights_trained_again_in_place(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"n_layer": 2}')
    weights = bytearray(b"\x01" * (9 << 20))  # larger than the whole-file limit: sampled by chunks
    (folder / "model.safetensors").write_bytes(weights)
    (folder / ".cache").write_text("ignored")
    before = file_fingerprint(folder)
    assert file_fingerprint(folder) == before
    (folder / ".cache").write_text("still ignored")
    assert file_fingerprint(folder) == before
    weights[len(weights) * 4 // 16 + 100] = 2  # a byte inside the chunk at 4/16 of the file
    (folder / "model.safetensors").write_bytes(weights)
    assert file_fingerprint(folder) != before
    weights[len(weights) * 4 // 16 + 100] = 1
    weights[len(weights) * 4 // 16 + (100 << 10)] = 2  # a byte 100 KiB past it, between two chunks
    (folder / "model.safetensors").write_bytes(weights)
    assert file_fingerprint(folder) != before
    (folder / "model.safetensors").write_bytes(b"\x01" * (9 << 20))
    assert file_fingerprint(folder) == before
    (folder / "config.json").write_text('{"n_layer": 3}')
    assert file_fingerprint(folder) != before
    assert file_fingerprint(folder / "config.json") != file_fingerprint(folder)


def test_each_file_is_read_once_for_each_version_of_it(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"\x01" * (5 << 20))
    first = file_fingerprint(weights)
    with sqlite3.connect(file_digests_path()) as cache:
        [(path, digest)] = cache.execute("SELECT path, sha256 FROM digests").fetchall()
        assert (path, digest) == (str(weights.resolve()), hashlib.sha256(b"\x01" * (5 << 20)).hexdigest())
        # The kept digest is what the next call uses: the file is not read again.
        cache.execute("UPDATE digests SET sha256 = ?", ("0" * 64,))
    assert file_fingerprint(weights) != first
    # Written again at the same size, its modification time set back: its change time tells.
    stat = weights.stat()
    weights.write_bytes(b"\x01" * (5 << 20))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert file_fingerprint(weights) == first
    # No usable cache folder: the digest is computed each time, and the same.
    (tmp_path / "cache").rename(tmp_path / "moved")
    (tmp_path / "cache").write_text("a file where the cache folder should be")
    assert file_fingerprint(weights) == first


def pending_for(store: SampleStore, *requests: tuple[str, str, dict, int, int]) -> PendingSamples:
    """(key, prompt, settings, first new index, samples to draw) per request."""
    return PendingSamples(store, [(key, prompt, settings_key(s), first, missing) for key, prompt, s, first, missing in requests])


def test_a_request_is_written_when_its_last_sample_arrives(store):
    pending = pending_for(store, ("k1", "Q1", SETTINGS, 0, 3), ("k2", "Q2", SETTINGS, 2, 2))
    assert pending.receive("Q1", SETTINGS, "a")
    assert pending.receive("Q2", SETTINGS, "x")
    assert pending.receive("Q1", SETTINGS, "b")
    assert rows_of(store.path) == []
    assert pending.receive("Q1", SETTINGS, "c")
    assert rows_of(store.path) == [("k1", 0, b"a"), ("k1", 1, b"b"), ("k1", 2, b"c")]
    assert pending.receive("Q2", SETTINGS, "y")
    assert store.samples("k2") == [(2, "x"), (3, "y")]  # after the 2 samples it already had
    # Every sample asked for has come: one more, or one of an unknown prompt, is not filed.
    assert not pending.receive("Q1", SETTINGS, "d")
    assert not pending.receive("Q3", SETTINGS, "z")


def test_rewritten_settings_still_find_the_only_request_of_their_prompt(store):
    # vLLM reports its samples with `do_sample` dropped from the settings.
    rewritten = {key: value for key, value in SETTINGS.items() if key != "do_sample"}
    pending = pending_for(store, ("k1", "Q1", SETTINGS, 0, 1))
    assert pending.receive("Q1", rewritten, "a")
    assert store.samples("k1") == [(0, "a")]


def test_settings_decide_between_requests_sharing_a_prompt(store):
    cold = {**SETTINGS, "temperature": 0.5}
    pending = pending_for(store, ("hot", "Q1", SETTINGS, 0, 1), ("cold", "Q1", cold, 0, 1))
    assert pending.receive("Q1", cold, "c")
    assert pending.receive("Q1", SETTINGS, "h")
    assert store.samples("hot") == [(0, "h")] and store.samples("cold") == [(0, "c")]
    # Two requests of one prompt, and settings matching neither: not guessed.
    pending = pending_for(store, ("a", "Q2", SETTINGS, 0, 1), ("b", "Q2", cold, 0, 1))
    assert not pending.receive("Q2", {"temperature": 0.9}, "?")


def test_a_failed_call_keeps_the_samples_of_a_request_left_part_way(store):
    pending = pending_for(store, ("k1", "Q1", SETTINGS, 0, 2), ("k2", "Q2", SETTINGS, 0, 3))
    for text in ["a", "b", "x"]:
        pending.receive("Q1" if text < "x" else "Q2", SETTINGS, text)
    pending.save_received()
    assert store.samples("k1") == [(0, "a"), (1, "b")] and store.samples("k2") == [(0, "x")]


def test_what_the_call_returned_replaces_what_was_reported(store):
    pending = pending_for(store, ("k1", "Q1", SETTINGS, 0, 2), ("k2", "Q2", SETTINGS, 0, 2), ("k3", "Q3", SETTINGS, 0, 1))
    for context, text in [("Q1", "a"), ("Q1", "b"), ("Q2", "x"), ("Q2", "y")]:
        pending.receive(context, SETTINGS, text)
    # Q1 as reported; Q2 in another order; Q3 never reported.
    pending.finish({"k1": ["a", "b"], "k2": ["y", "x"], "k3": ["z"]})
    assert [store.samples(k) for k in ("k1", "k2", "k3")] == [[(0, "a"), (1, "b")], [(0, "y"), (1, "x")], [(0, "z")]]


def _write_many(path: str, worker: int, count: int) -> None:
    store = SampleStore(path)
    for index in range(count):
        store.put([(f"worker{worker}", index, f"sample {index}")])
    store.close()


def test_two_processes_write_one_store_at_once(tmp_path):
    path = str(tmp_path / "shared_semcal_samples.db")
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_many, args=(path, worker, 300)) for worker in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [worker.exitcode for worker in workers] == [0, 0]
    store = SampleStore(path)
    assert store.count() == 600
    assert store.samples("worker1")[-1] == (299, "sample 299")
