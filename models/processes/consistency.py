"""Consistency models (Song et al. 2023, arXiv:2303.01469).

f(x, sigma) maps any point of a PF-ODE trajectory to its origin in one network evaluation.

f(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma)) with
c_skip(sigma_min) = 1, c_out(sigma_min) = 0 (the boundary condition, their Appendix C), and
c_in, c_noise as EDM so a student can start from an EDM teacher's weights. Space: x = x_0 + sigma n.
`loss` is consistency *training* (their Alg. 3) with the stop-gradient target and pseudo-Huber
distance of Song & Dhariwal 2023; distillation from a teacher is `models.distill`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from models.processes.base import Process, rand, randn
from models.samplers.diffusion import get_sigmas_karras


def _view(v: Tensor, x: Tensor) -> Tensor:
    return v.to(device=x.device, dtype=x.dtype).view(-1, *([1] * (x.dim() - 1)))


def pseudo_huber(a: Tensor, b: Tensor, c: float | None = None) -> Tensor:
    """Per-sample sqrt(|a - b|^2 + c^2) - c, c = 0.00054 sqrt(dim) (Song & Dhariwal 2023)."""
    d2 = (a - b).pow(2).flatten(1).sum(dim=1)
    c = 0.00054 * math.sqrt(a[0].numel()) if c is None else c
    return (d2 + c * c).sqrt() - c


class ConsistencyModel(Process):
    """A consistency function; `sample` takes nfe steps (1: one step; more: Alg. 1 multistep)."""

    name = "consistency"
    samplers = ("consistency",)
    default_sampler = "consistency"
    unrollable = ("consistency",)
    """One step only: a multistep sample draws fresh noise at each re-noising level."""

    def __init__(
        self,
        sigma_data: float = 1.0,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
        rho: float = 7.0,
        n_steps: int = 40,
        sigma_mid: float = 0.8,
        sigma_mid_min: float = 0.02,
    ):
        self.sigma_data, self.sigma_min, self.sigma_max, self.rho = (
            sigma_data,
            sigma_min,
            sigma_max,
            rho,
        )
        self.n_steps, self.sigma_mid, self.sigma_mid_min = n_steps, sigma_mid, sigma_mid_min

    def precond(self, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(c_skip, c_out, c_in, c_noise) with the boundary condition at sigma_min (float64)."""
        sd, s0 = self.sigma_data, self.sigma_min
        c_skip = sd**2 / ((sigma - s0) ** 2 + sd**2)
        c_out = (sigma - s0) * sd / (sigma**2 + sd**2).sqrt()
        c_in = 1 / (sigma**2 + sd**2).sqrt()
        return c_skip, c_out, c_in, sigma.log() / 4

    def consistency_fn(self, net, cond: Tensor | None = None) -> Callable[..., Tensor]:
        """f(x, sigma, cond) = c_skip x + c_out net(c_in x, c_noise, cond)."""

        def fn(x: Tensor, sigma: Tensor | float, c: Tensor | None = cond) -> Tensor:
            sigma = torch.as_tensor(sigma, dtype=torch.float64, device=x.device)
            sigma = sigma.expand(x.shape[0]) if sigma.dim() == 0 else sigma
            c_skip, c_out, c_in, c_noise = self.precond(sigma)
            f_x = net(_view(c_in, x) * x, c_noise.to(x.dtype), c)
            return _view(c_skip, x) * x + _view(c_out, x) * f_x.to(x.dtype)

        return fn

    denoiser = consistency_fn

    def sigmas_ascending(self, n: int | None = None, device: torch.device | str = "cpu") -> Tensor:
        """The Karras discretisation sigma_min = sigma_1 < ... < sigma_N = sigma_max (float64)."""
        return get_sigmas_karras(
            n or self.n_steps, self.sigma_min, self.sigma_max, self.rho, device=device
        )[:-1].flip(0)

    def loss(self, net, x: Tensor, cond: Tensor | None, generator=None) -> Tensor:
        """Consistency-training loss per sample (Song et al. 2023, Alg. 3; pseudo-Huber distance)."""
        sigmas = self.sigmas_ascending(device=x.device)
        u = rand((x.shape[0],), generator, like=x).double()
        n = (u * (len(sigmas) - 1)).long().clamp_max(len(sigmas) - 2)
        s_lo, s_hi = sigmas[n], sigmas[n + 1]
        z = randn(tuple(x.shape), generator, like=x).to(x.device)
        f = self.consistency_fn(net, cond)
        with torch.no_grad():
            target = f(x + _view(s_lo, x) * z, s_lo)
        pred = f(x + _view(s_hi, x) * z, s_hi)
        return pseudo_huber(pred, target) / (s_hi - s_lo).to(x.dtype)

    def multistep_sigmas(self, nfe: int) -> list[float]:
        """Intermediate noise levels for nfe > 1: nfe - 1 Karras points from sigma_mid down."""
        if nfe <= 1:
            return []
        grid = get_sigmas_karras(nfe - 1, self.sigma_mid_min, self.sigma_mid, self.rho)[:-1]
        return grid.tolist()

    def unroll_refusal(self, sampler: str, nfe: int) -> str | None:
        """Only the 1-step sample is a fixed function of the prior noise."""
        if nfe > 1:
            return (
                f"consistency sampling with nfe={nfe} draws fresh noise at each re-noising level "
                "and cannot be unrolled; export the 1-step student (nfe 1)"
            )
        return super().unroll_refusal(sampler, nfe)

    def sample_from(
        self, net, z: Tensor, cond, *, sampler: str, nfe: int, generator=None, **options: Any
    ) -> Tensor:
        """Alg. 1 from the prior sample sigma_max z; steps after the first draw fresh noise."""
        shape, device = tuple(z.shape), z.device
        f = self.consistency_fn(net, cond)
        x = f(z * self.sigma_max, self.sigma_max)
        for tau in options.get("sigmas", self.multistep_sigmas(nfe)):
            z = randn(shape, generator, device=device).to(device)
            x = f(x + math.sqrt(max(tau**2 - self.sigma_min**2, 0.0)) * z, tau)
        return x


class ConsistencyConfig(BaseModel):
    """A consistency model (distilled with models.distill, or trained directly by fit)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["consistency"] = "consistency"
    sigma_data: float = Field(1.0, gt=0.0)
    sigma_min: float = Field(0.002, gt=0.0)
    sigma_max: float = Field(80.0, gt=0.0)
    rho: float = Field(7.0, gt=0.0)
    n_steps: int = Field(40, ge=2, description="discretisation N of the PF ODE for training")
    sigma_mid: float = Field(
        0.8, gt=0.0, description="first re-noising level of multistep sampling"
    )
    sigma_mid_min: float = Field(0.02, gt=0.0)

    def build(self) -> ConsistencyModel:
        """The process object."""
        return ConsistencyModel(
            self.sigma_data,
            self.sigma_min,
            self.sigma_max,
            self.rho,
            self.n_steps,
            self.sigma_mid,
            self.sigma_mid_min,
        )


__all__ = ["ConsistencyConfig", "ConsistencyModel", "pseudo_huber"]
