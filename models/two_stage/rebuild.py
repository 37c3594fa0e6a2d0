"""Exact rebuild of generated showers: integer energy quanta apportioned top-down.

Each shower gets a quantum q = 2^(k - 48) with E_tot < 2^k. E_tot becomes N q (N an integer,
N < 2^48); N is apportioned to the layers and each layer's count to its voxels, so every energy is
an integer multiple of q below 2^48 q. Float64 represents all of them and all their partial sums
exactly: layer energies sum exactly to E_tot and each layer's voxels exactly to its energy, in
any summation order. The readout threshold is kept the same way at both levels (a part is a hit
with at least c_min = ceil(threshold (1 + 2^-21) / q) quanta, so even its float32 value is not
below the threshold): the parts are taken largest first while each would still be a hit after
the parent's count is shared among those taken (`apportion`), and the count is then split
proportionally by systematic (cumulative) rounding (`cumulative_round`). A shower whose E_tot is
below the threshold is empty.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

QUANTUM_BITS = 48
"""Counts stay below 2^48 (float64 has 53 mantissa bits: sums of counts are exact with margin)."""

THRESHOLD_MARGIN = 2.0**-21
"""Relative margin above the threshold, so a hit's float32 value is not below it either."""


@dataclass
class ShowerParts:
    """A generated shower's energies in MeV (float64), exact by construction.

    Attributes:
        e_tot: [B] total energy, the exact sum of `layer_energies`.
        layer_energies: [B, L], each the exact sum of its layer's voxels.
        voxels: [B, V] in CaloChallenge voxel order; zero or at least the threshold.
    """

    e_tot: Tensor
    layer_energies: Tensor
    voxels: Tensor


def shower_quantum(e_tot: Tensor) -> Tensor:
    """The quantum of each shower, q = 2^(k - 48) with e_tot < 2^k (float64)."""
    _, exponent = torch.frexp(e_tot.double())
    return torch.ldexp(torch.ones_like(e_tot, dtype=torch.float64), exponent - QUANTUM_BITS)


def hit_quanta(threshold: float, quantum: Tensor) -> Tensor:
    """c_min: the fewest quanta a hit holds, ceil(threshold (1 + 2^-21) / q) (int64)."""
    return torch.ceil(threshold * (1 + THRESHOLD_MARGIN) / quantum).long()


def cumulative_round(total: Tensor, weights: Tensor) -> Tensor:
    """Integers [..., P] >= 0 summing exactly to `total` [...], in proportion to `weights`.

    Systematic rounding: the differences of the rounded cumulative sums, so each count is within
    one of its quota and a zero weight gets zero. Every row needs a positive weight sum or a zero
    total.
    """
    cum = torch.cumsum(weights, dim=-1)
    scale = torch.where(total > 0, total.double() / cum[..., -1].clamp_min(1e-300), 0.0)
    scaled = cum * scale.unsqueeze(-1)
    scaled[..., -1] = total.double()
    rounded = torch.round(scaled).long()
    return torch.diff(rounded, dim=-1, prepend=torch.zeros_like(rounded[..., :1]))


