"""Tune benchmark: a real hyperparameter search on this machine, its trial table and where the time goes.

Runs a tune job end to end (default jobs/tune-ds1-photons-fidelity.yaml: the DS1-photon flow model,
objective fidelity.sep_mean scored on 1000 generated showers per checkpoint) through
`farm.tune.run_search`: Optuna TPE + ASHA on Ray Tune, every trial a Ray Train run, MLflow parent
and child runs, the best trial registered. Prints the trial table (parameters, metrics, status,
epochs), the wall time, and per trial its wall time beside the seconds spent training and scoring,
so that Ray's per-trial start-up shows. Nothing is asserted.

Question it answers: what does a small search cost on CPU, does ASHA stop the poor trials, and
does the fidelity objective rank the trials differently from the validation loss?

    nice -n 5 python bench/tune.py                       # ~10 minutes on 2 cores
    python bench/tune.py --trials 16 --epochs 12 --events 20000
    FARM_HOME=./farm-home python bench/tune.py jobs/tune-ds1-photons-flow.yaml
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

JOB = Path(__file__).resolve().parents[1] / "jobs" / "tune-ds1-photons-fidelity.yaml"


def load(args: argparse.Namespace):
    """The tune job with the command line's overrides applied (re-validated)."""
    from farm.specs import load_job, parse_job, resolved

    doc = resolved(load_job(args.job, kind="tune"))
    for key, value in (("trials", args.trials), ("concurrency", args.concurrency)):
        if value is not None:
            doc[key] = value
    if args.epochs is not None:
        doc["base"]["optim"]["epochs"] = args.epochs
    if args.events is not None:
        doc["base"]["data"]["events"] = args.events
    return parse_job(doc, str(args.job), kind="tune")


def trial_times(result) -> dict[str, tuple[float, float, float]]:
    """trial id -> (wall s of its child run, s training epochs, s scoring fidelity) from MLflow."""
    from farm import registry
    from farm.tune import TRIAL_TAG

    c = registry.client()
    parent = c.get_run(result.parent_run_id)
    runs = c.search_runs(
        [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{result.parent_run_id}'"
    )
    out = {}
    for run in runs:
        wall = ((run.info.end_time or run.info.start_time) - run.info.start_time) / 1000
        epochs = {m.step: m.value for m in c.get_metric_history(run.info.run_id, "epoch_seconds")}
        scored = c.get_metric_history(run.info.run_id, "fidelity.seconds")
        out[run.data.tags[TRIAL_TAG]] = (wall, sum(epochs.values()), sum(m.value for m in scored))
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("job", nargs="?", default=str(JOB), help="a tune job YAML")
    p.add_argument("--trials", type=int)
    p.add_argument("--concurrency", type=int)
    p.add_argument("--epochs", type=int, help="the base job's optim.epochs")
    p.add_argument("--events", type=int, help="the base job's data.events")
    p.add_argument("--cpus", type=int, help="Ray CPUs (default: the host's cores)")
    args = p.parse_args(argv)

    if "FARM_HOME" not in os.environ:
        os.environ["FARM_HOME"] = tempfile.mkdtemp(prefix="farm-bench-tune-")
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    from rich.console import Console

    from farm.cli.tune import print_table
    from farm.ray_utils import ensure_ray
    from farm.tune import run_search

    job = load(args)
    t0 = time.perf_counter()
    ensure_ray(num_cpus=args.cpus)
    import ray

    fidelity = job.fidelity
    print(
        f"{job.search_name}: {job.trials} trials, {job.concurrency} at a time, "
        f"{job.base.optim.epochs} epochs on {job.base.data.events:,} events, objective "
        f"{job.metric}"
        + (f" ({fidelity.events} generated showers per checkpoint)" if fidelity else "")
        + f"; Ray CPUs {int(ray.cluster_resources().get('CPU', 0))}, host cores {os.cpu_count()},"
        f" load average {os.getloadavg()[0]:.1f}; FARM_HOME {os.environ['FARM_HOME']}",
        flush=True,
    )
    result = run_search(job)
    wall = time.perf_counter() - t0
    Console(width=220).print(print_table(result.trials, result.metric, result.search_id))

    times = trial_times(result)
    print(f"{'trial':<10}{'wall s':>9}{'train s':>9}{'score s':>9}  (child-run span; epochs)")
    for row in result.trials:
        w, t, s = times.get(row["trial_id"], (0.0, 0.0, 0.0))
        print(f"{row['trial_id']:<10}{w:9.1f}{t:9.1f}{s:9.1f}")
    stopped = sum(r["stopped_early"] for r in result.trials)
    epochs = sum(r["epochs"] for r in result.trials)
    planned = sum(r["planned_epochs"] for r in result.trials)
    spans = [w for w, _, _ in times.values()]
    print(
        f"wall time {wall:.0f} s (Ray start, data, {len(result.trials)} trials, registration); "
        f"median trial {statistics.median(spans):.0f} s; {stopped} stopped early by ASHA; "
        f"{epochs}/{planned} planned epochs run; load average {os.getloadavg()[0]:.1f}"
    )
    if result.best is not None:
        best = result.best
        print(
            f"best trial {best['trial_id']} {best['params']}: {result.metric} "
            f"{best[result.metric]:.4g}; registered {result.name}/{result.version} @candidate"
        )


if __name__ == "__main__":
    main()
