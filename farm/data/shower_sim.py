"""Parametrised calorimeter showers in the spirit of GFlash, deposited into CaloChallenge voxels.

Physics: G. Grindhammer, M. Rudowicz, S. Peters, NIM A290 (1990) 469 and G. Grindhammer,
S. Peters, hep-ex/0001020 ("GP" below); constants as in Geant4's GVFlashHomoShowerTuning.
Per shower: correlated lognormal (T, alpha) of a gamma longitudinal profile (GP eqs. for
<ln T_hom>, <ln alpha_hom>, sigma, rho), a deposited energy smeared by the constant term b, then
N_spot spots sharing it with Gamma(k)-distributed weights (a Dirichlet split) at depth
t ~ Gamma(alpha, beta) and radius r from the core+tail profile
f(r) = p 2r R_C^2/(r^2+R_C^2)^2 + (1-p) 2r R_T^2/(r^2+R_T^2)^2 (r in Moliere radii), binned into
voxels; each voxel's deposit mu then fluctuates as a sampling calorimeter's active-layer signal,
Gamma(mu / theta, theta) with theta = f_S a^2 GeV, so the stochastic term a/sqrt(E) of the
resolution is the sum of the voxels' sampling fluctuations; last a per-voxel readout threshold.
Deposits are continuous (no lattice of spot energies). Pure numpy; docs/showers.md has details.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from itertools import pairwise

import numpy as np

from farm.errors import FarmError
from farm.geometry import CaloGeometry, CellGeometry

# Bumped when the same seed gives different showers: 2 = continuous deposits (Dirichlet spot
# energies, per-voxel sampling fluctuations); 1 = equal-energy spots (a lattice of deposits).
SIMULATOR_VERSION = 2

# DS1 incident energies: 2^8 .. 2^22 MeV (256 MeV .. 4.19 TeV).
DS1_ENERGIES = tuple(float(2**k) for k in range(8, 23))
GeV = 1000.0  # MeV


@dataclass(frozen=True)
class ShowerSimParams:
    """Constants of the simulator; defaults are an EM shower in a Si-W (DS2/DS3-like) calorimeter.

    Depths are in `depth_unit` (X0 for EM, lambda_I for hadrons); radii in units of `R_M` mm.
    y = E / E_c. Longitudinal constants follow GP (hep-ex/0001020) for homogeneous media.
    """

    # material and units
    Z: float = 74.0  # effective atomic number (W)
    E_c: float = 8.0  # critical energy, MeV (y = E / E_c)
    R_M: float = 11.3  # effective Moliere radius, mm (W 9.3 mm over a 1.4/1.7 W fraction)
    depth_unit: str = "X0"
    # longitudinal profile: <ln T> = ln(t1 + t2 ln y), sigma(ln T) = 1/(s1 + s2 ln y)
    t1: float = -0.812
    t2: float = 1.0
    s_T1: float = -1.4
    s_T2: float = 1.26
    # <ln alpha> = ln(a1 + (a2 + a3/Z) ln y), sigma(ln alpha) = 1/(s1 + s2 ln y)
    a1: float = 0.81
    a2: float = 0.458
    a3: float = 2.26
    s_a1: float = -0.58
    s_a2: float = 0.86
    # correlation rho(ln T, ln alpha) = r1 + r2 ln y
    rho1: float = 0.705
    rho2: float = -0.023
    # floor on beta = (alpha-1)/T per depth unit: alpha >= 1 + beta_min T keeps the late tail
    # exponential where the GP fluctuations (fitted for large y) would push alpha towards 1
    beta_min: float = 0.35
    # radial core R_C = z1 + z2 tau, z1 = c1 + c2 ln(E/GeV), z2 = c3 + c4 Z
    rc1: float = 0.0251
    rc2: float = 0.00319
    rc3: float = 0.1162
    rc4: float = -0.000381
    # radial tail R_T = k1 (exp(k3 (tau-k2)) + exp(k4 (tau-k2))), k1 = t1 + t2 Z, k4 = t5 + t6 ln E
    rt1: float = 0.659
    rt2: float = -0.00309
    rt3: float = 0.645
    rt4: float = -2.59
    rt5: float = 0.3585
    rt6: float = 0.0412
    # core weight p = p1 exp((p2-tau)/p3 - exp((p2-tau)/p3)), p1 = c1 + c2 Z, p2 = c3 + c4 Z,
    # p3 = c5 + c6 ln(E/GeV)
    wc1: float = 2.632
    wc2: float = -0.00094
    wc3: float = 0.401
    wc4: float = 0.00187
    wc5: float = 1.313
    wc6: float = -0.0686
    # spots: N_spot = clip(n1 (E/GeV)^n2, n_min, n_max); GFlash uses n1 = 93 ln Z and no cap
    spot_n1: float = 100.0
    spot_n2: float = 0.876
    spot_min: int = 50
    spot_max: int = 2000
    # spot energies: weights w ~ Gamma(k, 1), E_j = E_dep w_j / sum(w); k = inf: equal spots (GFlash)
    spot_shape: float = 4.0
    # energy response: <E_vis> = f_S E; sigma/E = a/sqrt(E/GeV) (+) b
    sampling_fraction: float = 1.0
    res_a: float = 0.17
    res_b: float = 0.01
    # part of a from per-voxel sampling fluctuations (None: all of a); the rest of a and b are
    # per-shower fluctuations of the deposited energy
    res_a_sampling: float | None = None
    # readout threshold per voxel, MeV (after the sum over spots)
    threshold: float = 0.015
    # (t_start, t_end) in depth_unit per active layer, in order; an inf end = tail catcher
    layer_depths: tuple[tuple[float, float], ...] = ()


def _equal_layers(n: int, thickness: float) -> tuple[tuple[float, float], ...]:
    return tuple((i * thickness, (i + 1) * thickness) for i in range(n))


# DS2/DS3: 45 layers of 1.4 mm W + 0.3 mm Si: X0_eff = 4.22 mm, so 0.403 X0 per layer, 18.1 X0.
SIW_LAYER_X0 = 1.7 / (1.0 / (1.4 / 1.7 / 3.5 + 0.3 / 1.7 / 93.7))
# DS1 photons (ATLAS LAr-Pb barrel, eta ~ 0.2): presampler behind ~2 X0 of dead material,
# strips 4.3 X0, middle 16 X0, back 2 X0; layer 12 (hadronic) catches whatever is left.
DS1_PHOTON_DEPTHS = ((0.0, 2.0), (2.0, 6.3), (6.3, 22.3), (22.3, 24.3), (24.3, math.inf))
# DS1 pions, in lambda_I: EM layers (1.2 lambda in all), then three hadronic layers 1.5/4.1/1.8.
DS1_PION_DEPTHS = (
    (0.0, 0.1),
    (0.1, 0.3),
    (0.3, 1.1),
    (1.1, 1.2),
    (1.2, 2.7),
    (2.7, 6.8),
    (6.8, 8.6),
)


def default_params(geometry: CaloGeometry) -> ShowerSimParams:
    """Documented defaults per geometry (DS1 photons/pions, DS2/DS3, others as Si-W layers)."""
    if isinstance(geometry, CellGeometry):
        return cell_params(geometry)
    n = len(geometry.active_layers)
    if geometry.name == "ds1-photons":
        # Pb-dominated LAr sampling calorimeter, stored energy = total deposited (f_S = 1)
        return ShowerSimParams(
            Z=82.0,
            E_c=10.0,
            R_M=40.0,
            res_a=0.10,
            res_b=0.007,
            threshold=1.0,
            layer_depths=DS1_PHOTON_DEPTHS,
        )
    if geometry.name == "ds1-pions" or geometry.particle == "pion":
        return pion_params(n)
    if geometry.name in ("ds2", "ds3") or n == 45:
        return ShowerSimParams(layer_depths=_equal_layers(n, SIW_LAYER_X0))
    return ShowerSimParams(layer_depths=_equal_layers(n, SIW_LAYER_X0))


def cell_params(geometry: CellGeometry) -> ShowerSimParams:
    """ILD-ECAL-like Si-W: raw silicon signal (f_S = 1.35%), 16.6%/sqrt(E) (+) 1.1%, 0.5 MIP cut.

    R_M = 17 mm is tungsten's 9.3 mm diluted by the layer pitch (sensor, PCB, air gaps); the
    threshold 0.075 MeV is half the most probable MIP signal in 0.5 mm of silicon (ILD IDR,
    arXiv:2003.01116); more spots (n_max = 6000) because 5 x 5 mm cells resolve them.
    """
    edges = geometry.depth_edges
    return ShowerSimParams(
        Z=74.0,
        E_c=8.0,
        R_M=17.0,
        sampling_fraction=0.0135,
        res_a=0.166,
        res_b=0.011,
        threshold=0.075,
        spot_max=6000,
        layer_depths=tuple(pairwise(edges)),
    )


def pion_params(n_layers: int) -> ShowerSimParams:
    """Crude hadronic variant: depths in lambda_I, t_max = 0.7 + 0.2 ln(E/GeV) (PDG)."""
    depths = DS1_PION_DEPTHS if n_layers == 7 else _equal_layers(n_layers, 8.6 / n_layers)
    return ShowerSimParams(
        Z=26.0,
        E_c=1000.0,  # y = E/GeV, so ln y = ln(E/GeV)
        R_M=80.0,  # lateral unit, mm
        depth_unit="lambda_I",
        t1=0.7,
        t2=0.2,
        s_T1=2.5,
        s_T2=0.2,
        a1=1.7,
        a2=0.2,
        a3=0.0,
        s_a1=2.0,
        s_a2=0.2,
        rho1=0.5,
        rho2=0.0,
        beta_min=0.5,
        sampling_fraction=0.85,  # non-compensation: pion response at the EM scale
        res_a=0.50,
        res_b=0.03,
        # the rest of the 50% is intrinsic hadronic fluctuation, correlated over the shower
        res_a_sampling=0.25,
        threshold=1.0,
        layer_depths=depths,
    )


def energy_range(geometry: CaloGeometry) -> tuple[float, float]:
    """Allowed incident energies in MeV: DS1 256 MeV..4.19 TeV, cells their own, others 1 GeV..1 TeV."""
    if isinstance(geometry, CellGeometry):
        return geometry.energy_range
    if geometry.name.startswith("ds1"):
        return DS1_ENERGIES[0], DS1_ENERGIES[-1]
    return 1.0 * GeV, 1000.0 * GeV


def incident_energies(geometry: CaloGeometry, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) incident energies, MeV: DS1 15 powers of 2, cells uniform (CaloClouds), else log-uniform."""
    if isinstance(geometry, CellGeometry):
        return rng.uniform(*geometry.energy_range, size=n)
    if geometry.name.startswith("ds1"):
        return np.asarray(DS1_ENERGIES)[rng.integers(0, len(DS1_ENERGIES), size=n)]
    lo, hi = energy_range(geometry)
    return np.exp(rng.uniform(math.log(lo), math.log(hi), size=n))


