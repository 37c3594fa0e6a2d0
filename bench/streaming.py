"""In-memory against streamed training data: events/s and peak memory per worker, same job.

    python bench/streaming.py [--geometry ds2] [--events 20000] [--budget-gib 0.5] [--epochs 3]
        [--model mlp|two-stage] [--cgroup-gib LIMIT [--cgroup-scope tree|worker]]

Writes CaloChallenge HDF5 files of `--events` showers and of four times `--budget-gib` of float32
voxels (the worker memory budget the large file exceeds four times over), then runs `farm train`
(Ray Train, one CPU worker, a small MLP flow-matching model, or with `--model two-stage` a
two-stage model of two such MLPs, MLflow in a throwaway FARM_HOME) on
the small file with data.loading memory and stream, and on the large file streamed only. Each
training runs in its own process so the driver's peak memory is its own. The showers are farm's
simulator's (seed 0) tiled to the file size: a throughput and memory benchmark, not a fidelity
one. Reports the median of samples_per_second over the epochs after the first, the worker's peak
RSS (getrusage, logged by every epoch) and the driver's; prints a markdown table; never asserts.

With `--cgroup-gib LIMIT` (Linux, cgroup v1 memory controller, root) every training runs in its
own memory cgroup limited to LIMIT GiB: the whole process tree, driver, local Ray cluster and
worker, with no swap, so the kernel kills it rather than let it pass the limit. The table then adds
the group's peak (memory.max_usage_in_bytes, page cache included, which the kernel reclaims at the
limit rather than kill) and a fourth run, the large file loaded into memory under the same limit,
which is expected to be killed: the proof that the limit binds and that streaming is what lets the
large file train. `--cgroup-scope worker` limits the Ray Train worker's process alone (the one
that iterates the data; moved into the group, with its charges, as soon as it starts, before it
reads any data): the driver, the raylet, the object store and Ray Data's read tasks stay outside,
so the limit measures what the worker itself holds, which is what the 4x budget is about.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

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


CGROUP_MEMORY = Path("/sys/fs/cgroup/memory")
TRAIN_WORKER = b"RayTrainWorker"
"""What Ray's process title of a Ray Train worker contains (/proc/PID/cmdline)."""


@contextlib.contextmanager
def memory_cgroup(limit_gib: float | None) -> Iterator[Path | None]:
    """A fresh cgroup v1 memory group limited to limit_gib (None: no group), removed after."""
    if limit_gib is None:
        yield None
        return
    group = CGROUP_MEMORY / f"farm-bench-{uuid.uuid4().hex[:8]}"
    group.mkdir()
    try:
        (group / "memory.limit_in_bytes").write_text(str(int(limit_gib * 2**30)))
        # charges move with a moved process where the kernel still supports it (newer kernels
        # refuse): otherwise only what the worker allocates after the move counts, data included
        with contextlib.suppress(OSError):
            (group / "memory.move_charge_at_immigrate").write_text("3")
        yield group
    finally:
        for _ in range(50):  # Ray's processes outlive the driver by a moment
            pids = (group / "cgroup.procs").read_text().split()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            time.sleep(0.2)
        group.rmdir()


