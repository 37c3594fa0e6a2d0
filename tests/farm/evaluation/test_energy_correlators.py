"""C2 and D2 (beta = 1): two-prong zero, a hand-computed three-particle jet, boost/rotation
invariance, and reco = truth residuals of the events evaluation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from farm.evaluation.events import jet_features, substructure
from farm.evaluation.jet_features import energy_correlators
from farm.samples import EventSample


def _jet(rows) -> np.ndarray:
    """One jet (1, P, 3) of (eta, phi, pT) rows, two zero-padded slots after them."""
    jet = np.zeros((1, len(rows) + 2, 3))
    jet[0, : len(rows)] = rows
    return jet


def test_two_equal_massless_particles_have_e3_zero():
    ecf = energy_correlators(_jet([[0.1, -0.2, 0.5], [0.3, 0.05, 0.5]]))
    d_r = np.hypot(0.2, 0.25)
    assert ecf["e2"][0] == pytest.approx(0.25 * d_r)  # z1 z2 dR
    assert ecf["e3"][0] == 0.0 and ecf["c2"][0] == 0.0 and ecf["d2"][0] == 0.0


def test_three_particles_match_a_hand_computation():
    # z = (0.5, 0.3, 0.2) at (0, 0), (0.3, 0), (0, 0.4): dR12 = 0.3, dR13 = 0.4, dR23 = 0.5
    ecf = energy_correlators(_jet([[0.0, 0.0, 50.0], [0.3, 0.0, 30.0], [0.0, 0.4, 20.0]]))
    e2 = 0.5 * 0.3 * 0.3 + 0.5 * 0.2 * 0.4 + 0.3 * 0.2 * 0.5  # 0.115
    e3 = 0.5 * 0.3 * 0.2 * (0.3 * 0.4 * 0.5)  # 0.0018
    assert ecf["e2"][0] == pytest.approx(e2, rel=1e-12)
    assert ecf["e3"][0] == pytest.approx(e3, rel=1e-12)
    assert ecf["c2"][0] == pytest.approx(e3 / e2**2, rel=1e-12)  # 0.1361
    assert ecf["d2"][0] == pytest.approx(e3 / e2**3, rel=1e-12)  # 1.1835
    # beta = 2 squares each angle
    b2 = energy_correlators(_jet([[0.0, 0.0, 50.0], [0.3, 0.0, 30.0], [0.0, 0.4, 20.0]]), beta=2)
    assert b2["e3"][0] == pytest.approx(0.03 * (0.3 * 0.4 * 0.5) ** 2, rel=1e-12)


def test_single_particle_and_empty_jets_are_zero_not_nan():
    ecf = energy_correlators(np.concatenate([_jet([[0.0, 0.0, 1.0]]), np.zeros((1, 3, 3))]))
    for k in ("e2", "e3", "c2", "d2"):
        assert np.all(ecf[k] == 0.0), k


def _boost_z(eta: np.ndarray, pt: np.ndarray, rapidity: float) -> np.ndarray:
    """Pseudorapidity of massless particles after a Lorentz boost along z."""
    pz, e = pt * np.sinh(eta), pt * np.cosh(eta)
    pz2 = np.cosh(rapidity) * pz + np.sinh(rapidity) * e
    return np.arcsinh(pz2 / pt)


def test_boost_along_z_and_rotation_in_phi_leave_c2_d2_unchanged():
    rng = np.random.default_rng(3)
    n, p = 40, 12
    pt = rng.exponential(5.0, (n, p)) + 0.1
    eta, phi = rng.normal(0.5, 0.2, (n, p)), rng.normal(3.0, 0.2, (n, p))  # straddles +-pi
    mask = np.arange(p) < rng.integers(3, p + 1, n)[:, None]
    base = energy_correlators(np.stack([eta, phi, pt], -1), mask)
    boosted = np.stack([_boost_z(eta, pt, 1.3), phi, pt], -1)
    rotated = np.stack([eta, np.remainder(phi + 2.0 + np.pi, 2 * np.pi) - np.pi, pt], -1)
    scaled = np.stack([eta, phi, 7.0 * pt], -1)  # ratios of normalised ECFs
    for other in (boosted, rotated, scaled):
        ecf = energy_correlators(other, mask)
        for k in ("e2", "e3", "c2", "d2"):
            np.testing.assert_allclose(ecf[k], base[k], rtol=1e-9, atol=1e-15)
    assert np.all(base["c2"] > 0)


def test_permuting_constituents_and_chunks_change_nothing():
    rng = np.random.default_rng(4)
    c = np.stack(
        [rng.normal(0, 0.2, (30, 9)), rng.normal(0, 0.2, (30, 9)), rng.exponential(1, (30, 9))],
        -1,
    )
    base = energy_correlators(c)
    perm = energy_correlators(c[:, rng.permutation(9)], chunk=7)
    for k in base:
        np.testing.assert_allclose(perm[k], base[k], rtol=1e-12)


def test_flat_substructure_pads_jets_of_different_sizes_like_the_padded_call():
    rng = np.random.default_rng(5)
    sizes = rng.integers(1, 15, 37)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    eta, phi = rng.normal(0, 0.2, offsets[-1]), rng.normal(0, 0.2, offsets[-1])
    pt = rng.exponential(2.0, offsets[-1])
    jets = {"eta": np.zeros(len(sizes)), "phi": np.zeros(len(sizes))}
    flat = substructure((eta, phi, pt), offsets, jets, group=8)
    padded = np.zeros((len(sizes), sizes.max(), 3))
    for j, (lo, hi) in enumerate(itertools.pairwise(offsets)):
        padded[j, : hi - lo] = np.stack([eta[lo:hi], phi[lo:hi], pt[lo:hi]], 1)
    ref = energy_correlators(padded)
    for k in ("c2", "d2"):
        np.testing.assert_allclose(flat[k], ref[k], rtol=1e-10)


def _three_prong_events(n: int, rng) -> EventSample:
    """Events with one jet of three hard prongs (plus soft spray) near phi = pi; reco = truth."""
    pts, etas, phis, counts = [], [], [], []
    for _ in range(n):
        k = 3 + rng.integers(0, 6)
        pts.append(np.concatenate([[60.0, 40.0, 30.0], rng.uniform(1, 3, k - 3)]))
        etas.append(rng.normal(0.8, 0.1, k))
        phis.append(np.remainder(rng.normal(np.pi, 0.1, k) + np.pi, 2 * np.pi) - np.pi)
        counts.append(k)
    flat = {"pt": np.concatenate(pts), "eta": np.concatenate(etas), "phi": np.concatenate(phis)}
    counts = np.asarray(counts)
    truth = flat | {"pdg": np.full(counts.sum(), 211), "charge": np.ones(counts.sum())}
    reco = flat | {"class": np.zeros(counts.sum()), "charge": np.ones(counts.sum())}
    return EventSample(truth, counts, reco, counts.copy(), {}, np.arange(n))


def test_events_jets_with_reco_equal_to_truth_have_zero_residuals():
    sample = _three_prong_events(25, np.random.default_rng(6))
    feats = jet_features(sample)
    assert len(feats["jet_c2"]) == 25  # one matched jet per event
    np.testing.assert_allclose(feats["jet_response"], 1.0, rtol=1e-12)
    for k in ("c2", "d2"):
        assert np.all(feats[f"jet_{k}"] > 0)
        np.testing.assert_allclose(feats[f"jet_{k}_residual"], 0.0, atol=1e-12)
    # the jet straddles phi = +-pi: its C2 is that of the same jet moved to phi = 0
    moved = _three_prong_events(25, np.random.default_rng(6))
    for side in (moved.truth, moved.reco):
        side["phi"] = np.remainder(side["phi"], 2 * np.pi) - np.pi
    np.testing.assert_allclose(jet_features(moved)["jet_c2"], feats["jet_c2"], rtol=1e-9)
