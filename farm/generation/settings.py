"""How a model is sampled (sampler, NFE, options, batch, autocast) and the shared NaN/Inf policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from farm.errors import FarmError


class NonFiniteOutput(FarmError):
    """The model produced NaN or Inf: the sample is refused, never written or scored."""


@dataclass(frozen=True)
class SamplerSettings:
    """Sampler name and NFE (None: the model's), sampler options, batch size, autocast dtype."""

    sampler: str | None = None
    nfe: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 4096
    autocast_dtype: torch.dtype | None = None

    def generate(self, model: Any, cond: torch.Tensor, generator: torch.Generator) -> np.ndarray:
        """model.generate with these settings; (N, dim) numpy array on the CPU."""
        x = model.generate(
            cond,
            sampler=self.sampler,
            nfe=self.nfe,
            generator=generator,
            batch_size=self.batch_size,
            autocast_dtype=self.autocast_dtype,
            options=self.options or None,
        )
        return x.cpu().numpy()


DEFAULT_SETTINGS = SamplerSettings()
"""The model's own sampler, NFE and options; batches of 4096; no autocast."""


def refuse_non_finite(what: str, *arrays: np.ndarray) -> None:
    """Raise NonFiniteOutput naming how many values of a generated sample are NaN or Inf."""
    bad = sum(int((~np.isfinite(a)).sum()) for a in arrays)
    if bad:
        raise NonFiniteOutput(f"the model produced {bad} non-finite {what} values")
