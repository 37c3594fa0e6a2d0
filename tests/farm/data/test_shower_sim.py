"""Physics checks of the GFlash-like shower simulator (Grindhammer-Peters parametrisation)."""

from __future__ import annotations

import numpy as np
import pytest

from farm.data import shower_sim as ss
from farm.data.geometry import load_geometry
from farm.errors import FarmError


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
        inside = np.mean(spots.r < 1.0)  # r is in Moliere radii; all spots carry equal energy
        assert 0.85 < inside < 0.95, (E, inside)
        assert np.mean(spots.r < 2.0) > 0.94
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
