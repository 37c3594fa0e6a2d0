"""`farm campaign submit|status|ls|cancel|resume|validate|export`: sharded generation campaigns."""

from __future__ import annotations

import argparse
import datetime
import json


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `farm campaign` command group and its actions."""
    p = sub.add_parser(
        "campaign",
        help="run sharded generation campaigns to object storage",
        description="Generate events with a registered model over a pool of Ray "
        "actors; each shard is committed exactly once with a manifest record, and "
        "an interrupted campaign resumes where it stopped.",
    )
    cs = p.add_subparsers(dest="campaign_command", metavar="ACTION", required=True)
    submit = cs.add_parser(
        "submit",
        help="validate a campaign job, record it and run it",
        description="Validate a campaign job (within farm's bounds on job files: 1 MB, 100,000 "
        "YAML nodes after aliases, 10,000 items per list, events at most 10^12 in at most "
        "1,000,000 shards), record it and drive it, holding the campaign's lease (see "
        "`farm campaign resume --help`).",
    )
    submit.add_argument("job", help="campaign job YAML (see jobs/campaign-*.yaml)")
    submit.add_argument(
        "--detach",
        action="store_true",
        help="run in the background; follow with `farm campaign status ID`",
    )
    submit.set_defaults(handler=run_submit)
    status = cs.add_parser(
        "status",
        help="state, shards done/running, events/s, ETA, bytes written, the driver",
        description="Show a campaign's state: submitted, running, finished, cancelled, failed "
        "(the cause is shown: a shard failing too often, actors that keep dying, a failed "
        "finalize, a driver error) or orphaned (its driver's heartbeat stopped and its lease "
        "expired: `farm campaign resume ID` continues it), with shards and events committed, "
        "rate, ETA and the driver holding the lease (host, pid, last heartbeat).",
    )
    status.add_argument("id", help="campaign id, as printed by `submit` and listed by `ls`")
    status.add_argument(
        "--json",
        action="store_true",
        help="print the status as JSON (state, shards and events committed, rate, ETA, driver)",
    )
    status.set_defaults(handler=run_status)
    ls = cs.add_parser("ls", help="list campaigns in the store")
    ls.set_defaults(handler=run_ls)
    cancel = cs.add_parser("cancel", help="stop a running campaign, keeping committed shards")
    cancel.add_argument("id", help="campaign id to stop (see `farm campaign ls`)")
    cancel.set_defaults(handler=run_cancel)
    resume = cs.add_parser(
        "resume",
        help="continue a campaign, skipping committed shards",
        description="Continue a cancelled, failed or orphaned campaign: committed shards are "
        "skipped, temporaries left by killed writers are removed, the rest is generated and the "
        "campaign finalized (and validated). The driver takes the campaign's lease first: while "
        "another driver's heartbeat renews it (every FARM_LEASE_SECONDS / 5 s, default lease "
        "30 s) this is refused with one line naming that driver (host, pid, since); once its "
        "heartbeat stops, the lease expires and resume takes over.",
    )
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
    export = cs.add_parser(
        "export",
        help="merge a finished campaign's shards into one file (CaloChallenge HDF5 or Parquet)",
        description="Write a finished campaign as one file, as the CaloChallenge's own tools take "
        "one input file: showers as a CaloChallenge HDF5 (or one farm showers Parquet), jets as "
        "one JetNet HDF5 or Parquet, point-cloud showers as one farm points Parquet (or, as "
        "HDF5, the CaloChallenge file of their voxel projection). Shards are copied one at a time in event-id order; the file "
        "appears under its name only when complete.",
    )
    export.add_argument("id", help="campaign id (see `farm campaign ls`)")
    export.add_argument("--out", required=True, help="output file URL ending in .h5 or .parquet")
    export.add_argument(
        "--format",
        choices=("h5", "parquet"),
        default=None,
        help="file format (default: from the --out suffix; a mismatch is an error)",
    )
    export.add_argument(
        "--layout",
        choices=("dense", "sparse"),
        default=None,
        help="Parquet layout of voxel showers: dense (default) or the lossless sparse "
        "voxel_index + voxel_energy lists, whatever the shards' layout",
    )
    export.set_defaults(handler=run_export)


def _execute(campaign_id: str, total: int):
    from farm.campaign.run import execute
    from farm.cli.progress import campaign_progress

    with campaign_progress(f"campaign {campaign_id}", total) as on_progress:
        return execute(campaign_id, on_progress=on_progress)


def _print_summary(campaign, summary) -> None:
    """A finished campaign's totals and files, or the state it stopped in."""
    from farm.cli.progress import out
    from farm.records import CampaignSummary

    if not isinstance(summary, CampaignSummary):
        out.print(f"campaign stopped: {summary.state}")
        return
    out.print(
        f"[green]done[/] {summary.events:,} events in {summary.shards} shards "
        f"({summary.bytes / 1e6:.1f} MB) with {summary.model} "
        f"[{summary.sampler}, NFE {summary.nfe}]"
    )
    for fmt, path in summary.files.items():
        out.print(f"  {fmt}: {campaign.path(path)}")
    out.print(f"  manifest: {campaign.path(summary.manifest)}")
    if summary.validation is not None:
        _print_validation(campaign, summary.validation)


