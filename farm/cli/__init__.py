"""The `farm` command line: one module per command group, each exposing register(subparsers)."""

from __future__ import annotations

import argparse
import importlib
import sys

from farm import __version__
from farm.errors import FarmError

# Command-group modules under farm.cli, in the order `farm --help` lists them.
GROUPS = (
    "quickstart",
    "data",
    "train",
    "tune",
    "registry",
    "campaign",
    "generate",
    "evaluate",
    "serve",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="farm",
        description="Ray-based generation farm for ML fast simulation in high-energy physics: "
        "train score-based and flow-matching models, register them in MLflow, and run "
        "sharded generation campaigns to object storage.",
        epilog="Store: FARM_HOME (default ./farm-home; local path or s3://). "
        "Run `farm COMMAND --help` for details.",
    )
    parser.add_argument("--version", action="version", version=f"farm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in GROUPS:
        try:
            module = importlib.import_module(f"farm.cli.{group}")
        except ModuleNotFoundError as exc:
            if exc.name == f"farm.cli.{group}":
                continue  # group not built yet
            raise
        module.register(sub)
    return parser


def _storage_errors() -> tuple[type[BaseException], ...]:
    """botocore's errors (no credentials, endpoint unreachable), when S3 support is installed."""
    try:
        from botocore.exceptions import BotoCoreError
    except ImportError:
        return ()
    return (BotoCoreError,)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except FarmError as exc:
        print(f"farm: error: {exc}", file=sys.stderr)
        return 2
    except (OSError, *_storage_errors()) as exc:  # unreachable store, missing credentials
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"farm: error: storage: {message} ({type(exc).__name__})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("farm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
