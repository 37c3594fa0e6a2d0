"""Every new network, process and preprocessing kind survives save_model/load_model bit for bit."""

from __future__ import annotations

import pytest
import torch

from models.checkpoint import save_model
from models.config import ModelConfig
from models.generative import GenerativeModel
from models.loading import load_model

MLP = {"kind": "mlp", "width": 16, "depth": 1, "embed_dim": 8}
CASES = {
    "ve_sde": ({"kind": "ve_sde"}, MLP, {"kind": "standard"}, 6, 1),
    "vp_sde": ({"kind": "vp_sde", "beta_max": 10.0}, MLP, {"kind": "standard"}, 6, 1),
    "subvp_sde": ({"kind": "subvp_sde"}, MLP, {"kind": "standard"}, 6, 1),
    "edm": ({"kind": "edm", "sigma_data": 0.5}, MLP, {"kind": "shower"}, 6, 1),
    "consistency": ({"kind": "consistency"}, MLP, {"kind": "standard"}, 6, 1),
    "pointcloud": (
        {"kind": "flow_matching"},
        {
            "kind": "pointcloud_transformer",
            "n_features": 3,
            "width": 16,
            "depth": 1,
            "heads": 2,
            "embed_dim": 8,
            "attention": "mean_field",
        },
        {"kind": "pointcloud", "n_features": 3},
        12,
        2,
    ),
    "epic": (
        {"kind": "edm"},
        {"kind": "epic", "n_features": 3, "width": 16, "depth": 1, "embed_dim": 8},
        {"kind": "pointcloud", "n_features": 3},
        12,
        2,
    ),
    "voxel": (
        {"kind": "vp_sde"},
        {
            "kind": "voxel_transformer",
            "layer_sizes": [2, 0, 4],
            "width": 16,
            "depth": 1,
            "heads": 2,
            "embed_dim": 8,
        },
        {"kind": "shower", "layer_sizes": [2, 4]},
        6,
        1,
    ),
    "voxel_patches": (
        {"kind": "edm"},
        {
            "kind": "voxel_transformer",
            "layer_shapes": [[1, 2], [2, 2]],
            "patch": [2, 1],
            "width": 16,
            "depth": 1,
            "heads": 2,
            "embed_dim": 8,
            "position": "sinusoidal",
        },
        {"kind": "shower", "layer_sizes": [2, 4]},
        6,
        1,
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_round_trip(tmp_path, name):
    process, network, pre, dim, cond_dim = CASES[name]
    config = ModelConfig.model_validate(
        {"process": process, "network": network, "preprocessing": pre, "sampler": {"nfe": 3}}
    )
    torch.manual_seed(0)
    model = GenerativeModel(config, dim, cond_dim).eval()
    cond = torch.tensor([[1000.0, 3.0], [2000.0, 4.0]])[:, :cond_dim]
    save_model(model, tmp_path / name, card={"note": name})
    loaded = load_model(tmp_path / name)
    assert loaded.config == config
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key

    def gen(m):
        return m.generate(cond, generator=torch.Generator().manual_seed(11))

    a, b = gen(model), gen(loaded)
    assert a.shape == (2, dim) and torch.isfinite(a).all()
    assert torch.equal(a, b)
