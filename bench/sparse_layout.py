"""Dense against sparse shower Parquet: bytes per shower, write and read (densify) showers/s.

    python bench/sparse_layout.py [--n 2000] [--repeats 3] [--geometries ds1-photons ds2 ds3]

Showers come from farm's simulator (thresholded, challenge energy spectrum, seed 0); both layouts
are zstd Parquet with row groups of 10,000 written by farm.formats.showers_parquet, read back
through read_showers_parquet (the sparse one densified). The round trip is checked bit for bit.
Prints a markdown table of medians over --repeats; never asserts.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

from farm.data.shower_sim import incident_energies, simulate_showers
from farm.formats.showers_parquet import read_showers_parquet, write_showers_parquet
from farm.geometry import load_geometry


def measure(name: str, n: int, repeats: int) -> dict:
    """Sizes and median write/read rates of one geometry's showers in both layouts."""
    g = load_geometry(name)
    rng = np.random.default_rng(0)
    e = incident_energies(g, n, rng)
    x = simulate_showers(g, e, rng)
    ids = np.arange(n)
    row = {"geometry": name, "voxels": x.shape[1], "nonzero": float((x != 0).mean())}
    with tempfile.TemporaryDirectory() as d:
        for layout in ("dense", "sparse"):
            url = os.path.join(d, f"{layout}.parquet")
            writes, reads = [], []
            for _ in range(repeats):
                t0 = time.perf_counter()
                write_showers_parquet(url, x, e, ids, name, layout=layout)
                writes.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                back = read_showers_parquet(url)["showers"]
                reads.append(time.perf_counter() - t0)
            assert back.tobytes() == x.tobytes(), f"{name} {layout}: round trip not exact"
            row[layout] = {
                "bytes": os.path.getsize(url) / n,
                "write": n / float(np.median(writes)),
                "read": n / float(np.median(reads)),
            }
    return row


def main() -> None:
    """Print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--geometries", nargs="+", default=["ds1-photons", "ds2", "ds3"])
    args = ap.parse_args()
    print(f"# {args.n} simulated showers per geometry (ds3: a fifth), median of {args.repeats}")
    print(
        "| geometry | voxels | non-zero | dense B/shower | sparse B/shower | sparse/dense "
        "| write dense/s | write sparse/s | read dense/s | read sparse/s |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in args.geometries:
        r = measure(name, args.n // 5 if name == "ds3" else args.n, args.repeats)
        d, s = r["dense"], r["sparse"]
        print(
            f"| {name} | {r['voxels']} | {r['nonzero']:.1%} | {d['bytes']:.0f} | {s['bytes']:.0f} "
            f"| {s['bytes'] / d['bytes']:.2f} | {d['write']:.0f} | {s['write']:.0f} "
            f"| {d['read']:.0f} | {s['read']:.0f} |"
        )


if __name__ == "__main__":
    main()
