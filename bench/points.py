"""Benchmark point-cloud showers: simulator rate, teacher vs 1-step student rate, fidelity, bytes.

Run: python bench/points.py [--n 400] [--train 1200] [--epochs 6] [--repeats 5]. Prints tables;
never asserts. On CPU (torch threads 1 and 2) it trains a small CaloClouds-like teacher (EPiC,
flow matching, learnt count + E_sum model) on the ild-ecal-like reference, distils it into a
1-step consistency student (models.distill), and reports:

1. showers/s of farm.data.hit_sim on one core (median of --repeats);
2. showers/s of teacher (its NFE) and student (1 step), threads 1 and 2, median of --repeats,
   with the ratio (farm.generation.point_sample: generation, cell assignment, merging);
3. fidelity of teacher and student against the reference with its reference-vs-reference floor
   (farm.evaluation.points: point features and the voxel projection's, with the projection's
   low- and high-level classifier AUCs unless --no-classifier);
4. bytes per shower on disk: points Parquet vs the voxel projection (Parquet zstd, HDF5 gzip).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch

from farm.data.hit_sim import simulate_hits
from farm.data.shower_sim import incident_energies
from farm.evaluation.options import EvaluationOptions
from farm.evaluation.points import evaluate_points
from farm.formats.calochallenge import write_calochallenge
from farm.formats.points_parquet import write_points_parquet
from farm.formats.showers_parquet import write_showers_parquet
from farm.generation import point_sample
from farm.geometry import load_cell_geometry
from farm.samples import PointSample
from models.config import OptimConfig, parse_model_config
from models.data import TrainData
from models.distill import DistillConfig, distill
from models.training import fit

GEO = load_cell_geometry("ild-ecal-like")
TEACHER = {
    "kind": "point_showers",
    "hits": {
        "network": {
            "kind": "epic",
            "n_features": 4,
            "width": 64,
            "global_dim": 16,
            "depth": 3,
            "embed_dim": 32,
        },
        "process": {"kind": "edm"},
        "preprocessing": {"kind": "pointcloud", "n_features": 4, "log_features": [3]},
        "sampler": {"name": "heun", "nfe": 18},
    },
}


def reference(n: int, seed: int) -> PointSample:
    """n showers of the geometry's spectrum (uniform 10-100 GeV), seeded."""
    rng = np.random.default_rng(seed)
    e = incident_energies(GEO, n, rng)
    h = simulate_hits(GEO, e, rng)
    return PointSample(h.counts, h.hits, h.layer, e, GEO, {}, np.arange(n))


def simulator_rate(n: int, repeats: int) -> float:
    """Median showers/s of the simulator on one core."""
    rates = []
    for r in range(repeats):
        rng = np.random.default_rng(100 + r)
        e = incident_energies(GEO, n, rng)
        t0 = time.perf_counter()
        simulate_hits(GEO, e, rng)
        rates.append(n / (time.perf_counter() - t0))
    return float(np.median(rates))


