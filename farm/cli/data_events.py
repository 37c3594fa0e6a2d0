"""`farm data events`: Pythia 8 truth sets and farm's synthetic particle-flow response, sharded."""

from __future__ import annotations

import argparse

from farm.cli import check_folder_out


def register(data_subparsers) -> argparse.ArgumentParser:
    """Add the `events` subcommand to the `farm data` group."""
    from farm.data.detector import DETECTORS
    from farm.data.events import PROCESSES

    p = data_subparsers.add_parser(
        "events",
        help="generate reference events (Pythia 8 truth + synthetic particle-flow reco)",
        description="Generate whole events with Pythia 8 (qcd, ttbar: pp at 13.6 TeV; dis: ep at "
        "18 x 275 GeV) and farm's parametrised particle-flow response (synthetic, "
        "docs/events.md); writes shards events-NNNNN.parquet under --out (one row per event, "
        "truth and reco sets as list columns; resumable: committed shards are skipped).",
    )
    p.add_argument("--process", required=True, choices=list(PROCESSES), help="physics process")
    p.add_argument("--n", type=int, required=True, help="number of events")
    p.add_argument("--out", required=True, help="output folder URL (path, file://, s3://)")
    p.add_argument("--seed", type=int, default=1, help="campaign seed (default 1)")
    p.add_argument("--shard-size", type=int, default=1000, help="events per shard (default 1000)")
    p.add_argument("--pt-hat-min", type=float, default=None, help="GeV (qcd 100, ttbar 0)")
    p.add_argument("--pt-hat-max", type=float, default=None, help="GeV (default: open)")
    p.add_argument("--sqrt-s", type=float, default=13600.0, help="pp energy, GeV (13600)")
    p.add_argument("--electron-energy", type=float, default=18.0, help="dis, GeV (18)")
    p.add_argument("--proton-energy", type=float, default=275.0, help="dis, GeV (275)")
    p.add_argument("--q2-min", type=float, default=10.0, help="dis, GeV^2 (10)")
    p.add_argument("--truth-pt-min", type=float, default=None, help="GeV (pp 0.1, dis 0.05)")
    p.add_argument("--truth-eta-max", type=float, default=None, help="(pp 5, dis 4.5)")
    p.add_argument("--detector", choices=list(DETECTORS), default=None, help="(pp lhc, dis eic)")
    p.add_argument("--no-mpi", action="store_true", help="switch off multiparton interactions")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--truth-only",
        action="store_true",
        help="write truth-only conditions files (truth lists, no reco columns)",
    )
    p.set_defaults(handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Build the config from the arguments and run the sharded generation."""
    check_folder_out(args.out, "farm data events", "events-00000.parquet")
    from farm.data.events import EventGenConfig, generate_events_sharded

    config = EventGenConfig(
        process=args.process,
        n_events=args.n,
        pt_hat_min=args.pt_hat_min,
        pt_hat_max=args.pt_hat_max,
        sqrt_s=args.sqrt_s,
        electron_energy=args.electron_energy,
        proton_energy=args.proton_energy,
        q2_min=args.q2_min,
        mpi=not args.no_mpi,
        truth_pt_min=args.truth_pt_min,
        truth_eta_max=args.truth_eta_max,
        detector=args.detector,
    )
    urls = generate_events_sharded(
        config,
        args.seed,
        args.out,
        args.shard_size,
        progress=not args.no_progress,
        truth_only=args.truth_only,
    )
    print(f"{config.n_events} {config.process} events in {len(urls)} file(s) under {args.out}")
    return 0
