"""Where a kept two-stage model's hits come from: occupancy by E_inc quarter, before and after the rebuild.

    python bench/two_stage_hits.py --model-dir FID_OUT/ds2/electrons-two-stage-mlp/model \
        --dataset ds2

Takes a model that `bench/fidelity.py --keep` wrote, simulates `--events` reference showers
(seed `--seed`) and, for their incident energies, samples the energy stage and then the shape
stage (its NFE `--nfe`). Prints per quarter of E_inc the fraction of voxels at or above the
readout threshold in the reference, in the shape stage's voxels as generated, after the rebuild,
and for an identity model (N(0, 1) pushed through the shape stage's inverse given the reference's
own conditions), with the median and 16-84% range of the generated voxels' sum over the layer
energy they were given. For a `layer_hits` model it also prints the hits asked of the rebuild
and how many of the voxels it keeps were below the threshold as generated. Never asserts.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    """Sample the kept model stage by stage and print the occupancy table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", required=True, type=Path)
    ap.add_argument("--dataset", default="ds2", choices=("ds1-photons", "ds2"))
    ap.add_argument("--events", type=int, default=4_000)
    ap.add_argument("--seed", type=int, default=4242, help="reference simulation seed")
    ap.add_argument("--nfe", type=int, default=4, help="the shape stage's NFE")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from farm.data.showers import simulate_in_memory
    from models.data import TrainData
    from models.loading import load_model
    from models.two_stage import rebuild as R
    from models.two_stage.model import TwoStageModel

    model = load_model(args.model_dir).eval()
    if not isinstance(model, TwoStageModel):
        raise SystemExit(f"{args.model_dir}: not a two-stage model")
    showers, e_inc = simulate_in_memory(args.dataset, args.events, args.seed)
    x = torch.as_tensor(np.asarray(showers)).double()
    e = torch.as_tensor(np.asarray(e_inc)).double().reshape(-1, 1)
    thr, gen = model.threshold_mev, torch.Generator().manual_seed(args.seed + 1)
    with torch.no_grad():
        energies = model.energy.generate(e, generator=gen, batch_size=len(e))
        layer_counts, q = R.rebuild_layers(energies[:, : model.n_layers], thr)
        c_min = R.hit_quanta(thr, q)
        layer_e = layer_counts.double() * q[:, None]
        cond, asked = [e, layer_e], None
        if model.layer_hits:
            asked = R.feasible_hits(
                energies[:, model.n_layers :].long(), layer_counts, c_min, model.layer_sizes
            )
            cond.append(asked.double())
        raw = model.shape.generate(
            torch.cat(cond, 1), nfe=args.nfe, generator=gen, batch_size=len(e)
        ).double()
        counts = R.rebuild_voxels(layer_counts, raw, q, thr, model.layout, asked)
        rebuilt = counts.double() * q[:, None]
        ref_parts = model.stage_data(TrainData(x, e))[1]
        z = torch.randn(x.shape, generator=gen, dtype=torch.float64)
        identity = model.shape.preprocessing.inverse(z, ref_parts.cond)
    layer_sum = torch.zeros_like(layer_e).index_add_(
        1, model.layer_of_voxel, torch.where(raw >= thr, raw, 0.0)
    )
    ratio = layer_sum.sum(1) / layer_e.sum(1).clamp_min(1e-300)
    edges = torch.quantile(e[:, 0], torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]).double())
    print(
        "| E_inc (GeV) | reference | generated | rebuilt | identity | sum / E_layer: median (16-84%) |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for k in range(4):
        s = (e[:, 0] >= edges[k]) & (e[:, 0] <= edges[k + 1])
        occ = [float((v[s] >= thr).double().mean()) for v in (x, raw, rebuilt, identity)]
        lo, med, hi = torch.quantile(ratio[s], torch.tensor([0.16, 0.5, 0.84]).double()).tolist()
        span = f"{edges[k] / 1e3:.1f}-{edges[k + 1] / 1e3:.1f}"
        cells = " | ".join(f"{o:.4f}" for o in occ)
        print(f"| {span} | {cells} | {med:.3f} ({lo:.2f}-{hi:.2f}) |")
    if asked is not None:
        values = model.layout.padded(raw, -1.0).sort(-1, descending=True).values
        kept = torch.arange(values.shape[-1]) < asked.unsqueeze(-1)
        below = (kept & (values >= 0) & (values < thr)).sum((1, 2)).double().mean()
        print(
            f"hits per shower: reference {float((x >= thr).sum(1).double().mean()):.1f}, "
            f"asked {float(asked.sum(1).double().mean()):.1f}, generated above threshold "
            f"{float((raw >= thr).sum(1).double().mean()):.1f}, kept but below threshold "
            f"{float(below):.1f}"
        )


if __name__ == "__main__":
    main()
