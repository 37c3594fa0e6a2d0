"""Layer-wise transformer for calorimeter voxel showers (CaloChallenge DS1, DS2, DS3).

Tokens are patches of voxels: a block of `patch` = (angular, radial) bins of one layer (CaloDREAM's
ViT shape network, arXiv:2405.09629; ViT, Dosovitskiy et al. 2021), or a whole layer per token.
Every token gets the same linear patch embedding plus a layer, an angular-block and a
radial-block position embedding (learned, or fixed sinusoidal); with `layer_energy_cond`, an
embedding of its layer's energy (condition column 1 + layer) is added too. Transformer blocks
are conditioned on the time and the whole condition vector by adaptive layer norm with zero-
initialised gates (adaLN-Zero, Peebles & Xie 2023, DiT). The geometry is configuration, so
models/ needs no geometry import: `layer_shapes` ((angular, radial) bins per active layer, voxel
order layer slowest, angular, radial fastest; farm fills it from the geometry) or, for one token
per layer, `layer_sizes` (voxels per layer, zeros allowed). Coordinates after the voxels (e.g. the
layer and total energies of `ShowerPreprocessing`, dim > number of voxels) form one extra token.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor, nn

from models.networks.embeddings import GaussianFourierProjection


class PatchLayout:
    """Voxels [B, V] <-> tokens [B, T, P]: each layer's (angular, radial) grid cut into patches.

    A layer smaller than the patch, or not a multiple of it, is padded with zeros; padding slots
    never reach a voxel. `token_layer`, `token_angular`, `token_radial` give each token's layer
    (its index in the configuration) and block position.
    """

    def __init__(
        self,
        layers: list[tuple[int, int, int]],
        patch: tuple[int, int] | None,
    ):
        """`layers`: (layer index, angular bins, radial bins) of each non-empty layer."""
        pa = patch[0] if patch else max(a for _, a, _ in layers)
        pr = patch[1] if patch else max(r for _, _, r in layers)
        self.patch_size = pa * pr
        self.n_voxels = sum(a * r for _, a, r in layers)
        token_index, token_layer, token_angular, token_radial = [], [], [], []
        start = 0
        for index, n_a, n_r in layers:
            grid = torch.arange(start, start + n_a * n_r).view(n_a, n_r)
            padded = torch.full((math.ceil(n_a / pa) * pa, math.ceil(n_r / pr) * pr), self.n_voxels)
            padded[:n_a, :n_r] = grid
            blocks = padded.view(padded.shape[0] // pa, pa, padded.shape[1] // pr, pr)
            for ia in range(blocks.shape[0]):
                for ir in range(blocks.shape[2]):
                    token_index.append(blocks[ia, :, ir, :].reshape(-1))
                    token_layer.append(index)
                    token_angular.append(ia)
                    token_radial.append(ir)
            start += n_a * n_r
        self.token_index = torch.stack(token_index)  # [T, P] voxel index, n_voxels for padding
        self.n_tokens = self.token_index.shape[0]
        slots = torch.arange(self.token_index.numel())
        real = self.token_index.reshape(-1) < self.n_voxels
        self.voxel_slot = torch.empty(self.n_voxels, dtype=torch.long)
        self.voxel_slot[self.token_index.reshape(-1)[real]] = slots[real]  # [V] slot of each voxel
        self.token_layer = torch.tensor(token_layer)
        self.token_angular = torch.tensor(token_angular)
        self.token_radial = torch.tensor(token_radial)

    def tokens(self, x: Tensor, token_index: Tensor | None = None) -> Tensor:
        """Voxels x [B, >= V] (voxels first) -> tokens [B, T, P], zeros in the padding."""
        index = self.token_index if token_index is None else token_index
        ext = torch.cat([x[:, : self.n_voxels], x.new_zeros(x.shape[0], 1)], dim=1)
        return ext[:, index.to(x.device)]

    def voxels(self, tokens: Tensor, voxel_slot: Tensor | None = None) -> Tensor:
        """[B, T, P] -> [B, V] (padding slots dropped)."""
        slot = self.voxel_slot if voxel_slot is None else voxel_slot
        return tokens.flatten(1)[:, slot.to(tokens.device)]


def sinusoidal(positions: Tensor, dim: int) -> Tensor:
    """Fixed sin/cos encodings [N, dim] of integer positions (Vaswani et al. 2017)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=torch.float64) / max(half, 1))
    angles = positions.double().unsqueeze(1) * freqs
    odd = torch.zeros(len(positions), dim - 2 * half, dtype=torch.float64)
    return torch.cat([angles.sin(), angles.cos(), odd], dim=1).float()


