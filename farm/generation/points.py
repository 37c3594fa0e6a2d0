"""Point-cloud showers from a point-cloud shower model, as hits of their cell geometry.

The model (models.points.PointShowerModel) draws a hit count per shower and generates
(x, y, layer, E) for each hit in physical units; here each hit goes to a cell (layer rounded
into the stack; x and y to a 5 x 5 mm pad of that layer), hits falling outside the pad grid or
with E <= 0 are removed, and hits that would share a pad get distinct nearby pads
(farm.generation.cell_assignment: the nearest free cell), so the result is a valid readout like
the simulator's, one hit per cell, ordered by cell, with the model's hit count and energy.
Only a hit with no free pad within 3 cells is merged into its own pad's hit (energies summed).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from farm.errors import FarmError
from farm.generation.cell_assignment import assign_free_cells
from farm.generation.settings import DEFAULT_SETTINGS, SamplerSettings, refuse_non_finite
from farm.geometry import CellGeometry
from farm.samples import PointSample

FEATURES = 4
"""x, y (mm), layer, E (MeV): what a point-cloud shower model generates per hit."""


def is_points_model(model: Any) -> bool:
    """Whether a loaded model generates point-cloud showers (config kind point_showers)."""
    return getattr(getattr(model, "config", None), "kind", "") == "point_showers"


def cells_from_points(pts: np.ndarray, e_inc: np.ndarray, geometry: CellGeometry) -> PointSample:
    """Hits of a CellGeometry from padded generated points (N, n_max, 4) [x, y, layer, E]."""
    n, n_max = pts.shape[:2]
    flat = pts.reshape(-1, FEATURES).astype(np.float64)
    owner = np.repeat(np.arange(n), n_max)
    layer = np.clip(np.rint(flat[:, 2]), 0, geometry.n_layers - 1).astype(np.int64)
    u = (flat[:, 0] + geometry.half_width) / geometry.cell_size
    v = (flat[:, 1] + geometry.half_width) / geometry.cell_size
    g = geometry.n_cells
    keep = (flat[:, 3] > 0) & (u >= 0) & (u < g) & (v >= 0) & (v < g)
    owner, layer, flat = owner[keep], layer[keep], flat[keep]
    assigned = assign_free_cells(owner * geometry.n_layers + layer, u[keep], v[keep], g)
    per_shower = geometry.n_layers * g * g
    key = owner * per_shower + (layer * g + assigned.iy) * g + assigned.ix
    cells, inverse = np.unique(key, return_inverse=True)
    energy = np.bincount(inverse, weights=flat[:, 3], minlength=cells.shape[0])
    shower, cell = np.divmod(cells, per_shower)
    lay, rest = np.divmod(cell, g * g)
    cy, cx = np.divmod(rest, g)
    hits = np.empty((cells.shape[0], 4), dtype=np.float32)
    hits[:, 0] = (cx + 0.5) * geometry.cell_size - geometry.half_width
    hits[:, 1] = (cy + 0.5) * geometry.cell_size - geometry.half_width
    hits[:, 2] = np.asarray(geometry.z_mm)[lay]
    hits[:, 3] = energy
    positive = hits[:, 3] > 0  # float32 rounding of tiny energies
    counts = np.bincount(shower[positive], minlength=n).astype(np.int64)
    return PointSample(
        counts, hits[positive], lay[positive].astype(np.int16), np.asarray(e_inc), geometry
    )


def point_sample(
    model: Any,
    e_inc: np.ndarray,
    geometry: CellGeometry,
    *,
    generator: torch.Generator,
    settings: SamplerSettings = DEFAULT_SETTINGS,
) -> PointSample:
    """Point-cloud showers for incident energies e_inc (N,) MeV; NonFiniteOutput on NaN/Inf."""
    if not is_points_model(model):
        raise FarmError(
            f"geometry {geometry.name!r} holds point-cloud showers; this model generates voxels"
        )
    e_inc = np.asarray(e_inc, np.float64).reshape(-1)
    cond = torch.from_numpy(e_inc).reshape(-1, 1).float()
    x = settings.generate(model, cond, generator)
    refuse_non_finite("hit", x)
    return cells_from_points(x.reshape(len(e_inc), -1, FEATURES), e_inc, geometry)
