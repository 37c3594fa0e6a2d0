"""farm.generation: jets from a point-cloud model come back in the JetNet layout, masked and ordered."""

import numpy as np
import pytest
import torch

from farm.errors import FarmError
from farm.evaluation.jet_features import jet_kinematics
from farm.generation import jet_conditions, jets_from_model
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
    jets = jets_from_model(jet_model, pt, eta, counts, generator=gen)
    c, f = jets["constituents"], jets["jet_features"]
    assert c.shape == (4, 10, 4) and f.shape == (4, 4)
    assert (c[:, :, 3].sum(1) == counts).all()
    assert (c[:, :, :3][c[:, :, 3] == 0] == 0).all()  # padding is zero
    assert (np.diff(c[:, :, 2], axis=1) <= 0).all() and (c[:, :, 2] >= 0).all()  # pT-ordered
    np.testing.assert_allclose(f[:, 0], pt)
    np.testing.assert_allclose(f[:, 3], counts)
    mass = jet_kinematics(c, None, pt, eta)["mass"]
    np.testing.assert_allclose(f[:, 2], mass, rtol=1e-5)
    assert f[0, 2] == 0.0  # a single massless constituent has no mass
    again = jets_from_model(jet_model, pt, eta, counts, generator=torch.Generator().manual_seed(3))
    np.testing.assert_array_equal(again["constituents"], c)  # seeded: bit for bit

    pt2, eta2, n2 = jet_conditions(jets)
    np.testing.assert_allclose(eta2, eta)
    np.testing.assert_array_equal(n2, counts)
    np.testing.assert_allclose(pt2, pt)


def test_counts_outside_the_model_are_refused(jet_model):
    with pytest.raises(FarmError, match=r"counts must lie in 1\.\.10"):
        jets_from_model(jet_model, np.ones(2), np.zeros(2), np.array([3, 11]))
