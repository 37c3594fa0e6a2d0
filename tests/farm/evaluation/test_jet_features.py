"""Jet features on hand-built jets; W1/FPD/classifier sensitivity to a 10% mass smearing."""

from __future__ import annotations

import numpy as np
import pytest
from eval_samples import make_jets

from farm.errors import FarmError
from farm.evaluation.jet_features import (
    connected_multigraphs,
    constituent_inputs,
    efp_graphs,
    efps,
    jet_features,
    jet_kinematics,
    nsubjettiness,
)
from farm.evaluation.metrics import classifier_test, fpd, wasserstein_1

pytestmark = pytest.mark.filterwarnings("ignore::farm.evaluation.checks.SmallSampleWarning")


def _two_particle_jet(pt1=0.6, pt2=0.4, d_eta=0.3, d_phi=0.4):
    jet = np.zeros((1, 5, 3))
    jet[0, 0] = [0.1, -0.05, pt1]
    jet[0, 1] = [0.1 + d_eta, -0.05 + d_phi, pt2]
    return jet


def test_two_massless_particles_have_the_invariant_mass():
    jet = _two_particle_jet()
    expected = np.sqrt(2 * 0.6 * 0.4 * (np.cosh(0.3) - np.cos(0.4)))
    kin = jet_kinematics(jet)
    assert kin["mass"][0] == pytest.approx(expected)
    assert kin["n_constituents"][0] == 2
    # absolute: pT scales the mass, a common eta shift leaves it unchanged
    kin = jet_kinematics(jet, jet_pt=np.array([1000.0]), jet_eta=np.array([1.2]))
    assert kin["mass"][0] == pytest.approx(1000.0 * expected)
    px = 600 * np.cos(-0.05) + 400 * np.cos(0.35)
    py = 600 * np.sin(-0.05) + 400 * np.sin(0.35)
    assert kin["pt"][0] == pytest.approx(np.hypot(px, py))


def test_efp_set_and_two_particle_values():
    assert len(connected_multigraphs(4)) == 20
    assert len(efp_graphs(4)) == 35  # multigraphs with 1..4 edges (OEIS A050535: 1, 3, 8, 23)
    jet = _two_particle_jet(0.5, 0.5, 0.3, 0.4)  # z = 1/2 each, theta = 0.5
    values = efps(jet)[0]
    graphs = efp_graphs(4)
    conn = connected_multigraphs(4)
    index = {conn[c[0]]: j for j, c in enumerate(graphs) if len(c) == 1}
    theta = 0.5
    assert values[index[((0, 1),)]] == pytest.approx(theta / 2)
    assert values[index[((0, 1), (0, 1))]] == pytest.approx(theta**2 / 2)
    assert values[index[((0, 1), (0, 2))]] == pytest.approx(theta**2 / 4)
    assert values[index[((0, 1), (0, 2), (1, 2))]] == pytest.approx(0.0)  # triangle needs 3
    two_edges = graphs.index((0, 0))  # disconnected: product of single edges
    assert values[two_edges] == pytest.approx((theta / 2) ** 2)


def test_nsubjettiness_of_two_and_three_prong_jets():
    jet = _two_particle_jet()
    assert nsubjettiness(jet, 2)[0] == pytest.approx(0.0, abs=1e-12)
    # tau_1: axis at the pT-weighted centre (k-means step) -> Σ z_k ΔR_k / R0
    tau1 = nsubjettiness(jet, 1)[0]
    assert tau1 == pytest.approx(2 * 0.6 * 0.4 * 0.5 / 0.8, rel=1e-6)
    three = np.zeros((1, 6, 3))
    for k, (e, p) in enumerate([(0.0, 0.0), (0.4, 0.0), (0.0, 0.4)]):
        three[0, 2 * k] = [e, p, 0.2]
        three[0, 2 * k + 1] = [e + 0.01, p, 0.13]
    feats = jet_features(three)
    assert feats["tau32"][0] < 0.05 < feats["tau21"][0]


def test_bad_jets_raise_farm_errors():
    jet = _two_particle_jet()
    jet[0, 0, 1] = np.nan
    with pytest.raises(FarmError, match="1 NaN/Inf values in constituents"):
        efps(jet)
    with pytest.raises(FarmError, match=r"must be \(N, P, 3 or 4\)"):
        jet_kinematics(np.zeros((3, 5)))


def test_mass_smearing_is_seen_above_the_floor():
    ref, ref_mask = make_jets(2000, seed=0)
    ref2, ref2_mask = make_jets(2000, seed=1)
    smeared, smeared_mask = make_jets(2000, seed=1, angle_smear=0.1)
    m = {
        k: jet_features(j, mk)["mass"]
        for k, (j, mk) in {
            "ref": (ref, ref_mask),
            "ref2": (ref2, ref2_mask),
            "smeared": (smeared, smeared_mask),
        }.items()
    }
    floor, floor_err = wasserstein_1(m["ref"], m["ref2"])
    value, err = wasserstein_1(m["ref"], m["smeared"])
    assert value > floor + 5 * (err + floor_err)
    e = {
        k: efps(j, mk)
        for k, (j, mk) in {
            "ref": (ref, ref_mask),
            "ref2": (ref2, ref2_mask),
            "smeared": (smeared, smeared_mask),
        }.items()
    }
    kw = dict(min_samples=1000, max_samples=2000, num_batches=5)
    f_floor, f_err = fpd(e["ref"], e["ref2"], **kw)
    f_value, f_value_err = fpd(e["ref"], e["smeared"], **kw)
    assert f_value > f_floor + 5 * (f_err + f_value_err)
    high = {k: np.concatenate([m[k][:, None], e[k]], axis=1) for k in m}
    floor_auc = classifier_test(high["ref"], high["ref2"], epochs=8, hidden=64)
    auc = classifier_test(high["ref"], high["smeared"], epochs=8, hidden=64)
    assert floor_auc.auc == pytest.approx(0.5, abs=0.05)
    assert auc.auc > floor_auc.auc + 0.1
    assert constituent_inputs(ref, ref_mask).shape == (2000, 4 * 30)
