"""`farm campaign submit|status|ls|cancel|resume`: sharded generation campaigns on Ray actors."""

from __future__ import annotations

import argparse
import datetime
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "campaign",
        help="run sharded generation campaigns to object storage",
        description="Generate events with a registered model over a pool of Ray "
        "actors; each shard is committed exactly once with a manifest record, and "
        "an interrupted campaign resumes where it stopped.",
    )
    cs = p.add_subparsers(dest="campaign_command", metavar="ACTION", required=True)
    submit = cs.add_parser("submit", help="validate a campaign job, record it and run it")
    submit.add_argument("job", help="campaign job YAML (see jobs/campaign-*.yaml)")
    submit.add_argument(
        "--detach",
        action="store_true",
        help="run in the background; follow with `farm campaign status ID`",
    )
    submit.set_defaults(handler=run_submit)
    status = cs.add_parser("status", help="shards done/running, events/s, ETA, bytes written")
    status.add_argument("id", help="campaign id, as printed by `submit` and listed by `ls`")
    status.add_argument(
        "--json",
        action="store_true",
        help="print the status as JSON (state, shards and events committed, rate, ETA, ...)",
    )
    status.set_defaults(handler=run_status)
    ls = cs.add_parser("ls", help="list campaigns in the store")
    ls.set_defaults(handler=run_ls)
    cancel = cs.add_parser("cancel", help="stop a running campaign, keeping committed shards")
    cancel.add_argument("id", help="campaign id to stop (see `farm campaign ls`)")
    cancel.set_defaults(handler=run_cancel)
    resume = cs.add_parser("resume", help="continue a campaign, skipping committed shards")
    resume.add_argument("id", help="campaign id to continue (see `farm campaign ls`)")
    resume.set_defaults(handler=run_resume)
    validate = cs.add_parser(
        "validate",
        help="(re)run a finished campaign's validation block",
        description="Evaluate a seeded random subset of a finished campaign against the "
        "reference named in its job's validation block; writes validation.json and the report "
        "into the output and logs the metrics to the model version's MLflow run. Exit code 1 "
        "when the validation fails its gates (the data is kept).",
    )
    validate.add_argument("id", help="id of a finished campaign (see `farm campaign ls`)")
    validate.set_defaults(handler=run_validate)


def _execute(campaign_id: str, total: int) -> dict:
    from farm.campaign.run import execute
    from farm.cli.progress import campaign_progress

    with campaign_progress(f"campaign {campaign_id}", total) as on_progress:
        return execute(campaign_id, on_progress=on_progress)


def _print_summary(summary: dict) -> None:
    from farm.cli.progress import out

    if "events" not in summary or "manifest" not in summary:
        out.print(f"campaign stopped: {summary.get('state')}")
        return
    out.print(
        f"[green]done[/] {summary['events']:,} events in {summary['shards']} shards "
        f"({summary['bytes'] / 1e6:.1f} MB) with {summary['model']} "
        f"[{summary['sampler']}, NFE {summary['nfe']}]"
    )
    for fmt, url in summary["files"].items():
        out.print(f"  {fmt}: {url}")
    out.print(f"  manifest: {summary['manifest']}")
    if summary.get("validation"):
        _print_validation(summary["validation"])


VALIDATED_STYLE = {"pass": "green", "ungated": "yellow", "fail": "red", "error": "red"}


def _print_validation(v: dict, indent: str = "  ") -> None:
    """One line with the outcome, the failed gates, then the headline metrics beside floors."""
    from farm.cli.progress import out

    state = v.get("validated", "?")
    style = VALIDATED_STYLE.get(state, "bold")
    what = f"{v.get('events', '?')} events vs {v.get('reference', '?')}"
    out.print(f"{indent}validated: [{style}]{state}[/] ({what})")
    for failure in v.get("failures") or []:
        out.print(f"{indent}  gate failed: {failure}")
    if v.get("error"):
        out.print(f"{indent}  {v['error']}")
    for name, m in (v.get("headline") or {}).items():
        floor = m.get("floor")
        floor_text = "-" if floor is None else f"{floor:.4g}"
        error = f" ± {m['error']:.2g}" if m.get("error") else ""
        out.print(f"{indent}  {name:<20} {m['value']:.4g}{error}  (floor {floor_text})")
    if v.get("report"):
        out.print(f"{indent}  report: {v['report']}")


def _validation_exit_code(summary: dict) -> int:
    v = summary.get("validation") or {}
    return 1 if v.get("validated") in ("fail", "error") else 0


