"""Generation with the truth conditions of reference events (showers or jets)."""

from __future__ import annotations

from typing import Any

import torch

from farm.generation.jets import jet_sample
from farm.generation.points import point_sample
from farm.generation.settings import SamplerSettings
from farm.generation.showers import shower_sample
from farm.samples import JetSample, PointSample, ShowerSample


def sample_like(
    model: Any,
    reference: ShowerSample | JetSample | PointSample,
    *,
    generator: torch.Generator,
    settings: SamplerSettings,
) -> ShowerSample | JetSample | PointSample:
    """A generated sample with the reference's truth conditions (E_inc, or jet pT/eta/count)."""
    if reference.kind == "jets":
        return jet_sample(model, reference.truth(), generator=generator, settings=settings)
    if reference.kind == "points":
        return point_sample(
            model, reference.e_inc, reference.geometry, generator=generator, settings=settings
        )
    return shower_sample(
        model, reference.e_inc, reference.geometry, generator=generator, settings=settings
    )
