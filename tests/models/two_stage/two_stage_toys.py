"""Toy calorimeter showers and tiny two-stage configs for the two-stage tests."""

from __future__ import annotations

from typing import Any

import torch

from models.config import TwoStageConfig, parse_model_config, with_geometry
from models.data import TrainData

LAYER_SHAPES = [(2, 3), (4, 3), (1, 2)]
"""(angular, radial) bins per layer: 6 + 12 + 2 = 20 voxels."""
THRESHOLD = 10.0


def toy_showers(n: int, seed: int) -> TrainData:
    """Showers [n, 20] (MeV) with E_inc log-uniform in 1-100 GeV, cond E_inc [n, 1].

    E_tot = 0.9 E_inc with 5% resolution; the layer fractions shift with log E_inc; within a
    layer the energy falls exponentially with the radial bin; voxels below 10 MeV read 0.
    """
    gen = torch.Generator().manual_seed(seed)
    e_inc = 10 ** (3 + 2 * torch.rand(n, 1, generator=gen))
    l = (torch.log10(e_inc) - 4).squeeze(1)
    e_tot = 0.9 * e_inc.squeeze(1) * torch.exp(0.05 * torch.randn(n, generator=gen))
    logits = torch.stack([0.5 - l, torch.full_like(l, 1.0), -1.0 + l], dim=1)
    logits = logits + 0.3 * torch.randn(n, 3, generator=gen)
    layer_e = torch.softmax(logits, dim=1) * e_tot.unsqueeze(1)
    parts = []
    for k, (n_a, n_r) in enumerate(LAYER_SHAPES):
        radial = torch.exp(-torch.arange(n_r, dtype=torch.float32) * (1.0 + 0.3 * k))
        profile = radial.repeat(n_a) * torch.exp(0.2 * torch.randn(n, n_a * n_r, generator=gen))
        parts.append(profile / profile.sum(1, keepdim=True) * layer_e[:, k : k + 1])
    showers = torch.cat(parts, dim=1)
    showers = torch.where(showers < THRESHOLD, 0.0, showers)
    return TrainData(showers, e_inc)


def tiny_config(
    energy: dict[str, Any] | None = None,
    shape: dict[str, Any] | None = None,
    *,
    transformer: bool = True,
    preprocessing: dict[str, Any] | None = None,
) -> TwoStageConfig:
    """A two-stage config with tiny networks, geometry filled in as farm would."""
    shape_net = (
        {
            "kind": "voxel_transformer",
            "patch": [2, 2],
            "width": 16,
            "depth": 1,
            "heads": 2,
            "embed_dim": 8,
            "layer_energy_cond": True,
        }
        if transformer
        else {"kind": "mlp", "width": 32, "depth": 1, "embed_dim": 8}
    )
    doc = {
        "kind": "two_stage",
        "preprocessing": {"threshold_mev": THRESHOLD, **(preprocessing or {})},
        "energy": {
            "network": {"kind": "mlp", "width": 32, "depth": 1, "embed_dim": 8},
            "sampler": {"nfe": 4},
            **(energy or {}),
        },
        "shape": {"network": shape_net, "sampler": {"nfe": 4}, **(shape or {})},
    }
    config = parse_model_config(doc)
    assert isinstance(config, TwoStageConfig)
    return with_geometry(config, LAYER_SHAPES)