def check_energies(geometry: CaloGeometry, e_inc: np.ndarray) -> np.ndarray:
    """Validate incident energies (MeV) against energy_range; raise FarmError naming the value."""
    e = np.asarray(e_inc, dtype=np.float64).reshape(-1)
    lo, hi = energy_range(geometry)
    bad = ~np.isfinite(e) | (e < lo * (1 - 1e-9)) | (e > hi * (1 + 1e-9))
    if bad.any():
        raise FarmError(
            f"incident energy {e[bad][0]:g} MeV is outside the range of geometry "
            f"{geometry.name!r}: allowed {lo:g} to {hi:g} MeV"
        )
    return e


@dataclass(frozen=True)
class Profiles:
    """Per-shower parameters: T (depth of max), alpha, beta, deposited energy E_vis (MeV), n_spot.

    E_vis is the energy the spots share, before the per-voxel sampling fluctuations.
    """

    T: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    alpha_mean: np.ndarray
    e_vis: np.ndarray
    n_spot: np.ndarray


def mean_log_parameters(e_inc: np.ndarray, p: ShowerSimParams) -> tuple[np.ndarray, ...]:
    """GP homogeneous-media means and spreads: (<ln T>, <ln alpha>, sigma_lnT, sigma_lna, rho)."""
    ln_y = np.log(np.asarray(e_inc, dtype=np.float64) / p.E_c)
    mu_T = np.log(np.maximum(p.t1 + p.t2 * ln_y, 0.05))
    mu_a = np.log(np.maximum(p.a1 + (p.a2 + p.a3 / p.Z) * ln_y, 1.05))
    sig_T = 1.0 / np.maximum(p.s_T1 + p.s_T2 * ln_y, 1.0)
    sig_a = 1.0 / np.maximum(p.s_a1 + p.s_a2 * ln_y, 1.0)
    rho = np.clip(p.rho1 + p.rho2 * ln_y, -0.99, 0.99)
    return mu_T, mu_a, sig_T, sig_a, rho


