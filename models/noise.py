"""Noise drawn from an injected generator, so a (seed, shard) pair reproduces bit for bit."""

from __future__ import annotations

import torch
from torch import Tensor


def randn(
    shape: tuple[int, ...],
    generator: torch.Generator | None,
    like: Tensor | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Standard normal noise drawn from an injected generator (so (seed, shard) reproduces)."""
    if like is not None:
        device, dtype = like.device, like.dtype
    if generator is not None:
        device = generator.device
    return torch.randn(shape, generator=generator, device=device, dtype=dtype)


def rand(shape: tuple[int, ...], generator: torch.Generator | None, like: Tensor) -> Tensor:
    """Uniform [0, 1) noise from an injected generator, on `like`'s device and dtype."""
    device = generator.device if generator is not None else like.device
    return torch.rand(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)
