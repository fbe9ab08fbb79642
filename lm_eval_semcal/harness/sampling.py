"""A cheaper exact draw of the next token for `generate`, used by hf-semcal.

`generate` draws each step's tokens with `torch.multinomial(probs, 1)`, which on a CPU
draws one exponential per vocabulary entry and row (50,257 x M a step) and was 14 to
18% of hf-semcal's decoding time in `scripts/bench_generation.py --profile`. Inverse
transform sampling draws one uniform per row instead: token i is chosen when the
uniform, scaled to the row's total, falls in [c_{i-1}, c_i), c the cumulative sum of
the probabilities (in float64). Both draw token i with probability p_i / sum(p): the
law is the same, the random stream is not.

`inverse_cdf_sampling()` puts it in place of `torch.multinomial` for transformers'
generation module only, while its block runs; any other call (more than one sample,
probabilities that `torch.multinomial` would refuse) goes to `torch.multinomial`.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from transformers.generation import utils as generation_utils


def inverse_cdf_multinomial(probs: torch.Tensor, num_samples: int, replacement: bool = False, *, generator=None):
    """One token per row of `probs`, drawn with probability proportional to its entry.

    Same signature and result as `torch.multinomial` for ``num_samples=1`` (with or
    without replacement, which one sample does not tell apart); other calls, and rows
    `torch.multinomial` refuses (a negative, infinite or NaN entry, or a zero row), are
    passed to it, so that it raises its own error.

    >>> torch.manual_seed(0) and None
    >>> probs = torch.tensor([[0.0, 0.25, 0.75], [1.0, 0.0, 0.0]])
    >>> draws = torch.cat([inverse_cdf_multinomial(probs, 1) for _ in range(4000)], dim=1)
    >>> shares = [(draws[0] == token).float().mean().item() for token in range(3)]
    >>> shares[0], abs(shares[1] - 0.25) < 0.03, abs(shares[2] - 0.75) < 0.03, draws[1].unique().tolist()
    (0.0, True, True, [0])
    """
    if num_samples != 1 or probs.dim() != 2:
        return torch.multinomial(probs, num_samples, replacement, generator=generator)
    cumulative = probs.double().cumsum(-1)
    totals = cumulative[:, -1:]
    if not (torch.isfinite(totals).all() and (totals > 0).all() and (probs >= 0).all()):
        return torch.multinomial(probs, num_samples, replacement, generator=generator)
    uniforms = torch.rand(totals.shape, dtype=torch.float64, device=probs.device, generator=generator)
    tokens = torch.searchsorted(cumulative, uniforms * totals, right=True)
    # A product that rounds up to the total lands past the end: it belongs to the last
    # token of non-zero probability.
    last_possible = probs.shape[-1] - 1 - (probs.flip(-1) > 0).int().argmax(-1, keepdim=True)
    return torch.minimum(tokens, last_possible)


class _TorchWithInverseCdfSampling(types.ModuleType):
    """torch, as transformers' generation module sees it, with `inverse_cdf_multinomial` as `multinomial`."""

    multinomial = staticmethod(inverse_cdf_multinomial)

    def __getattr__(self, name: str):
        return getattr(torch, name)


@contextmanager
def inverse_cdf_sampling() -> Iterator[None]:
    """While the block runs, `generate` draws its tokens with `inverse_cdf_multinomial`."""
    original = generation_utils.torch
    generation_utils.torch = _TorchWithInverseCdfSampling("torch")
    try:
        yield
    finally:
        generation_utils.torch = original
