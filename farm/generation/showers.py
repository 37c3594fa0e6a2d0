"""Showers (MeV) from a shower model for incident energies."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from farm.errors import FarmError
from farm.generation.settings import DEFAULT_SETTINGS, SamplerSettings, refuse_non_finite
from farm.geometry import CaloGeometry
from farm.samples import ShowerSample


def shower_sample(
    model: Any,
    e_inc: np.ndarray,
    geometry: CaloGeometry,
    *,
    generator: torch.Generator,
    settings: SamplerSettings = DEFAULT_SETTINGS,
) -> ShowerSample:
    """Showers for incident energies e_inc (N,) MeV; NonFiniteOutput if any voxel is NaN/Inf."""
    if getattr(getattr(model, "config", None), "kind", "") == "point_showers":
        raise FarmError(
            f"this model generates point-cloud showers (hits), not voxels of geometry "
            f"{geometry.name!r}; use its point-cloud geometry"
        )
    e_inc = np.asarray(e_inc, np.float64).reshape(-1)
    cond = torch.from_numpy(e_inc).reshape(-1, 1).float()
    showers = settings.generate(model, cond, generator)
    refuse_non_finite("voxel", showers)
    return ShowerSample(showers, e_inc, geometry)
