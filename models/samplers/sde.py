"""Samplers for a linear SDE dx = f(t) x dt + g(t) dW in time t, run from t = 1 down to t = eps.

(Song et al. 2021, "Score-Based Generative Modeling through SDEs".) `sde` gives f(t) and g(t)^2
as float64 0-dim tensors; `score(x, t, cond)` approximates grad_x log p_t(x). `t_schedule` is a
decreasing float64 grid. NFE: Euler–Maruyama and ODE Euler = steps, ODE Heun = 2 x steps,
predictor–corrector = (1 + n_corrector) x steps.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor

from models.noise import randn
from models.samplers.ode import rk45_solve

Score = Callable[[Tensor, Tensor, Tensor | None], Tensor]


class LinearSDE(Protocol):
    """dx = f(t) x dt + g(t) dW."""

    def f(self, t: Tensor) -> Tensor:
        """The drift coefficient."""
        ...

    def g2(self, t: Tensor) -> Tensor:
        """Squared diffusion coefficient g(t)^2."""
        ...


def get_sde_times(steps: int, eps: float, device: torch.device | str = "cpu") -> Tensor:
    """Uniform decreasing grid 1 = t_0 > ... > t_steps = eps in float64 (Song et al. 2021)."""
    return torch.linspace(1.0, eps, steps + 1, dtype=torch.float64, device=device)


def _score(score: Score, x: Tensor, t: Tensor, cond: Tensor | None) -> Tensor:
    return score(x, t.to(x.dtype).expand(x.shape[0]), cond)


def pf_ode_drift(sde: LinearSDE, score: Score, x: Tensor, t: Tensor, cond: Tensor | None) -> Tensor:
    """Probability-flow ODE drift f x - g^2 / 2 * score (Song et al. 2021, eq. 13)."""
    return sde.f(t).to(x.dtype) * x - (sde.g2(t) / 2).to(x.dtype) * _score(score, x, t, cond)


@torch.no_grad()
def sample_euler_maruyama(
    sde: LinearSDE,
    score: Score,
    x: Tensor,
    t_schedule: Tensor,
    cond: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Euler–Maruyama on the reverse SDE (Song et al. 2021, eq. 6); no noise on the last step."""
    n = len(t_schedule) - 1
    for i in range(n):
        t, t_next = t_schedule[i], t_schedule[i + 1]
        dt = t - t_next  # > 0, stepping backwards in time
        drift = sde.f(t).to(x.dtype) * x - sde.g2(t).to(x.dtype) * _score(score, x, t, cond)
        x = x - dt.to(x.dtype) * drift
        if i < n - 1:
            z = randn(tuple(x.shape), generator, like=x).to(x.device)
            x = x + (sde.g2(t) * dt).sqrt().to(x.dtype) * z
    return x


def _norm(v: Tensor, per_sample: bool) -> Tensor:
    norms = v.flatten(1).norm(dim=1)
    if not per_sample:
        return norms.mean()
    return norms.view(-1, *([1] * (v.dim() - 1)))


@torch.no_grad()
def sample_pc(
    sde: LinearSDE,
    score: Score,
    x: Tensor,
    t_schedule: Tensor,
    cond: Tensor | None = None,
    generator: torch.Generator | None = None,
    *,
    snr: float = 0.16,
    n_corrector: int = 1,
    per_sample_norm: bool = False,
) -> Tensor:
    """Predictor–corrector (Song et al. 2021, Alg. 2/3): Langevin corrector then Euler–Maruyama.

    Corrector step size eps_i = 2 alpha_i (snr |z| / |score|)^2 with alpha_i = exp(2 f(t) dt)
    (1 for VE, 1 - beta_i for VP). As in the reference code the norms are batch means, so a
    sample depends on its batch (still reproducible per (seed, shard)); `per_sample_norm`
    decouples samples but is unstable in low dimension (a small |score| gives a huge step).
    """
    n = len(t_schedule) - 1
    for i in range(n):
        t, t_next = t_schedule[i], t_schedule[i + 1]
        dt = t - t_next
        alpha = torch.exp(2 * sde.f(t) * dt).to(x.dtype)
        for _ in range(n_corrector):
            s = _score(score, x, t, cond)
            z = randn(tuple(x.shape), generator, like=x).to(x.device)
            ratio = _norm(z, per_sample_norm) / _norm(s, per_sample_norm).clamp_min(1e-12)
            step = 2 * alpha * (snr * ratio) ** 2
            x = x + step * s + (2 * step).sqrt() * z
        drift = sde.f(t).to(x.dtype) * x - sde.g2(t).to(x.dtype) * _score(score, x, t, cond)
        x = x - dt.to(x.dtype) * drift
        if i < n - 1:
            z = randn(tuple(x.shape), generator, like=x).to(x.device)
            x = x + (sde.g2(t) * dt).sqrt().to(x.dtype) * z
    return x


@torch.no_grad()
def sample_ode_euler(
    sde: LinearSDE,
    score: Score,
    x: Tensor,
    t_schedule: Tensor,
    cond: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Euler's method on the probability-flow ODE (Song et al. 2021, eq. 13)."""
    for t, t_next in itertools.pairwise(t_schedule):
        x = x + (t_next - t).to(x.dtype) * pf_ode_drift(sde, score, x, t, cond)
    return x


@torch.no_grad()
def sample_ode_heun(
    sde: LinearSDE,
    score: Score,
    x: Tensor,
    t_schedule: Tensor,
    cond: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Heun's method (explicit trapezoidal rule) on the probability-flow ODE (2 NFE per step)."""
    for t, t_next in itertools.pairwise(t_schedule):
        h = (t_next - t).to(x.dtype)
        d = pf_ode_drift(sde, score, x, t, cond)
        x_pred = x + h * d
        x = x + h * (d + pf_ode_drift(sde, score, x_pred, t_next, cond)) / 2
    return x


@torch.no_grad()
def sample_ode_rk45(
    sde: LinearSDE,
    score: Score,
    x: Tensor,
    t_schedule: Tensor,
    cond: Tensor | None = None,
    generator: torch.Generator | None = None,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> Tensor:
    """Reference: adaptive DOPRI5 on the PF ODE from t_schedule[0] to t_schedule[-1]."""

    def fn(x_: Tensor, t: Tensor) -> Tensor:
        return pf_ode_drift(sde, score, x_, t, cond)

    x, _ = rk45_solve(fn, x, t_schedule[0].item(), t_schedule[-1].item(), rtol=rtol, atol=atol)
    return x


__all__ = [
    "LinearSDE",
    "get_sde_times",
    "pf_ode_drift",
    "sample_euler_maruyama",
    "sample_ode_euler",
    "sample_ode_heun",
    "sample_ode_rk45",
    "sample_pc",
]
