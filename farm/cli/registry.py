"""`farm registry ls|show|promote|ui`: browse and promote model versions in MLflow's registry."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import time
from types import FrameType

# Signals that stop `farm registry ui`; each is forwarded to the MLflow server's process group.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# Seconds the server's processes get to exit after the signal, before they are killed.
STOP_GRACE_S = 10.0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `registry` group: ls, show, promote, ui."""
    p = sub.add_parser(
        "registry",
        help="browse and promote registered models",
        description="The MLflow Model Registry farm uses (SQLite in FARM_HOME by "
        "default, or MLFLOW_TRACKING_URI).",
    )
    rs = p.add_subparsers(dest="registry_command", metavar="ACTION", required=True)
    ls = rs.add_parser("ls", help="list registered models with their versions and aliases")
    ls.set_defaults(handler=run_ls)
    show = rs.add_parser("show", help="show one version: aliases, metrics, provenance, spec")
    show.add_argument("ref", help="NAME, NAME@ALIAS or NAME/VERSION")
    show.add_argument("--json", action="store_true", help="print JSON instead of tables")
    show.set_defaults(handler=run_show)
    promote = rs.add_parser(
        "promote",
        help="point an alias (e.g. production) at a version, if its gates pass",
        description="Point ALIAS at NAME/VERSION. Refused when the version fails the promotion "
        "gates of its training job (metrics recorded by `farm evaluate --model`), unless --force "
        "is given with a --reason, which is recorded on the version.",
    )
    promote.add_argument("name", help="registered model name (see `farm registry ls`)")
    promote.add_argument("version", help="version number to promote, e.g. 3")
    promote.add_argument("--alias", required=True, help="alias to set, e.g. production")
    promote.add_argument("--force", action="store_true", help="promote despite failing gates")
    promote.add_argument("--reason", help="why the gates are overridden (required with --force)")
    promote.set_defaults(handler=run_promote)
    ui = rs.add_parser(
        "ui",
        help="open the MLflow UI on 127.0.0.1 against farm's backend store",
        description="Serve the MLflow UI for farm's tracking and registry store on 127.0.0.1 "
        "until Ctrl-C, SIGTERM or SIGHUP; the MLflow server and its workers stop with it.",
    )
    ui.add_argument(
        "--port",
        type=int,
        default=5000,
        help="TCP port on 127.0.0.1 to serve the UI on (default 5000)",
    )
    ui.set_defaults(handler=run_ui)


def run_ls(args: argparse.Namespace) -> int:
    """Print the registered models, or where the (empty) registry is."""
    from rich.table import Table

    from farm import registry
    from farm.cli.progress import out

    rows = registry.list_models()
    table = Table(title=f"registered models ({registry.tracking_uri()})")
    for col in ("name", "versions", "latest", "aliases", "updated (UTC)"):
        table.add_column(col)
    for r in rows:
        when = datetime.datetime.fromtimestamp(r["updated"] / 1000, datetime.UTC)
        table.add_row(
            r["name"],
            str(r["versions"]),
            f"v{r['latest']}",
            r["aliases"] or "-",
            when.strftime("%Y-%m-%d %H:%M"),
        )
    out.print(
        table
        if rows
        else f"no registered models yet in {registry.tracking_uri()}: "
        "run `farm train JOB.yaml` or `farm quickstart`"
    )
    return 0