def train_models(train: PointSample, epochs: int):
    """(teacher, student): the teacher trained, the student distilled from it on the same data."""
    n_max = int(train.counts.max())
    x, c = train.model_inputs(n_max)
    data = TrainData(torch.from_numpy(x), torch.from_numpy(c))
    val = TrainData(data.x[:64], data.cond[:64])
    optim = OptimConfig(epochs=epochs, batch_size=32, lr=1e-3, warmup_steps=20, ema_decay=0.99)
    teacher = fit(parse_model_config(TEACHER), optim, data, val, lambda m, d: None)
    student_optim = optim.model_copy(update={"epochs": max(1, epochs // 2), "lr": 2e-4})
    student = distill(teacher, DistillConfig(), student_optim, data, lambda m, d: None)
    return teacher, student


def model_rate(model, e_inc: np.ndarray, repeats: int, threads: int) -> float:
    """Median showers/s of point_sample at a torch thread count."""
    torch.set_num_threads(threads)
    rates = []
    for r in range(repeats):
        t0 = time.perf_counter()
        point_sample(model, e_inc, GEO, generator=torch.Generator().manual_seed(r))
        rates.append(len(e_inc) / (time.perf_counter() - t0))
    return float(np.median(rates))


def sizes(sample: PointSample) -> dict[str, float]:
    """Bytes per shower: points Parquet, voxel projection Parquet and HDF5."""
    voxels = sample.to_voxels()
    with tempfile.TemporaryDirectory() as d:
        paths = {k: os.path.join(d, f"s.{k}") for k in ("points", "parquet", "h5")}
        write_points_parquet(paths["points"], sample)
        write_showers_parquet(
            paths["parquet"], voxels.showers, voxels.e_inc, np.arange(len(sample)), GEO.name
        )
        write_calochallenge(paths["h5"], voxels.showers, voxels.e_inc, voxels.geometry)
        return {k: os.path.getsize(p) / len(sample) for k, p in paths.items()}


def main() -> None:
    """Print the four tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=400, help="showers per timed call and per fidelity")
    ap.add_argument("--train", type=int, default=1200, help="training showers")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument(
        "--no-classifier", dest="classifier", action="store_false", help="skip the AUC rows"
    )
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    sim = simulator_rate(args.n, args.repeats)
    print(f"simulator (farm.data.hit_sim), 1 core: {sim:,.0f} showers/s (median of {args.repeats})")
    t0 = time.perf_counter()
    teacher, student = train_models(reference(args.train, 1), args.epochs)
    print(f"trained teacher + distilled student in {time.perf_counter() - t0:.0f} s")
    ref = reference(args.n, 2)
    nfe = teacher.config.sampler.nfe
    print(f"\n| model | NFE | threads | showers/s (median of {args.repeats}) | vs simulator |")
    print("| --- | --- | --- | --- | --- |")
    rates = {}
    for name, model in (("teacher", teacher), ("student", student)):
        for threads in (1, 2):
            rate = model_rate(model, ref.e_inc, args.repeats, threads)
            rates[name, threads] = rate
            steps = nfe if name == "teacher" else student.config.sampler.nfe
            print(f"| {name} | {steps} | {threads} | {rate:,.1f} | {rate / sim:.3f} |")
    for threads in (1, 2):
        ratio = rates["student", threads] / rates["teacher", threads]
        print(f"student / teacher, {threads} thread(s): {ratio:.1f}x")
    torch.set_num_threads(2)
    full = reference(2 * args.n, 3)
    print("\n| metric | teacher | student | floor (ref vs ref) |")
    print("| --- | --- | --- | --- |")
    options = EvaluationOptions(classifier=args.classifier, plots=False)
    results = {}
    for name, model in (("teacher", teacher), ("student", student)):
        gen = point_sample(model, full.e_inc, GEO, generator=torch.Generator().manual_seed(7))
        results[name] = evaluate_points(full, gen, options=options).metrics
    keys = ("sep/n_hits", "sep/e_sum_ratio", "sep/cog_z", "sep/width_r", "sep_hit_spectrum")
    aucs = ("auc_low", "auc_high") if args.classifier else ()
    for key in (*keys, "sep_mean", "sep_max", "fpd", "kpd", *aucs):
        t, s = results["teacher"][key], results["student"][key]
        print(f"| {key} | {t['value']:.4g} | {s['value']:.4g} | {t['floor']:.4g} |")
    b = sizes(full)
    print("\n| file | bytes per shower |")
    print("| --- | --- |")
    print(f"| points Parquet (zstd) | {b['points']:,.0f} |")
    print(
        f"| voxel projection Parquet (zstd, {GEO.voxel_binning.n_voxels} voxels) | {b['parquet']:,.0f} |"
    )
    print(f"| voxel projection HDF5 (gzip) | {b['h5']:,.0f} |")
    print(f"mean hits per shower: {full.counts.mean():.0f}")


if __name__ == "__main__":
    main()