def run_submit(args: argparse.Namespace) -> int:
    import subprocess
    import sys

    from farm import store
    from farm.campaign import records
    from farm.campaign.run import submit
    from farm.cli.progress import out
    from farm.specs import load_job

    job = load_job(args.job, kind="campaign")
    campaign = submit(job)
    cid = campaign["id"]
    out.print(
        f"campaign [bold]{cid}[/]: {job.events:,} events in "
        f"{campaign['plan']['events'] // job.shard_size + bool(job.events % job.shard_size)} "
        f"shards with {campaign['model']['name']}/{campaign['model']['version']} -> "
        f"{campaign['output']}"
    )
    if args.detach:
        log_path = store.join(records.url(cid), "driver.log")
        log = open(log_path, "w") if store.is_local(log_path) else subprocess.DEVNULL  # noqa: SIM115
        subprocess.Popen(
            [sys.executable, "-m", "farm.cli", "campaign", "resume", cid],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.print(f"running in the background; follow with `farm campaign status {cid}`")
        return 0
    summary = _execute(cid, job.events)
    _print_summary(summary)
    return _validation_exit_code(summary)


def run_resume(args: argparse.Namespace) -> int:
    from farm.campaign import records

    campaign = records.load(args.id)
    summary = _execute(args.id, campaign["plan"]["events"])
    _print_summary(summary)
    return _validation_exit_code(summary)


def run_validate(args: argparse.Namespace) -> int:
    from farm.campaign.validate import short, validate
    from farm.cli.progress import out

    out.print(f"validating {args.id} ...")
    doc = short(validate(args.id, force=True))
    _print_validation(doc)
    return _validation_exit_code({"validation": doc})


def run_status(args: argparse.Namespace) -> int:
    from farm.campaign import manifest, records
    from farm.campaign.plan import Plan
    from farm.cli.progress import out

    campaign = records.load(args.id)
    status = records.read_status(args.id)
    plan = Plan(**campaign["plan"])
    committed = manifest.committed_ids(campaign["output"])
    status["shards_committed"] = len(committed)
    status["events_committed"] = sum(plan.shard(i).n for i in committed)
    if args.json:
        out.print_json(json.dumps(status, default=str))
        return 0
    rate = status.get("events_per_second") or 0
    eta = status.get("eta_seconds")
    out.print(
        f"[bold]{args.id}[/]: {status.get('state')}  model "
        f"{campaign['model']['name']}/{campaign['model']['version']}"
    )
    out.print(
        f"  shards: {len(committed)}/{plan.n_shards} committed, "
        f"{status.get('shards_running', 0)} running, retries {status.get('shard_retries', 0)},"
        f" actor restarts {status.get('actor_restarts', 0)}"
    )
    out.print(
        f"  events: {status['events_committed']:,}/{plan.events:,}  rate {rate:,.0f}/s  "
        f"ETA {'-' if eta is None else f'{eta:,.0f} s'}  "
        f"written {status.get('bytes_written', 0) / 1e6:,.1f} MB (this session)"
    )
    out.print(f"  output: {campaign['output']}")
    if status.get("validation"):
        _print_validation(status["validation"])
    elif status.get("validated"):
        out.print(f"  validated: {status['validated']}")
    elif campaign["job"].get("validation"):
        out.print("  validated: not yet (runs when the campaign finishes)")
    return 0


def run_ls(args: argparse.Namespace) -> int:
    from rich.table import Table

    from farm.campaign import records
    from farm.cli.progress import out

    table = Table(title="campaigns")
    for col in ("id", "model", "events", "state", "validated", "created (UTC)"):
        table.add_column(col)
    for cid in records.list_ids():
        try:
            c = records.load(cid)
        except Exception:
            table.add_row(cid, "?", "?", "unreadable", "?", "?")
            continue
        status = records.read_status(cid)
        when = datetime.datetime.fromtimestamp(c["created"], datetime.UTC).strftime(
            "%Y-%m-%d %H:%M"
        )
        table.add_row(
            cid,
            f"{c['model']['name']}/{c['model']['version']}",
            f"{c['plan']['events']:,}",
            status.get("state", "?"),
            status.get("validated") or ("pending" if c["job"].get("validation") else "-"),
            when,
        )
    out.print(table)
    return 0


def run_cancel(args: argparse.Namespace) -> int:
    from farm.campaign import records
    from farm.cli.progress import out

    records.request_cancel(args.id)
    out.print(
        f"cancel requested for {args.id}: the driver stops its actors; committed shards are kept, "
        "in-flight ones are dropped uncommitted (`farm campaign resume` continues it)"
    )
    return 0
