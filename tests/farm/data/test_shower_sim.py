"""Physics checks of the GFlash-like shower simulator (Grindhammer-Peters parametrisation)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from farm.data import shower_sim as ss
from farm.errors import FarmError
from farm.geometry import load_geometry


@pytest.fixture(scope="module")
def ds1():
    return load_geometry("ds1-photons")


@pytest.fixture(scope="module")
def ds2():
    return load_geometry("ds2")


def test_shapes_dtype_threshold_and_energy_grid(ds1, ds2):
    rng = np.random.default_rng(0)
    e = ss.incident_energies(ds1, 500, rng)
    assert set(np.unique(e)) <= set(ss.DS1_ENERGIES) and len(np.unique(e)) == 15
    x = ss.simulate_showers(ds1, e, rng)
    assert x.shape == (500, 368) and x.dtype == np.float32
    assert (x[x > 0] >= 1.0).all()  # 1 MeV readout threshold in DS1
    e2 = ss.incident_energies(ds2, 2000, rng)
    assert e2.min() >= 1e3 and e2.max() <= 1e6
    # log-uniform: the median sits near the geometric mean sqrt(1 GeV * 1 TeV) = 31.6 GeV
    assert 25e3 < np.median(e2) < 40e3


def test_same_seed_bit_identical(ds1):
    e = np.array([256.0, 65536.0, 4194304.0] * 10)
    a = ss.simulate_showers(ds1, e, np.random.default_rng(7))
    b = ss.simulate_showers(ds1, e, np.random.default_rng(7))
    c = ss.simulate_showers(ds1, e, np.random.default_rng(8))
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, c)


def test_energies_out_of_range_raise(ds1, ds2):
    rng = np.random.default_rng(0)
    with pytest.raises(FarmError, match=r"100 MeV.*'ds1-photons'.*256"):
        ss.simulate_showers(ds1, np.array([100.0]), rng)
    with pytest.raises(FarmError, match=r"2e\+06 MeV.*1000 to 1e\+06"):
        ss.simulate_showers(ds2, np.array([5e4, 2e6]), rng)
    with pytest.raises(FarmError, match="nan"):
        ss.simulate_showers(ds2, np.array([np.nan]), rng)
    assert ss.energy_range(ds1) == (256.0, 4194304.0)


def _mean_depth_profile(p: ss.ShowerSimParams, E: float, n: int, rng) -> tuple[float, float]:
    spots = ss.sample_spots(np.full(n, E), rng, p)
    hist, edges = np.histogram(spots.t, bins=np.arange(0.0, 40.0, 0.25))
    return float(edges[hist.argmax()] + 0.125), float(np.mean(spots.t))


def test_longitudinal_peak_follows_tmax_and_grows_like_log_e(ds2):
    p = ss.default_params(ds2)
    rng = np.random.default_rng(1)
    peaks, means = [], []
    energies = [2e3, 2e4, 2e5]
    for E in energies:
        peak, mean = _mean_depth_profile(p, E, 400, rng)
        T = np.log(E / p.E_c) + p.t1  # GP: T_hom = ln y - 0.812 (median of the lognormal)
        assert abs(peak - T) < 0.12 * T + 0.3, (E, peak, T)
        peaks.append(peak)
        means.append(mean)
    # t_max ~ ln E + const: a decade of energy moves the maximum by ~ln 10 = 2.3 X0
    steps = np.diff(peaks)
    assert np.all(steps > 0) and np.allclose(steps, np.log(10.0), atol=0.6), steps
    assert np.all(np.diff(means) > 0)
    # the binned showers agree: the mean layer profile of DS2 peaks deeper at higher energy
    peak_layer = []
    for E in (2e3, 2e5):
        x = ss.simulate_showers(ds2, np.full(300, E), rng)
        prof = x.reshape(300, 45, -1).sum(axis=(0, 2))
        peak_layer.append(int(prof.argmax()))
        expected = (np.log(E / p.E_c) + p.t1) / ss.SIW_LAYER_X0
        assert abs(peak_layer[-1] + 0.5 - expected) < 3.5, (E, peak_layer[-1], expected)
    assert peak_layer[1] > peak_layer[0] + 8


def test_resolution_falls_like_a_over_sqrt_e(ds1):
    p = ss.default_params(ds1)
    rng = np.random.default_rng(2)
    rel = {}
    for E in (1024.0, 16384.0, 262144.0):
        tot = ss.simulate_showers(ds1, np.full(3000, E), rng).sum(axis=1)
        rel[E] = tot.std() / tot.mean()
        expected = np.hypot(p.res_a / np.sqrt(E / 1e3), p.res_b)
        assert abs(rel[E] / expected - 1) < 0.1, (E, rel[E], expected)
    # the stochastic term is the same whether it comes from the voxels' sampling (default) or,
    # as before continuous deposits, from one Gaussian factor per shower
    per_shower = ss.with_params(ds1, res_a_sampling=0.0)
    tot = ss.simulate_showers(ds1, np.full(3000, 16384.0), rng, per_shower).sum(axis=1)
    assert abs(tot.std() / tot.mean() / rel[16384.0] - 1) < 0.1
    # fit sigma/E = a/sqrt(E) (+) b over the three points
    E_gev = np.array(list(rel)) / 1e3
    A = np.column_stack([1 / E_gev, np.ones_like(E_gev)])
    a2, b2 = np.linalg.lstsq(A, np.array(list(rel.values())) ** 2, rcond=None)[0]
    assert abs(np.sqrt(a2) - p.res_a) < 0.015 and abs(np.sqrt(max(b2, 0)) - p.res_b) < 0.004


def test_radial_containment_about_ninety_percent_in_one_moliere_radius(ds2):
    p = ss.default_params(ds2)
    rng = np.random.default_rng(3)
    for E in (2e3, 5e4, 5e5):
        spots = ss.sample_spots(np.full(200, E), rng, p)
        # energy fraction within r (in Moliere radii)
        inside = np.average(spots.r < 1.0, weights=spots.energy)
        assert 0.85 < inside < 0.95, (E, inside)
        assert np.average(spots.r < 2.0, weights=spots.energy) > 0.94
    # the analytic core/tail CDF, r^2/(r^2+R^2), reproduces the sampled fraction
    e = np.full(1, 5e4)
    R_C, R_T, w = ss.radial_parameters(e, np.array([1.0]), p)
    cdf = w * 1 / (1 + R_C**2) + (1 - w) * 1 / (1 + R_T**2)
    assert 0.8 < float(cdf[0]) < 0.97


def test_mean_deposit_equals_sampling_fraction(ds1):
    rng = np.random.default_rng(4)
    p = ss.default_params(ds1)
    for E in (16384.0, 262144.0):
        ratio = ss.simulate_showers(ds1, np.full(2000, E), rng).sum(axis=1) / E
        assert abs(ratio.mean() / p.sampling_fraction - 1) < 0.01, (E, ratio.mean())
    # a documented sampling fraction other than 1 scales the visible energy
    half = ss.with_params(ds1, sampling_fraction=0.5)
    ratio = ss.simulate_showers(ds1, np.full(2000, 65536.0), rng, half).sum(axis=1) / 65536.0
    assert abs(ratio.mean() / 0.5 - 1) < 0.01


def test_spot_count_grows_with_energy_and_is_capped(ds1):
    p = ss.default_params(ds1)
    prof = ss.sample_profiles(
        np.array([256.0, 1024.0, 4096.0, 4194304.0]), np.random.default_rng(0), p
    )
    n = prof.n_spot
    assert n[0] < n[1] < n[2] and n[3] == p.spot_max
    assert abs(n[2] / n[1] - 4**p.spot_n2) < 0.05


def test_all_geometries_run_and_conserve_layers():
    rng = np.random.default_rng(5)
    for name in ("ds1-pions", "ds3"):
        g = load_geometry(name)
        x = ss.simulate_showers(g, ss.incident_energies(g, 20, rng), rng)
        assert x.shape == (20, g.n_voxels) and np.isfinite(x).all() and (x >= 0).all()
        assert (x.sum(axis=1) > 0).all()
    with pytest.raises(FarmError, match="layer depth ranges"):
        g = load_geometry("ds2")
        ss.simulate_showers(g, np.array([1e4]), rng, ss.with_params(g, layer_depths=((0, 1),)))


def _near_integer_fraction(showers: np.ndarray, spot_energy: float) -> float:
    """Fraction of the voxels of 0.5 to 5.5 spot energies lying within 0.1 of a whole number."""
    ratio = showers[showers > 0] / spot_energy
    ratio = ratio[(ratio > 0.5) & (ratio < 5.5)]
    return float(np.mean(np.abs(ratio - np.rint(ratio)) < 0.1))


def test_voxel_energies_are_not_on_a_lattice(ds1):
    p = ss.default_params(ds1)
    lattice = ss.with_params(ds1, spot_shape=math.inf, res_a_sampling=0.0)  # equal spots only
    for E in (1024.0, 65536.0, 4194304.0):
        e = np.full(100, E)
        spot_energy = E / ss.sample_profiles(e[:1], np.random.default_rng(0), p).n_spot[0]
        x = ss.simulate_showers(ds1, e, np.random.default_rng(1))
        # continuous voxel energies in units of the mean spot energy: fractional parts are
        # uniform, so 20% lie within 0.1 of an integer; a lattice (the old model) puts most there
        assert abs(_near_integer_fraction(x, spot_energy) - 0.2) < 0.03, E
        old = ss.simulate_showers(ds1, e, np.random.default_rng(1), lattice)
        assert _near_integer_fraction(old, spot_energy) > 0.5, E
        # no two voxels of a shower share an energy (a lattice repeats its multiples)
        for row in x[:10]:
            hit = row[row > 0]
            assert len(np.unique(hit)) == len(hit)


def test_spot_energies_are_a_dirichlet_split_of_the_deposit(ds1):
    p = ss.default_params(ds1)
    e = np.full(40, 4194304.0)
    owner = np.repeat(np.arange(40), p.spot_max)
    e_vis = np.linspace(3.9e6, 4.3e6, 40)
    energy = ss.spot_energies(owner, e_vis, np.random.default_rng(0), p.spot_shape)
    assert np.allclose(np.bincount(owner, weights=energy), e_vis, rtol=1e-9)
    # N E_j / E_vis has mean 1 and variance (N - 1) / (N k + 1) (Dirichlet(k, ..., k))
    scaled = energy * p.spot_max / e_vis[owner]
    n, k = p.spot_max, p.spot_shape
    assert scaled.mean() == pytest.approx(1.0, abs=1e-9)
    assert scaled.var() == pytest.approx((n - 1) / (n * k + 1), rel=0.03)
    equal = ss.spot_energies(owner, e_vis, np.random.default_rng(0), math.inf)
    assert np.allclose(equal, (e_vis / n)[owner])
    # the split keeps each shower's spots summing to its deposited energy
    spots = ss.sample_spots(e, np.random.default_rng(1), p)
    prof = ss.sample_profiles(e, np.random.default_rng(1), p)
    assert np.allclose(np.bincount(spots.shower, weights=spots.energy), prof.e_vis)


def test_voxel_sampling_fluctuation_has_mean_mu_and_variance_theta_mu(ds1, ds2):
    assert ss.sampling_scale(ss.default_params(ds1)) == pytest.approx(0.10**2 * 1000.0)
    assert ss.sampling_scale(ss.default_params(ds2)) == pytest.approx(0.17**2 * 1000.0)
    pions = ss.default_params(load_geometry("ds1-pions"))
    assert ss.sampling_scale(pions) == pytest.approx(0.85 * 0.25**2 * 1000.0)
    rng = np.random.default_rng(6)
    theta = 10.0
    signal = ss.sample_voxel_signal(np.full(200_000, 50.0), rng, theta)
    assert signal.min() >= 0.0
    assert signal.mean() == pytest.approx(50.0, rel=0.005)  # sd of the mean: 0.1%
    assert signal.var() == pytest.approx(theta * 50.0, rel=0.02)  # 500 MeV^2
    # the sum over a shower's voxels has variance theta * (total deposit), however it is shared
    mu = np.array([0.01, 0.3, 2.0, 40.0, 700.0])
    totals = ss.sample_voxel_signal(np.tile(mu, (100_000, 1)), rng, theta).sum(axis=1)
    assert totals.mean() == pytest.approx(mu.sum(), rel=0.002)
    assert totals.var() == pytest.approx(theta * mu.sum(), rel=0.02)
    empty = np.array([[0.0, 5.0]])
    assert ss.sample_voxel_signal(empty, rng, theta)[0, 0] == 0.0
    assert np.array_equal(ss.sample_voxel_signal(empty, rng, 0.0), empty)


def test_stochastic_term_splits_into_voxel_sampling_and_per_shower_parts(ds1):
    p = ss.default_params(ds1)  # EM: all of a is sampling, the per-shower spread is b
    e = np.array([256.0, 65536.0])
    assert np.allclose(ss.shower_resolution(e, p), p.res_b)
    pions = ss.default_params(load_geometry("ds1-pions"))
    expected = np.sqrt((0.50**2 - 0.25**2) / (e / 1e3) + 0.03**2)
    assert np.allclose(ss.shower_resolution(e, pions), expected)
    with pytest.raises(FarmError, match="res_a_sampling"):
        ss.sampling_scale(ss.with_params(ds1, res_a_sampling=0.2))