VALIDATED_STYLE = {"pass": "green", "ungated": "yellow", "fail": "red", "error": "red"}


def _print_validation(campaign, v, indent: str = "  ") -> None:
    """One line with the outcome, the failed gates, then the headline metrics beside floors."""
    from farm.cli.progress import out

    style = VALIDATED_STYLE.get(v.validated, "bold")
    what = f"{v.events if v.events is not None else '?'} events vs {v.reference or '?'}"
    out.print(f"{indent}validated: [{style}]{v.validated}[/] ({what})")
    for failure in v.failures:
        out.print(f"{indent}  gate failed: {failure}")
    if v.error:
        out.print(f"{indent}  {v.error}")
    for name, m in v.headline.items():
        floor_text = "-" if m.floor is None else f"{m.floor:.4g}"
        error = f" ± {m.error:.2g}" if m.error else ""
        out.print(f"{indent}  {name:<20} {m.value:.4g}{error}  (floor {floor_text})")
    if v.report:
        out.print(f"{indent}  report: {campaign.path(v.report)}")


def _validation_exit_code(validation) -> int:
    return 1 if validation is not None and validation.validated in ("fail", "error") else 0


def _summary_exit_code(summary) -> int:
    return _validation_exit_code(getattr(summary, "validation", None))


def run_submit(args: argparse.Namespace) -> int:
    """Validate, record and run a campaign job, or start it in the background (--detach)."""
    import subprocess
    import sys

    from farm import records, store
    from farm.campaign.run import submit
    from farm.cli.progress import out
    from farm.specs import load_job

    job = load_job(args.job, kind="campaign")
    campaign = submit(job)
    cid = campaign.id
    out.print(
        f"campaign [bold]{cid}[/]: {job.events:,} events in {campaign.plan.n_shards} "
        f"shards with {campaign.model.key} -> {campaign.output_url}"
    )
    if args.detach:
        log_path = records.campaign_url(cid, "driver.log")
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
    _print_summary(campaign, summary)
    return _summary_exit_code(summary)


def run_resume(args: argparse.Namespace) -> int:
    """Continue a recorded campaign, skipping committed shards, and print its summary."""
    from farm import records

    campaign = records.load(args.id)
    summary = _execute(args.id, campaign.plan.events)
    _print_summary(campaign, summary)
    return _summary_exit_code(summary)


def run_validate(args: argparse.Namespace) -> int:
    """Re-run a finished campaign's validation and print it; exit code 1 on fail or error."""
    from farm import records
    from farm.campaign import lease
    from farm.campaign.validate import validate
    from farm.cli.progress import out

    campaign = records.load(args.id)
    out.print(f"validating {args.id} ...")
    with lease.held(args.id):
        doc = validate(campaign, force=True).summary()
    _print_validation(campaign, doc)
    return _validation_exit_code(doc)


