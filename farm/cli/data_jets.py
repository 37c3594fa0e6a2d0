"""`farm data jets`: generate reference jets with Pythia 8 + FastJet, sharded over Ray tasks."""

from __future__ import annotations

import argparse

from farm.cli import check_folder_out

FORMATS = ("parquet", "h5")


def register(data_subparsers) -> argparse.ArgumentParser:
    """Add the `jets` subcommand to the `farm data` group."""
    from farm.data.jets import PROCESSES

    p = data_subparsers.add_parser(
        "jets",
        help="generate reference jets (Pythia 8 + anti-kt R=0.8, JetNet layout)",
        description="Generate jets with Pythia 8 (pp, 13 TeV) clustered by FastJet anti-kt R=0.8, "
        "matched to their parton/top/boson; writes shards jets-NNNNN.{parquet,h5} under --out "
        "(resumable: committed shards are skipped). --out is a folder; a name ending in .h5, "
        ".hdf5 or .parquet is refused.",
    )
    p.add_argument("--process", required=True, choices=list(PROCESSES), help="jet type")
    p.add_argument("--n", type=int, required=True, help="number of jets")
    p.add_argument(
        "--out",
        required=True,
        help="output folder URL (path, file://, s3://) for the shard files; "
        "not a file name such as x.parquet or x.h5",
    )
    p.add_argument("--seed", type=int, default=1, help="campaign seed (default 1)")
    p.add_argument("--shard-size", type=int, default=1000, help="jets per shard (default 1000)")
    p.add_argument("--constituents", type=int, default=30, help="constituents kept per jet")
    p.add_argument("--pt-hat-min", type=float, default=900.0, help="GeV (default 900)")
    p.add_argument("--pt-hat-max", type=float, default=1100.0, help="GeV (default 1100)")
    p.add_argument("--jet-pt-min", type=float, default=None, help="GeV (default 0.8 pt-hat-min)")
    p.add_argument("--jet-pt-max", type=float, default=None, help="GeV (default 1.2 pt-hat-max)")
    p.add_argument("--no-mpi", action="store_true", help="switch off multiparton interactions")
    p.add_argument("--no-hadronisation", action="store_true", help="stop at parton level")
    p.add_argument(
        "--format",
        action="append",
        choices=FORMATS,
        dest="formats",
        help="output format, repeatable (default parquet)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Build the config from the arguments and run the sharded generation."""
    formats = tuple(dict.fromkeys(args.formats or ["parquet"]))
    check_folder_out(args.out, "farm data jets", f"jets-00000.{formats[0]}")
    from farm.data.jets import JetGenConfig, generate_jets_sharded

    config = JetGenConfig(
        process=args.process,
        n_jets=args.n,
        pt_hat_min=args.pt_hat_min,
        pt_hat_max=args.pt_hat_max,
        n_constituents=args.constituents,
        mpi=not args.no_mpi,
        hadronisation=not args.no_hadronisation,
        jet_pt_min=args.jet_pt_min,
        jet_pt_max=args.jet_pt_max,
    )
    urls = generate_jets_sharded(
        config, args.seed, args.out, args.shard_size, formats, progress=not args.no_progress
    )
    print(f"{config.n_jets} {config.process} jets in {len(urls)} file(s) under {args.out}")
    return 0
