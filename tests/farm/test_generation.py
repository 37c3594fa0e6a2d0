"""farm.generation: jets in the JetNet layout (masked, ordered), and the one NaN/Inf policy."""

import numpy as np
import pytest
import torch

from farm.errors import FarmError
from farm.generation import NonFiniteOutput, jet_sample, shower_sample
from farm.geometry import load_geometry
from farm.kinematics import jet_kinematics
from farm.samples import JetSample, JetTruth
from models.config import ModelConfig
from models.generative import GenerativeModel


@pytest.fixture
def jet_model():
    config = ModelConfig.model_validate(
        {
            "network": {"kind": "epic", "n_features": 3, "width": 16, "depth": 1},
            "preprocessing": {"kind": "pointcloud", "n_features": 3},
            "sampler": {"name": "euler", "nfe": 2},
        }
    )
    model = GenerativeModel(config, dim=10 * 3, cond_dim=2)
    x = torch.randn(64, 30) * 0.05
    cond = torch.stack([torch.full((64,), 1000.0), torch.full((64,), 10.0)], 1)
    model.preprocessing.fit(x, cond)
    return model.eval()


def test_jets_respect_counts_order_and_mass_definition(jet_model):
    counts = np.array([1, 4, 10, 7])
    pt, eta = np.array([900.0, 1000.0, 1100.0, 1200.0]), np.array([0.1, -1.0, 2.0, 0.0])
    gen = torch.Generator().manual_seed(3)
    jets = jet_sample(jet_model, JetTruth(pt, eta, counts), generator=gen)
    c, f = jets.constituents, jets.jet_features
    assert c.shape == (4, 10, 4) and f.shape == (4, 4)
    assert (c[:, :, 3].sum(1) == counts).all()
    assert (c[:, :, :3][c[:, :, 3] == 0] == 0).all()  # padding is zero
    assert (np.diff(c[:, :, 2], axis=1) <= 0).all() and (c[:, :, 2] >= 0).all()  # pT-ordered
    np.testing.assert_allclose(f[:, 0], pt)
    np.testing.assert_allclose(f[:, 3], counts)
    mass = jet_kinematics(c, None, pt, eta)["mass"]
    np.testing.assert_allclose(f[:, 2], mass, rtol=1e-5)
    assert f[0, 2] == 0.0  # a single massless constituent has no mass
    again = jet_sample(
        jet_model, JetTruth(pt, eta, counts), generator=torch.Generator().manual_seed(3)
    )
    np.testing.assert_array_equal(again.constituents, c)  # seeded: bit for bit

    truth = JetSample(c, f).truth()
    np.testing.assert_allclose(truth.eta, eta)
    np.testing.assert_array_equal(truth.counts, counts)
    np.testing.assert_allclose(truth.pt, pt)


def test_counts_outside_the_model_are_refused(jet_model):
    with pytest.raises(FarmError, match=r"counts must lie in 1\.\.10"):
        jet_sample(jet_model, JetTruth(np.ones(2), np.zeros(2), np.array([3, 11])), generator=None)


def test_non_finite_samples_are_refused_by_every_kind(jet_model):
    with torch.no_grad():
        jet_model.net.out.bias.fill_(float("nan"))
    truth = JetTruth(np.ones(2), np.zeros(2), np.array([3, 4]))
    with pytest.raises(NonFiniteOutput, match=r"produced \d+ non-finite jet values"):
        jet_sample(jet_model, truth, generator=torch.Generator())
    geometry = load_geometry("ds1-photons")
    config = ModelConfig.model_validate(
        {
            "network": {"kind": "mlp", "width": 8, "depth": 1, "embed_dim": 8},
            "preprocessing": {"kind": "standard"},
            "sampler": {"name": "euler", "nfe": 1},
        }
    )
    showers = GenerativeModel(config, dim=geometry.n_voxels, cond_dim=1).eval()
    with torch.no_grad():
        showers.net.out[1].bias.fill_(float("inf"))
    with pytest.raises(NonFiniteOutput, match="non-finite voxel values"):
        shower_sample(showers, np.array([1e3, 2e3]), geometry, generator=torch.Generator())
