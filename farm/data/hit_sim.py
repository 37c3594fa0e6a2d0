"""Showers as hits of a high-granularity calorimeter, from the GFlash-like simulator's spots.

The spots (longitudinal Gamma profile, GP radial core+tail, Dirichlet energy split) are those of
`farm.data.shower_sim.sample_spots`; here they fall into square pads of a `CellGeometry` rather
than CaloChallenge voxels, each hit cell's deposit gets the same sampling fluctuation
(Gamma(mu / theta, theta)) and the readout threshold keeps cells above it. Output is a ragged
point cloud: per shower, (x, y, z, E) and the layer of each hit above threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from farm.data.shower_sim import (
    ShowerSimParams,
    Spots,
    check_energies,
    default_params,
    sample_spots,
    sample_voxel_signal,
    sampling_scale,
)
from farm.geometry import CellGeometry


@dataclass(frozen=True)
class Hits:
    """Ragged hits of n showers: counts (n,), hits (M, 4) float32 [x, y, z mm, E MeV], layer (M,)."""

    counts: np.ndarray
    hits: np.ndarray
    layer: np.ndarray


def cell_index(spots: Spots, geometry: CellGeometry, R_M: float) -> np.ndarray:
    """Flat (layer, iy, ix) cell index of each spot, -1 where it leaves the geometry."""
    edges = np.asarray(geometry.depth_edges)
    layer = np.searchsorted(edges, spots.t, side="right") - 1
    n = geometry.n_cells
    r_mm = spots.r.astype(np.float64) * R_M
    x, y = r_mm * np.cos(spots.phi), r_mm * np.sin(spots.phi)
    ix = np.floor((x + geometry.half_width) / geometry.cell_size).astype(np.int64)
    iy = np.floor((y + geometry.half_width) / geometry.cell_size).astype(np.int64)
    inside = (layer >= 0) & (layer < geometry.n_layers) & (ix >= 0) & (ix < n)
    inside &= (iy >= 0) & (iy < n)
    return np.where(inside, (layer * n + iy) * n + ix, -1)


def simulate_hits(
    geometry: CellGeometry,
    e_inc: np.ndarray,
    rng: np.random.Generator,
    params: ShowerSimParams | None = None,
) -> Hits:
    """Hits above threshold of showers with incident energies e_inc (MeV); ordered by cell."""
    p = params or default_params(geometry)
    e = check_energies(geometry, e_inc)
    spots = sample_spots(e, rng, p)
    idx = cell_index(spots, geometry, p.R_M)
    keep = idx >= 0
    n_cells = geometry.n_layers * geometry.n_cells**2
    key = spots.shower[keep] * n_cells + idx[keep]
    cells, inverse = np.unique(key, return_inverse=True)
    deposit = np.bincount(inverse, weights=spots.energy[keep], minlength=cells.shape[0])
    signal = sample_voxel_signal(deposit, rng, sampling_scale(p))
    above = signal >= p.threshold
    cells, signal = cells[above], signal[above]
    shower, cell = np.divmod(cells, n_cells)
    layer, rest = np.divmod(cell, geometry.n_cells**2)
    iy, ix = np.divmod(rest, geometry.n_cells)
    hits = np.empty((cells.shape[0], 4), dtype=np.float32)
    hits[:, 0] = (ix + 0.5) * geometry.cell_size - geometry.half_width
    hits[:, 1] = (iy + 0.5) * geometry.cell_size - geometry.half_width
    hits[:, 2] = np.asarray(geometry.z_mm)[layer]
    hits[:, 3] = signal
    counts = np.bincount(shower, minlength=e.shape[0]).astype(np.int64)
    return Hits(counts, hits, layer.astype(np.int16))
