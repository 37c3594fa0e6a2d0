"""Residual MLP score/velocity network for flat feature vectors (e.g. CaloChallenge DS1 voxels)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from models.networks.embeddings import GaussianFourierProjection


class ResidualBlock(nn.Module):
    """Pre-norm residual MLP block with FiLM-style additive conditioning on the embedding."""

    def __init__(self, width: int, embed_dim: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width)
        self.emb = nn.Linear(embed_dim, width)
        self.fc2 = nn.Linear(width, width)
        self.drop = nn.Dropout(dropout)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        z = nn.functional.silu(self.fc1(self.norm(h)) + self.emb(emb))
        return h + self.fc2(self.drop(z))


class ResidualMLP(nn.Module):
    """net(x, t, cond): x [B, D], t [B], cond [B, C] -> [B, D]."""

    def __init__(
        self,
        dim: int,
        cond_dim: int,
        width: int = 512,
        depth: int = 4,
        embed_dim: int = 128,
        dropout: float = 0.0,
        fourier_scale: float = 16.0,
    ):
        super().__init__()
        self.t_embed = GaussianFourierProjection(embed_dim, scale=fourier_scale)
        self.c_embed = nn.Linear(cond_dim, embed_dim) if cond_dim else None
        self.embed = nn.Sequential(
            nn.Linear(embed_dim, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim)
        )
        self.inp = nn.Linear(dim, width)
        self.blocks = nn.ModuleList(ResidualBlock(width, embed_dim, dropout) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, dim))

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """Network output [B, D] for x [B, D], t [B], cond [B, C]."""
        e = self.t_embed(t)
        if self.c_embed is not None and cond is not None:
            e = e + self.c_embed(cond.to(e.dtype))
        e = self.embed(e)
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, e)
        return self.out(h)


class MLPConfig(BaseModel):
    """Residual MLP over the flattened features."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["mlp"] = "mlp"
    width: int = Field(512, ge=1)
    depth: int = Field(4, ge=1)
    embed_dim: int = Field(128, ge=2)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    fourier_scale: float = Field(16.0, gt=0.0)

    def build(self, dim: int, cond_dim: int) -> nn.Module:
        """The network for `dim` features and `cond_dim` condition columns."""
        return ResidualMLP(
            dim, cond_dim, self.width, self.depth, self.embed_dim, self.dropout, self.fourier_scale
        )


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


__all__ = ["MLPConfig", "ResidualMLP", "count_parameters"]
