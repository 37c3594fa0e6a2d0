"""Score-based diffusion through SDEs: VE, VP and sub-VP (Song et al. 2021, arXiv:2011.13456).

Every SDE here is linear, dx = f(t) x dt + g(t) dW, with Gaussian marginals
x_t = s(t) (x_0 + sigma(t) n), n ~ N(0, I) (the EDM form, Karras et al. 2022 eq. 4). The network
predicts the noise: eps_hat = net(x_t, t, cond), so score = -eps_hat / (s sigma). The loss is
denoising score matching with lambda(t) = (s sigma)^2 (Song et al. 2021 eq. 7, their choice
lambda ∝ 1 / E|grad log p_0t|^2), which equals the noise-prediction MSE |eps_hat - n|^2.
Samplers run either in t (Euler–Maruyama, predictor–corrector, PF-ODE Euler/Heun/RK45) or in
sigma on x / s (EDM Heun, stochastic Heun, Restart, DPM-Solver++(2M), Euler).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from models.processes.base import ProbabilityFlow, Process, rand, randn
from models.processes.sigma_samplers import SIGMA_SAMPLERS, run_sigma_sampler
from models.samplers.sde import (
    get_sde_times,
    pf_ode_drift,
    sample_euler_maruyama,
    sample_ode_euler,
    sample_ode_heun,
    sample_ode_rk45,
    sample_pc,
)


def _f64(t: Tensor | float) -> Tensor:
    return torch.as_tensor(t, dtype=torch.float64)


def _bcast(v: Tensor, x: Tensor) -> Tensor:
    """A 0-dim or [B] float64 tensor as x's dtype/device, broadcastable against x."""
    v = v.to(device=x.device, dtype=x.dtype)
    return v.view(-1, *([1] * (x.dim() - 1))) if v.dim() else v


