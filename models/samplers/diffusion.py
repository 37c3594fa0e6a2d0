"""Samplers for a denoiser D(x, sigma, cond) in the EDM parametrisation x = x_0 + sigma * n.

Pure functions in the style of k-diffusion: `sigmas` is a decreasing float64 grid ending in 0
(`get_sigmas_karras`), noise comes from an injected generator. Any diffusion with
x_t = s(t) (x_0 + sigma(t) n) maps to this space by x -> x / s(t) (Karras et al. 2022, Sec. 4).
NFE per grid of n+1 sigmas: Euler n; Heun (stochastic or not) 2n - 1; DPM-Solver++(2M) n.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch
from torch import Tensor

from models.noise import randn
from models.samplers.ode import rk45_solve

Denoiser = Callable[[Tensor, Tensor, Tensor | None], Tensor]
"""D(x, sigma, cond) -> x_0 estimate; sigma is a 0-dim or [B] tensor."""

DataPrediction = Callable[[Tensor, Tensor, Tensor, Tensor | None], Tensor]
"""x0_pred(x_t, alpha_t, sigma_t, cond) for x_t = alpha_t x_0 + sigma_t n (0-dim alpha, sigma)."""


def get_sigmas_karras(
    n: int, sigma_min: float, sigma_max: float, rho: float = 7.0, device: torch.device | str = "cpu"
) -> Tensor:
    """Karras et al. 2022 eq. 5: n sigmas, sigma_max down to sigma_min (rho-warped), then 0; f64."""
    ramp = (
        torch.linspace(0, 1, n, dtype=torch.float64, device=device)
        if n > 1
        else torch.zeros(1, dtype=torch.float64, device=device)
    )
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def _d(denoiser: Denoiser, x: Tensor, sigma: Tensor, cond: Tensor | None) -> Tensor:
    """PF-ODE slope dx/dsigma = (x - D(x, sigma)) / sigma (Karras et al. 2022 eq. 3 with s = 1)."""
    return (x - denoiser(x, sigma, cond)) / sigma.to(x.dtype)


@torch.no_grad()
def sample_euler(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    cond: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Euler on the PF ODE in sigma (Karras et al. 2022, Alg. 1 without the 2nd-order step)."""
    for sigma, sigma_next in itertools.pairwise(sigmas):
        x = x + (sigma_next - sigma).to(x.dtype) * _d(denoiser, x, sigma, cond)
    return x


@torch.no_grad()
def sample_heun(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    cond: Tensor | None = None,
    generator: torch.Generator | None = None,
    *,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = float("inf"),
    s_noise: float = 1.0,
) -> Tensor:
    """EDM stochastic Heun sampler (Karras et al. 2022, Alg. 2; Alg. 1 when s_churn = 0)."""
    n = len(sigmas) - 1
    for i in range(n):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        gamma = min(s_churn / n, math.sqrt(2) - 1) if s_tmin <= sigma.item() <= s_tmax else 0.0
        sigma_hat = sigma * (1 + gamma)
        if gamma > 0:
            eps = randn(tuple(x.shape), generator, like=x).to(x.device) * s_noise
            x = x + (sigma_hat**2 - sigma**2).sqrt().to(x.dtype) * eps
        d = _d(denoiser, x, sigma_hat, cond)
        h = (sigma_next - sigma_hat).to(x.dtype)
        x_next = x + h * d
        if sigma_next > 0:
            d_next = _d(denoiser, x_next, sigma_next, cond)
            x_next = x + h * (d + d_next) / 2
        x = x_next
    return x


