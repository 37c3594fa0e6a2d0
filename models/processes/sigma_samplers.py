"""Dispatch of the sigma-space samplers (models.samplers.diffusion) shared by diffusion processes.

Each entry maps a sampler name to (function, steps(nfe, options) -> number of sigma steps).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from models.samplers.diffusion import (
    Denoiser,
    get_sigmas_karras,
    sample_dpmpp_2m,
    sample_euler,
    sample_heun,
    sample_restart,
    sample_rk45,
)


def _heun_steps(nfe: int, options: dict[str, Any]) -> int:
    return max((nfe + 1) // 2, 1)


def _restart_plan(nfe: int, options: dict[str, Any]) -> tuple[int, int]:
    """(main steps, restart iterations K) fitting the NFE budget; K drops when nfe is small."""
    k = int(options.get("restart_k", 2))
    per = 2 * int(options.get("restart_steps", 3))
    while k > 0 and (nfe - k * per + 1) // 2 < 2:
        k -= 1
    return max((nfe - k * per + 1) // 2, 1), k


def _stochastic_heun(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    cond: Tensor | None,
    generator: torch.Generator | None,
    **options: Any,
) -> Tensor:
    opts = {"s_churn": 20.0, "s_tmin": 0.05, "s_tmax": 50.0, "s_noise": 1.0, **options}
    return sample_heun(denoiser, x, sigmas, cond, generator, **opts)


def _restart(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    cond: Tensor | None,
    generator: torch.Generator | None,
    *,
    nfe: int,
    **options: Any,
) -> Tensor:
    _, k = _restart_plan(nfe, options)
    return sample_restart(denoiser, x, sigmas, cond, generator, **{**options, "restart_k": k})


SIGMA_SAMPLERS: dict[str, tuple[Callable[..., Tensor], Callable[[int, dict[str, Any]], int]]] = {
    "euler": (sample_euler, lambda nfe, o: nfe),
    "heun": (sample_heun, _heun_steps),
    "stochastic_heun": (_stochastic_heun, _heun_steps),
    "restart": (_restart, lambda nfe, o: _restart_plan(nfe, o)[0]),
    "dpmpp_2m": (sample_dpmpp_2m, lambda nfe, o: nfe),
    "rk45": (sample_rk45, lambda nfe, o: 2),  # only the end points matter
}
"""Sampler name -> (function, sigma steps for a given NFE)."""


def run_sigma_sampler(
    name: str,
    denoiser: Denoiser,
    x_init: Tensor,
    cond: Tensor | None,
    *,
    nfe: int,
    sigma_min: float,
    sigma_max: float,
    rho: float,
    generator: torch.Generator | None,
    options: dict[str, Any],
) -> Tensor:
    """Build the Karras grid for `nfe` and run the named sampler from x_init at sigma_max to 0."""
    fn, steps = SIGMA_SAMPLERS[name]
    opts = dict(options)
    if name == "restart":
        opts["nfe"] = nfe
    sigmas = get_sigmas_karras(steps(nfe, options), sigma_min, sigma_max, rho, device=x_init.device)
    return fn(denoiser, x_init, sigmas, cond, generator, **opts)
