"""`farm data`: reference data generators (calorimeter showers, Pythia 8 jets)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "data",
        help="generate reference data (showers, jets)",
        description="Generate reference data sets, sharded over Ray tasks, "
        "seeded per shard, resumable.",
    )
    data_sub = parser.add_subparsers(dest="data_command", metavar="KIND", required=True)
    from farm.cli import data_showers

    data_showers.register(data_sub)
    try:
        from farm.cli import data_jets
    except ModuleNotFoundError as exc:
        if exc.name != "farm.cli.data_jets":
            raise
    else:
        data_jets.register(data_sub)
