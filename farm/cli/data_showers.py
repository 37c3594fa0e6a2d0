"""`farm data showers`: reference showers from the built-in simulator, written as shard files."""

from __future__ import annotations

import argparse

from farm.cli import check_folder_out
from farm.errors import FarmError


def register(data_subparsers) -> argparse.ArgumentParser:
    """Add the `showers` subcommand to the `farm data` group."""
    from farm.geometry import CELL_GEOMETRIES, KNOWN_GEOMETRIES

    p = data_subparsers.add_parser(
        "showers",
        help="simulate calorimeter showers (GFlash-like) into CaloChallenge HDF5 / Parquet shards",
        description="Simulate calorimeter showers with farm's parametrised (GFlash-like) simulator "
        "in a CaloChallenge geometry and write them as shard files. Each shard k is seeded by "
        "(seed, k); shards already written are skipped, so an interrupted run resumes. "
        "--out is a folder: OUT/showers-<geometry>-00000.h5, ... (or .parquet with --format "
        "parquet); a name ending in .h5, .hdf5 or .parquet is refused.",
    )
    p.add_argument(
        "--geometry",
        default="ds1-photons",
        help=f"{', '.join(KNOWN_GEOMETRIES)}, a binning .xml path (default ds1-photons), or a "
        f"high-granularity geometry whose showers are point clouds of hits "
        f"({', '.join(CELL_GEOMETRIES)}; Parquet only, docs/showers.md)",
    )
    p.add_argument("--n", type=int, default=100_000, help="number of showers (default 100000)")
    p.add_argument(
        "--out",
        required=True,
        help="output folder URL (local path or s3://...) for the shard files; "
        "not a file name such as x.h5 or x.parquet",
    )
    p.add_argument("--seed", type=int, default=1, help="master seed (default 1)")
    p.add_argument("--shard-size", type=int, default=10_000, help="showers per shard file")
    p.add_argument(
        "--format",
        dest="formats",
        action="append",
        choices=("h5", "parquet"),
        help="file format, repeatable (default h5: CaloChallenge HDF5)",
    )
    p.add_argument(
        "--energies",
        type=float,
        nargs="+",
        metavar="MEV",
        help="incident energies in MeV drawn uniformly from this list "
        "(default: the challenge's: DS1 powers of 2, 256 MeV-4 TeV; DS2/3 log-uniform 1 GeV-1 TeV)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="Ray CPUs to start when no cluster is set (RAY_ADDRESS); 0 runs without Ray",
    )
    p.set_defaults(handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Handler: validate, start Ray if useful, generate, print the files written."""
    if args.workers is not None and args.workers < 0:
        raise FarmError(f"--workers must be >= 0, got {args.workers}")
    from farm.geometry import is_cell_geometry

    points = is_cell_geometry(args.geometry)
    formats = tuple(args.formats or (("parquet",) if points else ("h5",)))
    stem = "points" if points else "showers"
    check_folder_out(args.out, "farm data showers", f"{stem}-<geometry>-00000.{formats[0]}")
    if points:
        from farm.data.points import generate_points as generate_showers
    else:
        from farm.data.showers import generate_showers

    if shard_count(args.n, args.shard_size) > 1 and args.workers != 0:
        from farm.ray_utils import ensure_ray

        ensure_ray(num_cpus=args.workers)
    urls = generate_showers(
        args.geometry,
        args.n,
        args.out,
        seed=args.seed,
        shard_size=args.shard_size,
        formats=formats,
        energies=args.energies,
    )
    print(f"{args.n} showers ({args.geometry}) in {len(urls)} files under {args.out}")
    return 0


def shard_count(n: int, shard_size: int) -> int:
    """Shard files that n showers make; 0 for bad numbers (the generator names the problem)."""
    return -(-n // shard_size) if n > 0 and shard_size > 0 else 0
