"""log p(x) through the probability-flow ODE and the instantaneous change of variables.

Chen et al. 2018; Song et al. 2021, Sec. 4.3 / App. D.2; Grathwohl et al. 2019 for Hutchinson.

d log p_t(x_t) / dt = -div drift(x_t, t), so log p_data(x) = log p_prior(x_prior)
+ integral_{t_data}^{t_prior} div drift dt, integrated jointly with x by adaptive DOPRI5.
The divergence is exact (D backward passes; small D) or Hutchinson's estimate E[e^T J e] with
Rademacher or Gaussian probes drawn once per solve from the injected generator. Values are in
the network's (preprocessed) space, in nats.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from models.processes.base import ProbabilityFlow, Process
from models.samplers.ode import rk45_solve


def _probes(
    kind: str, n: int, shape: tuple[int, ...], generator: torch.Generator | None, like: Tensor
) -> Tensor:
    device = generator.device if generator is not None else like.device
    e = torch.randn((n, *shape), generator=generator, device=device, dtype=like.dtype)
    if kind == "rademacher":
        e = e.sign()
    elif kind != "gaussian":
        raise ValueError(f"probe must be 'rademacher' or 'gaussian', got {kind!r}")
    return e.to(like.device)


def exact_divergence(drift_out: Tensor, x: Tensor) -> Tensor:
    """Trace of d drift / d x per sample, one backward pass per dimension."""
    out, xin = drift_out.flatten(1), x
    div = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    for i in range(out.shape[1]):
        grad = torch.autograd.grad(out[:, i].sum(), xin, retain_graph=True)[0]
        div = div + grad.flatten(1)[:, i]
    return div


def hutchinson_divergence(drift_out: Tensor, x: Tensor, probes: Tensor) -> Tensor:
    """Mean over probes e of e^T (d drift / d x) e (vector-Jacobian products)."""
    total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    for k in range(probes.shape[0]):
        vjp = torch.autograd.grad((drift_out * probes[k]).sum(), x, retain_graph=True)[0]
        total = total + (vjp * probes[k]).flatten(1).sum(dim=1)
    return total / probes.shape[0]


def gaussian_log_prob(x: Tensor, std: float) -> Tensor:
    """Log N(x; 0, std^2 I) per sample."""
    d = x[0].numel()
    return -0.5 * (x.flatten(1).double() / std).pow(2).sum(1) - d * (
        math.log(std) + 0.5 * math.log(2 * math.pi)
    )


def log_likelihood(
    flow: ProbabilityFlow,
    x: Tensor,
    *,
    divergence: Literal["exact", "hutchinson"] = "exact",
    probe: Literal["rademacher", "gaussian"] = "rademacher",
    n_probes: int = 1,
    generator: torch.Generator | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> Tensor:
    """Log p(x) [B] (float64) for data x under a probability-flow ODE."""
    shape, d = tuple(x.shape), x[0].numel()
    probes = _probes(probe, n_probes, shape, generator, x) if divergence == "hutchinson" else None

    def fn(state: Tensor, t: Tensor) -> Tensor:
        with torch.enable_grad():
            xt = state[:, :d].reshape(shape).detach().requires_grad_(True)
            dx = flow.drift(xt, t)
            div = (
                exact_divergence(dx, xt)
                if probes is None
                else hutchinson_divergence(dx, xt, probes)
            )
        return torch.cat([dx.detach().flatten(1), div.detach().unsqueeze(1)], dim=1)

    state = torch.cat([x.flatten(1), x.new_zeros(x.shape[0], 1)], dim=1)
    out, _ = rk45_solve(fn, state, flow.t_data, flow.t_prior, rtol=rtol, atol=atol)
    x_prior = out[:, :d]
    return gaussian_log_prob(x_prior, flow.prior_std) + out[:, d].double()


def process_log_likelihood(
    process: Process, net, x: Tensor, cond: Tensor | None = None, **kwargs
) -> Tensor:
    """Log p(x | cond) for any process exposing `probability_flow` (flows, SDEs, EDM)."""
    return log_likelihood(process.probability_flow(net, cond), x, **kwargs)


__all__ = [
    "exact_divergence",
    "gaussian_log_prob",
    "hutchinson_divergence",
    "log_likelihood",
    "process_log_likelihood",
]
