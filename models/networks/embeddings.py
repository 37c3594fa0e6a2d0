"""Input embeddings for time and conditions."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class GaussianFourierProjection(nn.Module):
    """Random Fourier features [sin(2 pi W s), cos(2 pi W s)] of a scalar (Tancik et al. 2020; Song et al. 2021)."""

    def __init__(self, dim: int, scale: float = 16.0):
        super().__init__()
        self.register_buffer("W", torch.randn(dim // 2) * scale)

    def forward(self, s: Tensor) -> Tensor:
        """Fourier features [sin, cos](2 pi s W) of s [B] -> [B, dim]."""
        proj = 2 * math.pi * s.reshape(-1, 1).to(self.W.dtype) * self.W
        return torch.cat([proj.sin(), proj.cos()], dim=-1)
