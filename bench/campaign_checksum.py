"""Campaign reproducibility: the dataset_sha256 of one DS1-photon campaign from a fixed checkpoint.

A refactor of the campaign path must leave every (seed, shard) -> events mapping bit-identical.
This script registers a checkpoint folder (weights.safetensors + model.json) in a fresh store,
runs the same DS1-photon campaign through the CLI (`farm campaign submit`) and prints the
campaign's `dataset_sha256` (sha256 over the shards' content checksums). Run it on two commits
with the same checkpoint and compare the printed lines.

    python bench/campaign_checksum.py --make-checkpoint /tmp/ckpt   # once: train a small model
    python bench/campaign_checksum.py --checkpoint /tmp/ckpt        # on each commit
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CAMPAIGN = """kind: campaign
name: checksum
model: checksum-ds1@candidate
events: 20000
shard_size: 5000
sampler: midpoint
nfe: 8
conditions:
  distribution: discrete
  values: [256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304]
formats: [parquet, h5]
seed: 11
resources: {actors: 2, cpus_per_actor: 1, batch_size: 2500}
"""


def make_checkpoint(out: str) -> None:
    """Train a small rectified-flow MLP on 4,000 simulated DS1-photon showers (plain models.fit)."""
    import torch

    from farm.data.showers import simulate_in_memory
    from farm.geometry import load_geometry
    from models.checkpoint import save_model
    from models.config import ModelConfig, OptimConfig
    from models.training import TrainData, fit

    geometry = load_geometry("ds1-photons")
    showers, e_inc = simulate_in_memory(geometry, 4000, seed=3)
    data = TrainData(torch.from_numpy(showers).float(), torch.from_numpy(e_inc).reshape(-1, 1))
    config = ModelConfig.model_validate(
        {
            "network": {"kind": "mlp", "width": 64, "depth": 2, "embed_dim": 32},
            "preprocessing": {
                "kind": "shower",
                "layer_sizes": [layer.n_voxels for layer in geometry.active_layers],
            },
            "sampler": {"name": "midpoint", "nfe": 8},
        }
    )
    model = fit(config, OptimConfig(epochs=2, batch_size=256), data, data, lambda m, c: None)
    card = {"data": {"geometry": "ds1-photons", "kind": "showers", "source": "simulated_showers"}}
    save_model(model, out, card=card)
    print(f"checkpoint -> {out}")


def campaign_checksum(checkpoint: str) -> str:
    """Register `checkpoint` in a fresh FARM_HOME, run the campaign, return its dataset_sha256."""
    home = tempfile.mkdtemp(prefix="farm-checksum-")
    env = {**os.environ, "FARM_HOME": home}
    env.pop("MLFLOW_TRACKING_URI", None)
    register = (
        "import sys\n"
        "from farm import registry\n"
        "c = registry.client()\n"
        "run = c.create_run(registry.experiment_id('checksum-ds1'))\n"
        "registry.register('checksum-ds1', run.info.run_id, sys.argv[1], aliases=['candidate'])\n"
    )
    subprocess.run([sys.executable, "-c", register, checkpoint], env=env, check=True)
    job = Path(home) / "campaign.yaml"
    job.write_text(CAMPAIGN)
    subprocess.run(["farm", "campaign", "submit", str(job)], env=env, check=True)
    (summary,) = Path(home, "campaigns").glob("*/output/summary.json")
    return json.loads(summary.read_text())["dataset_sha256"]


def main() -> None:
    """Command line: --make-checkpoint DIR or --checkpoint DIR."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--make-checkpoint", metavar="DIR")
    group.add_argument("--checkpoint", metavar="DIR")
    args = parser.parse_args()
    if args.make_checkpoint:
        make_checkpoint(args.make_checkpoint)
        return
    print(f"dataset_sha256 {campaign_checksum(args.checkpoint)}")


if __name__ == "__main__":
    main()
