"""`farm data`: reference data generators (calorimeter showers, Pythia 8 jets and events)."""

from __future__ import annotations

import argparse

from farm.cli import data_events, data_jets, data_showers


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `data` group with its `showers`, `jets` and `events` generators."""
    parser = sub.add_parser(
        "data",
        help="generate reference data (showers, jets, events)",
        description="Generate reference data sets, sharded over Ray tasks, "
        "seeded per shard, resumable. --out is a folder of shard files; --format picks "
        "the file type.",
    )
    data_sub = parser.add_subparsers(dest="data_command", metavar="KIND", required=True)
    data_showers.register(data_sub)
    data_jets.register(data_sub)
    data_events.register(data_sub)