_T_SAMPLERS: dict[str, tuple[Callable[..., Tensor], Callable[[int, dict[str, Any]], int]]] = {
    "euler_maruyama": (sample_euler_maruyama, lambda nfe, o: nfe),
    "pc": (sample_pc, lambda nfe, o: max(nfe // (1 + int(o.get("n_corrector", 1))), 1)),
    "ode_euler": (sample_ode_euler, lambda nfe, o: nfe),
    "ode_heun": (sample_ode_heun, lambda nfe, o: max(nfe // 2, 1)),
    "ode_rk45": (sample_ode_rk45, lambda nfe, o: 1),
}
"""t-space sampler name -> (function, steps for a given NFE)."""


class ScoreSDE(Process):
    """Linear SDE, x_t = s(t) (x_0 + sigma(t) n); subclasses give s, sigma, f, g^2, t(sigma)."""

    samplers = (*_T_SAMPLERS, *SIGMA_SAMPLERS)
    default_sampler = "heun"
    unrollable = ("ode_euler", "ode_heun", "euler", "heun", "dpmpp_2m")

    def __init__(self, eps: float = 1e-3, train_eps: float = 1e-5, rho: float = 7.0):
        self.eps, self.train_eps, self.rho = eps, train_eps, rho

    # --- the SDE, in float64 -------------------------------------------------------------
    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(s(t), sigma(t)) with x_t = s (x_0 + sigma n)."""
        raise NotImplementedError

    def f(self, t: Tensor) -> Tensor:
        """The drift coefficient (dx = drift x dt + g dW)."""
        raise NotImplementedError

    def g2(self, t: Tensor) -> Tensor:
        """Squared diffusion coefficient g(t)^2."""
        raise NotImplementedError

    def sigma_to_t(self, sigma: Tensor) -> Tensor:
        """The time t at which the marginal noise-to-signal ratio is sigma."""
        raise NotImplementedError

    def std(self, t: Tensor) -> Tensor:
        """Marginal noise standard deviation s(t) sigma(t)."""
        s, sigma = self.marginal(t)
        return s * sigma

    # --- what samplers need ----------------------------------------------------------------
    def score(self, net, cond: Tensor | None = None) -> Callable[..., Tensor]:
        """The score function, -net(x, t, cond) / (s sigma)."""

        def fn(x: Tensor, t: Tensor, c: Tensor | None = cond) -> Tensor:
            return -net(x, t, c) / _bcast(self.std(t.double()), x)

        return fn

    def denoiser(self, net, cond: Tensor | None = None) -> Callable[..., Tensor]:
        """D(x, sigma, cond) on x = x_t / s(t): x - sigma * eps_hat(s x, t(sigma))."""

        def fn(x: Tensor, sigma: Tensor, c: Tensor | None = cond) -> Tensor:
            sigma = _f64(sigma).expand(x.shape[0]) if _f64(sigma).dim() == 0 else _f64(sigma)
            t = self.sigma_to_t(sigma)
            s, _ = self.marginal(t)
            eps_hat = net(_bcast(s, x) * x, t.to(device=x.device, dtype=x.dtype), c)
            return x - _bcast(sigma, x) * eps_hat

        return fn

    def loss(self, net, x: Tensor, cond: Tensor | None, generator=None) -> Tensor:
        """Denoising score-matching loss per sample, weighted by lambda(t) = sigma(t)^2 (noise prediction)."""
        t = self.train_eps + (1 - self.train_eps) * rand((x.shape[0],), generator, like=x).double()
        s, sigma = self.marginal(t)
        n = randn(tuple(x.shape), generator, like=x).to(x.device)
        x_t = _bcast(s, x) * x + _bcast(s * sigma, x) * n
        return (net(x_t, t.to(x.dtype).to(x.device), cond) - n).pow(2).flatten(1).mean(dim=1)

    def probability_flow(self, net, cond: Tensor | None = None) -> ProbabilityFlow:
        """PF ODE in t from eps (data) to 1 (prior N(0, (s sigma)(1)^2 I))."""
        score = self.score(net, cond)
        return ProbabilityFlow(
            drift=lambda x, t: pf_ode_drift(self, score, x, t, cond),
            t_data=self.eps,
            t_prior=1.0,
            prior_std=self.std(_f64(1.0)).item(),
        )

    def sample_from(
        self, net, z: Tensor, cond, *, sampler: str, nfe: int, generator=None, **options: Any
    ) -> Tensor:
        """A reverse-SDE or probability-flow sampler from the prior sample std(1) z."""
        x_init = z * self.std(_f64(1.0)).item()
        if sampler in _T_SAMPLERS:
            fn, steps = _T_SAMPLERS[sampler]
            times = get_sde_times(steps(nfe, options), self.eps, z.device)
            return fn(self, self.score(net, cond), x_init, times, cond, generator, **options)
        s_1, sigma_1 = self.marginal(_f64(1.0))
        _, sigma_eps = self.marginal(_f64(self.eps))
        return run_sigma_sampler(
            sampler,
            self.denoiser(net, cond),
            x_init / s_1.item(),
            cond,
            nfe=nfe,
            sigma_min=sigma_eps.item(),
            sigma_max=sigma_1.item(),
            rho=self.rho,
            generator=generator,
            options=options,
        )


class VESDE(ScoreSDE):
    """VE SDE: s = 1, sigma(t) = sigma_min (sigma_max / sigma_min)^t (Song et al. 2021 eq. 30)."""

    name = "ve_sde"

    def __init__(
        self,
        sigma_min: float = 0.01,
        sigma_max: float = 50.0,
        eps: float = 1e-5,
        train_eps: float = 1e-5,
        rho: float = 7.0,
    ):
        super().__init__(eps, train_eps, rho)
        self.sigma_min, self.sigma_max = sigma_min, sigma_max
        self._log_ratio = math.log(sigma_max / sigma_min)

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(s(t), sigma(t)) of the perturbation kernel x_t = s x_0 + s sigma n."""
        t = _f64(t)
        return torch.ones_like(t), self.sigma_min * torch.exp(t * self._log_ratio)

    def f(self, t: Tensor) -> Tensor:
        """The drift coefficient, 0 (variance exploding)."""
        return torch.zeros_like(_f64(t))

    def g2(self, t: Tensor) -> Tensor:
        """The squared diffusion g(t)^2 = d sigma(t)^2 / dt."""
        return self.marginal(t)[1] ** 2 * (2 * self._log_ratio)

    def sigma_to_t(self, sigma: Tensor) -> Tensor:
        """The time log(sigma / sigma_min) / log(sigma_max / sigma_min)."""
        return torch.log(_f64(sigma) / self.sigma_min) / self._log_ratio


class VPSDE(ScoreSDE):
    """VP SDE: beta(t) = beta_min + t (beta_max - beta_min) (Song et al. 2021 eq. 32)."""

    name = "vp_sde"

    def __init__(
        self,
        beta_min: float = 0.1,
        beta_max: float = 20.0,
        eps: float = 1e-3,
        train_eps: float = 1e-5,
        rho: float = 7.0,
    ):
        super().__init__(eps, train_eps, rho)
        self.beta_min, self.beta_max = beta_min, beta_max

    def beta(self, t: Tensor) -> Tensor:
        """The noise rate, linear in t from beta_min to beta_max."""
        return self.beta_min + _f64(t) * (self.beta_max - self.beta_min)

    def big_b(self, t: Tensor) -> Tensor:
        """B(t) = integral_0^t beta; the mean coefficient is s = exp(-B / 2)."""
        t = _f64(t)
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(s(t), sigma(t)) with s = exp(-B(t) / 2), sigma = sqrt(exp(B(t)) - 1)."""
        b = self.big_b(t)
        return torch.exp(-b / 2), torch.expm1(b).sqrt()

    def f(self, t: Tensor) -> Tensor:
        """The drift coefficient, -beta(t) / 2."""
        return -self.beta(t) / 2

    def g2(self, t: Tensor) -> Tensor:
        """The squared diffusion g(t)^2 = beta(t)."""
        return self.beta(t)

    def _b_to_t(self, b: Tensor) -> Tensor:
        d = self.beta_max - self.beta_min
        return (-self.beta_min + (self.beta_min**2 + 2 * d * b).sqrt()) / d

    def sigma_to_t(self, sigma: Tensor) -> Tensor:
        """The time t with B(t) = log(1 + sigma^2)."""
        return self._b_to_t(torch.log1p(_f64(sigma) ** 2))


class SubVPSDE(VPSDE):
    """Sub-VP: VP drift, g^2 = beta (1 - exp(-2 B)), std = 1 - exp(-B) (Song et al. 2021 eq. 34)."""

    name = "subvp_sde"

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(s(t), sigma(t)) of the sub-VP SDE (Song et al. 2021, Eq. 29)."""
        b = self.big_b(t)
        s = torch.exp(-b / 2)
        return s, -torch.expm1(-b) / s

    def g2(self, t: Tensor) -> Tensor:
        """The squared diffusion g(t)^2 = beta(t) (1 - exp(-2 B(t)))."""
        return -self.beta(t) * torch.expm1(-2 * self.big_b(t))

    def sigma_to_t(self, sigma: Tensor) -> Tensor:
        """The time t whose noise-to-signal ratio is sigma."""
        sigma = _f64(sigma)
        s = 2 / ((sigma**2 + 4).sqrt() + sigma)  # root of s^2 + sigma s - 1 = 0
        return self._b_to_t(-2 * torch.log(s))


class _SDEConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rho: float = Field(7.0, gt=0.0, description="Karras grid warping for the sigma-space samplers")


class VESDEConfig(_SDEConfig):
    """Variance-exploding SDE (NCSN++ family); the network predicts the noise."""

    kind: Literal["ve_sde"] = "ve_sde"
    sigma_min: float = Field(0.01, gt=0.0)
    sigma_max: float = Field(50.0, gt=0.0)
    eps: float = Field(1e-5, gt=0.0, lt=1.0)
    train_eps: float = Field(1e-5, gt=0.0, lt=1.0)

    def build(self) -> VESDE:
        """The process object."""
        return VESDE(self.sigma_min, self.sigma_max, self.eps, self.train_eps, self.rho)


class VPSDEConfig(_SDEConfig):
    """Variance-preserving SDE (DDPM family); the network predicts the noise."""

    kind: Literal["vp_sde"] = "vp_sde"
    beta_min: float = Field(0.1, gt=0.0)
    beta_max: float = Field(20.0, gt=0.0)
    eps: float = Field(1e-3, gt=0.0, lt=1.0)
    train_eps: float = Field(1e-5, gt=0.0, lt=1.0)

    def build(self) -> VPSDE:
        """The process object."""
        return VPSDE(self.beta_min, self.beta_max, self.eps, self.train_eps, self.rho)


class SubVPSDEConfig(VPSDEConfig):
    """Sub-VP SDE; the network predicts the noise."""

    kind: Literal["subvp_sde"] = "subvp_sde"  # type: ignore[assignment]

    def build(self) -> SubVPSDE:
        """The process object."""
        return SubVPSDE(self.beta_min, self.beta_max, self.eps, self.train_eps, self.rho)


__all__ = ["VESDE", "VPSDE", "ScoreSDE", "SubVPSDE", "SubVPSDEConfig", "VESDEConfig", "VPSDEConfig"]
