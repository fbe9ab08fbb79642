"""Grouping identical generation requests and packing the groups into batches."""

import pytest

from lm_eval_semcal.harness.request_groups import RequestGroup, group_identical_requests, pack_groups, settings_key

SAMPLING = {"until": ["\n"], "do_sample": True, "temperature": 1.0}


def test_groups_by_context_and_settings_in_first_appearance_order():
    greedy = {"until": ["\n"], "do_sample": False}
    requests = [("Q1", SAMPLING), ("Q2", SAMPLING), ("Q1", dict(SAMPLING)), ("Q1", greedy), ("Q2", SAMPLING)]
    groups = group_identical_requests(requests)
    assert [(g.context, g.gen_kwargs, g.indices) for g in groups] == [
        ("Q1", SAMPLING, [0, 2]),
        ("Q2", SAMPLING, [1, 4]),
        ("Q1", greedy, [3]),
    ]


def test_settings_key_ignores_key_order_but_not_values():
    assert settings_key({"a": 1, "b": [2]}) == settings_key({"b": [2], "a": 1})
    assert settings_key({"temperature": 1.0}) != settings_key({"temperature": 0.7})


def test_non_dict_settings_are_refused():
    with pytest.raises(TypeError, match="request 1: generation settings must be a dict"):
        group_identical_requests([("Q", {}), ("Q", "temperature=1")])


def groups_of(sizes, settings=SAMPLING):
    return [RequestGroup(f"Q{i}", settings, list(range(size))) for i, size in enumerate(sizes)]


def test_packing_fills_batches_up_to_max_rows():
    batches = pack_groups(groups_of([20, 20, 20, 10]), max_rows=40)
    assert [[g.context for g in batch] for batch in batches] == [["Q0", "Q1"], ["Q2", "Q3"]]


def test_a_group_larger_than_max_rows_is_cut_into_consecutive_parts():
    batches = pack_groups(groups_of([3, 10, 2]), max_rows=4)
    assert [[(g.context, g.indices) for g in batch] for batch in batches] == [
        [("Q0", [0, 1, 2])],
        [("Q1", [0, 1, 2, 3])],
        [("Q1", [4, 5, 6, 7])],
        [("Q1", [8, 9]), ("Q2", [0, 1])],
    ]


def test_without_max_rows_each_group_has_a_batch_of_its_own():
    batches = pack_groups(groups_of([5, 50, 5]), max_rows=None)
    assert [[(g.context, g.n_samples) for g in batch] for batch in batches] == [[("Q0", 5)], [("Q1", 50)], [("Q2", 5)]]


def test_packing_orders_by_sort_key_and_never_mixes_settings():
    groups = groups_of([2, 2]) + groups_of([2], settings={"do_sample": False})
    groups[1].context = "long prompt"
    batches = pack_groups(groups, max_rows=10, sort_key=lambda g: -len(g.context))
    assert [[g.context for g in batch] for batch in batches] == [["long prompt", "Q0"], ["Q0"]]
    assert batches[1][0].gen_kwargs == {"do_sample": False}


def test_packing_needs_a_positive_row_budget():
    with pytest.raises(ValueError, match="max_rows must be at least 1"):
        pack_groups(groups_of([1]), max_rows=0)
