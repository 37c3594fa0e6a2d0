"""The `farm` command line: one module per command group, each exposing register(subparsers)."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator

from farm import __version__
from farm.errors import FarmError, Stopped

# Command-group modules under farm.cli, in the order `farm --help` lists them. Each must exist:
# a missing one is an ImportError, never a silently absent command.
GROUPS = (
    "quickstart",
    "data",
    "train",
    "tune",
    "registry",
    "campaign",
    "generate",
    "evaluate",
    "export",
    "serve",
)


def build_parser() -> argparse.ArgumentParser:
    """The `farm` parser with every command group registered."""
    parser = argparse.ArgumentParser(
        prog="farm",
        description="Ray-based generation farm for ML fast simulation in high-energy physics: "
        "train score-based and flow-matching models, register them in MLflow, and run "
        "sharded generation campaigns to object storage.",
        epilog="Store: FARM_HOME (default ./farm-home; local path or s3://). Model cards may "
        "name files only inside FARM_HOME, FARM_GEOMETRY_DIR or FARM_ALLOWED_LOCATIONS "
        "(comma-separated folders or URLs). Campaign driver leases last FARM_LEASE_SECONDS "
        "(default 30). Job files are bounded (1 MB, 100,000 YAML nodes after aliases, 10,000 "
        "items per list). Without RAY_ADDRESS, farm starts a local Ray on 127.0.0.1 only. "
        "Run `farm COMMAND --help` for details.",
    )
    parser.add_argument("--version", action="version", version=f"farm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in GROUPS:
        importlib.import_module(f"farm.cli.{group}").register(sub)
    name_missing_choices(parser)
    return parser


def name_missing_choices(parser: argparse.ArgumentParser) -> None:
    """Make every group given no action name its actions (one error line), at every level."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        action.required = False  # handled below, with the choices named
        parser.set_defaults(handler=missing_choice(parser.prog, action))
        for child in dict.fromkeys(action.choices.values()):
            name_missing_choices(child)


def missing_choice(prog: str, action: argparse._SubParsersAction) -> Callable[..., int]:
    """A handler that refuses a group called without an action, listing the actions."""
    kind = (action.metavar or "action").lower()
    article = "an" if kind[0] in "aeiou" else "a"
    choices = ", ".join(action.choices)
    metavar = action.metavar or "ACTION"

    def handler(args: argparse.Namespace) -> int:
        raise FarmError(
            f"{prog} needs {article} {kind}: {choices} (`{prog} {metavar} --help` for details)"
        )

    return handler


# File-name endings that name one data file, and the --format each one means.
DATA_FILE_SUFFIXES = {".h5": "h5", ".hdf5": "h5", ".parquet": "parquet", ".pq": "parquet"}


def check_folder_out(out: str, command: str, example: str) -> None:
    """Refuse an --out that names a data file (x.parquet) where the command writes a folder."""
    name = out.rstrip("/").rsplit("/", 1)[-1]
    stem, dot, suffix = name.rpartition(".")
    fmt = DATA_FILE_SUFFIXES.get(f"{dot}{suffix}".lower()) if stem else None
    if fmt is not None:
        raise FarmError(
            f"--out {out}: ends in .{suffix}, so it names a file, but `{command}` writes a folder "
            f"of shard files ({example}, ...); give a folder name, e.g. --out {stem}, "
            f"and choose the file type with --format {fmt}"
        )


def _storage_errors() -> tuple[type[BaseException], ...]:
    """Botocore's errors (no credentials, endpoint unreachable), when S3 support is installed."""
    try:
        from botocore.exceptions import BotoCoreError
    except ImportError:
        return ()
    return (BotoCoreError,)


_SIGTERM_SEEN = threading.Event()
"""Set by `_stop`: a KeyboardInterrupt after it is that SIGTERM, whatever a library made of it."""


def _stop(signum: int, frame: object) -> None:
    """SIGTERM handler: unwind like Ctrl-C, so runs end KILLED and campaigns say why."""
    _SIGTERM_SEEN.set()
    raise Stopped(f"signal {signum}")


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """While inside, SIGTERM raises `Stopped` in the main thread (unless someone handles it)."""
    main_thread = threading.current_thread() is threading.main_thread()
    if not main_thread or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def main(argv: list[str] | None = None) -> int:
    """Run one farm command; bad input and storage failures are one `farm: error:` line, exit 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _SIGTERM_SEEN.clear()  # per command: an earlier command in this process does not count
    try:
        with sigterm_unwinds():
            return int(args.handler(args) or 0)
    except FarmError as exc:
        print(f"farm: error: {exc}", file=sys.stderr)
        return 2
    except (OSError, *_storage_errors()) as exc:  # unreachable store, missing credentials
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"farm: error: storage: {message} ({type(exc).__name__})", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Stopped, or Ctrl-C; ray.get turns Stopped into a plain one
        if isinstance(exc, Stopped) or _SIGTERM_SEEN.is_set():
            print("farm: stopped (SIGTERM)", file=sys.stderr)
            return 128 + signal.SIGTERM
        print("farm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
