"""Invertible preprocessing fitted on training data and saved with the model (buffers in the weights).

Samples always leave a model in physical units (MeV, GeV).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn


class ShowerPreprocessing(nn.Module):
    """Voxels: u = E / E_inc, x = standardise(log(u)), zeros lifted by a sub-threshold noise floor.

    Voxels below `threshold_mev` are treated as empty; at fit/transform time each empty voxel gets
    uniform noise in [0, threshold) MeV (dequantisation, as CaloScore/CaloDiffusion do), so the
    log is finite and the inverse maps them back below threshold, where they are zeroed again.
    The condition is c = standardise(log E_inc).
    """

    def __init__(self, dim: int, cond_dim: int, threshold_mev: float = 1.0):
        super().__init__()
        self.threshold_mev = threshold_mev
        self.register_buffer("x_mean", torch.zeros(dim))
        self.register_buffer("x_std", torch.ones(dim))
        self.register_buffer("c_mean", torch.zeros(cond_dim))
        self.register_buffer("c_std", torch.ones(cond_dim))
        self.register_buffer("e_inc_range", torch.tensor([0.0, float("inf")], dtype=torch.float64))
        self.register_buffer("log_u_max", torch.zeros(dim))

    def _log_u(self, showers: Tensor, e_inc: Tensor, generator: torch.Generator | None) -> Tensor:
        e = showers.double()
        empty = e < self.threshold_mev
        noise = torch.rand(
            e.shape,
            generator=generator,
            dtype=torch.float64,
            device=generator.device if generator is not None else e.device,
        ).to(e.device)
        e = torch.where(empty, noise * self.threshold_mev, e).clamp_min(1e-3 * self.threshold_mev)
        return torch.log(e / e_inc.double().reshape(-1, 1))

    @torch.no_grad()
    def fit(self, showers: Tensor, e_inc: Tensor, generator: torch.Generator | None = None) -> None:
        """Set the standardisation from training data."""
        log_u = self._log_u(showers, e_inc, generator)
        self.x_mean.copy_(log_u.mean(0).float())
        self.x_std.copy_(log_u.std(0).clamp_min(1e-3).float())
        self.log_u_max.copy_(log_u.max(0).values.clamp(max=0.0).float())
        log_e = torch.log(e_inc.double().reshape(-1, 1))
        self.c_mean.copy_(log_e.mean(0).float())
        self.c_std.copy_(log_e.std(0).clamp_min(1e-3).float())
        self.e_inc_range.copy_(torch.tensor([e_inc.min().item(), e_inc.max().item()]))

    def transform_cond(self, e_inc: Tensor) -> Tensor:
        return ((torch.log(e_inc.double().reshape(-1, 1)) - self.c_mean) / self.c_std).float()

    def transform(
        self, showers: Tensor, e_inc: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        x = (self._log_u(showers, e_inc, generator) - self.x_mean) / self.x_std
        return x.float(), self.transform_cond(e_inc)

    def inverse(self, x: Tensor, e_inc: Tensor) -> Tensor:
        """Network space -> voxel energies in MeV, thresholded; no voxel above its training maximum."""
        log_u = x.double() * self.x_std + self.x_mean
        log_u = torch.minimum(log_u, self.log_u_max.double())
        e = torch.exp(log_u) * e_inc.double().reshape(-1, 1)
        return torch.where(e < self.threshold_mev, torch.zeros_like(e), e).float()


class StandardPreprocessing(nn.Module):
    """Per-feature standardisation x -> (x - mean) / std of features and conditions (e.g. jets)."""

    def __init__(self, dim: int, cond_dim: int):
        super().__init__()
        self.register_buffer("x_mean", torch.zeros(dim))
        self.register_buffer("x_std", torch.ones(dim))
        self.register_buffer("c_mean", torch.zeros(cond_dim))
        self.register_buffer("c_std", torch.ones(cond_dim))

    @torch.no_grad()
    def fit(self, x: Tensor, cond: Tensor, generator: torch.Generator | None = None) -> None:
        self.x_mean.copy_(x.double().mean(0).float())
        self.x_std.copy_(x.double().std(0).clamp_min(1e-6).float())
        if cond.numel():
            self.c_mean.copy_(cond.double().mean(0).float())
            self.c_std.copy_(cond.double().std(0).clamp_min(1e-6).float())

    def transform_cond(self, cond: Tensor) -> Tensor:
        return ((cond.float() - self.c_mean) / self.c_std).float()

    def transform(self, x: Tensor, cond: Tensor, generator=None) -> tuple[Tensor, Tensor]:
        return ((x.float() - self.x_mean) / self.x_std), self.transform_cond(cond)

    def inverse(self, x: Tensor, cond: Tensor) -> Tensor:
        return x * self.x_std + self.x_mean


class PointCloudPreprocessing(nn.Module):
    """Per-feature standardisation of flattened point clouds [B, N * F], stats over valid points.

    With `count_cond`, the last condition column is the number of valid points n (valid points
    first); it passes through unchanged (networks build their mask from it) and padded points
    are set to 0 in both directions. Other condition columns are standardised.
    """

    def __init__(self, dim: int, cond_dim: int, n_features: int, count_cond: bool = True):
        super().__init__()
        self.n_features, self.count_cond = n_features, count_cond
        self.n_points = dim // n_features
        n_std = cond_dim - int(count_cond)
        self.register_buffer("x_mean", torch.zeros(n_features))
        self.register_buffer("x_std", torch.ones(n_features))
        self.register_buffer("c_mean", torch.zeros(n_std))
        self.register_buffer("c_std", torch.ones(n_std))

    def _mask(self, cond: Tensor) -> Tensor:
        if not self.count_cond:
            return torch.ones(cond.shape[0], self.n_points, 1, dtype=torch.bool, device=cond.device)
        count = cond[:, -1:].round().to(cond.device)
        return (torch.arange(self.n_points, device=cond.device) < count).unsqueeze(-1)

    @torch.no_grad()
    def fit(self, x: Tensor, cond: Tensor, generator: torch.Generator | None = None) -> None:
        pts = x.double().reshape(x.shape[0], self.n_points, self.n_features)
        valid = pts[self._mask(cond).expand_as(pts)].reshape(-1, self.n_features)
        self.x_mean.copy_(valid.mean(0).float())
        self.x_std.copy_(valid.std(0).clamp_min(1e-6).float())
        c = cond[:, : self.c_mean.shape[0]].double()
        if c.numel():
            self.c_mean.copy_(c.mean(0).float())
            self.c_std.copy_(c.std(0).clamp_min(1e-6).float())

    def transform_cond(self, cond: Tensor) -> Tensor:
        n = self.c_mean.shape[0]
        c = (cond[:, :n].float() - self.c_mean) / self.c_std
        return torch.cat([c, cond[:, n:].float()], dim=1)

    def transform(self, x: Tensor, cond: Tensor, generator=None) -> tuple[Tensor, Tensor]:
        pts = (
            x.float().reshape(x.shape[0], self.n_points, self.n_features) - self.x_mean
        ) / self.x_std
        pts = torch.where(self._mask(cond), pts, torch.zeros_like(pts))
        return pts.reshape(x.shape[0], -1), self.transform_cond(cond)

    def inverse(self, x: Tensor, cond: Tensor) -> Tensor:
        pts = (
            x.float().reshape(x.shape[0], self.n_points, self.n_features) * self.x_std + self.x_mean
        )
        pts = torch.where(self._mask(cond), pts, torch.zeros_like(pts))
        return pts.reshape(x.shape[0], -1)


class ShowerPreprocessingConfig(BaseModel):
    """Log of voxel energy fractions with a sub-threshold noise floor, standardised per voxel."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["shower"] = "shower"
    threshold_mev: float = Field(1.0, gt=0.0)

    def build(self, dim: int, cond_dim: int) -> nn.Module:
        return ShowerPreprocessing(dim, cond_dim, self.threshold_mev)


class StandardPreprocessingConfig(BaseModel):
    """Per-feature standardisation."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["standard"] = "standard"

    def build(self, dim: int, cond_dim: int) -> nn.Module:
        return StandardPreprocessing(dim, cond_dim)


class PointCloudPreprocessingConfig(BaseModel):
    """Point clouds flattened to [B, N * F]: per-feature standardisation over valid points."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["pointcloud"] = "pointcloud"
    n_features: int = Field(..., ge=1)
    count_cond: bool = True

    def build(self, dim: int, cond_dim: int) -> nn.Module:
        return PointCloudPreprocessing(dim, cond_dim, self.n_features, self.count_cond)
