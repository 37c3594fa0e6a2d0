"""ODE solvers for flow-matching velocity fields dx/dt = v(x, t, cond), t from 0 (noise) to 1 (data).

Each solver is a pure function (velocity, x_init, t_schedule, cond) -> x; `t_schedule` is a
float64 grid so that step sizes are exact. NFE: Euler = steps, midpoint and Heun = 2 x steps
(Heun's last step is still 2 evaluations here, as in the flow_matching library).
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise

import torch
from torch import Tensor

Velocity = Callable[[Tensor, Tensor, Tensor | None], Tensor]


def get_flow_times(steps: int, device: torch.device | str = "cpu") -> Tensor:
    """Uniform time grid 0 = t_0 < ... < t_steps = 1 in float64."""
    return torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64, device=device)


def _v(velocity: Velocity, x: Tensor, t: Tensor, cond: Tensor | None) -> Tensor:
    return velocity(x, t.to(x.dtype).expand(x.shape[0]), cond)


@torch.no_grad()
def sample_flow_euler(
    velocity: Velocity, x_init: Tensor, t_schedule: Tensor, cond: Tensor | None = None
) -> Tensor:
    """Explicit Euler for the flow ODE (first order; 1 NFE per step)."""
    x = x_init
    for t0, t1 in pairwise(t_schedule):
        x = x + (t1 - t0).to(x.dtype) * _v(velocity, x, t0, cond)
    return x


@torch.no_grad()
def sample_flow_midpoint(
    velocity: Velocity, x_init: Tensor, t_schedule: Tensor, cond: Tensor | None = None
) -> Tensor:
    """Explicit midpoint rule (second order; 2 NFE per step)."""
    x = x_init
    for t0, t1 in pairwise(t_schedule):
        h = t1 - t0
        x_mid = x + (h / 2).to(x.dtype) * _v(velocity, x, t0, cond)
        x = x + h.to(x.dtype) * _v(velocity, x_mid, t0 + h / 2, cond)
    return x


@torch.no_grad()
def sample_flow_heun(
    velocity: Velocity, x_init: Tensor, t_schedule: Tensor, cond: Tensor | None = None
) -> Tensor:
    """Heun's method, the explicit trapezoidal rule (second order; 2 NFE per step)."""
    x = x_init
    for t0, t1 in pairwise(t_schedule):
        h = (t1 - t0).to(x.dtype)
        d0 = _v(velocity, x, t0, cond)
        x_pred = x + h * d0
        d1 = _v(velocity, x_pred, t1, cond)
        x = x + h * (d0 + d1) / 2
    return x


@torch.no_grad()
def sample_flow_dpmpp_2m(
    velocity: Velocity, x_init: Tensor, t_schedule: Tensor, cond: Tensor | None = None
) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022) on the flow's data prediction x1_hat = x_t + (1 - t) v.

    The linear path is x_t = alpha_t x_1 + sigma_t x_0 with alpha_t = t, sigma_t = 1 - t (1 NFE
    per step; the first step starts from pure noise, the last returns x1_hat).
    """
    from models.samplers.diffusion import sample_dpmpp_2m_alpha_sigma

    def x1_pred(x: Tensor, alpha: Tensor, sigma: Tensor, c: Tensor | None) -> Tensor:
        return x + sigma.to(x.dtype) * _v(velocity, x, alpha, c)

    return sample_dpmpp_2m_alpha_sigma(x1_pred, x_init, t_schedule, 1 - t_schedule, cond)


@torch.no_grad()
def sample_flow_rk45(
    velocity: Velocity,
    x_init: Tensor,
    t_schedule: Tensor,
    cond: Tensor | None = None,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> Tensor:
    """Reference: adaptive Dormand–Prince RK5(4) over the schedule's end points (NFE adaptive)."""
    from models.samplers.ode import rk45_solve

    x, _ = rk45_solve(
        lambda x_, t: _v(velocity, x_, t, cond),
        x_init,
        t_schedule[0].item(),
        t_schedule[-1].item(),
        rtol=rtol,
        atol=atol,
    )
    return x


FLOW_SOLVERS: dict[str, tuple[Callable[..., Tensor], int]] = {
    "euler": (sample_flow_euler, 1),
    "midpoint": (sample_flow_midpoint, 2),
    "heun": (sample_flow_heun, 2),
    "dpmpp_2m": (sample_flow_dpmpp_2m, 1),
    "rk45": (sample_flow_rk45, 1),
}
"""Solver name -> (function, network evaluations per step)."""
