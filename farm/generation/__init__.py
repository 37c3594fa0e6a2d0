"""Samples from a loaded model in the data's own layout, one function per data kind.

Every caller (campaign actors, `farm generate`, training validation, tune's fidelity scoring, the
quickstart through its campaign) generates through `shower_sample`, `point_sample`, `jet_sample` or `event_sample` and so shares
one NaN/Inf policy: a sample with any non-finite value is refused with `NonFiniteOutput`, never
returned, written or scored.
"""

from __future__ import annotations

from farm.generation.events import event_sample
from farm.generation.jets import jet_sample
from farm.generation.like import sample_like
from farm.generation.points import point_sample
from farm.generation.settings import NonFiniteOutput, SamplerSettings
from farm.generation.showers import shower_sample

__all__ = [
    "NonFiniteOutput",
    "SamplerSettings",
    "event_sample",
    "jet_sample",
    "point_sample",
    "sample_like",
    "shower_sample",
]
