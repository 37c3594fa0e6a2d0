"""Tiny jet (EPiC flow) and set-to-set event models, fitted on synthetic data, in a real registry."""

from __future__ import annotations

import numpy as np
import torch

from models.checkpoint import save_model
from models.config import parse_model_config
from models.loading import build_model

JET_SLOTS = 6
SET_SLOTS = 5
JET_CONFIG = {
    "network": {"kind": "epic", "n_features": 3, "width": 16, "depth": 1},
    "preprocessing": {"kind": "pointcloud", "n_features": 3},
    "sampler": {"name": "euler", "nfe": 3},
}
SET_CONFIG = {"kind": "sets", "width": 16, "heads": 2, "layers": 1, "sampler": {"name": "euler", "nfe": 2}}  # fmt: skip


def _perturb(model, g: torch.Generator) -> None:
    """Move every weight off its initial value (zero-initialised outputs would give constants)."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))


def tiny_jet_model(seed: int = 0):
    """An EPiC flow-matching jet model of JET_SLOTS constituents, preprocessing fitted."""
    torch.manual_seed(seed)
    model = build_model(parse_model_config(JET_CONFIG), JET_SLOTS * 3, 2)
    g = torch.Generator().manual_seed(seed)
    x = 0.1 * torch.randn(200, JET_SLOTS, 3, generator=g)
    x[..., 2] = 0.3 + 0.02 * x[..., 2]  # positive pT fractions
    x = x.reshape(200, -1)
    counts = torch.randint(1, JET_SLOTS + 1, (200,), generator=g).float()
    cond = torch.stack([300 + 200 * torch.rand(200, generator=g), counts], 1)
    model.preprocessing.fit(x, cond, g)
    _perturb(model.net, g)
    return model.eval()


def tiny_set_model(seed: int = 0):
    """A set-to-set events model of SET_SLOTS truth and reco slots, preprocessing fitted."""
    torch.manual_seed(seed)
    model = build_model(parse_model_config(SET_CONFIG), SET_SLOTS * 4, SET_SLOTS * 5)
    g = torch.Generator().manual_seed(seed)
    n = 100
    pdg = torch.tensor([211.0, -211.0, 22.0, 11.0, 130.0])
    truth = torch.stack(
        [
            1 + 20 * torch.rand(n, SET_SLOTS, generator=g),
            torch.randn(n, SET_SLOTS, generator=g),
            np.pi * (2 * torch.rand(n, SET_SLOTS, generator=g) - 1),
            pdg[torch.randint(0, 5, (n, SET_SLOTS), generator=g)],
            torch.zeros(n, SET_SLOTS),
        ],
        -1,
    )
    truth[..., 4] = (
        torch.sign(truth[..., 3]) * (truth[..., 3].abs() != 22) * (truth[..., 3].abs() != 130)
    )
    reco = torch.cat(
        [truth[..., :3] * 1.05, torch.randint(0, 5, (n, SET_SLOTS, 1), generator=g)], -1
    )
    model.preprocessing.fit(reco.reshape(n, -1), truth.reshape(n, -1))
    _perturb(model.flow, g)
    return model.eval()


def register_model(name: str, model, kind: str, tmp_path, aliases=("candidate",)):
    """Register `model` under `name` with a card of data kind `kind`; returns the version."""
    from farm import registry

    ckpt = tmp_path / f"ckpt-{name}"
    card = {"data": {"kind": kind, "source": "synthetic", "n_particles": model.dim // 3}}
    if kind == "events":
        card["data"] = {"kind": kind, "source": "synthetic", "max_truth": SET_SLOTS}
    save_model(model, ckpt, card=card)
    client = registry.client()
    run = client.create_run(registry.experiment_id(name))
    return registry.register(name, run.info.run_id, str(ckpt), aliases=list(aliases))
