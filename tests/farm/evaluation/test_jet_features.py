"""Jet features on hand-built jets; W1/FPD/classifier sensitivity to a 10% mass smearing."""

from __future__ import annotations

import numpy as np
import pytest
from eval_samples import make_jets

from farm.errors import FarmError
from farm.evaluation.evaluate import evaluate_jets
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
    graphs = efp_graphs(4)
    # JetNet's FPD/KPD features: EnergyFlow's 'd<=4' set, multigraphs with 0..4 edges
    # (OEIS A050535: 1, 1, 3, 8, 23), the first the d = 0 graph
    assert len(graphs) == 36 and graphs[0] == ()
    conn = connected_multigraphs(4)
    index = {conn[c[0]]: j for j, c in enumerate(graphs) if len(c) == 1}
    theta = 0.5
    # un-normalised z = pT_rel (JetNet's): z = (0.6, 0.2), sum 0.8
    values = efps(_two_particle_jet(0.6, 0.2, 0.3, 0.4))[0]
    assert values[0] == pytest.approx(0.8)  # d = 0: sum z
    assert values[index[((0, 1),)]] == pytest.approx(2 * 0.6 * 0.2 * theta)
    assert values[index[((0, 1), (0, 1))]] == pytest.approx(2 * 0.6 * 0.2 * theta**2)
    # the open chain of two edges: sum_ijk z_i z_j z_k theta_ij theta_ik = z1 z2 (z1 + z2) theta²
    assert values[index[((0, 1), (0, 2))]] == pytest.approx(0.6 * 0.2 * 0.8 * theta**2)
    assert values[index[((0, 1), (0, 2), (1, 2))]] == pytest.approx(0.0)  # triangle needs 3
    two_edges = graphs.index((0, 0))  # disconnected: product of single edges
    assert values[two_edges] == pytest.approx((2 * 0.6 * 0.2 * theta) ** 2)
    # normalised z = pT / sum pT = (0.75, 0.25): the d = 0 EFP is 1
    normed = efps(_two_particle_jet(0.6, 0.2, 0.3, 0.4), normed=True)[0]
    assert normed[0] == pytest.approx(1.0)
    assert normed[index[((0, 1),)]] == pytest.approx(2 * 0.75 * 0.25 * theta)


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


def test_w1m_is_jetnets_relative_mass_and_w1m_gev_the_absolute_one():
    jets, mask = make_jets(1, seed=0)
    constituents = np.repeat(np.concatenate([jets, mask[..., None]], -1), 60, axis=0)

    def sample(jet_pt: float) -> dict[str, np.ndarray]:
        return {
            "constituents": constituents,
            "jet_features": np.tile([jet_pt, 0.0, 0.0, 30.0], (60, 1)),
        }

    fast = {"fpd": {"num_batches": 2, "num_points": 3}, "kpd": {"num_batches": 2, "batch_size": 20}}
    result = evaluate_jets(
        sample(1000.0), sample(1100.0), classifier=False, plots=False, metric_kwargs=fast
    )
    # the same constituents: m / pT_jet agrees exactly, the mass in GeV is 10% higher
    m_rel = jet_kinematics(jets, mask)["mass"][0]
    assert result.metrics["w1m"]["value"] == pytest.approx(0.0, abs=1e-12)
    assert result.metrics["w1m_gev"]["value"] == pytest.approx(100.0 * m_rel)
    assert result.metrics["w1m_gev"]["floor"] == pytest.approx(0.0, abs=1e-9)
