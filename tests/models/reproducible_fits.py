"""Train tiny point, voxel and two-stage models on seeded toys; print one state hash per model.

Run as a script by tests/models/test_reproducible_fits.py in two fresh processes: the same seed
must give the same bits (models.linalg). Not a test module itself.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "two_stage"))

from test_point_model import _clouds, _config
from two_stage_toys import THRESHOLD, tiny_config, toy_showers

from models.config import ModelConfig, OptimConfig
from models.data import TrainData
from models.training import fit


def state_hash(model: torch.nn.Module) -> str:
    """sha256 over the state dict's names and bytes."""
    h = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def voxel_config() -> ModelConfig:
    """A tiny single-stage flow-matching MLP over the toy showers, with voxel quantiles."""
    return ModelConfig.model_validate(
        {
            "process": {"kind": "flow_matching"},
            "network": {"kind": "mlp", "width": 16, "depth": 1, "embed_dim": 8},
            "preprocessing": {
                "kind": "shower",
                "layer_sizes": [6, 12, 2],
                "threshold_mev": THRESHOLD,
                "voxel_quantiles": 8,
            },
            "sampler": {"nfe": 2},
        }
    )


def main() -> None:
    """Print `name hash` for each model."""
    torch.set_num_threads(1)
    optim = OptimConfig(epochs=1, batch_size=32, lr=1e-3, warmup_steps=2, seed=3)
    points = _clouds(96, 0)
    showers = toy_showers(96, 0)
    cases = {
        "points": (_config(), points),
        "voxel": (voxel_config(), showers),
        "two_stage": (tiny_config(transformer=False), showers),
    }
    for name, (config, data) in cases.items():
        val = TrainData(data.x[:16], data.cond[:16])
        print(name, state_hash(fit(config, optim, data, val, lambda m, d: None)))


if __name__ == "__main__":
    main()
