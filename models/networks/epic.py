"""EPiC layers (Buhmann, Kasieczka & Thaler 2023, "EPiC-GAN", arXiv:2301.08128).

Per-point MLPs exchange information only through a pooled global vector; linear in the number of
points.

Same data and mask convention as `models.networks.pointcloud` (flattened [B, N * F]; optional
point count in the last condition column; output 0 on padded points).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from models.networks.pointcloud import (
    ConditionEmbedding,
    flatten_points,
    points_mask,
    unflatten_points,
)


class EPiCLayer(nn.Module):
    """g' = g + MLP([mean(h), sum(h) / N, g, emb]); h' = h + MLP([h, g', emb]) (masked pooling)."""

    def __init__(self, width: int, global_dim: int, embed_dim: int, n_points: int):
        super().__init__()
        self.n_points = n_points
        self.glob = nn.Sequential(
            nn.Linear(2 * width + global_dim + embed_dim, global_dim),
            nn.LeakyReLU(),
            nn.Linear(global_dim, global_dim),
        )
        self.local = nn.Sequential(
            nn.Linear(width + global_dim + embed_dim, width),
            nn.LeakyReLU(),
            nn.Linear(width, width),
        )

    def forward(self, h: Tensor, g: Tensor, emb: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """One EPiC update of points h [B, N, W] and the global vector g [B, G]."""
        m = mask.unsqueeze(-1).to(h.dtype)
        total = (h * m).sum(dim=1)
        mean = total / m.sum(dim=1).clamp_min(1.0)
        g = g + self.glob(torch.cat([mean, total / self.n_points, g, emb], dim=-1))
        ctx = torch.cat([g, emb], dim=-1).unsqueeze(1).expand(-1, h.shape[1], -1)
        h = h + self.local(torch.cat([h, ctx], dim=-1))
        return h, g


class EPiCNetwork(nn.Module):
    """net(x, t, cond): stacked EPiC layers over [B, N * F] point clouds (e.g. jet constituents)."""

    def __init__(
        self,
        n_points: int,
        n_features: int,
        cond_dim: int,
        *,
        count_cond: bool = True,
        width: int = 128,
        global_dim: int = 16,
        depth: int = 6,
        embed_dim: int = 64,
        fourier_scale: float = 16.0,
    ):
        super().__init__()
        self.n_points, self.n_features, self.count_cond = n_points, n_features, count_cond
        self.embed = ConditionEmbedding(cond_dim, count_cond, n_points, embed_dim, fourier_scale)
        self.inp = nn.Linear(n_features + embed_dim, width)
        self.g0 = nn.Linear(embed_dim, global_dim)
        self.layers = nn.ModuleList(
            EPiCLayer(width, global_dim, embed_dim, n_points) for _ in range(depth)
        )
        self.out = nn.Linear(width, n_features)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """Network output [B, N * F] for points x [B, N * F], t [B], cond [B, C]."""
        pts = unflatten_points(x, self.n_features)
        emb = self.embed(t, cond)
        mask = points_mask(cond, self.n_points, self.count_cond)
        if mask is None:
            mask = torch.ones(pts.shape[:2], dtype=torch.bool, device=x.device)
        h = self.inp(torch.cat([pts, emb.unsqueeze(1).expand(-1, pts.shape[1], -1)], dim=-1))
        g = self.g0(emb)
        for layer in self.layers:
            h, g = layer(h, g, emb, mask)
        return flatten_points(self.out(h) * mask.unsqueeze(-1).to(h.dtype))


class EPiCConfig(BaseModel):
    """EPiC network; the flattened dim must be n_points * n_features."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["epic"] = "epic"
    n_features: int = Field(..., ge=1)
    count_cond: bool = True
    width: int = Field(128, ge=4)
    global_dim: int = Field(16, ge=1)
    depth: int = Field(6, ge=1)
    embed_dim: int = Field(64, ge=2)
    fourier_scale: float = Field(16.0, gt=0.0)

    def build(self, dim: int, cond_dim: int) -> nn.Module:
        """The network for `dim` = points x features and `cond_dim` condition columns."""
        if dim % self.n_features:
            raise ValueError(f"dim {dim} is not a multiple of n_features {self.n_features}")
        return EPiCNetwork(
            dim // self.n_features,
            self.n_features,
            cond_dim,
            count_cond=self.count_cond,
            width=self.width,
            global_dim=self.global_dim,
            depth=self.depth,
            embed_dim=self.embed_dim,
            fourier_scale=self.fourier_scale,
        )


__all__ = ["EPiCConfig", "EPiCLayer", "EPiCNetwork"]
