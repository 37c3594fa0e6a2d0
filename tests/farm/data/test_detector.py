"""The synthetic particle-flow response: resolutions fitted on particle guns, thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from farm.data import detector
from farm.data.detector import (
    CHARGED_HADRON,
    EIC,
    ELECTRON,
    LHC,
    MUON,
    NEUTRAL_HADRON,
    PHOTON,
    respond,
)

N = 20_000  # particles per gun point


def gun(pt, pdg, charge, eta=0.5, seed=0) -> dict[str, np.ndarray]:
    """One particle per event: flat truth arrays at fixed eta, uniform phi."""
    pt = np.broadcast_to(np.asarray(pt, dtype=np.float64), (np.size(pt) if np.ndim(pt) else N,))
    n = len(pt)
    rng = np.random.default_rng(seed)
    return {
        "event": np.arange(n),
        "pt": pt.copy(),
        "eta": np.broadcast_to(np.asarray(eta, dtype=np.float64), (n,)).copy(),
        "phi": rng.uniform(-np.pi, np.pi, n),
        "pdg": np.full(n, pdg, dtype=np.int32),
        "charge": np.full(n, charge, dtype=np.int8),
    }


def test_charged_pt_resolution_follows_the_parametrisation():
    pts = np.array([1.0, 10.0, 50.0, 200.0, 500.0])
    sigmas = []
    for k, pt in enumerate(pts):
        truth = gun(pt, 211, 1, seed=k)
        reco = respond(truth, LHC, np.random.default_rng(100 + k))
        tracks = reco["charge"] != 0
        assert tracks.sum() > 0.9 * N  # the untracked 5% reach the HCAL as neutral candidates
        # curvature residual: Gaussian of width sigma(pT)/pT by construction of the model
        resid = pt / reco["pt"][tracks] - 1.0
        sigmas.append(np.std(resid))
    # least-squares fit of sigma^2 = a^2 + b^2 pT^2
    design = np.stack([np.ones_like(pts), pts**2], axis=1)
    (a2, b2), *_ = np.linalg.lstsq(design / np.square(sigmas)[:, None], np.ones_like(pts))
    assert np.sqrt(a2) == pytest.approx(LHC.track_res_a, rel=0.05)
    assert np.sqrt(b2) == pytest.approx(LHC.track_res_b, rel=0.05)
    np.testing.assert_allclose(sigmas, detector.track_resolution(pts, LHC), rtol=0.03)


@pytest.mark.parametrize(
    ("pdg", "energies", "a", "c", "cls"),
    [
        (22, [2.0, 10.0, 50.0, 200.0], LHC.ecal_a, LHC.ecal_c, PHOTON),
        (130, [10.0, 30.0, 100.0, 300.0], LHC.hcal_a, LHC.hcal_c, NEUTRAL_HADRON),
    ],
)
def test_neutral_energy_resolution_follows_the_parametrisation(pdg, energies, a, c, cls):
    eta = 0.5
    sigmas = []
    for k, e in enumerate(energies):
        truth = gun(e / np.cosh(eta), pdg, 0, eta=eta, seed=k)
        reco = respond(truth, LHC, np.random.default_rng(200 + k))
        assert len(reco["pt"]) > 0.99 * N and (reco["charge"] == 0).all()
        called = np.bincount(reco["class"], minlength=5) / len(reco["class"])
        assert called[cls] > 0.9  # the confusions are a few per cent
        e_reco = reco["pt"] * np.cosh(reco["eta"])
        sigmas.append(np.std(e_reco / e - 1.0))
    energies = np.asarray(energies)
    design = np.stack([1.0 / energies, np.ones_like(energies)], axis=1)
    (a2, c2), *_ = np.linalg.lstsq(design / np.square(sigmas)[:, None], np.ones_like(energies))
    assert np.sqrt(a2) == pytest.approx(a, rel=0.06)
    assert np.sqrt(c2) == pytest.approx(c, rel=0.15)


def test_efficiency_is_zero_below_thresholds_and_at_plateau_above():
    pt = np.random.default_rng(3).uniform(0.05, 2.0, 50_000)
    truth = gun(pt, 211, 1, eta=1.0)
    reco = respond(truth, LHC, np.random.default_rng(4))
    track_of = np.zeros(len(pt), dtype=bool)
    track_of[reco["event"][reco["charge"] != 0]] = True
    below = pt < LHC.track_pt_min
    assert below.sum() > 10_000 and not track_of[below].any()
    eff = track_of[~below].mean()
    assert abs(eff - LHC.track_efficiency) < 4 * np.sqrt(0.05 * 0.95 / (~below).sum())
    # outside the tracker: no track at all; hadrons reach the HCAL as neutral candidates instead
    far = respond(gun(20.0, 211, 1, eta=2.8), LHC, np.random.default_rng(5))
    assert (far["charge"] == 0).all() and len(far["pt"]) > 0.95 * N
    # measured neutral energies never below the class thresholds; soft photons are never seen
    e_reco = reco["pt"] * np.cosh(reco["eta"])
    hcal = reco["charge"] == 0
    assert (e_reco[hcal] >= LHC.neutral_e_min - 1e-9).all()
    soft = respond(gun(0.2 / np.cosh(0.5), 22, 0), LHC, np.random.default_rng(6))
    assert len(soft["pt"]) == 0
    # muons outside the tracker leave nothing
    assert len(respond(gun(20.0, 13, -1, eta=2.8), LHC, np.random.default_rng(7))["pt"]) == 0


def test_close_neutral_deposits_merge_and_far_ones_do_not():
    truth = {
        "event": np.array([0, 0, 0, 1]),
        "pt": np.array([30.0, 10.0, 20.0, 5.0]),
        "eta": np.array([0.51, 0.52, -1.0, 0.0]),
        "phi": np.array([1.001, 1.002, 2.0, 0.0]),
        "pdg": np.array([22, 22, 22, 22], dtype=np.int32),
        "charge": np.zeros(4, dtype=np.int8),
    }
    ev, eta, phi, energy = detector.merge_cells(
        truth["event"], truth["eta"], truth["phi"], truth["pt"], LHC.ecal_cell
    )
    assert len(ev) == 3 and ev.tolist() == [0, 0, 1]
    k = int(np.argmax(energy))
    assert energy[k] == pytest.approx(40.0)
    assert eta[k] == pytest.approx((30 * 0.51 + 10 * 0.52) / 40)
    assert phi[k] == pytest.approx((30 * 1.001 + 10 * 1.002) / 40)
    # across the +-pi seam a cell never averages to the wrong side
    e2, _, phi2, _ = detector.merge_cells(
        np.zeros(2, int), np.zeros(2), np.array([np.pi - 0.001, -np.pi + 0.001]), np.ones(2), 0.1
    )
    assert len(e2) == 2 and np.all(np.abs(phi2) > 3.1)


def test_class_confusions_have_their_documented_rates():
    rng = np.random.default_rng(8)
    n = 100_000
    for cls, pt, called, p in [
        (ELECTRON, 10.0, ELECTRON, LHC.electron_id),
        (MUON, 10.0, MUON, LHC.muon_id),
        (CHARGED_HADRON, 10.0, ELECTRON, LHC.hadron_as_electron),
        (CHARGED_HADRON, 10.0, MUON, LHC.hadron_as_muon),
        (PHOTON, 10.0, NEUTRAL_HADRON, LHC.photon_as_neutral),
        (NEUTRAL_HADRON, 10.0, PHOTON, LHC.neutral_as_photon),
        (ELECTRON, 1.0, ELECTRON, 0.0),  # below electron_pt_min: never identified
    ]:
        out = detector.assign_class(np.full(n, cls, np.int8), np.full(n, pt), LHC, rng)
        rate = (out == called).mean()
        assert abs(rate - p) <= 5 * np.sqrt(max(p * (1 - p), 1e-6) / n), (cls, called, rate)


def test_same_stream_same_bits_and_presets_differ():
    truth = gun(np.random.default_rng(9).exponential(5.0, 3000) + 0.1, 211, 1)
    truth["event"] = np.repeat(np.arange(300), 10)
    a = respond(truth, LHC, np.random.default_rng(10))
    b = respond(truth, LHC, np.random.default_rng(10))
    c = respond(truth, LHC, np.random.default_rng(11))
    assert all(a[k].tobytes() == b[k].tobytes() for k in a)
    assert a["pt"].tobytes() != c["pt"].tobytes()
    # sorted by event, then decreasing pT within an event
    assert (np.diff(a["event"]) >= 0).all()
    same = np.diff(a["event"]) == 0
    assert (np.diff(a["pt"])[same] <= 0).all()
    assert EIC.eta_tracker > LHC.eta_tracker and EIC.track_pt_min < LHC.track_pt_min
