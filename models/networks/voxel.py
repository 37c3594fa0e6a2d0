"""Layer-wise transformer for CaloChallenge voxel showers (DS1, DS2): one token per layer.

Each non-empty layer's voxels are projected to a token (its own linear map, since layer sizes
differ), tokens get a learned layer embedding and the (t, cond) embedding, a transformer mixes
the layers, and each token is projected back to its voxels. `layer_sizes` (voxels per layer, in
voxel order; zeros allowed) is configuration, so models/ needs no geometry import. Coordinates
after the voxels (e.g. the layer and total energies of `ShowerPreprocessing`, dim >
sum(layer_sizes)) form one extra "energy" token. Optional energy-per-layer conditioning:
condition columns 1 .. L (preprocessed) add to their layer's token.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from models.networks.embeddings import GaussianFourierProjection


class VoxelTransformer(nn.Module):
    """net(x, t, cond): x [B, sum(layer_sizes) + n_extra] -> same shape."""

    def __init__(
        self,
        layer_sizes: list[int],
        n_extra: int,
        cond_dim: int,
        *,
        width: int = 128,
        depth: int = 4,
        heads: int = 4,
        embed_dim: int = 128,
        fourier_scale: float = 16.0,
        layer_energy_cond: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.n_layers = len(layer_sizes)
        self.layer_sizes = [*layer_sizes, n_extra]  # the extra coordinates form the last token
        self.active = [i for i, n in enumerate(self.layer_sizes) if n > 0]
        n_tokens = len(self.active)
        if layer_energy_cond and cond_dim < 1 + len(layer_sizes):
            raise ValueError("layer_energy_cond needs cond columns [E_inc, E_layer_0, ...]")
        self.layer_energy_cond = layer_energy_cond
        self.t_embed = GaussianFourierProjection(embed_dim, fourier_scale)
        self.c_embed = nn.Linear(cond_dim, embed_dim) if cond_dim else None
        self.embed = nn.Sequential(
            nn.Linear(embed_dim, embed_dim), nn.SiLU(), nn.Linear(embed_dim, width)
        )
        self.inp = nn.ModuleList(nn.Linear(self.layer_sizes[i], width) for i in self.active)
        self.out = nn.ModuleList(nn.Linear(width, self.layer_sizes[i]) for i in self.active)
        self.pos = nn.Parameter(torch.randn(1, n_tokens, width) * 0.02)
        self.layer_e = nn.Linear(1, width) if layer_energy_cond else None
        layer = nn.TransformerEncoderLayer(
            width, heads, 2 * width, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.mixer = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        e = self.t_embed(t)
        if self.c_embed is not None and cond is not None:
            e = e + self.c_embed(cond.to(e.dtype))
        e = self.embed(e).unsqueeze(1)
        chunks = torch.split(x, self.layer_sizes, dim=1)
        tokens = torch.stack(
            [proj(chunks[i]) for proj, i in zip(self.inp, self.active, strict=True)], dim=1
        )
        h = tokens + self.pos + e
        if self.layer_e is not None and cond is not None:
            e_layer = torch.zeros(h.shape[:2], dtype=h.dtype, device=h.device)
            for k, i in enumerate(self.active):
                if i < self.n_layers:
                    e_layer[:, k] = cond[:, 1 + i].to(h.dtype)
            h = h + self.layer_e(e_layer.unsqueeze(-1))
        h = self.norm(self.mixer(h))
        outs = [x.new_zeros(x.shape[0], n) for n in self.layer_sizes]
        for k, (proj, i) in enumerate(zip(self.out, self.active, strict=True)):
            outs[i] = proj(h[:, k])
        return torch.cat(outs, dim=1)


class VoxelTransformerConfig(BaseModel):
    """Layer-wise transformer for voxel showers; network dim = sum(layer_sizes) + extra coords."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["voxel_transformer"] = "voxel_transformer"
    layer_sizes: list[int] = Field(..., min_length=1)
    width: int = Field(128, ge=8)
    depth: int = Field(4, ge=1)
    heads: int = Field(4, ge=1)
    embed_dim: int = Field(128, ge=2)
    fourier_scale: float = Field(16.0, gt=0.0)
    layer_energy_cond: bool = False
    dropout: float = Field(0.0, ge=0.0, lt=1.0)

    def build(self, dim: int, cond_dim: int) -> nn.Module:
        if sum(self.layer_sizes) > dim:
            raise ValueError(f"layer_sizes sum to {sum(self.layer_sizes)}, data has only {dim}")
        return VoxelTransformer(
            self.layer_sizes,
            dim - sum(self.layer_sizes),
            cond_dim,
            width=self.width,
            depth=self.depth,
            heads=self.heads,
            embed_dim=self.embed_dim,
            fourier_scale=self.fourier_scale,
            layer_energy_cond=self.layer_energy_cond,
            dropout=self.dropout,
        )


__all__ = ["VoxelTransformer", "VoxelTransformerConfig"]
