"""Adaptive Dormand–Prince RK5(4) (Dormand & Prince 1980): reference ODE solver for accuracy checks.

Own implementation (no torchdiffeq). The error norm is the RMS over the whole state tensor, so
the step sizes, and hence the result, depend on the whole batch: use it as a reference, not in
production campaigns.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

ODEFunc = Callable[[Tensor, Tensor], Tensor]
"""fn(x, t) -> dx/dt, with t a 0-dim float64 tensor."""

# Butcher tableau of DOPRI5 (5th-order solution b, embedded 4th-order b_star).
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_B_STAR = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)


def _rms(x: Tensor) -> float:
    return x.double().pow(2).mean().sqrt().item()


def _initial_step(
    fn: ODEFunc, x: Tensor, t0: Tensor, f0: Tensor, direction: float, rtol: float, atol: float
) -> tuple[float, int]:
    """Starting step size (Hairer, Nørsett & Wanner, Solving ODEs I, Sec. II.4)."""
    scale = atol + x.abs() * rtol
    d0, d1 = _rms(x / scale), _rms(f0 / scale)
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    x1 = x + direction * h0 * f0
    f1 = fn(x1, t0 + direction * h0)
    d2 = _rms((f1 - f0) / scale) / h0
    h1 = max(1e-6, h0 * 1e-3) if max(d1, d2) <= 1e-15 else (0.01 / max(d1, d2)) ** (1 / 5)
    return min(100 * h0, h1), 1


@torch.no_grad()
def rk45_solve(
    fn: ODEFunc,
    x: Tensor,
    t0: float,
    t1: float,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    max_steps: int = 10_000,
) -> tuple[Tensor, int]:
    """Integrate dx/dt = fn(x, t) from t0 to t1 with adaptive DOPRI5; returns (x(t1), NFE)."""
    direction = 1.0 if t1 >= t0 else -1.0
    t = torch.tensor(t0, dtype=torch.float64, device=x.device)
    t_end = torch.tensor(t1, dtype=torch.float64, device=x.device)
    k1 = fn(x, t)
    h, nfe = _initial_step(fn, x, t, k1, direction, rtol, atol)
    nfe += 1
    span = abs(t1 - t0)
    for _ in range(max_steps):
        remaining = abs((t_end - t).item())
        if remaining <= 1e-12 * max(span, 1.0):
            return x, nfe
        h = min(h, remaining)
        dt = direction * h
        ks = [k1]
        for i in range(1, 7):
            xi = x + dt * sum(a * k for a, k in zip(_A[i], ks, strict=False))
            ks.append(fn(xi, t + _C[i] * dt))
        nfe += 6
        x_new = xi  # stage 7 is evaluated at the 5th-order solution (FSAL)
        err = dt * sum((b - bs) * k for b, bs, k in zip(_B, _B_STAR, ks, strict=True))
        scale = atol + torch.maximum(x.abs(), x_new.abs()) * rtol
        e = _rms(err / scale)
        if e <= 1.0:
            x, t, k1 = x_new, t + dt, ks[-1]
            if remaining - h <= 1e-12 * max(span, 1.0):
                t = t_end
        factor = 0.9 * (1.0 / max(e, 1e-10)) ** 0.2
        h = h * min(5.0, max(0.2, factor))
    raise RuntimeError(f"rk45_solve did not reach t1={t1} within {max_steps} steps")