def apportion(
    totals: Tensor, values: Tensor, c_min: Tensor, n_parts: Tensor | None = None
) -> Tensor:
    """Split integer totals among parts: hits get at least c_min each, the rest zero.

    Args:
        totals: [B, G] int64 counts, each zero or at least c_min.
        values: [B, G, P] float64 proposed sizes of the parts, in quanta; negative = padding.
        c_min: [B] int64 quanta of the smallest hit.
        n_parts: [B, G] int64 number of parts to take, if given (clamped to 1 .. min(real
            parts, totals // c_min) for a nonzero total).

    Returns:
        [B, G, P] int64 counts summing exactly to `totals` over P. Without `n_parts`, parts are
        taken largest first while part m would still hold c_min after totals are shared in
        proportion among the m largest; a nonzero total with no such part goes to its largest
        part. With `n_parts`, the n largest are taken, each c_min plus a share of the rest in
        proportion to what it holds above c_min.

    Raises:
        ValueError: A nonzero total below c_min (it cannot be split into hits).
    """
    c = c_min.view(-1, 1, 1)
    if bool(((totals > 0) & (totals < c[..., 0])).any()):
        raise ValueError("a nonzero total below c_min cannot be split into hits")
    order = torch.argsort(values, dim=-1, descending=True, stable=True)
    v = torch.gather(values, -1, order)
    cum = torch.cumsum(v.clamp_min(0.0), dim=-1)
    n = totals.unsqueeze(-1).double()
    if n_parts is None:
        fits = (v >= c) & (n * v >= c * cum)
        taken = torch.cumprod(fits.long(), dim=-1).sum(-1)
    else:
        taken = torch.minimum(n_parts.long(), (values >= 0).sum(-1))
    taken = torch.where(totals > 0, taken.clamp_min(1), 0)
    taken = torch.minimum(taken, totals // c[..., 0])
    kept = torch.arange(v.shape[-1], device=v.device) < taken.unsqueeze(-1)
    cum_kept = torch.gather(cum, -1, (taken - 1).clamp_min(0).unsqueeze(-1))
    if n_parts is None:
        share = n * v / cum_kept
        weights = torch.where(kept, (share - c).clamp_min(0.0), 0.0).nan_to_num(0.0)
    else:  # what each part holds above a hit's least, so a rescale never flattens parts onto c
        weights = torch.where(kept, (v - c).clamp_min(0.0), 0.0)
    weights = torch.where(weights.sum(-1, keepdim=True) > 0, weights, kept.double())
    counts = torch.where(kept, c, 0) + cumulative_round(totals - taken * c[..., 0], weights)
    return torch.empty_like(counts).scatter_(-1, order, counts)


class VoxelLayout:
    """Flat voxels [B, V] (layer slowest) <-> padded per-layer slots [B, L, P]."""

    def __init__(self, layer_sizes: list[int], device: torch.device | str = "cpu"):
        """Layout of layers with `layer_sizes` voxels each."""
        self.n_voxels, width = sum(layer_sizes), max(layer_sizes)
        slot = torch.full((len(layer_sizes), width), self.n_voxels, dtype=torch.long)
        start = 0
        flat = []
        for l, size in enumerate(layer_sizes):
            slot[l, :size] = torch.arange(start, start + size)
            flat.append(l * width + torch.arange(size))
            start += size
        self.slot = slot.to(device)  # voxel index of each slot, n_voxels for padding
        self.flat = torch.cat(flat).to(device)  # slot index of each voxel

    def padded(self, voxels: Tensor, fill: float) -> Tensor:
        """[B, V] -> [B, L, P] with `fill` in the padding."""
        ext = torch.cat([voxels, voxels.new_full((voxels.shape[0], 1), fill)], dim=1)
        return ext[:, self.slot.to(voxels.device)]

    def flatten(self, slots: Tensor) -> Tensor:
        """[B, L, P] -> [B, V]."""
        return slots.flatten(1)[:, self.flat.to(slots.device)]


def rebuild_layers(layer_values: Tensor, threshold: float) -> tuple[Tensor, Tensor]:
    """Energy-stage layer energies [B, L] (MeV) -> (layer counts [B, L] int64, quantum q [B])."""
    e_tot = layer_values.double().sum(1)
    q = shower_quantum(e_tot)
    c = hit_quanta(threshold, q)
    n_tot = torch.round(e_tot / q).long()
    n_tot = torch.where(n_tot < c, 0, n_tot)
    values = (layer_values.double() / q.unsqueeze(1)).unsqueeze(1)
    return apportion(n_tot.unsqueeze(1), values, c)[:, 0], q


def feasible_hits(
    layer_hits: Tensor, layer_counts: Tensor, c_min: Tensor, layer_sizes: Tensor
) -> Tensor:
    """The hits [B, L] a layer can hold: n clamped to 1 .. min(size, count // c_min), 0 if empty.

    These are the numbers of parts `rebuild_voxels` takes with `layer_hits`.
    """
    most = torch.minimum(layer_sizes.to(layer_counts.device), layer_counts // c_min.unsqueeze(1))
    n = torch.minimum(layer_hits.long().clamp_min(1), most)
    return torch.where(layer_counts > 0, n, 0)


def rebuild_voxels(
    layer_counts: Tensor,
    voxel_values: Tensor,
    quantum: Tensor,
    threshold: float,
    layout: VoxelLayout,
    layer_hits: Tensor | None = None,
) -> Tensor:
    """Shape-stage voxel energies [B, V] (MeV) -> voxel counts [B, V] summing to layer_counts.

    With `layer_hits` [B, L] (the energy stage's hits per layer), each layer keeps that many of
    its largest voxels, as far as its count allows (`apportion`'s `n_parts`).
    """
    values = layout.padded(voxel_values.double() / quantum.unsqueeze(1), -1.0)
    counts = apportion(layer_counts, values, hit_quanta(threshold, quantum), layer_hits)
    return layout.flatten(counts)


__all__ = [
    "ShowerParts",
    "VoxelLayout",
    "apportion",
    "cumulative_round",
    "feasible_hits",
    "hit_quanta",
    "rebuild_layers",
    "rebuild_voxels",
    "shower_quantum",
]