def sampling_term(p: ShowerSimParams) -> float:
    """a_S, the part of the stochastic term a carried by per-voxel sampling fluctuations."""
    a_s = p.res_a if p.res_a_sampling is None else p.res_a_sampling
    if not 0.0 <= a_s <= p.res_a:
        raise FarmError(
            f"shower simulator: res_a_sampling = {a_s} must lie between 0 and res_a = {p.res_a}"
        )
    return a_s


def shower_resolution(e_inc: np.ndarray, p: ShowerSimParams) -> np.ndarray:
    """Relative per-shower spread of E_vis: sqrt((a^2 - a_S^2)/(E/GeV) + b^2)."""
    a_shower2 = p.res_a**2 - sampling_term(p) ** 2
    return np.sqrt(a_shower2 / (np.asarray(e_inc, dtype=np.float64) / GeV) + p.res_b**2)


def sample_profiles(e_inc: np.ndarray, rng: np.random.Generator, p: ShowerSimParams) -> Profiles:
    """Draw correlated (ln T, ln alpha) per shower (GP), the deposited energy and the spot count."""
    e = np.asarray(e_inc, dtype=np.float64)
    n = e.shape[0]
    mu_T, mu_a, sig_T, sig_a, rho = mean_log_parameters(e, p)
    z = rng.standard_normal((3, n))
    c1, c2 = np.sqrt((1 + rho) / 2), np.sqrt((1 - rho) / 2)
    T = np.exp(mu_T + sig_T * (c1 * z[0] + c2 * z[1]))
    alpha = np.maximum(np.exp(mu_a + sig_a * (c1 * z[0] - c2 * z[1])), 1.0 + p.beta_min * T)
    beta = (alpha - 1.0) / T
    e_gev = e / GeV
    e_vis = p.sampling_fraction * e * np.maximum(1.0 + shower_resolution(e, p) * z[2], 0.0)
    n_spot = np.clip(np.rint(p.spot_n1 * e_gev**p.spot_n2), p.spot_min, p.spot_max).astype(np.int64)
    return Profiles(T, alpha, beta, np.exp(mu_a), e_vis, n_spot)


