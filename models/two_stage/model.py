"""A two-stage shower model (CaloDREAM, arXiv:2405.09629): energies first, then shapes.

The energy stage generates the layer energies (and so E_tot) given E_inc; the shape stage
generates each voxel's share of its layer energy given E_inc and those layer energies. Each stage
is a complete `GenerativeModel` (its own network, process, preprocessing and default sampler),
so every process, sampler and consistency distillation works on it. `generate` samples the
stages in sequence and rebuilds exact showers (`models.two_stage.rebuild`). One state dict holds
both stages (keys `energy.*`, `shape.*`): one checkpoint folder, one card, one `load_model`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from models.config import TwoStageConfig
from models.data import TrainData
from models.generative import GenerativeModel
from models.two_stage.rebuild import (
    ShowerParts,
    VoxelLayout,
    feasible_hits,
    hit_quanta,
    rebuild_layers,
    rebuild_voxels,
)


class TwoStageModel(nn.Module):
    """Energy stage + shape stage; `net` is the shape stage's network (what campaigns compile)."""

    def __init__(self, config: TwoStageConfig, dim: int, cond_dim: int):
        """A model for showers of `dim` voxels conditioned on E_inc (`cond_dim` must be 1)."""
        super().__init__()
        sizes = config.preprocessing.layer_sizes
        if not sizes:
            raise ValueError(
                "preprocessing.layer_sizes: a two-stage model needs the voxels per layer "
                "(farm fills them from the geometry)"
            )
        if sum(sizes) != dim:
            raise ValueError(f"layer_sizes sum to {sum(sizes)}, but showers have {dim} voxels")
        if cond_dim != 1:
            raise ValueError(
                f"a two-stage shower model is conditioned on E_inc alone, got {cond_dim}"
            )
        self.config = config
        self.dim, self.cond_dim = dim, cond_dim
        self.threshold_mev = config.preprocessing.threshold_mev
        self.layer_hits = config.preprocessing.layer_hits
        energy_dim = 2 * len(sizes) if self.layer_hits else len(sizes)
        self.energy = GenerativeModel(config.stage("energy"), energy_dim, 1)
        self.shape = GenerativeModel(config.stage("shape"), dim, 1 + energy_dim)
        self.layout = VoxelLayout(sizes)
        self.register_buffer("layer_sizes", torch.tensor(sizes), persistent=False)
        self.n_layers = len(sizes)
        layer_of = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
        self.register_buffer("layer_of_voxel", layer_of, persistent=False)

    @property
    def net(self) -> nn.Module:
        """The shape stage's network (the expensive one)."""
        return self.shape.net

    def __setattr__(self, name: str, value: Any) -> None:
        """`model.net = torch.compile(model.net)` replaces the shape stage's network."""
        if name == "net":
            self.shape.net = value
        else:
            super().__setattr__(name, value)

    @property
    def default_sampler(self) -> str:
        """The shape stage's default sampler."""
        return self.shape.default_sampler

    def layer_energies(self, showers: Tensor) -> Tensor:
        """[N, L] float64 sums of each layer's voxels above the readout threshold."""
        return layer_energies(showers, self.layer_of_voxel, self.n_layers, self.threshold_mev)

    def stage_data(self, data: TrainData) -> tuple[TrainData, TrainData]:
        """Split physical (showers, E_inc) into the two stages' training data; see `stage_data`."""
        return stage_data(
            data, self.layer_of_voxel, self.n_layers, self.threshold_mev, self.layer_hits
        )

    @torch.no_grad()
    def generate_parts(
        self,
        cond: Tensor,
        *,
        sampler: str | None = None,
        nfe: int | None = None,
        generator: torch.Generator | None = None,
        batch_size: int = 4096,
        autocast_dtype: torch.dtype | None = None,
        options: dict[str, Any] | None = None,
    ) -> ShowerParts:
        """Exact float64 showers for E_inc `cond` [B, 1] (MeV), batch by batch.

        The energy stage samples with its own configured sampler, NFE and full precision;
        `sampler`, `nfe`, `options` and `autocast_dtype` apply to the shape stage. A shower
        whose generated energies are not finite comes back as NaN voxels.
        """
        device = next(self.net.parameters()).device
        parts = []
        for start in range(0, cond.shape[0], batch_size):
            e_inc = cond[start : start + batch_size, :1].to(device).double()
            energies = self.energy.generate(e_inc, generator=generator, batch_size=batch_size)
            finite = torch.isfinite(energies).all(1)
            layer_values = energies[:, : self.n_layers]
            layer_hits = (
                torch.where(finite.unsqueeze(1), energies[:, self.n_layers :], 0.0).long()
                if self.layer_hits
                else None
            )
            layer_counts, quantum = rebuild_layers(
                torch.where(finite.unsqueeze(1), layer_values, 0.0), self.threshold_mev
            )
            layer_e = layer_counts.double() * quantum.unsqueeze(1)
            shape_cond = torch.cat([e_inc, layer_e], dim=1)
            if layer_hits is not None:
                c_min = hit_quanta(self.threshold_mev, quantum)
                layer_hits = feasible_hits(layer_hits, layer_counts, c_min, self.layer_sizes)
                shape_cond = torch.cat([shape_cond, layer_hits.double()], dim=1)
            voxel_values = self.shape.generate(
                shape_cond,
                sampler=sampler,
                nfe=nfe,
                generator=generator,
                batch_size=batch_size,
                autocast_dtype=autocast_dtype,
                options=options,
            )
            finite &= torch.isfinite(voxel_values).all(1)
            if layer_hits is not None:
                voxel_values = self._with_kept_hits(voxel_values, layer_hits, shape_cond, generator)
            voxel_counts = rebuild_voxels(
                layer_counts,
                torch.where(finite.unsqueeze(1), voxel_values, 0.0),
                quantum,
                self.threshold_mev,
                self.layout,
                layer_hits,
            )
            voxels = voxel_counts.double() * quantum.unsqueeze(1)
            voxels[~finite] = float("nan")
            parts.append((layer_e.sum(1), layer_e, voxels))
        if not parts:
            empty = torch.empty(0, dtype=torch.float64, device=device)
            return ShowerParts(
                empty, empty.reshape(0, len(self.layout.slot)), empty.reshape(0, self.dim)
            )
        e_tot, layer_e, voxels = (torch.cat(p) for p in zip(*parts, strict=True))
        return ShowerParts(e_tot, layer_e, voxels)

    def _with_kept_hits(
        self, voxels: Tensor, layer_hits: Tensor, cond: Tensor, generator: torch.Generator | None
    ) -> Tensor:
        """Kept voxels generated below threshold get a value from their hit spectrum.

        The rebuild keeps the n_l largest voxels of each layer; one the shape stage generated
        below the threshold would otherwise get the least a hit holds (a spike at the
        threshold), so it gets a draw from that voxel's spectrum given it is hit (`hit_values`).
        The kept set does not change: every voxel outside it was below the threshold already.
        """
        slots = self.layout.padded(voxels.double(), -1.0)
        rank = torch.argsort(torch.argsort(slots, dim=-1, descending=True, stable=True), dim=-1)
        kept = rank < layer_hits.unsqueeze(-1)
        below = self.layout.flatten(kept & (slots < self.threshold_mev))
        if not bool(below.any()):
            return voxels
        rows, cols = below.nonzero(as_tuple=True)
        out = voxels.double().clone()
        out[rows, cols] = self.shape.preprocessing.hit_values(cond, rows, cols, generator)
        return out

    @torch.no_grad()
    def generate(
        self,
        cond: Tensor,
        *,
        sampler: str | None = None,
        nfe: int | None = None,
        generator: torch.Generator | None = None,
        batch_size: int = 4096,
        autocast_dtype: torch.dtype | None = None,
        options: dict[str, Any] | None = None,
    ) -> Tensor:
        """Showers [B, V] in MeV (float32) for E_inc `cond` [B, 1]; see `generate_parts`."""
        return self.generate_parts(
            cond,
            sampler=sampler,
            nfe=nfe,
            generator=generator,
            batch_size=batch_size,
            autocast_dtype=autocast_dtype,
            options=options,
        ).voxels.float()


