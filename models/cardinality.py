"""Shower totals given E_inc: the number of points and the visible energy, a learnt lognormal.

log n | E_inc ~ N(mu(u), sigma(u)^2), u the standardised log E_inc, with mu and log sigma
polynomials in u fitted by least squares (mu: log n on powers of u; log sigma: half the log of
the squared residuals, bias-corrected for a Gaussian). With `energy`, log(E_sum / E_inc) gets
the same model and its correlation rho with log n, so (log n, log E_sum) is a bivariate Gaussian
per E_inc. The CaloClouds models (arXiv:2305.04847, 2309.05704) draw such totals first ("shower
flow") and calibrate the generated points' energies to E_sum; this is that step in closed form,
so it needs no training loop and adds a handful of weights.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from models.linalg import correlation, least_squares, polynomial
from models.noise import randn

# E[log z^2] for z ~ N(0, 1): log 2 + digamma(1/2) = -1.2704
_LOG_CHI2_MEAN = -1.2703628454614782


def _fit_lognormal(A: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(mean coefficients, log-sigma coefficients, standardised residuals) of y on A."""
    mu_coef = least_squares(A, y)
    resid = y - polynomial(A, mu_coef)
    r2 = resid.pow(2).clamp_min(1e-12)
    log_sigma_coef = least_squares(A, 0.5 * (torch.log(r2) - _LOG_CHI2_MEAN))
    return mu_coef, log_sigma_coef, resid / torch.exp(polynomial(A, log_sigma_coef))


class Cardinality(nn.Module):
    """n ~ round(exp(mu(u) + sigma(u) z)) clipped to [1, n_max]; u = (log E - m) / s."""

    def __init__(self, degree: int, n_max: int, energy: bool = False):
        super().__init__()
        self.degree, self.n_max, self.energy = degree, n_max, energy
        self.register_buffer("u_loc", torch.zeros((), dtype=torch.float64))
        self.register_buffer("u_scale", torch.ones((), dtype=torch.float64))
        self.register_buffer("mu_coef", torch.zeros(degree + 1, dtype=torch.float64))
        self.register_buffer("log_sigma_coef", torch.zeros(degree + 1, dtype=torch.float64))
        if energy:
            self.register_buffer("e_mu_coef", torch.zeros(degree + 1, dtype=torch.float64))
            self.register_buffer("e_log_sigma_coef", torch.zeros(degree + 1, dtype=torch.float64))
            self.register_buffer("rho", torch.zeros((), dtype=torch.float64))

    def _powers(self, e_inc: Tensor) -> Tensor:
        u = (torch.log(e_inc.double().reshape(-1)) - self.u_loc) / self.u_scale
        return torch.stack([u**k for k in range(self.degree + 1)], dim=1)

    @torch.no_grad()
    def fit(self, counts: Tensor, e_inc: Tensor, e_sum: Tensor | None = None) -> None:
        """Least-squares fits on training counts (N,), E_inc (N,) and (with energy) E_sum (N,)."""
        log_e = torch.log(e_inc.double().reshape(-1))
        self.u_loc.copy_(log_e.mean())
        self.u_scale.copy_(log_e.std().clamp_min(1e-6))
        A = self._powers(e_inc)
        y = torch.log(counts.double().reshape(-1).clamp_min(1.0))
        mu, log_sigma, z_n = _fit_lognormal(A, y)
        self.mu_coef.copy_(mu)
        self.log_sigma_coef.copy_(log_sigma)
        if self.energy:
            if e_sum is None:
                raise ValueError("an energy-calibrating count model needs E_sum to fit")
            frac = torch.log(e_sum.double().reshape(-1).clamp_min(1e-30)) - log_e
            mu, log_sigma, z_e = _fit_lognormal(A, frac)
            self.e_mu_coef.copy_(mu)
            self.e_log_sigma_coef.copy_(log_sigma)
            self.rho.copy_(correlation(z_n, z_e).clamp(-0.99, 0.99))

    def params(self, e_inc: Tensor) -> tuple[Tensor, Tensor]:
        """(mu, sigma) of log n for each E_inc, float64."""
        A = self._powers(e_inc.to(self.mu_coef.device))
        return polynomial(A, self.mu_coef), torch.exp(polynomial(A, self.log_sigma_coef))

    @torch.no_grad()
    def sample(self, e_inc: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """(B,) int64 counts in [1, n_max] for E_inc (B,) or (B, 1)."""
        return self.sample_totals(e_inc, generator)[0]

    @torch.no_grad()
    def sample_totals(
        self, e_inc: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """(counts (B,) int64, E_sum (B,) float64 MeV or None without `energy`)."""
        z = randn((2, e_inc.reshape(-1).shape[0]), generator, like=self.mu_coef)
        return self.totals_from_noise(e_inc, z.to(self.mu_coef))

    def totals_from_noise(self, e_inc: Tensor, z: Tensor) -> tuple[Tensor, Tensor | None]:
        """`sample_totals` for given N(0, 1) noise z [2, B] float64 (row 0: count, 1: energy)."""
        mu, sigma = self.params(e_inc)
        counts = torch.exp(mu + sigma * z[0]).round().clamp(1, self.n_max).long()
        if not self.energy:
            return counts, None
        A = self._powers(e_inc.to(self.mu_coef.device))
        z_e = self.rho * z[0] + torch.sqrt(1 - self.rho**2) * z[1]
        log_frac = (
            polynomial(A, self.e_mu_coef) + torch.exp(polynomial(A, self.e_log_sigma_coef)) * z_e
        )
        return counts, e_inc.double().reshape(-1).to(mu) * torch.exp(log_frac)


class CardinalityConfig(BaseModel):
    """The count model: a lognormal whose mean and log-width are polynomials in log E_inc."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["lognormal"] = "lognormal"
    degree: int = Field(2, ge=0, le=4)
    energy: bool = Field(
        True, description="also draw E_sum and calibrate the generated hit energies to it"
    )

    def build(self, n_max: int) -> Cardinality:
        """The count model for clouds of at most n_max points."""
        return Cardinality(self.degree, n_max, self.energy)


__all__ = ["Cardinality", "CardinalityConfig"]
