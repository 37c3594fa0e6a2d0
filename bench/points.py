"""Benchmark point-cloud showers: simulator rate, teacher vs 1-step student rate, fidelity, bytes.

Run: python bench/points.py [--train 6000] [--epochs 12] [--distill-epochs 3] [--eval 10000]
[--keep DIR | --load DIR]. Prints tables; never asserts. On CPU it trains the shipped recipes:
the teacher of jobs/train-points-ild-epic.yaml (EPiC, flow matching, learnt count + E_sum model)
on the ild-ecal-like reference at the given size, and distils it with
jobs/distill-points-ild-epic.yaml's settings into a 1-step consistency student
(models.distill). It reports:

1. showers/s of farm.data.hit_sim on one core (median of --repeats);
2. showers/s of teacher (its NFE) and student (1 step), threads 1 and 2, median of --repeats,
   with the ratio (farm.generation.point_sample: generation, cell assignment, merging);
3. fidelity of teacher and student against --eval reference showers, beside the
   reference-vs-reference floor on two independent --eval samples (farm.evaluation.points:
   point features and the voxel projection's, with the projection's low- and high-level
   classifier AUCs unless --no-classifier);
4. bytes per shower on disk: points Parquet vs the voxel projection (Parquet zstd, HDF5 gzip).

--keep DIR writes both models (models.checkpoint); --load DIR skips training and reads them.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

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
from farm.specs import load_job
from models.checkpoint import save_model
from models.data import TrainData
from models.distill import distill
from models.loading import load_model
from models.training import fit

GEO = load_cell_geometry("ild-ecal-like")
JOBS = Path(__file__).resolve().parent.parent / "jobs"
TEACHER_JOB = JOBS / "train-points-ild-epic.yaml"
STUDENT_JOB = JOBS / "distill-points-ild-epic.yaml"


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


def as_train_data(sample: PointSample, n_max: int) -> TrainData:
    """Padded clouds and [E_inc, n] of a reference sample."""
    x, c = sample.model_inputs(n_max)
    return TrainData(torch.from_numpy(x), torch.from_numpy(c))


def train_models(n_train: int, epochs: int, distill_epochs: int) -> tuple[Any, Any]:
    """(teacher, student): the recipes' teacher trained, then its student distilled, same data."""
    teacher_job = load_job(TEACHER_JOB, kind="train")
    student_job = load_job(STUDENT_JOB, kind="distill")
    train, val = reference(n_train, 1), reference(max(64, n_train // 8), 4)
    n_max = int(max(train.counts.max(), val.counts.max()))
    data, val_data = as_train_data(train, n_max), as_train_data(val, n_max)

    def report(metrics: dict[str, float], checkpoint_dir: str | None = None) -> None:
        loss = metrics.get("val_loss", metrics.get("train_loss", float("nan")))
        print(f"  epoch {metrics['epoch']}: loss {loss:.4f}", flush=True)

    optim = teacher_job.optim.model_copy(update={"epochs": epochs})
    t0 = time.perf_counter()
    teacher = fit(teacher_job.model, optim, data, val_data, report)
    print(f"teacher: {epochs} epochs in {time.perf_counter() - t0:.0f} s", flush=True)
    student_optim = student_job.optim.model_copy(update={"epochs": distill_epochs})
    t0 = time.perf_counter()
    student = distill(teacher, student_job.distill, student_optim, data, report)
    print(f"student: {distill_epochs} epochs in {time.perf_counter() - t0:.0f} s", flush=True)
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
    ap.add_argument("--n", type=int, default=400, help="showers per timed call")
    ap.add_argument("--train", type=int, default=6000, help="training showers")
    ap.add_argument("--epochs", type=int, default=12, help="teacher epochs")
    ap.add_argument("--distill-epochs", type=int, default=3, help="student epochs")
    ap.add_argument("--eval", type=int, default=10_000, help="showers per compared sample")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2, help="torch threads for training and eval")
    ap.add_argument("--keep", type=Path, help="write teacher/ and student/ here")
    ap.add_argument("--load", type=Path, help="read teacher/ and student/ from here; no training")
    ap.add_argument(
        "--no-classifier", dest="classifier", action="store_false", help="skip the AUC rows"
    )
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    sim = simulator_rate(args.n, args.repeats)
    print(f"simulator (farm.data.hit_sim), 1 core: {sim:,.0f} showers/s (median of {args.repeats})")
    torch.set_num_threads(args.threads)
    if args.load:
        teacher, student = (load_model(args.load / name) for name in ("teacher", "student"))
    else:
        t0 = time.perf_counter()
        teacher, student = train_models(args.train, args.epochs, args.distill_epochs)
        print(f"trained teacher + distilled student in {time.perf_counter() - t0:.0f} s")
    if args.keep:
        for name, model in (("teacher", teacher), ("student", student)):
            save_model(model, args.keep / name)
    rates_table(teacher, student, reference(args.n, 2).e_inc, sim, args.repeats)
    torch.set_num_threads(args.threads)
    fidelity_table(teacher, student, args.eval, args.classifier)
    b = sizes(reference(min(args.eval, 2000), 3))
    print("\n| file | bytes per shower |")
    print("| --- | --- |")
    print(f"| points Parquet (zstd) | {b['points']:,.0f} |")
    print(
        f"| voxel projection Parquet (zstd, {GEO.voxel_binning.n_voxels} voxels) | {b['parquet']:,.0f} |"
    )
    print(f"| voxel projection HDF5 (gzip) | {b['h5']:,.0f} |")


def rates_table(teacher: Any, student: Any, e_inc: np.ndarray, sim: float, repeats: int) -> None:
    """Showers/s of both models at 1 and 2 threads, against the simulator's."""
    print(f"\n| model | NFE | threads | showers/s (median of {repeats}) | vs simulator |")
    print("| --- | --- | --- | --- | --- |")
    rates = {}
    for name, model in (("teacher", teacher), ("student", student)):
        for threads in (1, 2):
            rate = model_rate(model, e_inc, repeats, threads)
            rates[name, threads] = rate
            steps = model.config.hits.sampler.nfe
            print(f"| {name} | {steps} | {threads} | {rate:,.1f} | {rate / sim:.3f} |")
    for threads in (1, 2):
        ratio = rates["student", threads] / rates["teacher", threads]
        print(f"student / teacher, {threads} thread(s): {ratio:.1f}x")


def fidelity_table(teacher: Any, student: Any, n: int, classifier: bool) -> None:
    """Point and projection metrics of both models on n showers, with the floor's column."""
    full = reference(2 * n, 3)
    options = EvaluationOptions(classifier=classifier, plots=False)
    results, hits = {}, {}
    for name, model in (("teacher", teacher), ("student", student)):
        t0 = time.perf_counter()
        gen = point_sample(model, full.e_inc[:n], GEO, generator=torch.Generator().manual_seed(7))
        print(f"{name}: generated {n} showers in {time.perf_counter() - t0:.0f} s", flush=True)
        results[name] = evaluate_points(full, gen, options=options).metrics
        hits[name] = gen.counts.mean()
    print(f"\n{n:,} generated vs {2 * n:,} reference showers (floor: two independent halves)")
    print("\n| metric | teacher | student | floor (ref vs ref) |")
    print("| --- | --- | --- | --- |")
    keys = ("sep/n_hits", "sep/e_sum_ratio", "sep/cog_z", "sep/width_r", "sep_hit_spectrum")
    aucs = ("auc_low", "auc_high") if classifier else ()
    for key in (*keys, "sep_mean", "sep_max", "fpd", "kpd", *aucs):
        t, s = results["teacher"][key], results["student"][key]
        print(f"| {key} | {t['value']:.4g} | {s['value']:.4g} | {t['floor']:.4g} |")
    print(
        f"mean hits per shower: reference {full.counts.mean():.1f}, teacher {hits['teacher']:.1f},"
        f" student {hits['student']:.1f}"
    )


if __name__ == "__main__":
    main()
