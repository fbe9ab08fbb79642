"""hf-semcal's bookkeeping for rows that leave the batch: when an answer is settled, and the cache rows that stay."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers.cache_utils import DynamicCache, DynamicLayer

from lm_eval_semcal.harness.hf_model import (
    compaction_order,
    cut_is_settled,
    expand_prompt_cache,
    keep_cache_rows,
)

pytestmark = pytest.mark.harness


def response(text: str, stops: list[str]) -> str:
    """lm-eval's cut: the text before the first occurrence of each stop string in turn."""
    for stop in stops:
        if stop:
            text = text.split(stop)[0]
    return text


@settings(max_examples=3000, deadline=None)
@given(
    text=st.text(alphabet="ab\n.", max_size=12),
    more=st.text(alphabet="ab\n.", max_size=6),
    stops=st.lists(st.text(alphabet="ab\n.", min_size=1, max_size=4), min_size=1, max_size=3),
)
def test_a_settled_cut_survives_any_continuation(text, more, stops):
    if cut_is_settled(text, stops):
        assert response(text + more, stops) == response(text, stops)


def test_a_cut_is_settled_only_when_no_continuation_can_move_it():
    # Exhaustively over texts of up to 6 characters of a 3-letter alphabet, 200 random
    # stop lists and every continuation that could complete a stop string: a settled
    # text's response never changes; for one stop string, every text whose response can
    # no longer change is settled (nothing decodes longer than it must). With several,
    # the rule may wait a little longer in rare cases (0.5% of these).
    import random
    from itertools import product

    alphabet = "ab\n"
    words = ["".join(c) for n in range(1, 4) for c in product(alphabet, repeat=n)]
    continuations = ["".join(c) for n in range(4) for c in product(alphabet, repeat=n)]
    texts = ["".join(c) for n in range(7) for c in product(alphabet, repeat=n)]
    rng = random.Random(0)
    for stops in [[word] for word in words] + [rng.sample(words, rng.randint(2, 3)) for _ in range(200)]:
        for text in texts:
            unchanged = len({response(text + more, stops) for more in continuations}) == 1
            settled = cut_is_settled(text, stops)
            assert unchanged or not settled, (text, stops)
            if len(stops) == 1 and stops[0] in text:
                assert settled == unchanged, (text, stops)


def test_settled_means_no_earlier_stop_can_still_complete():
    stops = ["5.\n\nQ", "\n\n"]
    assert cut_is_settled("It is 4.\n\n", stops)
    # "5.\n\nQ" would cut before the "\n\n" if a "Q" came next
    assert not cut_is_settled("It is 5.\n\n", stops)
    assert cut_is_settled("It is 5.\n\nA", stops)
    # a trailing incomplete character (U+FFFD) is not settled text
    assert not cut_is_settled("It is 5.\n\n\ufffd\ufffd", stops)
    assert not cut_is_settled("no stop here at all", stops)
    assert not cut_is_settled("anything", [])


@pytest.mark.parametrize("unsettled", [1, 3])
def test_the_last_characters_a_tokenizer_may_still_clean_up_are_not_settled(unsettled):
    assert not cut_is_settled("It is 4.\n\n" + "x" * (unsettled - 1), ["\n\n"], unsettled)
    assert cut_is_settled("It is 4.\n\n" + "x" * unsettled, ["\n\n"], unsettled)


@pytest.mark.parametrize(
    ("kept", "n_rows", "order"),
    [([0, 1, 2], 3, [0, 1, 2]), ([2], 3, [2]), ([1, 3, 4], 5, [3, 1, 4]), ([0, 2, 3, 5], 6, [0, 5, 2, 3])],
)
def test_compaction_moves_only_rows_beyond_the_kept_count(kept, n_rows, order):
    assert compaction_order(kept, n_rows) == order
    assert sorted(order) == kept


def test_keeping_rows_of_a_preallocated_cache_keeps_their_keys_and_values():
    # two prompts x 3 samples, each row's entries made distinct after expansion
    torch.manual_seed(0)
    cache = DynamicCache()
    keys, values = torch.randn(2, 2, 4, 8), torch.randn(2, 2, 4, 8)
    cache.update(keys, values, 0)
    expand_prompt_cache(cache, [3, 3], n_tokens=5)
    layer = cache.layers[0]
    new_keys, new_values = torch.randn(6, 2, 1, 8), torch.randn(6, 2, 1, 8)
    layer.update(new_keys, new_values)
    before_keys, before_values = layer.keys.clone(), layer.values.clone()

    order = compaction_order([1, 4, 5], 6)
    keep_cache_rows(cache, order)
    assert torch.equal(layer.keys, before_keys[order]) and torch.equal(layer.values, before_values[order])
    # the next token is written into the same buffer, after the kept rows' entries
    step_keys, step_values = torch.randn(3, 2, 1, 8), torch.randn(3, 2, 1, 8)
    out_keys, out_values = layer.update(step_keys, step_values)
    assert torch.equal(out_keys, torch.cat([before_keys[order], step_keys], dim=2))
    assert torch.equal(out_values, torch.cat([before_values[order], step_values], dim=2))
    assert out_keys.data_ptr() == layer._key_buffer.data_ptr()


def test_keeping_rows_of_other_layers_uses_their_own_selection():
    cache = DynamicCache()
    keys = torch.arange(4 * 1 * 2 * 1, dtype=torch.float32).reshape(4, 1, 2, 1)
    cache.update(keys, keys + 100, 0)
    assert type(cache.layers[0]) is DynamicLayer
    keep_cache_rows(cache, [3, 1])
    assert torch.equal(cache.layers[0].keys, keys[[3, 1]]) and torch.equal(cache.layers[0].values, keys[[3, 1]] + 100)
