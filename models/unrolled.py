"""A deterministic sampler unrolled for a fixed NFE: (prior noise z, conditions) -> physical samples.

The module is the same computation as `GenerativeModel.generate` for one batch after the noise
is drawn (`GenerativeModel.from_noise`: condition transform, `Process.sample_from`, preprocessing
inverse), so tracing it (ONNX, TorchScript) gives one graph with the solver's steps unrolled.
Only samplers that are a fixed function of the prior noise can be unrolled
(`Process.unroll_refusal`); the batch size stays free (`models.points.UnrolledPoints` does the
same for a point-cloud shower model).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from models.generative import GenerativeModel


class UnrolledSampler(nn.Module):
    """forward(z [B, noise_dim] ~ N(0, I), cond [B, cond_dim] physical) -> samples [B, dim]."""

    def __init__(
        self,
        model: GenerativeModel,
        sampler: str | None = None,
        nfe: int | None = None,
        options: dict[str, Any] | None = None,
    ):
        """Unroll `sampler` (default: the model's) at `nfe`; ValueError if it cannot be unrolled."""
        super().__init__()
        if not isinstance(model, GenerativeModel):
            raise ValueError(
                f"only single-stage models can be unrolled, got {type(model).__name__}"
            )
        self.sampler, self.nfe, self.options = model.sampler_settings(sampler, nfe, options)
        model.process.check_sampler(self.sampler, self.nfe)
        why = model.process.unroll_refusal(self.sampler, self.nfe)
        if why:
            raise ValueError(why)
        self.model = model.eval()

    @property
    def noise_dim(self) -> int:
        """Width of the prior noise z (the network space)."""
        return self.model.preprocessing.out_dim

    @torch.no_grad()
    def forward(self, z: Tensor, cond: Tensor) -> Tensor:
        """Physical samples from the prior noise z for physical conditions cond."""
        return self.model.from_noise(
            z, cond, sampler=self.sampler, nfe=self.nfe, options=self.options
        )


__all__ = ["UnrolledSampler"]