def _per_layer(values: Tensor, layer_of_voxel: Tensor, n_layers: int) -> Tensor:
    """[N, L] sums of float64 per-voxel `values` [N, V] over each layer."""
    out = torch.zeros(values.shape[0], n_layers, dtype=values.dtype, device=values.device)
    return out.index_add_(1, layer_of_voxel.to(values.device), values)


def layer_energies(
    showers: Tensor, layer_of_voxel: Tensor, n_layers: int, threshold_mev: float
) -> Tensor:
    """[N, L] float64 sums of each layer's voxels above the readout threshold."""
    e = showers.double()
    return _per_layer(torch.where(e < threshold_mev, 0.0, e), layer_of_voxel, n_layers)


def layer_hit_counts(
    showers: Tensor, layer_of_voxel: Tensor, n_layers: int, threshold_mev: float
) -> Tensor:
    """[N, L] float64 number of voxels at or above the readout threshold in each layer."""
    return _per_layer((showers >= threshold_mev).double(), layer_of_voxel, n_layers)


def stage_data(
    data: TrainData,
    layer_of_voxel: Tensor,
    n_layers: int,
    threshold_mev: float,
    layer_hits: bool = False,
) -> tuple[TrainData, TrainData]:
    """Split physical (showers, E_inc) into the two stages' training data.

    Returns the energy stage's (layer energies [+ hit counts], E_inc) and the shape stage's
    (showers, [E_inc, layer energies (+ hit counts)]), the hit counts with `layer_hits`.
    """
    e_inc = data.cond[:, :1].double()
    energies = layer_energies(data.x, layer_of_voxel, n_layers, threshold_mev)
    if layer_hits:
        hits = layer_hit_counts(data.x, layer_of_voxel, n_layers, threshold_mev)
        energies = torch.cat([energies, hits], dim=1)
    return TrainData(energies, e_inc), TrainData(data.x, torch.cat([e_inc, energies], dim=1))


__all__ = ["TwoStageModel", "layer_energies", "layer_hit_counts", "stage_data"]
