"""Invertible preprocessing fitted on training data and saved with the model (buffers in the weights).

Samples always leave a model in physical units (MeV, GeV).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator
from torch import Tensor, nn

from models.linalg import least_squares, polynomial
from models.quantile import ConditionalQuantiles


class ShowerPreprocessing(nn.Module):
    """Hierarchical energy coordinates: log E_tot/E_inc, layer fractions, voxel energies.

    As CaloFlow and CaloDiffusion do, the total and per-layer energies are explicit coordinates
    and the inverse rebuilds voxels with exact layer sums, so per-voxel errors cannot bias the
    shower energy. Network space z = [log(v_i / E_inc) ..., log(S_l / T) ..., log(T / E_inc)]
    where S_l, T are the true layer and total energies and v_i the voxel energy; empty voxels
    (and empty layers) are dequantised into a narrow band a decade below the readout threshold
    (noise_fraction x threshold, 5% wide in log), far from real hits, so small model errors do
    not turn empty voxels into hits. Each coordinate is standardised conditionally,
    (z - mu(E_inc)) / sigma(E_inc), with mu and log sigma^2 quintic polynomials in log E_inc
    (least squares), so the network models unit-scale residuals even where the physical spread
    (e.g. the energy resolution) shrinks with energy. The condition is c = standardise(log E_inc).
    With `voxel_quantiles`, the standardised voxel coordinates are then Gaussianised by their
    empirical quantiles given E_inc (`models.quantile.ConditionalQuantiles`), so every voxel
    coordinate is marginally N(0, 1) and hits and empty voxels are no longer separated by a gap.
    """

    degree = 5

    def __init__(
        self,
        dim: int,
        cond_dim: int,
        threshold_mev: float = 1.0,
        layer_sizes: list[int] | None = None,
        noise_fraction: float = 0.1,
        voxel_sigma_floor: float = 0.5,
        voxel_sigma_cap: float = 1.0,
        voxel_quantiles: int | None = None,
        quantile_knots: int = 16,
        quantile_tails: int | None = None,
    ):
        super().__init__()
        sizes = list(layer_sizes) if layer_sizes else [dim]
        if sum(sizes) != dim:
            raise ValueError(f"layer_sizes sum to {sum(sizes)}, but showers have {dim} voxels")
        self.threshold_mev = threshold_mev
        self.floor_mev = noise_fraction * threshold_mev
        self.n_layers = len(sizes)
        self.out_dim = dim + self.n_layers + 1
        layer_of = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
        self.register_buffer("layer_of_voxel", layer_of, persistent=False)
        # Voxel coordinates are bimodal (empty band vs hits). A floor on their conditional sigma
        # keeps rare hits in almost-always-empty voxels from becoming 100-sigma outliers; a cap
        # keeps a unit error in network space from becoming a factor e^sigma in voxel energy.
        n_energy = self.n_layers + 1
        floor = torch.cat([torch.full((dim,), voxel_sigma_floor), torch.full((n_energy,), 1e-4)])
        cap = torch.cat([torch.full((dim,), voxel_sigma_cap), torch.full((n_energy,), 1e3)])
        self.register_buffer("sigma_floor", floor.double(), persistent=False)
        self.register_buffer("sigma_cap", cap.double(), persistent=False)
        self.register_buffer("mu_coef", torch.zeros(self.degree + 1, self.out_dim))
        self.register_buffer("log_var_coef", torch.zeros(self.degree + 1, self.out_dim))
        self.register_buffer("c_mean", torch.zeros(cond_dim))
        self.register_buffer("c_std", torch.ones(cond_dim))
        self.register_buffer("e_inc_range", torch.tensor([0.0, float("inf")], dtype=torch.float64))
        self.register_buffer("log_ratio_max", torch.zeros(()))
        self.n_voxels = dim
        self.quantiles = (
            ConditionalQuantiles(dim, voxel_quantiles, quantile_knots, quantile_tails or 0)
            if voxel_quantiles
            else None
        )

    def _layer_sum(self, e: Tensor) -> Tensor:
        out = torch.zeros(e.shape[0], self.n_layers, dtype=e.dtype, device=e.device)
        idx = self.layer_of_voxel.to(e.device).expand(e.shape[0], -1)
        return out.scatter_add_(1, idx, e)  # = index_add_, which ONNX export gets wrong

    def _dequantise(self, e: Tensor, generator: torch.Generator | None) -> Tensor:
        """Values below threshold -> floor x 10^(-0.05 u), u ~ U(0, 1): a narrow band below it."""
        u = torch.rand(
            e.shape,
            generator=generator,
            dtype=torch.float64,
            device=generator.device if generator is not None else e.device,
        ).to(e.device)
        return torch.where(e < self.threshold_mev, self.floor_mev * 10 ** (-0.05 * u), e)

    def _coordinates(
        self, showers: Tensor, e_inc: Tensor, generator: torch.Generator | None
    ) -> Tensor:
        e = torch.where(showers.double() < self.threshold_mev, 0.0, showers.double())
        s = self._layer_sum(e)
        t = s.sum(1, keepdim=True)
        e_in = e_inc.double().reshape(-1, 1)
        v = self._dequantise(e, generator)
        s_q = self._dequantise(s, generator)
        t_q = self._dequantise(t, generator)
        return torch.cat([torch.log(v / e_in), torch.log(s_q / t_q), torch.log(t_q / e_in)], dim=1)

    def _basis(self, e_inc: Tensor) -> Tensor:
        """[1, l, l^2, l^3] with l the standardised log incident energy, float64."""
        l = (torch.log(e_inc.double().reshape(-1, 1)) - self.c_mean[:1].double()) / self.c_std[
            :1
        ].double()
        return torch.cat([l**k for k in range(self.degree + 1)], dim=1)

    def _moments(self, e_inc: Tensor) -> tuple[Tensor, Tensor]:
        b = self._basis(e_inc)
        mu = polynomial(b, self.mu_coef.double())
        sigma = torch.exp(0.5 * polynomial(b, self.log_var_coef.double()))
        return mu, torch.minimum(torch.maximum(sigma, self.sigma_floor), self.sigma_cap)

    def fit(self, showers: Tensor, e_inc: Tensor, generator: torch.Generator | None = None) -> None:
        """Set the standardisation from training data."""
        z = self._coordinates(showers, e_inc, generator)
        self.log_ratio_max.copy_(z[:, -1].max().float())
        log_e = torch.log(e_inc.double().reshape(-1, 1))
        self.c_mean.copy_(log_e.mean(0).float())
        self.c_std.copy_(log_e.std(0).clamp_min(1e-3).float())
        self.e_inc_range.copy_(torch.tensor([e_inc.min().item(), e_inc.max().item()]))
        b = self._basis(e_inc)
        n_unique = int(torch.unique(e_inc).numel())
        b = b[:, : min(self.degree + 1, n_unique)]  # fewer energies than coefficients: lower degree
        mu = least_squares(b, z)
        resid2 = (z - polynomial(b, mu)).pow(2).clamp_min(1e-12)
        # E[log chi^2_1] = -1.2704: correct the log-variance regression for a Gaussian residual
        log_var = least_squares(b, torch.log(resid2))
        log_var[0] += 1.2704
        self.mu_coef.zero_()
        self.log_var_coef.zero_()
        self.mu_coef[: b.shape[1]] = mu.float()
        self.log_var_coef[: b.shape[1]] = log_var.float()
        if self.quantiles is not None:
            m, sigma = self._moments(e_inc)
            v = slice(0, self.n_voxels)
            self.quantiles.fit((z[:, v] - m[:, v]) / sigma[:, v], self._basis(e_inc)[:, 1])

    def transform_cond(self, e_inc: Tensor) -> Tensor:
        """The network condition: standardised log E_inc [N, 1]."""
        return ((torch.log(e_inc.double().reshape(-1, 1)) - self.c_mean) / self.c_std).float()

    def transform(
        self, showers: Tensor, e_inc: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """(x, c) in network space for showers [N, V] (MeV) and E_inc [N, 1]."""
        mu, sigma = self._moments(e_inc)
        x = (self._coordinates(showers, e_inc, generator) - mu) / sigma
        if self.quantiles is not None:
            v = slice(0, self.n_voxels)
            x[:, v] = self.quantiles.transform(x[:, v], self._basis(e_inc)[:, 1])
        return x.float(), self.transform_cond(e_inc)

    def inverse(self, x: Tensor, e_inc: Tensor) -> Tensor:
        """Network space -> voxel energies in MeV with exact layer and total sums, thresholded."""
        mu, sigma = self._moments(e_inc)
        x = x.double()
        if self.quantiles is not None:
            v = slice(0, self.n_voxels)
            x = torch.cat(
                [self.quantiles.inverse(x[:, v], self._basis(e_inc)[:, 1]), x[:, v.stop :]], 1
            )
        z = x * sigma + mu
        n_vox = z.shape[1] - self.n_layers - 1
        idx = self.layer_of_voxel.to(z.device)
        e_in = e_inc.double().reshape(-1, 1)
        f_vox, f_lay, f_tot = z[:, :n_vox], z[:, n_vox:-1], z[:, -1:]
        t = torch.exp(f_tot.clamp(max=float(self.log_ratio_max))) * e_in
        s = torch.softmax(f_lay, dim=1) * t
        s = torch.where(s < self.threshold_mev, 0.0, s)
        v = torch.exp(f_vox.clamp(max=0.0)) * e_in  # no voxel above the incident energy
        hits = torch.where(v < self.threshold_mev, 0.0, v)
        hit_sum = self._layer_sum(hits)
        # a layer with energy but no voxel above threshold keeps its sub-threshold shape
        w = torch.where((hit_sum > 0)[:, idx], hits, v)
        e = w / self._layer_sum(w)[:, idx].clamp_min(1e-300) * s[:, idx]
        return torch.where(e < self.threshold_mev, torch.zeros_like(e), e).float()


class StandardPreprocessing(nn.Module):
    """Per-feature standardisation x -> (x - mean) / std of features and conditions (e.g. jets)."""

    def __init__(self, dim: int, cond_dim: int):
        super().__init__()
        self.out_dim = dim
        self.register_buffer("x_mean", torch.zeros(dim))
        self.register_buffer("x_std", torch.ones(dim))
        self.register_buffer("c_mean", torch.zeros(cond_dim))
        self.register_buffer("c_std", torch.ones(cond_dim))

    @torch.no_grad()
    def fit(self, x: Tensor, cond: Tensor, generator: torch.Generator | None = None) -> None:
        """Set the means and standard deviations from training data."""
        self.x_mean.copy_(x.double().mean(0).float())
        self.x_std.copy_(x.double().std(0).clamp_min(1e-6).float())
        if cond.numel():
            self.c_mean.copy_(cond.double().mean(0).float())
            self.c_std.copy_(cond.double().std(0).clamp_min(1e-6).float())

    def transform_cond(self, cond: Tensor) -> Tensor:
        """Standardised conditions."""
        return ((cond.float() - self.c_mean) / self.c_std).float()

    def transform(self, x: Tensor, cond: Tensor, generator=None) -> tuple[Tensor, Tensor]:
        """Standardised (x, cond)."""
        return ((x.float() - self.x_mean) / self.x_std), self.transform_cond(cond)

    def inverse(self, x: Tensor, cond: Tensor) -> Tensor:
        """Network space -> physical units."""
        return x * self.x_std + self.x_mean


class PointCloudPreprocessing(nn.Module):
    """Per-feature standardisation of flattened point clouds [B, N * F], stats over valid points.

    With `count_cond`, the last condition column is the number of valid points n (valid points
    first); it passes through unchanged (networks build their mask from it) and padded points
    are set to 0 in both directions. Other condition columns are standardised. Features listed in
    `log_features` (e.g. jet constituents' pT fractions, index 2) are standardised as log(f):
    heavy-tailed positive values become unit-scale and generated ones are positive by construction.
    """

    LOG_FLOOR = 1e-8
    """Valid values of a log feature are floored here before the log."""

    def __init__(
        self,
        dim: int,
        cond_dim: int,
        n_features: int,
        count_cond: bool = True,
        log_features: tuple[int, ...] = (),
    ):
        """Points of `n_features` in `dim` coordinates; `log_features` are modelled as logs."""
        super().__init__()
        self.n_features, self.count_cond = n_features, count_cond
        is_log = torch.zeros(n_features, dtype=torch.bool)
        is_log[list(log_features)] = True
        self.register_buffer("is_log", is_log, persistent=False)
        self.n_points = dim // n_features
        self.out_dim = dim
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

    def _points(self, x: Tensor) -> Tensor:
        """[B, N, F] features, log features as log(max(f, LOG_FLOOR))."""
        pts = x.reshape(x.shape[0], self.n_points, self.n_features)
        logs = torch.log(pts.clamp_min(self.LOG_FLOOR))
        return torch.where(self.is_log.to(x.device), logs, pts)

    @torch.no_grad()
    def fit(self, x: Tensor, cond: Tensor, generator: torch.Generator | None = None) -> None:
        """Set the per-feature statistics from the valid points of training data."""
        pts = self._points(x.double())
        valid = pts[self._mask(cond).expand_as(pts)].reshape(-1, self.n_features)
        self.x_mean.copy_(valid.mean(0).float())
        self.x_std.copy_(valid.std(0).clamp_min(1e-6).float())
        c = cond[:, : self.c_mean.shape[0]].double()
        if c.numel():
            self.c_mean.copy_(c.mean(0).float())
            self.c_std.copy_(c.std(0).clamp_min(1e-6).float())

    def transform_cond(self, cond: Tensor) -> Tensor:
        """Standardised conditions; the count column (last) passes through."""
        n = self.c_mean.shape[0]
        c = (cond[:, :n].float() - self.c_mean) / self.c_std
        return torch.cat([c, cond[:, n:].float()], dim=1)

    def transform(self, x: Tensor, cond: Tensor, generator=None) -> tuple[Tensor, Tensor]:
        """Standardised points (padded points 0) and conditions."""
        pts = (self._points(x.float()) - self.x_mean) / self.x_std
        pts = torch.where(self._mask(cond), pts, torch.zeros_like(pts))
        return pts.reshape(x.shape[0], -1), self.transform_cond(cond)

    def inverse(self, x: Tensor, cond: Tensor) -> Tensor:
        """Network space -> physical point features (padded points 0)."""
        pts = (
            x.float().reshape(x.shape[0], self.n_points, self.n_features) * self.x_std + self.x_mean
        )
        pts = torch.where(self.is_log.to(x.device), torch.exp(pts), pts)
        pts = torch.where(self._mask(cond), pts, torch.zeros_like(pts))
        return pts.reshape(x.shape[0], -1)


VOXEL_OPTIONS = (
    "voxel_sigma_floor",
    "voxel_sigma_cap",
    "voxel_quantiles",
    "quantile_knots",
    "quantile_tails",
)
"""Voxel-coordinate settings added after the first checkpoints: dumped only when not default."""


def omit_defaults(config: BaseModel, data: dict, names: tuple[str, ...]) -> dict:
    """`data` without those of the fields `names` that hold their defaults.

    Cards and spec hashes of configs written before those fields existed stay unchanged.
    """
    for name in names:
        if name in data and getattr(config, name) == type(config).model_fields[name].default:
            data.pop(name)
    return data


class VoxelCodingConfig(BaseModel):
    """Settings of the voxel coding shared by the one-stage and the two-stage showers."""

    model_config = ConfigDict(extra="forbid")
    kind: str
    threshold_mev: float = Field(1.0, gt=0.0, description="voxels below it read 0")
    layer_sizes: list[int] | None = Field(
        None, description="voxels per active layer (filled from the geometry by farm)"
    )
    noise_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    voxel_sigma_floor: float = Field(
        0.5, gt=0.0, description="floor of a voxel coordinate's conditional sigma (log units)"
    )
    voxel_sigma_cap: float = Field(
        1.0, gt=0.0, description="cap of a voxel coordinate's conditional sigma (log units)"
    )
    voxel_quantiles: int | None = Field(
        None, ge=2, description="Gaussianise voxel coordinates by this many quantile levels"
    )
    quantile_knots: int = Field(16, ge=2, description="E_inc knots of the quantile tables")
    quantile_tails: int | None = Field(
        None,
        ge=1,
        description="extra quantile levels in each tail, spaced in the Gaussian coordinate, so "
        "voxels hit in fewer than 1 / voxel_quantiles of the showers keep their hit rate",
    )

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        return omit_defaults(self, handler(self), VOXEL_OPTIONS)


class ShowerPreprocessingConfig(VoxelCodingConfig):
    """Log of voxel energy fractions with a sub-threshold noise floor, standardised per voxel."""

    kind: Literal["shower"] = "shower"

    def build(self, dim: int, cond_dim: int) -> nn.Module:
        """The preprocessing module for `dim` voxels and `cond_dim` condition columns."""
        return ShowerPreprocessing(
            dim,
            cond_dim,
            self.threshold_mev,
            self.layer_sizes,
            self.noise_fraction,
            **{name: getattr(self, name) for name in VOXEL_OPTIONS},
        )


class StandardPreprocessingConfig(BaseModel):
    """Per-feature standardisation."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["standard"] = "standard"

    def build(self, dim: int, cond_dim: int) -> nn.Module:
        """The preprocessing module."""
        return StandardPreprocessing(dim, cond_dim)


class PointCloudPreprocessingConfig(BaseModel):
    """Point clouds flattened to [B, N * F]: per-feature standardisation over valid points."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["pointcloud"] = "pointcloud"
    n_features: int = Field(..., ge=1)
    count_cond: bool = True
    log_features: list[int] = Field(
        default_factory=list, description="features modelled as their log (e.g. [2]: pT_rel)"
    )

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        data = handler(self)
        if not self.log_features:
            data.pop("log_features", None)
        return data

    @model_validator(mode="after")
    def _features_exist(self) -> PointCloudPreprocessingConfig:
        bad = [i for i in self.log_features if not 0 <= i < self.n_features]
        if bad:
            raise ValueError(f"log_features {bad}: features are 0..{self.n_features - 1}")
        return self

    def build(self, dim: int, cond_dim: int) -> nn.Module:
        """The preprocessing module."""
        return PointCloudPreprocessing(
            dim, cond_dim, self.n_features, self.count_cond, tuple(self.log_features)
        )
