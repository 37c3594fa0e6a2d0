"""Generation with the truth conditions of reference events (showers or jets)."""

from __future__ import annotations

from typing import Any

import torch

from farm.generation.events import event_sample
from farm.generation.jets import jet_sample
from farm.generation.points import point_sample
from farm.generation.settings import SamplerSettings
from farm.generation.showers import shower_sample
from farm.samples import EventSample, JetSample, PointSample, ShowerSample


def sample_like(
    model: Any,
    reference: ShowerSample | JetSample | PointSample | EventSample,
    *,
    generator: torch.Generator,
    settings: SamplerSettings,
    truncate: bool = False,
) -> ShowerSample | JetSample | PointSample | EventSample:
    """A generated sample with the reference's truth (E_inc, jet pT/eta/count, truth sets).

    `truncate` (events only): keep the highest-pT truth particles of events bigger than the
    model's truth slots instead of refusing them.
    """
    if reference.kind == "events":
        return event_sample(
            model, reference, generator=generator, settings=settings, truncate=truncate
        )
    if reference.kind == "jets":
        return jet_sample(model, reference.truth(), generator=generator, settings=settings)
    if reference.kind == "points":
        return point_sample(
            model, reference.e_inc, reference.geometry, generator=generator, settings=settings
        )
    return shower_sample(
        model, reference.e_inc, reference.geometry, generator=generator, settings=settings
    )
