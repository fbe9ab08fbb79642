"""Torch device names, checked before expensive work rather than at the first tensor moved."""

from __future__ import annotations


def check_device(device: str, owner: str) -> None:
    """Raise ValueError, naming `owner`, when `device` is no torch device or is not on this machine."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"{owner}: device={device!r} is not a torch device (cpu, cuda, cuda:1, mps)") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"{owner}: device={device!r} but this machine has no CUDA device")
        if parsed.index is not None and parsed.index >= count:
            raise ValueError(f"{owner}: device={device!r} but this machine has {count} CUDA device(s)")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{owner}: device={device!r} but MPS is not available here")