def train_workers(exclude: set[int]) -> list[int]:
    """Pids of running Ray Train worker processes, except those in exclude."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in exclude:
            continue
        with contextlib.suppress(OSError):
            if TRAIN_WORKER in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
    return pids


def move_workers_into(group: Path, proc: subprocess.Popen, stop: threading.Event) -> None:
    """Until stop: move every new Ray Train worker process into the group (polled every 20 ms)."""
    moved = set(train_workers(set()))  # workers of another run are not ours
    while not stop.is_set() and proc.poll() is None:
        for pid in train_workers(moved):
            with contextlib.suppress(OSError):
                (group / "cgroup.procs").write_text(str(pid))
            moved.add(pid)
        time.sleep(0.02)


def in_subprocess(
    url: str,
    args: argparse.Namespace,
    loading: str,
    home: str,
    limit_gib: float | None = None,
    scope: str = "tree",
) -> dict:
    """run_one in a fresh Python (its own driver memory and Ray), in a memory cgroup if limited.

    scope tree: the whole process tree in the group; worker: the Ray Train worker only.
    """
    env = {**os.environ, "FARM_HOME": home}
    cmd = [sys.executable, __file__, "--one", url, loading, "--geometry", args.geometry,
           "--epochs", str(args.epochs), "--batch", str(args.batch),
           "--model", args.model]  # fmt: skip
    with memory_cgroup(limit_gib) as group:

        def join_group() -> None:
            if group is not None and scope == "tree":
                (group / "cgroup.procs").write_text(str(os.getpid()))

        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=join_group,
        )  # fmt: skip
        stop = threading.Event()
        watcher = None
        if group is not None and scope == "worker":
            watcher = threading.Thread(target=move_workers_into, args=(group, proc, stop))
            watcher.start()
        stdout, stderr = proc.communicate()
        stop.set()
        if watcher is not None:
            watcher.join()
        limited = {}
        if group is not None:
            oom = dict(
                line.split() for line in (group / "memory.oom_control").read_text().splitlines()
            )
            limited = {
                "group_peak_gib": int((group / "memory.max_usage_in_bytes").read_text()) / 2**30,
                "oom_kills": int(oom.get("oom_kill", 0)),
            }
    if proc.returncode != 0:
        if group is None:
            raise RuntimeError(f"training failed ({proc.returncode}): {stderr[-2000:]}")
        last = stderr.strip().splitlines()[-1:] or [""]
        return {"failed": f"rc {proc.returncode}: {last[0][:160]}",
                "seconds": time.perf_counter() - t0, **limited}  # fmt: skip
    return {**json.loads(stdout.strip().splitlines()[-1]), **limited}


def main() -> None:
    """Write the files, run the three trainings, print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--geometry", default="ds2")
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--budget-gib", type=float, default=0.5)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--model", default="mlp", choices=sorted(MODELS))
    ap.add_argument(
        "--cgroup-gib", type=float, help="run each training in a memory cgroup of this many GiB"
    )
    ap.add_argument(
        "--cgroup-scope",
        choices=("tree", "worker"),
        default="tree",
        help="what the cgroup holds: the whole tree or the Ray Train worker only",
    )
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
        runs = [
            (small_url, args.events, "memory"),
            (small_url, args.events, "stream"),
            (large_url, large, "stream"),
        ]
        if args.cgroup_gib is not None:
            runs.append((large_url, large, "memory"))
        for url, n, loading in runs:
            home = f"{tmp}/home-{loading}-{n}"
            figures = in_subprocess(url, args, loading, home, args.cgroup_gib, args.cgroup_scope)
            rows.append({"events": n, "gib": n * voxels * 4 / 2**30, "loading": loading, **figures})
            print(rows[-1], file=sys.stderr)
    memory_rate = rows[0]["rate"]
    what = "MLP 256x2" if args.model == "mlp" else "two-stage, MLPs 256x2"
    print(f"# {args.geometry} ({voxels} voxels), 1 CPU worker, {what}, batch {args.batch}, "
          f"{args.epochs} epochs; worker budget {args.budget_gib} GiB (large file: 4x)")  # fmt: skip
    limited = args.cgroup_gib is not None
    if limited:
        held = "the Ray Train worker only" if args.cgroup_scope == "worker" else "the whole tree"
        print(
            f"# every training in its own memory cgroup of {args.cgroup_gib} GiB (no swap),"
            f" holding {held}"
        )
    extra = " group peak GiB | OOM kills |" if limited else ""
    print("| data | events | float32 GiB | loading | events/s (median) | vs memory | "
          f"worker peak RSS MiB | driver peak RSS MiB | wall s |{extra}")  # fmt: skip
    print("| --- " * (11 if limited else 9) + "|")
    for r in rows:
        size = (
            f"| {'large' if r['events'] == large else 'small'} | {r['events']:,} | {r['gib']:.2f}"
        )
        group = f" {r['group_peak_gib']:.2f} | {r['oom_kills']} |" if limited else ""
        if "failed" in r:
            print(f"{size} | {r['loading']} | failed: {r['failed']} | - | - | - | "
                  f"{r['seconds']:.0f} |{group}")  # fmt: skip
            continue
        print(
            f"{size} | {r['loading']} | {r['rate']:,.0f} | {r['rate'] / memory_rate:.2f} | "
            f"{r['worker_rss_mib']:,.0f} | {r['driver_rss_mib']:,.0f} | {r['seconds']:.0f} |"
            f"{group}"
        )


if __name__ == "__main__":
    main()
