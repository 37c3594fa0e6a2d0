"""Analytic fields for Gaussian data N(mu, Sigma): exact denoiser, noise, EDM F, flow velocity."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from models.processes.consistency import ConsistencyModel
from models.processes.edm import EDM
from models.processes.flow_matching import RectifiedFlow
from models.processes.sde import ScoreSDE

# Small tensors: intra-op threads only add contention on a shared CPU (tens of times slower).
torch.set_num_threads(1)


class Gaussian:
    """N(mu, Sigma) in float64 with closed-form conditional expectations along each process."""

    def __init__(self, mu: list[float], cov: list[list[float]]):
        self.mu = torch.tensor(mu, dtype=torch.float64)
        self.cov = torch.tensor(cov, dtype=torch.float64)
        self.dim = len(mu)
        self.eye = torch.eye(self.dim, dtype=torch.float64)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return self.mu + z @ torch.linalg.cholesky(self.cov).T

    def log_prob(self, x: Tensor) -> Tensor:
        return torch.distributions.MultivariateNormal(self.mu, self.cov).log_prob(x.double())

    def _vec(self, v: Tensor, x: Tensor) -> Tensor:
        v = torch.as_tensor(v, dtype=torch.float64)
        return v.expand(x.shape[0]) if v.dim() == 0 else v.double()

    def denoise(self, x: Tensor, sigma: Tensor) -> Tensor:
        """E[x_0 | x_0 + sigma n = x] = mu + Sigma (Sigma + sigma^2 I)^-1 (x - mu)."""
        sigma = self._vec(sigma, x)
        if bool((sigma == sigma[0]).all()):  # one noise level: one matrix (fast path)
            gain = self.cov @ torch.linalg.inv(self.cov + sigma[0] ** 2 * self.eye)
            return (self.mu + (x.double() - self.mu) @ gain.T).to(x.dtype)
        a = self.cov.expand(x.shape[0], -1, -1) + sigma.view(-1, 1, 1) ** 2 * self.eye
        gain = self.cov @ torch.linalg.inv(a)
        d = self.mu + (gain @ (x.double() - self.mu).unsqueeze(-1)).squeeze(-1)
        return d.to(x.dtype)

    def eps_net(self, process: ScoreSDE):
        """net(x_t, t) = E[n | x_t] for an SDE process (noise prediction)."""

        def net(x: Tensor, t: Tensor, cond=None) -> Tensor:
            s, sigma = process.marginal(t.double())
            xt = x.double() / s.view(-1, 1)
            return ((xt - self.denoise(xt, sigma)) / sigma.view(-1, 1)).to(x.dtype)

        return net

    def edm_net(self, process: EDM):
        """F with D = c_skip x + c_out F(c_in x, c_noise) = exact denoiser."""

        def net(x_in: Tensor, c_noise: Tensor, cond=None) -> Tensor:
            sigma = (4 * c_noise.double()).exp()
            c_skip, c_out, c_in, _ = process.precond(sigma)
            x = x_in.double() / c_in.view(-1, 1)
            return ((self.denoise(x, sigma) - c_skip.view(-1, 1) * x) / c_out.view(-1, 1)).to(
                x_in.dtype
            )

        return net

    def velocity_net(self):
        """v(x, t) = E[x_1 - x_0 | x_t] for x_t = t x_1 + (1 - t) x_0."""

        def net(x: Tensor, t: Tensor, cond=None) -> Tensor:
            t = self._vec(t, x)
            if bool((t == t[0]).all()):  # one time: one matrix (fast path)
                t0 = t[0]
                c = t0**2 * self.cov + (1 - t0) ** 2 * self.eye
                m = (t0 * self.cov - (1 - t0) * self.eye) @ torch.linalg.inv(c)
                return (self.mu + (x.double() - t0 * self.mu) @ m.T).to(x.dtype)
            t = t.view(-1, 1, 1)
            c = t**2 * self.cov + (1 - t) ** 2 * self.eye
            r = torch.linalg.solve(c, (x.double() - t[:, :, 0] * self.mu).unsqueeze(-1))
            v = self.mu + ((t * self.cov - (1 - t) * self.eye) @ r).squeeze(-1)
            return v.to(x.dtype)

        return net

    def consistency_net(self, process: ConsistencyModel):
        """F with f(x, sigma) = the exact PF-ODE map to sigma = 0 (linear for a Gaussian)."""
        lam, q = torch.linalg.eigh(self.cov)

        def net(x_in: Tensor, c_noise: Tensor, cond=None) -> Tensor:
            sigma = (4 * c_noise.double()).exp()
            c_skip, c_out, c_in, _ = process.precond(sigma)
            x = x_in.double() / c_in.view(-1, 1)
            ratio = (lam / (lam + sigma.view(-1, 1) ** 2)).sqrt()
            f = self.mu + (((x - self.mu) @ q) * ratio) @ q.T
            return ((f - c_skip.view(-1, 1) * x) / c_out.view(-1, 1)).to(x_in.dtype)

        return net

    def exact_net(self, process):
        if isinstance(process, ScoreSDE):
            return self.eps_net(process)
        if isinstance(process, EDM):
            return self.edm_net(process)
        if isinstance(process, RectifiedFlow):
            return self.velocity_net()
        if isinstance(process, ConsistencyModel):
            return self.consistency_net(process)
        raise TypeError(type(process))


@pytest.fixture(scope="session")
def gaussian() -> Gaussian:
    return Gaussian([1.0, -0.5], [[1.0, 0.5], [0.5, 0.6]])
