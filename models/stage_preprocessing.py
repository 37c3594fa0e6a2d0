"""Coordinates of the two stages of a shower model (CaloDREAM, arXiv:2405.09629, Sec. 2).

Energy stage: z = [log(E_tot / E_inc), log(E_l / E_tot) ...] given E_inc (the layer energies E_l
are sums of the voxels above the readout threshold), and with `layer_hits` also log(1 + n_l + u),
u ~ U(0, 1), for the number n_l of hits in each layer (dequantised counts; floor on the way
back). Shape stage: z_i = log(v_i / E_l(i)), each voxel's share of its layer's energy, given
[E_inc, E_l ...] (and the hit counts n_l ...). As in `ShowerPreprocessing`, empty voxels and
layers are dequantised into a narrow band a decade below the threshold (noise_fraction x
threshold, 5% wide in log), and every coordinate is standardised conditionally on E_inc,
(z - mu(E_inc)) / sigma(E_inc), with mu and log sigma^2 quintic polynomials in log E_inc. The
inverses return float64 energies in MeV that `models.two_stage.rebuild` turns into exact showers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_serializer
from torch import Tensor, nn

from models.linalg import normal_equations, polynomial, solve_normal
from models.noise import rand
from models.preprocessing import VOXEL_OPTIONS, VoxelCodingConfig, omit_defaults
from models.quantile import ConditionalQuantiles

ShareOf = Literal["layer", "incident"]
SHARE_OF_HELP = (
    "the energy a voxel's log share is taken of: 'layer' (E_l) or 'incident' (E_inc). With 'layer'"
    " the band of empty voxels, log(E_floor / E_l), moves with the layer energy, so a Gaussianisation"
    " given E_inc alone blurs empty voxels into hits where E_l spreads widely (the shower start);"
    " with 'incident' the band sits where the single-stage coding puts it"
)

LAYER_HITS_HELP = (
    "the energy stage also generates each layer's number of hits, the shape stage is conditioned"
    " on them, and the rebuild keeps exactly that many of the shape stage's largest voxels (as many"
    " as the layer energy allows); without it the number of hits is whatever the shape stage's"
    " voxels above the threshold add up to"
)

CHUNK_ELEMENTS = 2**22
"""Float64 elements per chunk when preprocessing many voxels (about 32 MB)."""

LOG_CHI2_MEAN = -1.2704
"""E[log chi^2_1]: corrects a log-variance regression on squared Gaussian residuals."""


def dequantise(
    e: Tensor, threshold: float, floor: float, generator: torch.Generator | None
) -> Tensor:
    """Values below threshold -> floor x 10^(-0.05 u), u ~ U(0, 1): a narrow band below it."""
    u = rand(e.shape, generator, e.double())
    return torch.where(e < threshold, floor * 10 ** (-0.05 * u), e)


def _row_chunks(n_rows: int, n_cols: int) -> Iterator[slice]:
    size = max(1, CHUNK_ELEMENTS // max(n_cols, 1))
    for start in range(0, n_rows, size):
        yield slice(start, min(start + size, n_rows))


class PolynomialStandardiser(nn.Module):
    """Conditional standardisation x = (z - mu(l)) / sigma(l) per coordinate.

    mu and log sigma^2 are polynomials in l, the standardised log E_inc, fitted by least squares
    (normal equations accumulated in chunks of events).
    """

    def __init__(self, n_coords: int, sigma_floor: float, sigma_cap: float, degree: int = 5):
        """Standardise `n_coords` coordinates; sigma is clamped to [sigma_floor, sigma_cap]."""
        super().__init__()
        self.degree = degree
        f64 = torch.float64
        self.register_buffer("mu_coef", torch.zeros(degree + 1, n_coords, dtype=f64))
        self.register_buffer("log_var_coef", torch.zeros(degree + 1, n_coords, dtype=f64))
        self.register_buffer("log_e_mean", torch.zeros((), dtype=f64))
        self.register_buffer("log_e_std", torch.ones((), dtype=f64))
        self.sigma_floor, self.sigma_cap = sigma_floor, sigma_cap

    def condition(self, e_inc: Tensor) -> Tensor:
        """The network's condition on E_inc: l = (log E_inc - mean) / std [N, 1], float64."""
        log_e = torch.log(e_inc.double().reshape(-1, 1))
        return (log_e - self.log_e_mean) / self.log_e_std

    def _basis(self, e_inc: Tensor, n_terms: int) -> Tensor:
        l = self.condition(e_inc)
        return torch.cat([l**k for k in range(n_terms)], dim=1)

    @torch.no_grad()
    def fit(self, chunks: Callable[[], Iterator[tuple[Tensor, Tensor]]], e_inc: Tensor) -> None:
        """Fit on all events; `chunks()` yields the same (z [n, C] float64, E_inc [n]) each call."""
        log_e = torch.log(e_inc.double().reshape(-1))
        self.log_e_mean.copy_(log_e.mean())
        self.log_e_std.copy_(log_e.std().clamp_min(1e-3) if log_e.numel() > 1 else 1.0)
        # fewer distinct energies than coefficients: a lower degree
        n_terms = min(self.degree + 1, int(torch.unique(e_inc).numel()))
        gram = torch.zeros(n_terms, n_terms, dtype=torch.float64, device=e_inc.device)
        moment = torch.zeros(n_terms, self.mu_coef.shape[1], dtype=torch.float64)
        moment = moment.to(e_inc.device)
        for z, e in chunks():
            g, m = normal_equations(self._basis(e, n_terms), z)
            gram += g
            moment += m
        mu = solve_normal(gram, moment)
        moment.zero_()
        for z, e in chunks():
            b = self._basis(e, n_terms)
            moment += normal_equations(
                b, torch.log((z - polynomial(b, mu)).pow(2).clamp_min(1e-12))
            )[1]
        log_var = solve_normal(gram, moment)
        log_var[0] -= LOG_CHI2_MEAN
        self.mu_coef.zero_()[:n_terms] = mu
        self.log_var_coef.zero_()[:n_terms] = log_var

    def element_moments(self, e_inc: Tensor, cols: Tensor) -> tuple[Tensor, Tensor]:
        """(mu, sigma) [M] of coordinate cols[m] at E_inc e_inc[m] (float64)."""
        b = self._basis(e_inc, self.degree + 1)  # [M, degree + 1]
        mu = (b * self.mu_coef[:, cols].T).sum(1)
        log_var = (b * self.log_var_coef[:, cols].T).sum(1)
        return mu, torch.exp(0.5 * log_var).clamp(self.sigma_floor, self.sigma_cap)

    def moments(self, e_inc: Tensor) -> tuple[Tensor, Tensor]:
        """(mu, sigma) [N, C] in float64, sigma clamped to [sigma_floor, sigma_cap]."""
        b = self._basis(e_inc, self.degree + 1)
        log_var = polynomial(b, self.log_var_coef)
        return polynomial(b, self.mu_coef), torch.exp(0.5 * log_var).clamp(
            self.sigma_floor, self.sigma_cap
        )

    def standardise(self, z: Tensor, e_inc: Tensor) -> Tensor:
        """(z - mu) / sigma."""
        mu, sigma = self.moments(e_inc)
        return (z - mu) / sigma

    def unstandardise(self, x: Tensor, e_inc: Tensor) -> Tensor:
        """Inverse of `standardise`: x sigma + mu, float64."""
        mu, sigma = self.moments(e_inc)
        return x.double() * sigma + mu


