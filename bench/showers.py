"""Benchmark the built-in shower simulator: showers/s on one core and bytes per shower on disk.

Run: python bench/showers.py [--n 2000] [--repeats 5]. Prints a table; never asserts timings.
With --floors GEOMETRY ..., measures instead the reference-vs-reference floors of farm's
evaluation (docs/validation.md): a reference of --floor-events showers (seed 1) and an
independent sample of half as many (seed 2), compared by evaluate_showers; each metric's value
(independent sample vs reference half A) and floor (half B vs half A) are both reference vs
reference.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings

import numpy as np

from farm.data.shower_sim import incident_energies, simulate_showers
from farm.evaluation.evaluate import evaluate_showers
from farm.formats.calochallenge import write_calochallenge
from farm.formats.showers_parquet import write_showers_parquet
from farm.geometry import load_geometry


def showers_per_second(name: str, n: int, repeats: int) -> tuple[float, np.ndarray, np.ndarray]:
    """Median showers/s over repeats (challenge energy spectrum), and the last sample."""
    g = load_geometry(name)
    rates = []
    for r in range(repeats):
        rng = np.random.default_rng(r)
        e = incident_energies(g, n, rng)
        t0 = time.perf_counter()
        x = simulate_showers(g, e, rng)
        rates.append(n / (time.perf_counter() - t0))
    return float(np.median(rates)), x, e


def bytes_per_shower(name: str, x: np.ndarray, e: np.ndarray) -> tuple[float, float]:
    """(HDF5 gzip, Parquet zstd) file size per shower."""
    with tempfile.TemporaryDirectory() as d:
        h5 = os.path.join(d, "s.h5")
        pq = os.path.join(d, "s.parquet")
        write_calochallenge(h5, x, e)
        write_showers_parquet(pq, x, e, np.arange(len(e)), name)
        return os.path.getsize(h5) / len(e), os.path.getsize(pq) / len(e)


FLOOR_METRICS = ("auc_low", "auc_high", "sep_mean", "sep_max", "fpd", "kpd", "sep_voxel_spectrum")


def simulated(name: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(showers, e_inc) of n showers with the challenge's energy spectrum, seeded."""
    g = load_geometry(name)
    rng = np.random.default_rng(seed)
    e = incident_energies(g, n, rng)
    return simulate_showers(g, e, rng), e


def print_floors(name: str, n_reference: int) -> None:
    """Markdown table of evaluate_showers on two independent simulated samples."""
    reference = simulated(name, n_reference, seed=1)
    independent = simulated(name, n_reference // 2, seed=2)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = evaluate_showers(reference, independent, name, seed=0, plots=False)
    print(f"\n## {name}: {n_reference} reference, {n_reference // 2} independent showers")
    print("| metric | independent vs A | B vs A (floor) |\n| --- | --- | --- |")
    for key in FLOOR_METRICS:
        m = result.metrics[key]
        feature = f" ({m['feature']})" if m.get("feature") else ""
        print(f"| {key}{feature} | {m['value']:.3g} | {m['floor']:.3g} |")
    print(f"evaluated in {time.perf_counter() - t0:.0f} s")


def main() -> None:
    """Print the speed table, or with --floors the floor tables."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--geometries", nargs="+", default=["ds1-photons", "ds1-pions", "ds2"])
    ap.add_argument("--floors", nargs="+", metavar="GEOMETRY", help="measure evaluation floors")
    ap.add_argument("--floor-events", type=int, default=20_000)
    args = ap.parse_args()
    if args.floors:
        for name in args.floors:
            print_floors(name, args.floor_events)
        return
    print(f"# one core, numpy {np.__version__}, n={args.n}, median of {args.repeats}")
    print(
        f"{'geometry':<12} {'voxels':>6} {'showers/s':>10} {'HDF5 B/shower':>14} "
        f"{'Parquet B/shower':>17} {'raw f32 B':>10}"
    )
    for name in args.geometries:
        n = args.n if name != "ds3" else max(args.n // 10, 10)
        rate, x, e = showers_per_second(name, n, args.repeats)
        h5, pq = bytes_per_shower(name, x, e)
        print(
            f"{name:<12} {x.shape[1]:>6} {rate:>10.0f} {h5:>14.0f} {pq:>17.0f} {x.shape[1] * 4:>10}"
        )


if __name__ == "__main__":
    main()
