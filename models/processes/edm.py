"""EDM preconditioned denoiser and loss (Karras et al. 2022, arXiv:2206.00364, Table 1).

D(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma)) with F = net;
training draws ln sigma ~ N(P_mean, P_std^2) and weights the L2 loss by lambda(sigma).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from models.processes.base import ProbabilityFlow, Process, randn
from models.processes.sigma_samplers import SIGMA_SAMPLERS, run_sigma_sampler


def _sigma_vec(sigma: Tensor | float, x: Tensor) -> Tensor:
    """Sigma as a float64 [B] tensor on x's device."""
    sigma = torch.as_tensor(sigma, dtype=torch.float64, device=x.device)
    return sigma.expand(x.shape[0]) if sigma.dim() == 0 else sigma


def _view(v: Tensor, x: Tensor) -> Tensor:
    return v.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))


class EDM(Process):
    """EDM preconditioning; samplers act on the denoiser in sigma from sigma_max to 0."""

    name = "edm"
    samplers = tuple(SIGMA_SAMPLERS)
    default_sampler = "heun"
    unrollable = ("euler", "heun", "dpmpp_2m")

    def __init__(
        self,
        sigma_data: float = 1.0,
        p_mean: float = -1.2,
        p_std: float = 1.2,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
        rho: float = 7.0,
    ):
        self.sigma_data, self.p_mean, self.p_std = sigma_data, p_mean, p_std
        self.sigma_min, self.sigma_max, self.rho = sigma_min, sigma_max, rho

    def precond(self, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(c_skip, c_out, c_in, c_noise) of Karras et al. 2022 Table 1 (float64)."""
        sd = self.sigma_data
        c_skip = sd**2 / (sigma**2 + sd**2)
        c_out = sigma * sd / (sigma**2 + sd**2).sqrt()
        c_in = 1 / (sigma**2 + sd**2).sqrt()
        c_noise = sigma.log() / 4
        return c_skip, c_out, c_in, c_noise

    def loss_weight(self, sigma: Tensor) -> Tensor:
        """lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2."""
        return (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2

    def denoiser(self, net, cond: Tensor | None = None) -> Callable[..., Tensor]:
        """D(x, sigma, cond) = c_skip x + c_out net(c_in x, c_noise, cond)."""

        def fn(x: Tensor, sigma: Tensor | float, c: Tensor | None = cond) -> Tensor:
            sigma = _sigma_vec(sigma, x)
            c_skip, c_out, c_in, c_noise = self.precond(sigma)
            f_x = net(_view(c_in, x) * x, c_noise.to(x.dtype), c)
            return _view(c_skip, x) * x + _view(c_out, x) * f_x.to(x.dtype)

        return fn

    def loss(self, net, x: Tensor, cond: Tensor | None, generator=None) -> Tensor:
        """EDM loss per sample: lambda(sigma) ||D(x + sigma n) - x||^2, ln sigma ~ N(P_mean, P_std^2)."""
        z = randn((x.shape[0],), generator, like=x).to(x.device).double()
        sigma = (self.p_mean + self.p_std * z).exp()
        n = randn(tuple(x.shape), generator, like=x).to(x.device) * _view(sigma, x)
        d = self.denoiser(net, cond)(x + n, sigma)
        return self.loss_weight(sigma).to(x.dtype) * (d - x).pow(2).flatten(1).mean(dim=1)

    def probability_flow(self, net, cond: Tensor | None = None) -> ProbabilityFlow:
        """PF ODE dx/dsigma = (x - D) / sigma, prior N(0, sigma_max^2 + sigma_data^2)."""
        denoiser = self.denoiser(net, cond)
        return ProbabilityFlow(
            drift=lambda x, sigma: (x - denoiser(x, sigma)) / sigma.to(x.dtype),
            t_data=self.sigma_min,
            t_prior=self.sigma_max,
            prior_std=math.sqrt(self.sigma_max**2 + self.sigma_data**2),
        )

    def sample_from(
        self, net, z: Tensor, cond, *, sampler: str, nfe: int, generator=None, **options: Any
    ) -> Tensor:
        """An EDM sampler from the prior sample sigma_max z down to sigma = 0."""
        return run_sigma_sampler(
            sampler,
            self.denoiser(net, cond),
            z * self.sigma_max,
            cond,
            nfe=nfe,
            sigma_min=self.sigma_min,
            sigma_max=self.sigma_max,
            rho=self.rho,
            generator=generator,
            options=options,
        )


class EDMConfig(BaseModel):
    """EDM preconditioning and loss; sigma_data = 1 matches standardised preprocessing."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["edm"] = "edm"
    sigma_data: float = Field(1.0, gt=0.0)
    p_mean: float = -1.2
    p_std: float = Field(1.2, gt=0.0)
    sigma_min: float = Field(0.002, gt=0.0)
    sigma_max: float = Field(80.0, gt=0.0)
    rho: float = Field(7.0, gt=0.0)

    def build(self) -> EDM:
        """The process object."""
        return EDM(
            self.sigma_data, self.p_mean, self.p_std, self.sigma_min, self.sigma_max, self.rho
        )


__all__ = ["EDM", "EDMConfig"]