def _modulate(h: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return h * (1 + scale) + shift


class AdaLNBlock(nn.Module):
    """Pre-norm attention + MLP block, modulated and gated by the conditioning (adaLN-Zero, DiT)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, dropout: float):
        """A block of `width` channels, `heads` attention heads and an MLP of mlp_ratio x width."""
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        hidden = max(int(width * mlp_ratio), 1)
        self.mlp = nn.Sequential(
            nn.Linear(width, hidden),
            nn.GELU(approximate="tanh"),
            nn.Dropout(dropout),
            nn.Linear(hidden, width),
        )
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))
        nn.init.zeros_(self.modulation[1].weight)
        nn.init.zeros_(self.modulation[1].bias)

    def _attention(self, a: Tensor) -> Tensor:
        b, t, w = a.shape
        q, k, v = self.qkv(a).view(b, t, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        out = nn.functional.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0
        )
        return self.proj(out.transpose(1, 2).reshape(b, t, w))

    def forward(self, h: Tensor, c: Tensor) -> Tensor:
        """Tokens h [B, T, W] under conditioning c [B, W] -> [B, T, W]."""
        shift1, scale1, gate1, shift2, scale2, gate2 = (
            self.modulation(c).unsqueeze(1).chunk(6, dim=-1)
        )
        h = h + gate1 * self._attention(_modulate(self.norm1(h), shift1, scale1))
        return h + gate2 * self.mlp(_modulate(self.norm2(h), shift2, scale2))


class VoxelTransformer(nn.Module):
    """net(x, t, cond): x [B, V + n_extra] -> same shape, voxels as patch tokens."""

    def __init__(
        self,
        layout: PatchLayout,
        n_layers: int,
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
        mlp_ratio: float = 2.0,
        position: Literal["learned", "sinusoidal"] = "learned",
    ):
        """Tokens from `layout`; `n_layers` layers in the config, `n_extra` extra coordinates."""
        super().__init__()
        if layer_energy_cond and cond_dim < 1 + n_layers:
            raise ValueError("layer_energy_cond needs cond columns [E_inc, E_layer_0, ...]")
        self.layout, self.n_extra = layout, n_extra
        self.register_buffer("token_index", layout.token_index, persistent=False)
        self.register_buffer("voxel_slot", layout.voxel_slot, persistent=False)
        self.register_buffer("token_layer", layout.token_layer, persistent=False)
        self.t_embed = GaussianFourierProjection(embed_dim, fourier_scale)
        self.c_embed = nn.Linear(cond_dim, embed_dim) if cond_dim else None
        self.embed = nn.Sequential(
            nn.Linear(embed_dim, embed_dim), nn.SiLU(), nn.Linear(embed_dim, width)
        )
        self.patch_in = nn.Linear(layout.patch_size, width)
        self.patch_out = nn.Linear(width, layout.patch_size)
        self.extra_in = nn.Linear(n_extra, width) if n_extra else None
        self.extra_out = nn.Linear(width, n_extra) if n_extra else None
        self.extra_pos = nn.Parameter(torch.randn(1, width) * 0.02) if n_extra else None
        self.position = position
        n_a = int(layout.token_angular.max()) + 1
        n_r = int(layout.token_radial.max()) + 1
        if position == "learned":
            self.layer_pos = nn.Parameter(torch.randn(n_layers, width) * 0.02)
            self.angular_pos = nn.Parameter(torch.randn(n_a, width) * 0.02)
            self.radial_pos = nn.Parameter(torch.randn(n_r, width) * 0.02)
            self.register_buffer("token_angular", layout.token_angular, persistent=False)
            self.register_buffer("token_radial", layout.token_radial, persistent=False)
        else:
            part = width // 3
            table = torch.cat(
                [
                    sinusoidal(layout.token_layer, part),
                    sinusoidal(layout.token_angular, part),
                    sinusoidal(layout.token_radial, width - 2 * part),
                ],
                dim=1,
            )
            self.register_buffer("sinusoidal_pos", table, persistent=False)
        self.layer_e = nn.Linear(1, width) if layer_energy_cond else None
        self.blocks = nn.ModuleList(
            AdaLNBlock(width, heads, mlp_ratio, dropout) for _ in range(depth)
        )
        self.final_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        nn.init.zeros_(self.final_modulation[1].weight)
        nn.init.zeros_(self.final_modulation[1].bias)

    def _positions(self) -> Tensor:
        if self.position == "learned":
            return (
                self.layer_pos[self.token_layer]
                + self.angular_pos[self.token_angular]
                + self.radial_pos[self.token_radial]
            )
        return self.sinusoidal_pos

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """Network output [B, D] for x [B, D], t [B], cond [B, C]."""
        e = self.t_embed(t)
        if self.c_embed is not None and cond is not None:
            e = e + self.c_embed(cond.to(e.dtype))
        c = self.embed(e)
        h = self.patch_in(self.layout.tokens(x, self.token_index)) + self._positions()
        if self.layer_e is not None and cond is not None:
            h = h + self.layer_e(cond[:, 1 + self.token_layer].to(h.dtype).unsqueeze(-1))
        if self.extra_in is not None:
            extra = self.extra_in(x[:, self.layout.n_voxels :]) + self.extra_pos
            h = torch.cat([h, extra.unsqueeze(1)], dim=1)
        for block in self.blocks:
            h = block(h, c)
        shift, scale = self.final_modulation(c).unsqueeze(1).chunk(2, dim=-1)
        h = _modulate(self.final_norm(h), shift, scale)
        out = self.layout.voxels(self.patch_out(h[:, : self.layout.n_tokens]), self.voxel_slot)
        if self.extra_out is not None:
            out = torch.cat([out, self.extra_out(h[:, -1])], dim=1)
        return out


class VoxelTransformerConfig(BaseModel):
    """Layer-wise patch transformer for voxel showers; dim = number of voxels + extra coords."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["voxel_transformer"] = "voxel_transformer"
    layer_shapes: list[tuple[int, int]] | None = Field(
        None,
        description="(angular, radial) bins per active layer (filled from the geometry by farm)",
    )
    layer_sizes: list[int] | None = Field(
        None, min_length=1, description="voxels per layer, zeros allowed (one token per layer)"
    )
    patch: tuple[int, int] | None = Field(
        None, description="(angular, radial) bins per token; None: one token per layer"
    )
    width: int = Field(128, ge=8)
    depth: int = Field(4, ge=1)
    heads: int = Field(4, ge=1)
    embed_dim: int = Field(128, ge=2)
    fourier_scale: float = Field(16.0, gt=0.0)
    layer_energy_cond: bool = False
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    mlp_ratio: float = Field(2.0, gt=0.0)
    position: Literal["learned", "sinusoidal"] = "learned"

    @model_validator(mode="after")
    def _consistent(self) -> VoxelTransformerConfig:
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not a multiple of heads {self.heads}")
        if self.patch is not None and min(self.patch) < 1:
            raise ValueError(f"patch {self.patch}: both sizes must be >= 1")
        if self.layer_shapes is not None:
            if min(min(shape) for shape in self.layer_shapes) < 1:
                raise ValueError("layer_shapes: every layer needs >= 1 angular and radial bin")
            sizes = [a * r for a, r in self.layer_shapes]
            if self.layer_sizes is not None and self.layer_sizes != sizes:
                raise ValueError(
                    f"layer_sizes {self.layer_sizes} disagree with layer_shapes (sizes {sizes})"
                )
        elif self.patch is not None and self.layer_sizes is not None:
            raise ValueError("patch needs layer_shapes (angular and radial bins per layer)")
        return self

    def layers(self) -> list[tuple[int, int, int]]:
        """(layer index, angular bins, radial bins) of each non-empty layer."""
        if self.layer_shapes is not None:
            return [(i, a, r) for i, (a, r) in enumerate(self.layer_shapes)]
        if self.layer_sizes is not None:
            return [(i, 1, n) for i, n in enumerate(self.layer_sizes) if n > 0]
        raise ValueError(
            "voxel_transformer needs layer_shapes (farm fills it from the geometry) or layer_sizes"
        )

    def build(self, dim: int, cond_dim: int) -> VoxelTransformer:
        """The network for `dim` coordinates (voxels first) and `cond_dim` condition columns."""
        layers = self.layers()
        n_voxels = sum(a * r for _, a, r in layers)
        if n_voxels > dim:
            raise ValueError(f"layer_sizes sum to {n_voxels}, data has only {dim}")
        n_layers = len(self.layer_shapes or self.layer_sizes or [])
        return VoxelTransformer(
            PatchLayout(layers, self.patch),
            n_layers,
            dim - n_voxels,
            cond_dim,
            width=self.width,
            depth=self.depth,
            heads=self.heads,
            embed_dim=self.embed_dim,
            fourier_scale=self.fourier_scale,
            layer_energy_cond=self.layer_energy_cond,
            dropout=self.dropout,
            mlp_ratio=self.mlp_ratio,
            position=self.position,
        )


__all__ = ["AdaLNBlock", "PatchLayout", "VoxelTransformer", "VoxelTransformerConfig", "sinusoidal"]