def run_show(args: argparse.Namespace) -> int:
    """Print one version: aliases, metrics, provenance, model config and gates."""
    from rich.table import Table

    from farm import registry
    from farm.cli.progress import out

    info = registry.show(args.ref)
    if args.json:
        out.print_json(json.dumps(info, default=str))
        return 0
    card = info["card"]
    out.print(
        f"[bold]{info['name']}/{info['version']}[/]  aliases: "
        f"{', '.join(info['aliases']) or '-'}  run: {info['run_id']}"
    )
    out.print(f"source: {info['source']}")
    table = Table(title="metrics (last epoch; evaluation headline and gated metrics)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in sorted(info["metrics"].items()):
        if not k.startswith(("eval.", "eval_floor.")):
            table.add_row(k, f"{v:.6g}")
    gated = set(json.loads(info["tags"].get("farm.gates", "{}")))
    headline = {"auc_low", "auc_high", "fpd", "kpd", "sep_mean", "sep_max", "sep/e_ratio"}
    evaluated = {k: v for k, v in info["metrics"].items() if k.startswith("eval.")}
    for k, v in sorted(evaluated.items()):
        if k[5:] in headline | gated:
            floor = info["metrics"].get(f"eval_floor.{k[5:]}")
            table.add_row(k, f"{v:.4g}" + ("" if floor is None else f"  (floor {floor:.4g})"))
    shown = len(evaluated)
    if shown:
        table.caption = f"{shown} evaluation metrics in all: farm registry show {args.ref} --json"
    out.print(table)
    data = card.get("data", {})
    out.print("provenance: " + json.dumps({k: v for k, v in data.items() if k != "split"}))
    if "split" in data:
        out.print("split: " + json.dumps(data["split"]))
    config = card.get("config", {})
    out.print("model: " + json.dumps({k: config.get(k) for k in ("network", "process", "sampler")}))
    gates = json.loads(info["tags"].get("farm.gates", "{}"))
    if gates:
        failures = registry.gate_failures(registry.resolve(args.ref))
        out.print(
            f"gates: {json.dumps(gates)} -> "
            + ("[green]pass[/]" if not failures else f"[red]{'; '.join(failures)}[/]")
        )
    return 0


def run_promote(args: argparse.Namespace) -> int:
    """Point an alias at a version, through the promotion gates unless forced with a reason."""
    from farm import registry
    from farm.cli.progress import out
    from farm.errors import FarmError

    if args.force and not args.reason:
        raise FarmError("--force needs --reason TEXT (it is recorded on the model version)")
    mv = registry.promote(
        args.name, args.version, args.alias, force_reason=args.reason if args.force else None
    )
    out.print(f"{mv.name}/{mv.version} is now @{args.alias}")
    return 0


def run_ui(args: argparse.Namespace) -> int:
    """Serve the MLflow UI until stopped; its processes end with farm's."""
    from farm import registry

    print(
        f"MLflow UI on http://127.0.0.1:{args.port} (backend {registry.tracking_uri()}); "
        "Ctrl-C to stop",
        flush=True,
    )
    return serve_until_stopped(ui_command(args.port))


def ui_command(port: int) -> list[str]:
    """The `mlflow ui` command line for farm's tracking/registry store and artifact root."""
    from farm import registry, store

    uri = registry.tracking_uri()
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri]
    cmd += ["--registry-store-uri", uri, "--host", "127.0.0.1", "--port", str(port)]
    if store.is_local(registry.artifact_root()):
        cmd += ["--default-artifact-root", "file://" + store.normalize(registry.artifact_root())]
    return cmd


def serve_until_stopped(cmd: list[str]) -> int:
    """Run cmd in its own process group; a stop signal to farm ends the whole group.

    Returns the server's exit code, or 128 + the signal number when farm was told to stop.
    """
    received: list[int] = []
    proc: subprocess.Popen | None = None

    def forward(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        if proc is not None:
            signal_group(proc.pid, signum)

    previous = {s: signal.signal(s, forward) for s in STOP_SIGNALS}
    try:
        proc = subprocess.Popen(cmd, start_new_session=True)
        if received:  # a signal arrived before the server existed
            signal_group(proc.pid, received[0])
        code = proc.wait()
    finally:
        if proc is not None:
            stop_group(proc.pid)
        for s, handler in previous.items():
            signal.signal(s, handler)
    if received:
        print(f"farm: MLflow UI stopped ({signal.Signals(received[0]).name})", file=sys.stderr)
        return 128 + received[0]
    return code


def signal_group(pgid: int, signum: int) -> bool:
    """Send signum to process group pgid; False when no process is left in it."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    return True


def stop_group(pgid: int, grace_s: float = STOP_GRACE_S) -> None:
    """End every process left in group pgid: SIGTERM, then SIGKILL after grace_s seconds."""
    if not signal_group(pgid, signal.SIGTERM):
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not signal_group(pgid, 0):
            return
        time.sleep(0.1)
    signal_group(pgid, signal.SIGKILL)