@torch.no_grad()
def sample_dpmpp_2m_alpha_sigma(
    x0_pred: DataPrediction, x: Tensor, alphas: Tensor, sigmas: Tensor, cond: Tensor | None = None
) -> Tensor:
    """DPM-Solver++(2M) for x_t = alpha_t x_0 + sigma_t n (Lu et al. 2022, Alg. 2), float64 grid.

    lambda = log(alpha / sigma); the first step may start at sigma/alpha = inf (pure noise, as a
    flow at t = 0) and the last may end at sigma = 0 (returns the data prediction).
    """
    lambdas = torch.log(alphas) - torch.log(sigmas)
    x0_prev, h_prev = None, None
    for i in range(len(sigmas) - 1):
        x0 = x0_pred(x, alphas[i], sigmas[i], cond)
        a_next, s_next = alphas[i + 1], sigmas[i + 1]
        h = lambdas[i + 1] - lambdas[i]
        if s_next == 0:
            x = x0
            continue
        ratio = s_next / sigmas[i]  # 0 when sigmas[i] = inf (EDM space), 1 - t for a flow at t=0
        phi = -torch.expm1(-h) if torch.isfinite(h) else torch.ones_like(h)
        if x0_prev is None or not torch.isfinite(h_prev):
            d = x0
        else:
            r = h_prev / h
            d = (1 + 1 / (2 * r)).to(x.dtype) * x0 - (1 / (2 * r)).to(x.dtype) * x0_prev
        x = ratio.to(x.dtype) * x + (a_next * phi).to(x.dtype) * d
        x0_prev, h_prev = x0, h
    return x


@torch.no_grad()
def sample_dpmpp_2m(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    cond: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """DPM-Solver++(2M) in the EDM space (alpha = 1) (Lu et al. 2022, Alg. 2; NFE = steps)."""

    def x0_pred(x_t: Tensor, alpha: Tensor, sigma: Tensor, c: Tensor | None) -> Tensor:
        return denoiser(x_t, sigma, c)

    return sample_dpmpp_2m_alpha_sigma(x0_pred, x, torch.ones_like(sigmas), sigmas, cond)


@torch.no_grad()
def sample_restart(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    cond: Tensor | None = None,
    generator: torch.Generator | None = None,
    *,
    restart_sigma_min: float = 0.06,
    restart_sigma_max: float = 0.30,
    restart_k: int = 2,
    restart_steps: int = 3,
    rho: float = 7.0,
) -> Tensor:
    """Restart sampler (Xu et al. 2023, Alg. 1).

    Heun ODE; at sigma ~ restart_sigma_min, K times add noise back to restart_sigma_max and
    re-solve down with `restart_steps` Heun steps.
    NFE = (2 n - 1) + K * 2 * restart_steps for a main grid of n steps.
    """
    n = len(sigmas) - 1
    positive = sigmas[:-1]
    i_restart = int(torch.argmin((positive - restart_sigma_min).abs()).item()) if restart_k else -1
    for i in range(n):
        x = sample_heun(denoiser, x, sigmas[i : i + 2], cond)
        if i + 1 == i_restart:
            s_min = sigmas[i + 1].item()
            s_max = max(restart_sigma_max, s_min * 1.01)
            inner = get_sigmas_karras(restart_steps + 1, s_min, s_max, rho, device=sigmas.device)
            inner = inner[:-1]  # ends at s_min, not 0
            for _ in range(restart_k):
                eps = randn(tuple(x.shape), generator, like=x).to(x.device)
                x = x + math.sqrt(s_max**2 - s_min**2) * eps
                x = sample_heun(denoiser, x, inner, cond)
    return x


@torch.no_grad()
def sample_rk45(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    cond: Tensor | None = None,
    generator: torch.Generator | None = None,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> Tensor:
    """Reference: adaptive DOPRI5 on dx/dsigma from sigmas[0] to the last positive sigma, then D."""
    positive = sigmas[sigmas > 0]

    def fn(x_: Tensor, sigma: Tensor) -> Tensor:
        return _d(denoiser, x_, sigma, cond)

    x, _ = rk45_solve(fn, x, positive[0].item(), positive[-1].item(), rtol=rtol, atol=atol)
    return denoiser(x, positive[-1], cond) if sigmas[-1] == 0 else x


__all__ = [
    "get_sigmas_karras",
    "sample_dpmpp_2m",
    "sample_dpmpp_2m_alpha_sigma",
    "sample_euler",
    "sample_heun",
    "sample_restart",
    "sample_rk45",
]