def run_status(args: argparse.Namespace) -> int:
    """Print a campaign's state, shards, events, rate, ETA, output and validation (or JSON)."""
    from farm import records
    from farm.campaign import manifest
    from farm.cli.progress import out

    campaign = records.load(args.id)
    status, held_by = records.observed_status(args.id)
    plan = campaign.plan
    committed = manifest.committed_ids(campaign.output_url)
    events_committed = sum(plan.shard(i).n for i in committed)
    if args.json:
        doc = status.model_dump(mode="json")
        doc.update(shards_committed=len(committed), events_committed=events_committed)
        doc["driver"] = held_by.model_dump(mode="json", exclude={"token"}) if held_by else None
        out.print_json(json.dumps(doc, default=str))
        return 0
    rate = status.events_per_second or 0
    eta = status.eta_seconds
    out.print(f"[bold]{args.id}[/]: {status.state}  model {campaign.model.key}")
    _print_driver(args.id, status, held_by)
    out.print(
        f"  shards: {len(committed)}/{plan.n_shards} committed, "
        f"{status.shards_running} running, retries {status.shard_retries},"
        f" actor restarts {status.actor_restarts}"
    )
    out.print(
        f"  events: {events_committed:,}/{plan.events:,}  rate {rate:,.0f}/s  "
        f"ETA {'-' if eta is None else f'{eta:,.0f} s'}  "
        f"written {status.bytes_written / 1e6:,.1f} MB (this session)"
    )
    out.print(f"  output: {campaign.output_url}")
    if status.validation is not None:
        _print_validation(campaign, status.validation)
    elif status.validated:
        out.print(f"  validated: {status.validated}")
    elif campaign.job.validation is not None:
        out.print("  validated: not yet (runs when the campaign finishes)")
    return 0


def _print_driver(campaign_id: str, status, held_by) -> None:
    """Who drives the campaign (or drove it, for an orphan), and why it failed."""
    import time

    from farm.cli.progress import out
    from farm.records import ACTIVE_STATES

    if status.state == "orphaned":
        last = "no driver holds its lease"
        if held_by is not None:
            last = f"{held_by.holder}, last heartbeat {time.time() - held_by.heartbeat:,.0f} s ago"
        out.print(
            f"  [red]orphaned[/]: its driver stopped ({last}); "
            f"`farm campaign resume {campaign_id}` continues it"
        )
    elif held_by is not None and status.state in ACTIVE_STATES:
        beat = max(time.time() - held_by.heartbeat, 0)
        out.print(f"  driver: {held_by.holder}, heartbeat {beat:.0f} s ago")
    if status.state == "failed" and status.error:
        out.print(f"  [red]failed[/]: {status.error}")


def run_ls(args: argparse.Namespace) -> int:
    """Print the store's campaigns: id, model, events, state, validation, creation time."""
    from rich.table import Table

    from farm import records
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
        status, _ = records.observed_status(cid)
        when = datetime.datetime.fromtimestamp(c.created, datetime.UTC).strftime("%Y-%m-%d %H:%M")
        table.add_row(
            cid,
            c.model.key,
            f"{c.plan.events:,}",
            status.state,
            status.validated or ("pending" if c.job.validation is not None else "-"),
            when,
        )
    out.print(table)
    return 0


def run_cancel(args: argparse.Namespace) -> int:
    """Ask a running campaign's driver to stop; committed shards are kept."""
    from farm import records
    from farm.cli.progress import out

    records.request_cancel(args.id)
    out.print(
        f"cancel requested for {args.id}: the driver stops its actors; committed shards are kept, "
        "in-flight ones are dropped uncommitted (`farm campaign resume` continues it)"
    )
    return 0


def run_export(args: argparse.Namespace) -> int:
    """Merge a finished campaign into one file."""
    from farm.campaign.export import export_campaign
    from farm.cli.progress import out

    url = export_campaign(args.id, args.out, args.format, args.layout)
    out.print(f"campaign {args.id} -> {url}")
    return 0
