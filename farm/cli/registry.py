"""`farm registry ls|show|promote|ui`: browse and promote model versions in MLflow's registry."""

from __future__ import annotations

import argparse
import datetime
import json


def register(sub: argparse._SubParsersAction) -> None:
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
    promote.add_argument("name")
    promote.add_argument("version")
    promote.add_argument("--alias", required=True, help="alias to set, e.g. production")
    promote.add_argument("--force", action="store_true", help="promote despite failing gates")
    promote.add_argument("--reason", help="why the gates are overridden (required with --force)")
    promote.set_defaults(handler=run_promote)
    ui = rs.add_parser("ui", help="open the MLflow UI on 127.0.0.1 against farm's backend store")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(handler=run_ui)


def run_ls(args: argparse.Namespace) -> int:
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
        else "no registered models yet: run `farm train JOB.yaml` or `farm quickstart`"
    )
    return 0


def run_show(args: argparse.Namespace) -> int:
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
    for k, v in sorted(info["tags"].items()):
        if k.startswith("eval.") and k[5:] in headline | gated:
            table.add_row(k, v)
    shown = sum(1 for k in info["tags"] if k.startswith("eval."))
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
        failures = registry.gate_failures(info["tags"])
        out.print(
            f"gates: {json.dumps(gates)} -> "
            + ("[green]pass[/]" if not failures else f"[red]{'; '.join(failures)}[/]")
        )
    return 0


def run_promote(args: argparse.Namespace) -> int:
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
    import subprocess
    import sys

    from farm import registry, store

    uri = registry.tracking_uri()
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--registry-store-uri",
        uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(args.port),
    ]
    if store.is_local(registry.artifact_root()):
        cmd += ["--default-artifact-root", "file://" + store.normalize(registry.artifact_root())]
    print(f"MLflow UI on http://127.0.0.1:{args.port} (backend {uri}); Ctrl-C to stop")
    return subprocess.call(cmd)
