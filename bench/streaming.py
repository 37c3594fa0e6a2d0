"""In-memory against streamed training data: events/s and peak memory per worker, same job.

    python bench/streaming.py [--geometry ds2] [--events 20000] [--budget-gib 0.5] [--epochs 3]
        [--model mlp|two-stage]

Writes CaloChallenge HDF5 files of `--events` showers and of four times `--budget-gib` of float32
voxels (the worker memory budget the large file exceeds four times over), then runs `farm train`
(Ray Train, one CPU worker, a small MLP flow-matching model, or with `--model two-stage` a
two-stage model of two such MLPs, MLflow in a throwaway FARM_HOME) on
the small file with data.loading memory and stream, and on the large file streamed only. Each
training runs in its own process so the driver's peak memory is its own. The showers are farm's
simulator's (seed 0) tiled to the file size: a throughput and memory benchmark, not a fidelity
one. Reports the median of samples_per_second over the epochs after the first, the worker's peak
RSS (getrusage, logged by every epoch) and the driver's; prints a markdown table; never asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

BASE_SHOWERS = 5_000
"""Simulated showers the files are tiled from."""

MLP = {"network": {"kind": "mlp", "width": 256, "depth": 2, "embed_dim": 32},
       "sampler": {"name": "euler", "nfe": 2}}  # fmt: skip
MODELS = {"mlp": MLP, "two-stage": {"kind": "two_stage", "energy": MLP, "shape": MLP}}
"""The model block of each --model choice."""


def write_file(url: str, geometry: str, n: int) -> None:
    """n showers: BASE_SHOWERS simulated ones repeated, in chunks (the file never sits in memory)."""
    import h5py

    from farm.data.shower_sim import incident_energies, simulate_showers
    from farm.geometry import load_geometry

    g = load_geometry(geometry)
    rng = np.random.default_rng(0)
    e = incident_energies(g, BASE_SHOWERS, rng)
    x = simulate_showers(g, e, rng).astype(np.float32)
    with h5py.File(url, "w") as f:
        s_ds = f.create_dataset("showers", (n, x.shape[1]), np.float32, chunks=(256, x.shape[1]))
        e_ds = f.create_dataset("incident_energies", (n, 1), np.float64)
        f.attrs["geometry"] = geometry
        for start in range(0, n, BASE_SHOWERS):
            stop = min(start + BASE_SHOWERS, n)
            s_ds[start:stop] = x[: stop - start]
            e_ds[start:stop, 0] = e[: stop - start]


def run_one(url: str, geometry: str, loading: str, epochs: int, batch: int, model: str) -> dict:
    """Train once (in this process) and return the figures."""
    from farm import registry
    from farm.specs import parse_job
    from farm.train import run_training

    job = parse_job(
        {
            "kind": "train",
            "name": f"bench-{loading}",
            "data": {"source": "calochallenge", "url": url, "geometry": geometry,
                     "loading": loading, "stream": {"fit_events": 5_000, "val_events": 1_000}},
            "model": MODELS[model],
            "optim": {"epochs": epochs, "batch_size": batch, "lr": 1e-3, "warmup_steps": 10},
            "resources": {"workers": 1, "use_gpu": False},
            "validation_events": 0,
        },
        "bench",
        kind="train",
    )  # fmt: skip
    t0 = time.perf_counter()
    result = run_training(job)
    client = registry.client()
    rates = [m.value for m in client.get_metric_history(result.mlflow_run_id, "samples_per_second")]
    rss = [m.value for m in client.get_metric_history(result.mlflow_run_id, "peak_rss_mib")]
    return {
        "rate": float(np.median(rates[1:] or rates)),
        "worker_rss_mib": max(rss),
        "driver_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "seconds": time.perf_counter() - t0,
    }


def in_subprocess(url: str, args: argparse.Namespace, loading: str, home: str) -> dict:
    """run_one in a fresh Python (its own driver memory and Ray)."""
    env = {**os.environ, "FARM_HOME": home}
    cmd = [sys.executable, __file__, "--one", url, loading, "--geometry", args.geometry,
           "--epochs", str(args.epochs), "--batch", str(args.batch),
           "--model", args.model]  # fmt: skip
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    """Write the files, run the three trainings, print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--geometry", default="ds2")
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--budget-gib", type=float, default=0.5)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--model", default="mlp", choices=sorted(MODELS))
    ap.add_argument("--one", nargs=2, metavar=("URL", "LOADING"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        url, loading = args.one
        figures = run_one(url, args.geometry, loading, args.epochs, args.batch, args.model)
        print(json.dumps(figures))
        return
    from farm.geometry import load_geometry

    voxels = load_geometry(args.geometry).n_voxels
    large = int(4 * args.budget_gib * 2**30 // (4 * voxels))
    rows = []
    with tempfile.TemporaryDirectory(prefix="farm-bench-stream-") as tmp:
        small_url, large_url = f"{tmp}/small.h5", f"{tmp}/large.h5"
        write_file(small_url, args.geometry, args.events)
        write_file(large_url, args.geometry, large)
        for url, n, loading in (
            (small_url, args.events, "memory"),
            (small_url, args.events, "stream"),
            (large_url, large, "stream"),
        ):
            figures = in_subprocess(url, args, loading, f"{tmp}/home-{loading}-{n}")
            rows.append({"events": n, "gib": n * voxels * 4 / 2**30, "loading": loading, **figures})
            print(rows[-1], file=sys.stderr)
    memory_rate = rows[0]["rate"]
    what = "MLP 256x2" if args.model == "mlp" else "two-stage, MLPs 256x2"
    print(f"# {args.geometry} ({voxels} voxels), 1 CPU worker, {what}, batch {args.batch}, "
          f"{args.epochs} epochs; worker budget {args.budget_gib} GiB (large file: 4x)")  # fmt: skip
    print("| data | events | float32 GiB | loading | events/s (median) | vs memory | "
          "worker peak RSS MiB | driver peak RSS MiB | wall s |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {'large' if r['events'] == large else 'small'} | {r['events']:,} | "
            f"{r['gib']:.2f} | {r['loading']} | {r['rate']:,.0f} | {r['rate'] / memory_rate:.2f} | "
            f"{r['worker_rss_mib']:,.0f} | {r['driver_rss_mib']:,.0f} | {r['seconds']:.0f} |"
        )


if __name__ == "__main__":
    main()
