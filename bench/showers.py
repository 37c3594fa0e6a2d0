"""Benchmark the built-in shower simulator: showers/s on one core and bytes per shower on disk.

Run: python bench/showers.py [--n 2000] [--repeats 5]. Prints a table; never asserts timings.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

from farm.data.geometry import load_geometry
from farm.data.shower_sim import incident_energies, simulate_showers
from farm.formats.calochallenge import write_calochallenge
from farm.formats.showers_parquet import write_showers_parquet


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--geometries", nargs="+", default=["ds1-photons", "ds1-pions", "ds2"])
    args = ap.parse_args()
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
