"""`farm tune JOB.yaml | status ID | resume ID`: hyperparameter searches with Ray Tune."""

from __future__ import annotations

import argparse
import json
import math

from farm.errors import FarmError

USAGE = "farm tune JOB.yaml | farm tune status ID [--json] | farm tune resume ID"


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `farm tune` command (a search, `status ID`, `resume ID`) and its options."""
    p = sub.add_parser(
        "tune",
        help="search hyperparameters with Ray Tune and register the best model",
        usage=USAGE,
        description="Run a hyperparameter search over a train job (Optuna TPE, ASHA early "
        "stopping; every trial is a Ray Train run like `farm train`). MLflow gets a parent run "
        "for the search and a child run per trial; the trial table is printed and saved under "
        "FARM_HOME/tune/ID/ (trials.json, trials.csv); the best trial's checkpoint is registered "
        "as a new version with alias 'candidate'. `status ID` shows a search's table, "
        "`resume ID` continues an interrupted one.",
    )
    p.add_argument(
        "target",
        nargs="+",
        metavar="ARG",
        help="a tune job YAML (see jobs/tune-*.yaml), or `status ID`, or `resume ID`",
    )
    p.add_argument("--json", action="store_true", help="with status: print search.json + trials")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Dispatch `farm tune` to a new search, `status ID` or `resume ID` (FarmError on bad usage)."""
    target = args.target
    if target[0] in ("status", "resume"):
        if len(target) != 2:
            raise FarmError(f"usage: farm tune {target[0]} ID")
        return run_status(target[1], args.json) if target[0] == "status" else run_resume(target[1])
    if len(target) != 1:
        raise FarmError(f"usage: {USAGE}")
    return run_search(target[0])


def run_search(path: str) -> int:
    """Run the search a tune job describes, print its trial table and register the best trial."""
    from farm.cli.progress import console
    from farm.specs import load_job
    from farm.tune import run_search as search

    job = load_job(path, kind="tune")
    console.print(
        f"[bold]tune[/] {job.search_name}: {job.trials} trials, {job.concurrency} at a time, "
        f"optimising {job.metric} ({job.mode})"
        + (
            f"; checkpoints scored on {job.fidelity.events} generated showers"
            if job.fidelity
            else ""
        )
    )
    return _report(search(job))


def run_resume(search_id: str) -> int:
    """Continue an interrupted search and report it as a finished one."""
    from farm.tune import resume_search

    return _report(resume_search(search_id))


def run_status(search_id: str, as_json: bool) -> int:
    """Print a search's trial table and status, or its search.json and trials as JSON."""
    from farm.cli.progress import out
    from farm.tune import search_status

    doc, rows = search_status(search_id)
    if as_json:
        trials = [r.model_dump(mode="json") for r in rows]
        out.print_json(json.dumps({"search": doc.model_dump(mode="json"), "trials": trials}))
        return 0
    out.print(print_table(rows, doc.job.metric, f"tune search {search_id}"))
    done = sum(r.done for r in rows)
    out.print(
        f"status: [bold]{doc.status}[/], {done}/{doc.job.trials} trials done, "
        f"{doc.seconds:.0f} s" + (f"; registered version {doc.version}" if doc.version else "")
    )
    return 0


def print_table(rows: list, metric: str, title: str):
    """The trial table as a rich Table: params, metric, status, epochs run, stopped early."""
    from rich.table import Table

    from farm.evaluation.fidelity import PREFIX
    from farm.tune import other_metrics

    params = sorted({k for r in rows for k in r.params})
    metrics = [metric, *other_metrics(rows, metric)]
    short = [p.rsplit(".", 1)[-1] for p in params]
    if len(set(short)) < len(short):
        short = params
    caption = f"objective: {metric}" + (
        "; sep_*: fidelity.sep_* (separation powers of generated showers)"
        if any(m.startswith(PREFIX) for m in metrics)
        else ""
    )
    table = Table(title=title, caption=caption)
    heads = [m.removeprefix(PREFIX) for m in metrics]
    for col in ("trial", *short, *heads, "status", "epochs", "stopped early"):
        table.add_column(col, justify="right" if col not in ("trial", "status") else "left")
    for r in rows:
        table.add_row(
            r.trial_id,
            *(_fmt(r.params.get(p, "")) for p in params),
            *(_value(r.metrics.get(m)) for m in metrics),
            r.status,
            f"{r.epochs}/{r.planned_epochs}",
            "yes" if r.stopped_early else "no",
        )
    return table


def _value(value) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.4g}"


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _report(result) -> int:
    from farm.cli.progress import out

    out.print(print_table(result.trials, result.metric, f"tune search {result.search_id}"))
    if result.status == "interrupted":
        out.print(
            f"[yellow]interrupted[/] after {result.seconds:.0f} s; continue with "
            f"`farm tune resume {result.search_id}`"
        )
        return 130
    if result.version is None:
        raise FarmError(f"tune search {result.search_id}: no trial finished with a finite metric")
    best = result.best
    out.print(
        f"[green]best[/] trial {best.trial_id} ({json.dumps(best.params)}) "
        f"in {result.seconds:.0f} s; registered [bold]{result.name}/{result.version}[/] "
        f"(alias candidate); MLflow parent run {result.parent_run_id}"
    )
    return 0
