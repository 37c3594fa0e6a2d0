"""Conditional flow matching with the linear (rectified-flow) path (Lipman et al. 2022; Liu et al. 2022).

x_t = (1 - t) x_0 + t x_1 with x_0 ~ N(0, I) noise and x_1 data; the network regresses the
velocity u_t = x_1 - x_0. Optional minibatch OT pairing (Tong et al. 2023) re-pairs x_0 with x_1.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from models.processes.base import ProbabilityFlow, Process, rand, randn
from models.samplers.flow import FLOW_SOLVERS, get_flow_times


def ot_pairing(x_0: Tensor, x_1: Tensor) -> Tensor:
    """Permute the noise x_0 to the exact minibatch OT assignment with x_1 (squared Euclidean)."""
    from scipy.optimize import linear_sum_assignment

    cost = torch.cdist(x_0.flatten(1).double(), x_1.flatten(1).double()).pow(2)
    rows, cols = linear_sum_assignment(cost.cpu().numpy())
    perm = torch.empty(len(cols), dtype=torch.long)
    perm[torch.as_tensor(cols)] = torch.as_tensor(rows)
    return x_0[perm.to(x_0.device)]


class RectifiedFlow(Process):
    """Linear-path conditional flow matching; samples with an ODE solver from t=0 to t=1."""

    name = "flow_matching"
    samplers = tuple(FLOW_SOLVERS)
    default_sampler = "midpoint"
    unrollable = ("euler", "midpoint", "heun", "dpmpp_2m")

    def __init__(self, ot: bool = False):
        self.ot = ot

    def loss(self, net, x: Tensor, cond: Tensor | None, generator=None) -> Tensor:
        """Flow-matching loss per sample: ||v(x_t, t) - (x_1 - x_0)||^2 averaged over coordinates."""
        x_1 = x
        x_0 = randn(tuple(x.shape), generator, like=x).to(x.device)
        if self.ot:
            x_0 = ot_pairing(x_0, x_1)
        t = rand((x.shape[0],), generator, like=x)
        t_b = t.view(-1, *([1] * (x.dim() - 1)))
        x_t = (1 - t_b) * x_0 + t_b * x_1
        u_t = x_1 - x_0
        return (net(x_t, t, cond) - u_t).pow(2).flatten(1).mean(dim=1)

    def sample_from(
        self, net, z: Tensor, cond, *, sampler: str, nfe: int, generator=None, **options: Any
    ) -> Tensor:
        """The flow ODE from the noise z at t = 0 to t = 1 with a fixed-step solver."""
        solver, evals_per_step = FLOW_SOLVERS[sampler]
        steps = max(nfe // evals_per_step, 1)
        return solver(net, z, get_flow_times(steps, z.device), cond, **options)

    def denoiser(self, net, cond: Tensor | None = None):
        """The EDM-space denoiser D(x, sigma, cond) of the flow (Karras et al. 2022, Sec. 4).

        x = x_t / t, sigma = (1 - t) / t, so t = 1 / (1 + sigma) and D = x_t + (1 - t) v(x_t, t),
        the data prediction x1_hat.
        """

        def fn(x: Tensor, sigma, c: Tensor | None = cond) -> Tensor:
            sigma = torch.as_tensor(sigma, dtype=torch.float64, device=x.device)
            sigma = sigma.expand(x.shape[0]) if sigma.dim() == 0 else sigma
            t = 1 / (1 + sigma)
            t_b = t.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
            x_t = t_b * x
            return x_t + (1 - t_b) * net(x_t, t.to(x.dtype), c)

        return fn

    def probability_flow(self, net, cond: Tensor | None = None) -> ProbabilityFlow:
        """dx/dt = v(x, t) from t = 1 (data) to t = 0 (prior N(0, I))."""
        return ProbabilityFlow(
            drift=lambda x, t: net(x, t.to(x.dtype).expand(x.shape[0]), cond),
            t_data=1.0,
            t_prior=0.0,
            prior_std=1.0,
        )
