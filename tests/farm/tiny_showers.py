"""Tiny shower models (quickstart-like flow and a 1-step consistency student) in a real registry."""

from __future__ import annotations

import torch

from models.checkpoint import save_model
from models.config import ModelConfig
from models.generative import GenerativeModel

E_RANGE = (200.0, 20000.0)
NETWORK = {
    "kind": "voxel_transformer",
    "layer_shapes": [[2, 3], [1, 4]],
    "patch": [1, 2],
    "width": 16,
    "depth": 1,
    "heads": 2,
    "embed_dim": 16,
}
PREPROCESSING = {
    "kind": "shower",
    "threshold_mev": 1.0,
    "voxel_quantiles": 8,
    "layer_sizes": [6, 4],
}
PROCESSES = {
    "flow": ({"kind": "flow_matching"}, {"name": "midpoint", "nfe": 4}),
    "student": ({"kind": "consistency"}, {"name": "consistency", "nfe": 1}),
    "edm": ({"kind": "edm"}, {"name": "heun", "nfe": 5}),
    "vp": ({"kind": "vp_sde"}, {"name": "ode_heun", "nfe": 4}),
}


def tiny_model(kind: str, seed: int = 0) -> GenerativeModel:
    """A 10-voxel model with fitted quantile preprocessing and perturbed (non-trivial) weights."""
    process, sampler = PROCESSES[kind]
    config = ModelConfig.model_validate(
        {"network": NETWORK, "process": process, "preprocessing": PREPROCESSING, "sampler": sampler}
    )
    torch.manual_seed(seed)
    model = GenerativeModel(config, 10, 1)
    g = torch.Generator().manual_seed(seed)
    lo, hi = torch.log(torch.tensor(E_RANGE))
    e_inc = torch.exp(lo + (hi - lo) * torch.rand(400, generator=g))
    showers = torch.rand(400, 10, generator=g) ** 3 * e_inc[:, None] / 5
    model.preprocessing.fit(showers, e_inc, g)
    with torch.no_grad():  # adaLN-Zero starts as the identity: move every weight off zero
        for p in model.net.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    return model.eval()


def register_tiny(name: str, kind: str, tmp_path, aliases=("candidate",), seed: int = 0):
    """Register a tiny model under `name` (card: showers, e_inc_range); returns (model, version)."""
    from farm import registry

    model = tiny_model(kind, seed)
    ckpt = tmp_path / f"ckpt-{name}-{seed}"
    save_model(model, ckpt, card={"data": {"kind": "showers", "e_inc_range": list(E_RANGE)}})
    client = registry.client()
    run = client.create_run(registry.experiment_id(name))
    mv = registry.register(name, run.info.run_id, str(ckpt), aliases=list(aliases))
    return model, mv
