"""Every recipe of the fidelity ladder trains in seconds at tiny size and generates sane events.

Each shipped job file the ladder names (bench/fidelity.py LADDER) is loaded with its small
budget's overrides, shrunk (tiny networks, a handful of events, one epoch), trained with plain
`models` code, and asked for a few events: showers finite, two-stage ones with layer energies that
sum exactly to E_tot and voxels exactly to their layer energies; jets finite with positive pT.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from farm.data.showers import simulate_in_memory
from farm.geometry import load_geometry
from models.config import parse_model_config, with_geometry
from models.training import TrainData, fit
from models.two_stage.model import TwoStageModel

BENCH = Path(__file__).resolve().parents[2] / "bench" / "fidelity.py"
SPEC = importlib.util.spec_from_file_location("bench_fidelity", BENCH)
fidelity = importlib.util.module_from_spec(SPEC)
sys.modules[SPEC.name] = fidelity  # dataclasses look their module up
SPEC.loader.exec_module(fidelity)

RECIPES = [(d, r) for d, recipes in fidelity.LADDER.items() for r in recipes]
TINY_NETWORK = {"width": 16, "depth": 1, "embed_dim": 8, "heads": 2, "global_dim": 4}


def shrink(doc: Any) -> Any:
    """The model doc with every network tiny and every sampler at 2 NFE."""
    if isinstance(doc, dict):
        out = {k: shrink(v) for k, v in doc.items()}
        if out.get("kind") in ("mlp", "voxel_transformer", "epic", "pointcloud_transformer"):
            out.update({k: v for k, v in TINY_NETWORK.items() if k in out or k == "width"})
            if out["kind"] == "voxel_transformer":
                out["heads"] = 2
        if "nfe" in out:
            out["nfe"] = 2
        return out
    return doc


def tiny_job(dataset: str, recipe: str):
    overrides = {**fidelity.LADDER[dataset][recipe]["small"], "optim.epochs": 1}
    job, _ = fidelity.recipe_job(dataset, recipe, overrides)
    optim = job.optim.model_copy(update={"batch_size": 16, "warmup_steps": 1})
    return job, parse_model_config(shrink(job.model.model_dump(mode="json"))), optim


def fake_jets(n: int, n_points: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    counts = torch.randint(3, n_points + 1, (n,), generator=g)
    pts = torch.randn(n, n_points, 3, generator=g) * 0.1
    pts[..., 2] = torch.softmax(torch.randn(n, n_points, generator=g), 1)
    pts[torch.arange(n_points).unsqueeze(0) >= counts.unsqueeze(1)] = 0.0
    cond = torch.stack([1000 + 50 * torch.randn(n, generator=g), counts.float()], 1)
    return pts.reshape(n, -1), cond


@pytest.mark.parametrize(("dataset", "recipe"), RECIPES)
def test_recipe_trains_at_tiny_size_and_generates(dataset: str, recipe: str):
    torch.manual_seed(0)
    job, config, optim = tiny_job(dataset, recipe)
    if job.data.source == "simulated_jets":
        x, cond = fake_jets(96, job.data.n_constituents)
    else:
        geometry = load_geometry(job.data.geometry)
        showers, e_inc = simulate_in_memory(geometry, 96, 3, job.data.energies)
        shapes = [(layer.n_alpha, layer.n_radial) for layer in geometry.active_layers]
        config = with_geometry(config, shapes)
        x, cond = torch.from_numpy(showers), torch.from_numpy(e_inc).float()[:, None]
    model = fit(config, optim, TrainData(x[:80], cond[:80]), TrainData(x[80:], cond[80:]), print)
    generator = torch.Generator().manual_seed(1)
    out = model.generate(cond[80:], generator=generator, batch_size=8)
    assert out.shape == x[80:].shape and bool(torch.isfinite(out).all())
    if job.data.source == "simulated_jets":
        pt = out.reshape(len(out), -1, 3)[..., 2]
        valid = torch.arange(pt.shape[1]).unsqueeze(0) < cond[80:, 1:]
        assert bool((pt[valid] >= 0).all()) or not config.preprocessing.log_features
    if isinstance(model, TwoStageModel):
        parts = model.generate_parts(cond[80:], generator=generator)
        assert torch.equal(parts.layer_energies.sum(1), parts.e_tot)
        assert torch.equal(model.layer_energies(parts.voxels), parts.layer_energies)
        assert np.all(np.asarray(parts.voxels) >= 0)