def _seed_from(generator: torch.Generator | None) -> int:
    return int(torch.randint(0, 2**62, (1,), generator=generator))


class LayerEnergyPreprocessing(nn.Module):
    """Energy stage: layer energies [N, L] (MeV; + hit counts [N, L]) given E_inc <-> z."""

    def __init__(
        self,
        dim: int,
        cond_dim: int,
        threshold_mev: float,
        noise_fraction: float,
        quantiles: int | None = None,
        quantile_knots: int = 16,
        layer_hits: bool = False,
    ):
        """`dim` layers (2 L columns with `layer_hits`: energies, then hit counts), given E_inc.

        With `quantiles`, the standardised coordinates are Gaussianised by that many quantile
        levels at `quantile_knots` values of E_inc (`models.quantile.ConditionalQuantiles`).
        """
        super().__init__()
        if cond_dim != 1:
            raise ValueError(f"the energy stage is conditioned on E_inc alone, got {cond_dim}")
        if layer_hits and dim % 2:
            raise ValueError(f"layer_hits: {dim} columns are not L energies and L hit counts")
        self.threshold_mev, self.floor_mev = threshold_mev, noise_fraction * threshold_mev
        self.layer_hits = layer_hits
        self.n_layers, self.out_dim = (dim // 2 if layer_hits else dim), dim + 1
        self.standardiser = PolynomialStandardiser(dim + 1, sigma_floor=1e-4, sigma_cap=1e3)
        self.quantiles = (
            ConditionalQuantiles(dim + 1, quantiles, quantile_knots) if quantiles else None
        )
        self.register_buffer("log_ratio_max", torch.zeros((), dtype=torch.float64))

    def _coordinates(
        self, layer_e: Tensor, e_inc: Tensor, generator: torch.Generator | None
    ) -> Tensor:
        s = layer_e[:, : self.n_layers].double()
        s = torch.where(s < self.threshold_mev, 0.0, s)
        t = s.sum(1, keepdim=True)
        s_q = dequantise(s, self.threshold_mev, self.floor_mev, generator)
        t_q = dequantise(t, self.threshold_mev, self.floor_mev, generator)
        e_in = e_inc.double().reshape(-1, 1)
        z = [torch.log(t_q / e_in), torch.log(s_q / t_q)]
        if self.layer_hits:
            n = layer_e[:, self.n_layers :].double()
            z.append(torch.log1p(n + rand(n.shape, generator, n)))
        return torch.cat(z, dim=1)

    @torch.no_grad()
    def fit(self, layer_e: Tensor, e_inc: Tensor, generator: torch.Generator | None = None) -> None:
        """Set the standardisation from training data."""
        seed = _seed_from(generator)

        def chunks() -> Iterator[tuple[Tensor, Tensor]]:
            gen = torch.Generator(device=e_inc.device).manual_seed(seed)
            yield self._coordinates(layer_e, e_inc, gen), e_inc

        z, _ = next(chunks())
        self.log_ratio_max.copy_(z[:, 0].max())
        self.standardiser.fit(chunks, e_inc)
        if self.quantiles is not None:
            x = self.standardiser.standardise(z, e_inc)
            self.quantiles.fit(x, self.standardiser.condition(e_inc))

    def transform_cond(self, e_inc: Tensor) -> Tensor:
        """Standardised log E_inc [N, 1]."""
        return self.standardiser.condition(e_inc).float()

    def transform(
        self, layer_e: Tensor, e_inc: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """(x, c) in network space."""
        z = self._coordinates(layer_e, e_inc, generator)
        x = self.standardiser.standardise(z, e_inc)
        if self.quantiles is not None:
            x = self.quantiles.transform(x, self.standardiser.condition(e_inc))
        return x.float(), self.transform_cond(e_inc)

    def inverse(self, x: Tensor, e_inc: Tensor) -> Tensor:
        """Network space -> layer energies [N, L] in MeV (float64) summing to E_tot (+ counts)."""
        if self.quantiles is not None:
            x = self.quantiles.inverse(x, self.standardiser.condition(e_inc))
        z = self.standardiser.unstandardise(x, e_inc)
        e_tot = torch.exp(z[:, :1].clamp(max=float(self.log_ratio_max))) * e_inc.double()
        layer_e = torch.softmax(z[:, 1 : 1 + self.n_layers], dim=1) * e_tot.reshape(-1, 1)
        if not self.layer_hits:
            return layer_e
        # n = floor(e^z - 1) inverts log(1 + n + u); clamped so that a wild value stays finite
        n = torch.floor(torch.expm1(z[:, 1 + self.n_layers :].clamp(max=40.0))).clamp_min(0.0)
        return torch.cat([layer_e, n], dim=1)


class VoxelShapePreprocessing(nn.Module):
    """Shape stage: voxels [N, V] (MeV) given [E_inc, E_l ...] [N, 1 + L] <-> z [N, V]."""

    def __init__(
        self,
        dim: int,
        cond_dim: int,
        threshold_mev: float,
        layer_sizes: list[int] | None,
        noise_fraction: float,
        voxel_sigma_floor: float = 0.5,
        voxel_sigma_cap: float = 1.0,
        voxel_quantiles: int | None = None,
        quantile_knots: int = 16,
        quantile_tails: int | None = None,
        share_of: ShareOf = "layer",
        layer_hits: bool = False,
    ):
        """`dim` voxels in layers of `layer_sizes`, conditioned on [E_inc, layer energies].

        With `voxel_quantiles`, the standardised shares are Gaussianised by that many quantile
        levels at `quantile_knots` values of E_inc (`models.quantile.ConditionalQuantiles`), with
        `quantile_tails` more levels in each tail. `share_of` is the energy each voxel's log share is taken of: its layer's (E_l) or the
        incident one (E_inc; SHARE_OF says why); the rebuild makes the layer sums exact either way.
        With `layer_hits` the condition also holds each layer's number of hits ([E_inc, E_l ...,
        n_l ...]), coded as log(1 + n_l).
        """
        super().__init__()
        sizes = list(layer_sizes) if layer_sizes else [dim]
        if sum(sizes) != dim:
            raise ValueError(f"layer_sizes sum to {sum(sizes)}, but showers have {dim} voxels")
        expected = 1 + len(sizes) * (2 if layer_hits else 1)
        if cond_dim != expected:
            hits = f" and {len(sizes)} hit counts" if layer_hits else ""
            raise ValueError(
                f"the shape stage is conditioned on [E_inc, {len(sizes)} layer energies{hits}], "
                f"got {cond_dim} columns"
            )
        self.layer_hits = layer_hits
        self.threshold_mev, self.floor_mev = threshold_mev, noise_fraction * threshold_mev
        self.n_layers, self.out_dim = len(sizes), dim
        self.share_of = share_of
        layer_of = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
        self.register_buffer("layer_of_voxel", layer_of, persistent=False)
        # as ShowerPreprocessing's voxels: a floor keeps rare hits from being 100-sigma outliers,
        # a cap keeps a unit error in network space from becoming a factor e^sigma in energy
        self.standardiser = PolynomialStandardiser(
            dim, sigma_floor=voxel_sigma_floor, sigma_cap=voxel_sigma_cap
        )
        self.quantiles = (
            ConditionalQuantiles(dim, voxel_quantiles, quantile_knots, quantile_tails or 0)
            if voxel_quantiles
            else None
        )
        self.register_buffer("c_mean", torch.zeros(cond_dim, dtype=torch.float64))
        self.register_buffer("c_std", torch.ones(cond_dim, dtype=torch.float64))

    def _layer_sum(self, e: Tensor) -> Tensor:
        out = torch.zeros(e.shape[0], self.n_layers, dtype=e.dtype, device=e.device)
        return out.index_add_(1, self.layer_of_voxel.to(e.device), e)

    def _cond_coordinates(self, cond: Tensor) -> Tensor:
        c = cond.double()
        e_in = c[:, :1]
        layer_e = c[:, 1 : 1 + self.n_layers]
        parts = [torch.log(e_in), torch.log(layer_e.clamp_min(self.floor_mev) / e_in)]
        if self.layer_hits:
            parts.append(torch.log1p(c[:, 1 + self.n_layers :]))
        return torch.cat(parts, 1)

    def _coordinates(
        self, showers: Tensor, e_inc: Tensor, generator: torch.Generator | None
    ) -> Tensor:
        e = showers.double()
        e = torch.where(e < self.threshold_mev, 0.0, e)
        v = dequantise(e, self.threshold_mev, self.floor_mev, generator)
        return torch.log(v / self._reference(e, e_inc))

    def _reference(self, e: Tensor, e_inc: Tensor) -> Tensor:
        """The energy each voxel's share is of: [N, V] (layer) or [N, 1] (incident), MeV."""
        if self.share_of == "incident":
            return e_inc.double().reshape(-1, 1)
        s = self._layer_sum(e)
        s = torch.where(s > 0, s, self.threshold_mev)  # an empty layer: its voxels sit in the band
        return s[:, self.layer_of_voxel.to(e.device)]

    @torch.no_grad()
    def fit(self, showers: Tensor, cond: Tensor, generator: torch.Generator | None = None) -> None:
        """Set the standardisation from training data (in chunks of events)."""
        cc = self._cond_coordinates(cond)
        self.c_mean.copy_(cc.mean(0))
        self.c_std.copy_(cc.std(0).clamp_min(1e-6) if cc.shape[0] > 1 else torch.ones_like(cc[0]))
        seed = _seed_from(generator)
        e_inc = cond[:, 0]

        def chunks() -> Iterator[tuple[Tensor, Tensor]]:
            gen = torch.Generator(device=showers.device).manual_seed(seed)
            for rows in _row_chunks(showers.shape[0], self.out_dim):
                yield self._coordinates(showers[rows], e_inc[rows], gen), e_inc[rows]

        self.standardiser.fit(chunks, e_inc)
        if self.quantiles is not None:
            standardised = torch.cat(
                [self.standardiser.standardise(z, e).float() for z, e in chunks()]
            )
            self.quantiles.fit(standardised, self.standardiser.condition(e_inc))

    def _gaussianise(self, x: Tensor, e_inc: Tensor) -> Tensor:
        if self.quantiles is None:
            return x
        return self.quantiles.transform(x, self.standardiser.condition(e_inc))

    def transform_cond(self, cond: Tensor) -> Tensor:
        """Standardised [log E_inc, log(E_l / E_inc) ...] (empty layers at the noise floor)."""
        return ((self._cond_coordinates(cond) - self.c_mean) / self.c_std).float()

    def transform(
        self, showers: Tensor, cond: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """(x, c) in network space; x is computed in chunks of events."""
        x = torch.empty(showers.shape[0], self.out_dim, dtype=torch.float32, device=showers.device)
        for rows in _row_chunks(showers.shape[0], self.out_dim):
            z = self._coordinates(showers[rows], cond[rows, 0], generator)
            x_rows = self.standardiser.standardise(z, cond[rows, 0])
            x[rows] = self._gaussianise(x_rows, cond[rows, 0]).float()
        return x, self.transform_cond(cond)

    @torch.no_grad()
    def hit_values(
        self, cond: Tensor, rows: Tensor, cols: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """Energies [M] (MeV) of voxels cols[m] of events rows[m], drawn given that they are hit.

        Each voxel's threshold has the network coordinate x_thr (the coordinates of `transform`,
        element by element); x ~ N(0, 1) truncated to x >= x_thr (an inverse-CDF draw) is mapped
        back as `inverse` maps it, so the value follows that voxel's hit spectrum given the
        event's conditions. At least the threshold.
        """
        c = cond[rows].double()
        e_inc = c[:, 0]
        if self.share_of == "incident":
            scale = e_inc
        else:
            scale = c.gather(1, 1 + self.layer_of_voxel.to(c.device)[cols].unsqueeze(1))[:, 0]
        z_thr = torch.log(self.threshold_mev / scale)
        mu, sigma = self.standardiser.element_moments(e_inc, cols)
        x_thr = (z_thr - mu) / sigma
        l = self.standardiser.condition(e_inc)[:, 0]
        if self.quantiles is not None:
            x_thr = self.quantiles.transform_elements(x_thr, l, cols)
        p_thr = torch.special.ndtr(x_thr)
        u = rand(p_thr.shape, generator, p_thr)
        x = torch.special.ndtri((p_thr + u * (1.0 - p_thr)).clamp(max=1.0 - 1e-12))
        if self.quantiles is not None:
            x = self.quantiles.inverse_elements(x, l, cols)
        z = x * sigma + mu
        return (torch.exp(z.clamp(max=0.0)) * scale).clamp_min(self.threshold_mev)

    def inverse(self, x: Tensor, cond: Tensor) -> Tensor:
        """Network space -> voxel energies [N, V] in MeV (float64), each at most its layer's."""
        if self.quantiles is not None:
            x = self.quantiles.inverse(x, self.standardiser.condition(cond[:, 0]))
        z = self.standardiser.unstandardise(x, cond[:, 0])
        c = cond.double()
        layer_of = self.layer_of_voxel.to(x.device)
        scale = (
            c[:, :1] if self.share_of == "incident" else c[:, 1 : 1 + self.n_layers][:, layer_of]
        )
        return torch.exp(z.clamp(max=0.0)) * scale


class LayerEnergyPreprocessingConfig(BaseModel):
    """Energy-stage coordinates (built by a two-stage model; rarely written by hand)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["layer_energies"] = "layer_energies"
    threshold_mev: float = Field(1.0, gt=0.0)
    noise_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    quantiles: int | None = Field(
        None, ge=2, description="Gaussianise the energy coordinates by this many quantile levels"
    )
    quantile_knots: int = Field(16, ge=2, description="E_inc knots of the quantile tables")
    layer_hits: bool = Field(False, description=LAYER_HITS_HELP)

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        return omit_defaults(self, handler(self), ("quantiles", "quantile_knots", "layer_hits"))

    def build(self, dim: int, cond_dim: int) -> LayerEnergyPreprocessing:
        """The module for `dim` layers and a `cond_dim`-column condition."""
        return LayerEnergyPreprocessing(
            dim,
            cond_dim,
            self.threshold_mev,
            self.noise_fraction,
            self.quantiles,
            self.quantile_knots,
            self.layer_hits,
        )


class VoxelShapePreprocessingConfig(VoxelCodingConfig):
    """Shape-stage coordinates (built by a two-stage model; rarely written by hand)."""

    kind: Literal["voxel_shapes"] = "voxel_shapes"
    share_of: ShareOf = Field("layer", description=SHARE_OF_HELP)
    layer_hits: bool = Field(False, description="condition on each layer's number of hits too")

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        return omit_defaults(self, handler(self), (*VOXEL_OPTIONS, "share_of", "layer_hits"))

    def build(self, dim: int, cond_dim: int) -> VoxelShapePreprocessing:
        """The module for `dim` voxels and a `cond_dim`-column condition."""
        return VoxelShapePreprocessing(
            dim,
            cond_dim,
            self.threshold_mev,
            self.layer_sizes,
            self.noise_fraction,
            **{name: getattr(self, name) for name in VOXEL_OPTIONS},
            share_of=self.share_of,
            layer_hits=self.layer_hits,
        )


class ShowerStagesConfig(VoxelCodingConfig):
    """The shower settings both stages share (the voxel options apply to the shape stage)."""

    kind: Literal["shower_stages"] = "shower_stages"
    energy_quantiles: int | None = Field(
        None, ge=2, description="Gaussianise the energy stage's coordinates by this many levels"
    )
    share_of: ShareOf = Field("layer", description=SHARE_OF_HELP)
    layer_hits: bool = Field(False, description=LAYER_HITS_HELP)

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        names = (*VOXEL_OPTIONS, "energy_quantiles", "share_of", "layer_hits")
        return omit_defaults(self, handler(self), names)

    def energy(self) -> LayerEnergyPreprocessingConfig:
        """The energy stage's preprocessing (quantile knots shared with the voxels')."""
        return LayerEnergyPreprocessingConfig(
            threshold_mev=self.threshold_mev,
            noise_fraction=self.noise_fraction,
            quantiles=self.energy_quantiles,
            quantile_knots=self.quantile_knots,
            layer_hits=self.layer_hits,
        )

    def shape(self) -> VoxelShapePreprocessingConfig:
        """The shape stage's preprocessing."""
        return VoxelShapePreprocessingConfig(
            threshold_mev=self.threshold_mev,
            layer_sizes=self.layer_sizes,
            noise_fraction=self.noise_fraction,
            **{name: getattr(self, name) for name in VOXEL_OPTIONS},
            share_of=self.share_of,
            layer_hits=self.layer_hits,
        )


__all__ = [
    "LayerEnergyPreprocessing",
    "LayerEnergyPreprocessingConfig",
    "PolynomialStandardiser",
    "ShowerStagesConfig",
    "VoxelShapePreprocessing",
    "VoxelShapePreprocessingConfig",
    "dequantise",
]