def radial_parameters(
    e_inc: np.ndarray, tau: np.ndarray, p: ShowerSimParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GP radial profile at depth tau = t/T: (R_C, R_T, p_core), radii in Moliere radii."""
    z1, k4, p3 = _radial_energy_terms(np.asarray(e_inc, dtype=np.float64), p)
    return _radial_at(z1, k4, p3, np.asarray(tau), p)


def _radial_energy_terms(e: np.ndarray, p: ShowerSimParams) -> tuple[np.ndarray, ...]:
    """Energy-dependent radial coefficients z1, k4, p3 (GP), one value per shower."""
    ln_e = np.log(e / GeV)
    return p.rc1 + p.rc2 * ln_e, p.rt5 + p.rt6 * ln_e, p.wc5 + p.wc6 * ln_e


def _radial_at(
    z1: np.ndarray, k4: np.ndarray, p3: np.ndarray, tau: np.ndarray, p: ShowerSimParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """R_C = z1 + z2 tau, R_T = k1 (e^{k3(tau-k2)} + e^{k4(tau-k2)}), p = p1 e^{x - e^x}."""
    dt = tau - np.float32(p.rt3)
    R_C = z1 + np.float32(p.rc3 + p.rc4 * p.Z) * tau
    R_T = np.float32(p.rt1 + p.rt2 * p.Z) * (np.exp(np.float32(p.rt4) * dt) + np.exp(k4 * dt))
    x = (np.float32(p.wc3 + p.wc4 * p.Z) - tau) / p3
    w_core = np.float32(p.wc1 + p.wc2 * p.Z) * np.exp(x - np.exp(np.minimum(x, 60)))
    return R_C, R_T, w_core


@dataclass(frozen=True)
class Spots:
    """Energy spots of a batch of showers: owner shower, depth t, radius r (R_M), angle, energy."""

    shower: np.ndarray
    t: np.ndarray
    r: np.ndarray
    phi: np.ndarray
    energy: np.ndarray  # (n_spots,) float64 MeV; a shower's spots sum to its E_vis


def spot_energies(
    owner: np.ndarray, e_vis: np.ndarray, rng: np.random.Generator, shape: float
) -> np.ndarray:
    """Split each shower's E_vis over its spots: E_j = E_vis w_j / sum(w), w_j ~ Gamma(k, 1).

    The fractions are Dirichlet(k, ..., k): mean 1/N, variance (N - 1)/(N^2 (N k + 1)); the sum
    is E_vis exactly, so the split changes the voxels' fluctuations but not the energy response.
    k = inf gives GFlash's equal spots, E_vis / N.
    """
    if math.isinf(shape):
        n_spot = np.bincount(owner, minlength=e_vis.shape[0])
        return (e_vis / np.maximum(n_spot, 1))[owner]
    w = rng.standard_gamma(np.float32(shape), size=owner.shape[0], dtype=np.float32)
    total = np.bincount(owner, weights=w, minlength=e_vis.shape[0])
    return w * (e_vis / np.where(total > 0, total, 1.0))[owner]


def sample_spots(e_inc: np.ndarray, rng: np.random.Generator, p: ShowerSimParams) -> Spots:
    """Draw spots: t ~ Gamma(alpha, beta), r ~ core/tail mixture at tau(t), phi uniform (GP).

    Their energies come from spot_energies. Spot-level arithmetic is float32 (it only places spots); energies are float64.
    """
    e = np.asarray(e_inc, dtype=np.float64)
    prof = sample_profiles(e, rng, p)
    owner = np.repeat(np.arange(e.shape[0]), prof.n_spot)
    m = owner.shape[0]
    f32 = np.float32
    t = rng.standard_gamma(prof.alpha.astype(f32)[owner], dtype=f32) / prof.beta.astype(f32)[owner]
    # tau as GFlash ComputeTau: depth over this shower's mean depth, scaled to the average shape
    a_bar = prof.alpha_mean
    tau_scale = (prof.beta / prof.alpha * a_bar / np.maximum(a_bar - 1.0, 1e-3)).astype(f32)
    tau = t * tau_scale[owner]
    z1, k4, p3 = (x.astype(f32)[owner] for x in _radial_energy_terms(e, p))
    R_C, R_T, w_core = _radial_at(z1, k4, p3, tau, p)
    u = rng.random((3, m), dtype=f32)
    R = np.where(u[0] < w_core, R_C, R_T)
    r = R * np.sqrt(u[1] / (f32(1.0) - u[1]))
    phi = (f32(2.0) * u[2] - f32(1.0)) * f32(np.pi)
    return Spots(owner, t, r, phi, spot_energies(owner, prof.e_vis, rng, p.spot_shape))


class _EdgeLookup:
    """Exact bin index for values against several sorted edge arrays, via a uniform-grid table.

    The grid step of a row is its narrowest bin, so each grid cell holds at most one edge and one
    comparison against the next edge (and the current one) corrects the table's guess.
    """

    def __init__(self, rows: list[np.ndarray]):
        self.step = np.empty(len(rows))
        self.table_start = np.empty(len(rows), dtype=np.int64)
        self.edge_start = np.empty(len(rows), dtype=np.int64)
        self.n_bins = np.array([len(r) - 1 for r in rows], dtype=np.int64)
        self.lo = np.array([r[0] for r in rows])
        self.hi = np.array([r[-1] for r in rows])
        tables, edges, nt, ne = [], [], 0, 0
        for k, row in enumerate(rows):
            row = np.asarray(row, dtype=np.float64)
            finite = row[np.isfinite(row)]
            step = float(np.min(np.diff(finite))) if len(finite) > 1 else 1.0
            n_cells = int(np.ceil((finite[-1] - row[0]) / step)) + 1
            grid = row[0] + step * np.arange(n_cells)
            tables.append(np.clip(np.searchsorted(row, grid, side="right") - 1, 0, len(row) - 2))
            edges.append(row)
            self.step[k], self.table_start[k], self.edge_start[k] = step, nt, ne
            nt, ne = nt + n_cells, ne + len(row)
        self.n_cells = np.array([len(t) for t in tables], dtype=np.int64)
        self.table = np.concatenate(tables)
        self.edges = np.concatenate(edges)

    def __call__(self, x: np.ndarray, row: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
        """(bin index, inside) of each x in its row's edges; index is 0 where not inside."""
        x = np.asarray(x, dtype=np.float64)
        inside = (x >= self.lo[row]) & (x < self.hi[row])
        cell = ((x - self.lo[row]) / self.step[row]).astype(np.int64)
        cell = np.clip(cell, 0, self.n_cells[row] - 1)
        i = self.table[self.table_start[row] + cell]
        i += x >= self.edges[self.edge_start[row] + i + 1]
        i -= x < self.edges[self.edge_start[row] + i]
        i = np.clip(i, 0, self.n_bins[row] - 1)
        return np.where(inside, i, 0), inside


@dataclass(frozen=True)
class _Binning:
    """Lookups from a spot's (t, r, phi) to a flat voxel index of the geometry."""

    depth: _EdgeLookup
    radial: _EdgeLookup
    n_r: np.ndarray
    n_alpha: np.ndarray
    offset: np.ndarray


def _binning(geometry: CaloGeometry, p: ShowerSimParams) -> _Binning:
    layers = geometry.active_layers
    if len(p.layer_depths) != len(layers):
        raise FarmError(
            f"shower simulator: {len(p.layer_depths)} layer depth ranges for geometry "
            f"{geometry.name!r} with {len(layers)} active layers; give one (t_start, t_end) each"
        )
    lo = np.array([d[0] for d in p.layer_depths], dtype=np.float64)
    hi = np.array([d[1] for d in p.layer_depths], dtype=np.float64)
    if np.any(hi <= lo) or np.any(lo[1:] != hi[:-1]):
        raise FarmError(
            f"shower simulator: layer depths {p.layer_depths} must be contiguous and increasing"
        )
    return _Binning(
        depth=_EdgeLookup([np.append(lo, hi[-1])]),
        radial=_EdgeLookup([np.asarray(layer.r_edges) for layer in layers]),
        n_r=np.array([layer.n_radial for layer in layers]),
        n_alpha=np.array([layer.n_alpha for layer in layers]),
        offset=np.array([geometry.layer_slices[layer.index].start for layer in layers]),
    )


def voxel_index(spots: Spots, b: _Binning, R_M: float) -> np.ndarray:
    """Flat voxel index of each spot, -1 where it leaves the geometry (behind it or outside)."""
    k, in_depth = b.depth(spots.t, 0)
    i_r, in_r = b.radial(spots.r * np.float32(R_M), k)
    n_a = b.n_alpha[k]
    i_a = np.minimum(((spots.phi + np.pi) * (n_a / (2 * np.pi))).astype(np.int64), n_a - 1)
    idx = b.offset[k] + i_a * b.n_r[k] + i_r
    return np.where(in_depth & in_r, idx, -1)


def deposit(spots: Spots, n_showers: int, geometry: CaloGeometry, p: ShowerSimParams) -> np.ndarray:
    """Sum spot energies into (n_showers, n_voxels) float64 MeV (one weighted np.bincount)."""
    V = geometry.n_voxels
    idx = voxel_index(spots, _binning(geometry, p), p.R_M)
    keep = idx >= 0
    flat = spots.shower[keep] * V + idx[keep]
    dep = np.bincount(flat, weights=spots.energy[keep], minlength=n_showers * V)
    return dep.reshape(n_showers, V)


def sampling_scale(p: ShowerSimParams) -> float:
    """The sampling scale theta = f_S a_S^2 GeV in MeV: the signal's Var = theta mu."""
    return p.sampling_fraction * sampling_term(p) ** 2 * GeV


def sample_voxel_signal(deposits: np.ndarray, rng: np.random.Generator, theta: float) -> np.ndarray:
    """Active-layer signal of each voxel: Gamma(mu / theta, theta) around its deposit mu (MeV).

    Mean mu, variance theta mu: the sampling fluctuation of a cell (U. Amaldi, Phys. Scripta 23
    (1981) 409; R. Wigmans, Calorimetry, OUP), continuous and >= 0. Gammas with one scale add up
    to a Gamma, so a shower's total has variance theta E exactly: sigma/E = a_S/sqrt(E/GeV) for
    theta = f_S a_S^2 GeV, however the energy is shared among voxels. theta = 0: no fluctuation.
    """
    out = np.array(deposits, dtype=np.float64, copy=True)
    if theta <= 0.0:
        return out
    hit = out > 0.0
    out[hit] = rng.standard_gamma(out[hit] / theta) * theta
    return out


def simulate_showers(
    geometry: CaloGeometry,
    e_inc: np.ndarray,
    rng: np.random.Generator,
    params: ShowerSimParams | None = None,
) -> np.ndarray:
    """(n, n_voxels) float32 MeV showers for incident energies e_inc (MeV), already thresholded."""
    p = params or default_params(geometry)
    e = check_energies(geometry, e_inc)
    theta = sampling_scale(p)
    out = np.empty((e.shape[0], geometry.n_voxels), dtype=np.float32)
    # chunk so the dense (chunk, V) float64 accumulator stays ~32 MB
    chunk = max(1, 4_000_000 // geometry.n_voxels)
    for s in range(0, e.shape[0], chunk):
        part = e[s : s + chunk]
        mean_dep = deposit(sample_spots(part, rng, p), part.shape[0], geometry, p).reshape(-1)
        hit = np.flatnonzero(mean_dep)  # sparse: most voxels of a chunk are empty
        signal = sample_voxel_signal(mean_dep[hit], rng, theta)
        signal[signal < p.threshold] = 0.0
        block = out[s : s + chunk].reshape(-1)
        block[:] = 0.0
        block[hit] = signal
    return out


def with_params(geometry: CaloGeometry, **changes) -> ShowerSimParams:
    """The geometry's default parameters with some fields changed."""
    return replace(default_params(geometry), **changes)
