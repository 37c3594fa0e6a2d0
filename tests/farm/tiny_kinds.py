"""Tiny jet (EPiC flow), set-to-set event and point-cloud shower models, fitted on synthetic or
simulated data without training, in a real registry; and a tiny distill job for any teacher."""

from __future__ import annotations

import numpy as np
import torch

from farm.specs import parse_job
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


def tiny_distill_job(teacher: str, name: str, epochs: int, validation_events: int):
    """A 6-step consistency distillation job of a tiny teacher (batch 64, CPU)."""
    return parse_job(
        {
            "kind": "distill",
            "name": name,
            "teacher": teacher,
            "distill": {"n_steps": 6},
            "optim": {"epochs": epochs, "batch_size": 64},
            "resources": {"use_gpu": False},
            "validation_events": validation_events,
        },
        "test",
        kind=("train", "distill"),
    )


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


def tiny_electron_model(seed: int = 0):
    """A set model of SET_SLOTS reco slots conditioned on the scattered electron, fitted on toy
    DIS electrons (E 5-20 GeV, eta -3..-0.5)."""
    torch.manual_seed(seed)
    config = {**SET_CONFIG, "condition": "scattered_electron"}
    model = build_model(parse_model_config(config), SET_SLOTS * 4, 4)
    g = torch.Generator().manual_seed(seed)
    n = 100
    e = 5 + 15 * torch.rand(n, generator=g)
    eta = -3 + 2.5 * torch.rand(n, generator=g)
    phi = np.pi * (2 * torch.rand(n, generator=g) - 1)
    cond = torch.stack([e, e / torch.cosh(eta), eta, phi], 1)
    reco = torch.stack(
        [
            1 + 5 * torch.rand(n, SET_SLOTS, generator=g),
            torch.randn(n, SET_SLOTS, generator=g),
            np.pi * (2 * torch.rand(n, SET_SLOTS, generator=g) - 1),
            torch.randint(0, 5, (n, SET_SLOTS), generator=g).float(),
        ],
        -1,
    )
    model.preprocessing.fit(reco.reshape(n, -1), cond)
    _perturb(model.flow, g)
    return model.eval()


POINT_ENERGIES = (1e4, 2e4)
POINT_CONFIG = {
    "kind": "point_showers",
    "hits": {
        "network": {"kind": "epic", "n_features": 4, "width": 16, "global_dim": 4, "depth": 1},
        "preprocessing": {"kind": "pointcloud", "n_features": 4, "log_features": [3]},
        "sampler": {"name": "euler", "nfe": 2},
    },
}


def tiny_point_model(seed: int = 0, config: dict | None = None):
    """An EPiC point-cloud model of ILD-like photon hits (or of `config`): count model and
    preprocessing fitted on simulated hits at POINT_ENERGIES (farm.data.hit_sim), network weights
    perturbed."""
    from farm.data.hit_sim import simulate_hits
    from farm.geometry import load_cell_geometry
    from farm.samples import PointSample
    from models.data import TrainData
    from models.points import point_stage_data

    torch.manual_seed(seed)
    geo = load_cell_geometry("ild-ecal-like")
    rng = np.random.default_rng(seed)
    e = rng.choice(np.asarray(POINT_ENERGIES), 60)
    h = simulate_hits(geo, e, rng)
    x, c = PointSample(h.counts, h.hits, h.layer, e, geo).model_inputs()
    data = TrainData(torch.from_numpy(x), torch.from_numpy(c))
    model = build_model(parse_model_config(config or POINT_CONFIG), x.shape[1], 1)
    model.cardinality.fit(*point_stage_data(data))
    g = torch.Generator().manual_seed(seed)
    model.hits.preprocessing.fit(data.x, data.cond, g)
    _perturb(model.net, g)
    return model.eval()


def register_model(name: str, model, kind: str, tmp_path, aliases=("candidate",)):
    """Register `model` under `name` with a card of data kind `kind`; returns the version."""
    from farm import registry

    ckpt = tmp_path / f"ckpt-{name}"
    card = {"data": {"kind": kind, "source": "synthetic", "n_particles": model.dim // 3}}
    if kind == "events":
        max_truth = getattr(model, "truth_max", SET_SLOTS)  # 0: conditioned on the electron
        card["data"] = {"kind": kind, "source": "synthetic", "max_truth": max_truth}
    if kind == "points":
        e_range = [min(POINT_ENERGIES), max(POINT_ENERGIES)]
        card["data"] = {"kind": kind, "geometry": "ild-ecal-like", "e_inc_range": e_range}
    save_model(model, ckpt, card=card)
    client = registry.client()
    run = client.create_run(registry.experiment_id(name))
    return registry.register(name, run.info.run_id, str(ckpt), aliases=list(aliases))
