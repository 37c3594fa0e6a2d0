"""Permutation-equivariant transformer for point clouds (showers as points, jet constituents).

Data convention (keeps fit, preprocessing and checkpoints 2-D): a cloud of up to N points with F
features travels flattened as x [B, N * F], point-major (`flatten_points`). Variable multiplicity:
when `count_cond` is set, the *last* condition column is the number of valid points n (raw, not
standardised; `PointCloudPreprocessing` passes it through), valid points come first, and the
key-padding mask is `arange(N) < n`. Padded points are never attended to and the network outputs
0 there, so they add only a parameter-free constant to any loss and cannot change valid outputs.
Condition column 0 (e.g. standardised log E_inc) gets a Gaussian Fourier projection like t.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from models.networks.embeddings import GaussianFourierProjection


def flatten_points(x: Tensor) -> Tensor:
    """[B, N, F] -> [B, N * F] (point-major)."""
    return x.reshape(x.shape[0], -1)


def unflatten_points(x: Tensor, n_features: int) -> Tensor:
    """[B, N * F] -> [B, N, F]."""
    return x.reshape(x.shape[0], -1, n_features)


def points_mask(cond: Tensor | None, n_points: int, count_cond: bool) -> Tensor | None:
    """Valid-point mask [B, N] (True = real point) from the count in cond's last column, or None."""
    if not count_cond or cond is None:
        return None
    count = cond[:, -1:].round()
    return torch.arange(n_points, device=cond.device).unsqueeze(0) < count


class ConditionEmbedding(nn.Module):
    """emb(t, cond): Fourier features of t and of cond[:, 0], a linear map of the rest, an MLP."""

    def __init__(
        self, cond_dim: int, count_cond: bool, n_points: int, embed_dim: int, fourier_scale: float
    ):
        super().__init__()
        self.count_cond, self.n_points = count_cond, n_points
        self.n_cond = cond_dim - int(count_cond)
        self.t_embed = GaussianFourierProjection(embed_dim, fourier_scale)
        self.e_embed = GaussianFourierProjection(embed_dim, fourier_scale) if self.n_cond else None
        extra = (self.n_cond - 1 if self.n_cond else 0) + int(count_cond)
        self.extra = nn.Linear(extra, embed_dim) if extra else None
        self.mlp = nn.Sequential(
            nn.Linear(embed_dim, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim)
        )

    def forward(self, t: Tensor, cond: Tensor | None) -> Tensor:
        """Embedding [B, E] of t [B] and the condition [B, C]."""
        e = self.t_embed(t)
        if cond is not None:
            cond = cond.to(e.dtype)
            if self.e_embed is not None:
                e = e + self.e_embed(cond[:, 0])
            if self.extra is not None:
                rest = cond[:, 1 : self.n_cond] if self.n_cond else cond[:, :0]
                if self.count_cond:
                    rest = torch.cat([rest, cond[:, -1:] / self.n_points], dim=1)
                e = e + self.extra(rest)
        return self.mlp(e)


class _FullBlock(nn.Module):
    """Pre-norm self-attention over the class token and the points, then a conditioned MLP."""

    def __init__(self, width: int, heads: int, embed_dim: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.emb = nn.Linear(embed_dim, width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width)
        )

    def forward(self, h: Tensor, emb: Tensor, pad: Tensor | None) -> Tensor:
        z = self.norm1(h)
        h = h + self.attn(z, z, z, key_padding_mask=pad, need_weights=False)[0]
        return h + self.mlp(self.norm2(h) + self.emb(emb).unsqueeze(1))


class _MeanFieldBlock(nn.Module):
    """The class token attends to all points; its update is broadcast back to every point."""

    def __init__(self, width: int, heads: int, embed_dim: int, dropout: float):
        super().__init__()
        self.norm_q, self.norm_k, self.norm2 = (
            nn.LayerNorm(width),
            nn.LayerNorm(width),
            nn.LayerNorm(width),
        )
        self.attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.broadcast = nn.Linear(width, width)
        self.emb = nn.Linear(embed_dim, width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width)
        )

    def forward(self, h: Tensor, emb: Tensor, pad: Tensor | None) -> Tensor:
        cls, pts = h[:, :1], h[:, 1:]
        kv = self.norm_k(h)
        cls = cls + self.attn(self.norm_q(cls), kv, kv, key_padding_mask=pad, need_weights=False)[0]
        h = torch.cat([cls, pts + self.broadcast(cls)], dim=1)
        return h + self.mlp(self.norm2(h) + self.emb(emb).unsqueeze(1))


class PointCloudTransformer(nn.Module):
    """net(x, t, cond): x [B, N * F] -> [B, N * F]; equivariant under permuting valid points."""

    def __init__(
        self,
        n_points: int,
        n_features: int,
        cond_dim: int,
        *,
        count_cond: bool = True,
        width: int = 128,
        depth: int = 4,
        heads: int = 4,
        attention: Literal["full", "mean_field"] = "full",
        embed_dim: int = 64,
        fourier_scale: float = 16.0,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.n_points, self.n_features, self.count_cond = n_points, n_features, count_cond
        self.embed = ConditionEmbedding(cond_dim, count_cond, n_points, embed_dim, fourier_scale)
        self.inp = nn.Linear(n_features, width)
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.cls_emb = nn.Linear(embed_dim, width)
        block = _FullBlock if attention == "full" else _MeanFieldBlock
        self.blocks = nn.ModuleList(block(width, heads, embed_dim, dropout) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, n_features))

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """Network output [B, N * F] for points x [B, N * F], t [B], cond [B, C]."""
        pts = unflatten_points(x, self.n_features)
        emb = self.embed(t, cond)
        mask = points_mask(cond, self.n_points, self.count_cond)
        cls = self.cls.expand(x.shape[0], -1, -1) + self.cls_emb(emb).unsqueeze(1)
        h = torch.cat([cls, self.inp(pts)], dim=1)
        pad = None
        if mask is not None:
            pad = torch.cat([mask.new_ones(mask.shape[0], 1), mask], dim=1).logical_not()
        for block in self.blocks:
            h = block(h, emb, pad)
        out = self.out(h[:, 1:])
        if mask is not None:
            out = out * mask.unsqueeze(-1).to(out.dtype)
        return flatten_points(out)


class PointCloudTransformerConfig(BaseModel):
    """Point-cloud transformer; the flattened dim must be n_points * n_features."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["pointcloud_transformer"] = "pointcloud_transformer"
    n_features: int = Field(..., ge=1)
    count_cond: bool = Field(True, description="last condition column = number of valid points")
    attention: Literal["full", "mean_field"] = "full"
    width: int = Field(128, ge=8)
    depth: int = Field(4, ge=1)
    heads: int = Field(4, ge=1)
    embed_dim: int = Field(64, ge=2)
    fourier_scale: float = Field(16.0, gt=0.0)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)

    def build(self, dim: int, cond_dim: int) -> nn.Module:
        """The network for `dim` = points x features and `cond_dim` condition columns."""
        if dim % self.n_features:
            raise ValueError(f"dim {dim} is not a multiple of n_features {self.n_features}")
        return PointCloudTransformer(
            dim // self.n_features,
            self.n_features,
            cond_dim,
            count_cond=self.count_cond,
            width=self.width,
            depth=self.depth,
            heads=self.heads,
            attention=self.attention,
            embed_dim=self.embed_dim,
            fourier_scale=self.fourier_scale,
            dropout=self.dropout,
        )


__all__ = [
    "ConditionEmbedding",
    "PointCloudTransformer",
    "PointCloudTransformerConfig",
    "flatten_points",
    "points_mask",
    "unflatten_points",
]
