"""hf-semcal's next-token draw: inverse transform sampling, the law of `torch.multinomial`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from transformers.generation import utils as generation_utils

from lm_eval_semcal.harness.sampling import inverse_cdf_multinomial, inverse_cdf_sampling

pytestmark = pytest.mark.harness


def test_each_row_draws_its_tokens_with_their_probabilities():
    generator = torch.Generator().manual_seed(0)
    probs = torch.tensor([
        [0.0, 0.5, 0.0, 0.3, 0.2, 0.0],
        [1e-3, 0.0, 0.0, 0.0, 0.0, 0.999],
        [0.2, 0.2, 0.2, 0.2, 0.2, 0.0],
    ])
    # unnormalised rows are drawn in proportion, as torch.multinomial draws them
    draws = torch.cat([inverse_cdf_multinomial(probs * 3.0, 1, generator=generator) for _ in range(20000)], dim=1)
    for row, p in zip(draws, probs, strict=True):
        counts = np.bincount(row.numpy(), minlength=6)
        assert counts[(p == 0).numpy()].sum() == 0  # never a token of probability 0
        possible = (p > 0).numpy()
        assert stats.chisquare(counts[possible], 20000 * p[possible].numpy() / p.sum().item()).pvalue > 1e-3


def test_a_uniform_that_rounds_up_to_the_total_takes_the_last_possible_token(monkeypatch):
    probs = torch.tensor([[0.1, 0.9, 0.0, 0.0], [0.3, 0.3, 0.4, 0.0]])
    monkeypatch.setattr(torch, "rand", lambda shape, **kwargs: torch.full(shape, 1.0, dtype=torch.float64))
    assert inverse_cdf_multinomial(probs, 1).tolist() == [[1], [2]]
    monkeypatch.setattr(torch, "rand", lambda shape, **kwargs: torch.zeros(shape, dtype=torch.float64))
    assert inverse_cdf_multinomial(torch.tensor([[0.0, 0.0, 1.0]]), 1).tolist() == [[2]]


@pytest.mark.parametrize("row", [[0.5, float("nan")], [0.5, -0.1], [0.0, 0.0], [float("inf"), 1.0]])
def test_rows_torch_refuses_get_torchs_own_error(row):
    with pytest.raises(RuntimeError) as ours:
        inverse_cdf_multinomial(torch.tensor([row]), 1)
    with pytest.raises(RuntimeError) as theirs:
        torch.multinomial(torch.tensor([row]), 1)
    assert str(ours.value) == str(theirs.value)


def test_other_calls_are_torch_multinomials():
    torch.manual_seed(0)
    expected = torch.multinomial(torch.ones(2, 5), 3)
    torch.manual_seed(0)
    assert torch.equal(inverse_cdf_multinomial(torch.ones(2, 5), 3), expected)


def test_generate_sees_the_sampler_only_inside_the_block():
    original = generation_utils.torch
    with pytest.raises(KeyError), inverse_cdf_sampling():
        assert generation_utils.torch.multinomial is inverse_cdf_multinomial
        assert generation_utils.torch.Tensor is torch.Tensor  # everything else is torch's
        raise KeyError("a failure inside generate")
    assert generation_utils.torch is original and torch.multinomial is not inverse_cdf_multinomial
