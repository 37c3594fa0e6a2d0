"""Benchmark Pythia 8 + FastJet jets: jets/s on one core per process, and with Ray workers.

MPI and hadronisation on, pT-hat 900-1100 GeV, 30 constituents. One-core rates leave out Pythia's
initialisation (shown separately); wall and CPU time are both shown because a shared machine
inflates wall time. Run: python bench/jets.py [--n 300] [--workers 2]. Never asserts timings.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from farm.data import jets
from farm.data.jets import PROCESSES, JetGenConfig, generate_jets, generate_jets_sharded


def one_core(process: str, n: int, seed: int = 1) -> dict[str, float]:
    """Jets/s (wall and CPU) on one core after initialisation, init time, events per jet."""
    config = JetGenConfig(process, n)
    w0, c0 = time.perf_counter(), time.process_time()
    jets._make_pythia(config, seed)
    init_wall, init_cpu = time.perf_counter() - w0, time.process_time() - c0
    w0, c0 = time.perf_counter(), time.process_time()
    data = generate_jets(config, seed)
    wall, cpu = time.perf_counter() - w0 - init_wall, time.process_time() - c0 - init_cpu
    return {
        "wall": n / wall,
        "cpu": n / cpu,
        "init": init_wall,
        "events_per_jet": (int(data["event_index"][-1]) + 1) / n,
        "sd_peak": float(np.median(data["sd_mass"])),
    }


def ray_workers(process: str, n_per_worker: int, workers: int) -> float:
    """Jets/s with `workers` Ray tasks in parallel (one shard each, init included)."""
    config = JetGenConfig(process, n_per_worker * workers)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        generate_jets_sharded(config, 1, out, n_per_worker, progress=False)
        return config.n_jets / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=300, help="jets per process per core")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--processes", nargs="+", default=list(PROCESSES), choices=list(PROCESSES))
    args = parser.parse_args()

    import ray

    ray.init(address="local", num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
    ray_workers("gluon", 5, args.workers)  # warm the worker processes (imports)
    head = (
        f"{'process':<8}{'jets/s 1 core':>15}{'(CPU time)':>12}{'init s':>8}"
        f"{'events/jet':>12}{f'jets/s {args.workers} Ray':>16}{'median m_SD':>13}"
    )
    print(head)
    print("-" * len(head))
    for process in args.processes:
        r = one_core(process, args.n)
        par = ray_workers(process, args.n, args.workers)
        print(
            f"{process:<8}{r['wall']:>15.0f}{r['cpu']:>12.0f}{r['init']:>8.2f}"
            f"{r['events_per_jet']:>12.2f}{par:>16.0f}{r['sd_peak']:>13.1f}"
        )
    ray.shutdown()


if __name__ == "__main__":
    main()
