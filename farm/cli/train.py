"""`farm train JOB.yaml`: distributed training with Ray Train, tracked and registered in MLflow."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `farm train` command and its options."""
    p = sub.add_parser(
        "train",
        help="train a model with Ray Train and register it in MLflow",
        description="Train the model a job file describes with Ray Train (DDP over "
        "resources.workers workers; GPUs where present), log params, per-epoch metrics, the "
        "resolved spec and a validation plot to MLflow, and register the final checkpoint as a "
        "new model version. Running the same job again resumes its unfinished run from the last "
        "checkpoint. The data is loaded and checked (finite energies) before any MLflow run "
        "exists; a run that fails ends FAILED, one stopped by Ctrl-C or SIGTERM ends KILLED. Job "
        "files are bounded (1 MB, 100,000 YAML nodes after aliases, 10,000 items per list, "
        "data.events at most 10^8); each refusal names its bound.",
    )
    p.add_argument("job", help="train job YAML (see jobs/train-*.yaml)")
    p.add_argument(
        "--new",
        action="store_true",
        help="start a fresh run even if an unfinished one exists for this job",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Train the model a job file describes (or resume its run) and register the new version."""
    from farm.cli.progress import out, training_progress
    from farm.specs import load_job
    from farm.train import run_training

    job = load_job(args.job, kind=("train", "distill"))
    with training_progress(f"train {job.name}") as on_start:
        result = run_training(job, new=args.new, on_start=on_start)
    resumed = (
        f" (resumed from epoch {result.resumed_from_epoch})" if result.resumed_from_epoch else ""
    )
    out.print(
        f"[green]trained[/] {result.run_name}{resumed} in {result.seconds:.0f} s: "
        f"val_loss {result.metrics.get('val_loss', float('nan')):.4f}"
    )
    out.print(
        f"registered [bold]{result.name}/{result.version}[/] "
        f"(aliases: {', '.join(job.aliases) or 'none'}); MLflow run {result.mlflow_run_id}"
    )
    return 0
