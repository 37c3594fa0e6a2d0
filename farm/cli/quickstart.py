"""`farm quickstart`: data -> Ray Train -> MLflow registry -> campaign -> evaluation, for real."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `farm quickstart` command and its options."""
    p = sub.add_parser(
        "quickstart",
        help="run the whole path on this machine with embedded defaults",
        description="Simulate DS1-photon reference showers, train a conditional flow-matching "
        "patch transformer with Ray Train on 2 workers, register it in MLflow, generate 50,000 showers over 2 "
        "Ray actors (Parquet + CaloChallenge HDF5), evaluate 10,000 of them against 10,000 held-out "
        "reference showers, check the promotion gates (auc_low, sep_mean, sep_max) and print a "
        "summary with the verdict (exit 1 when the model fails its gates). Outputs go to FARM_HOME (default ./farm-home). With CI=true "
        "the reference set and training are smaller (same code path).",
    )
    p.add_argument("--reference-events", type=int, help="reference showers to simulate")
    p.add_argument("--epochs", type=int, help="training epochs")
    p.add_argument("--campaign-events", type=int, help="showers to generate (default 50,000)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the quickstart's stages and print timings, fidelity, outputs and the registered model."""
    import dataclasses

    from rich.table import Table

    from farm import store
    from farm.cli.progress import console, out, training_progress
    from farm.errors import FarmError
    from farm.quickstart import GATES, QuickstartSizes, run_quickstart

    sizes = QuickstartSizes.for_environment()
    overrides = {
        k: v
        for k, v in (
            ("reference_events", args.reference_events),
            ("epochs", args.epochs),
            ("campaign_events", args.campaign_events),
        )
        if v is not None
    }
    for key, value in overrides.items():
        if value <= 0:
            raise FarmError(f"--{key.replace('_', '-')} must be positive, got {value}")
    sizes = dataclasses.replace(sizes, **overrides)
    if sizes.shard_size > sizes.campaign_events:
        sizes = dataclasses.replace(sizes, shard_size=sizes.campaign_events)
    store.check_writable(store.home())
    out.rule("farm quickstart")
    out.print(f"store: {store.home()}")

    def on_stage(name: str) -> None:
        console.print(f"[bold cyan]>> {name}[/]")

    from farm.cli.progress import campaign_progress

    result = run_quickstart(
        sizes,
        on_stage=on_stage,
        training_progress=lambda: training_progress("train"),
        campaign_progress=lambda total: campaign_progress("campaign", total),
    )

    stages = Table(title="stages")
    stages.add_column("stage")
    stages.add_column("seconds", justify="right")
    stages.add_column("what")
    for s in result.stages:
        stages.add_row(s.name, f"{s.seconds:.1f}", s.detail)
    out.print(stages)

    metrics = Table(
        title="fidelity: generated vs held-out reference (floor = reference vs reference)"
    )
    for col in ("metric", "generated", "floor"):
        metrics.add_column(col, justify="right" if col != "metric" else "left")
    for row in result.evaluation.table(worst=8):
        metrics.add_row(*row)
    out.print(metrics)
    for note in result.evaluation.notes[:5]:
        out.print(f"[yellow]note:[/] {note}")

    campaign, summary = result.campaign, result.summary
    out.print("[bold]outputs[/]")
    out.print(f"  reference showers : {result.reference_url}")
    out.print(f"  generated Parquet : {campaign.path(summary.files['parquet'])}")
    out.print(f"  generated HDF5    : {campaign.path(summary.files['h5'])}")
    out.print(f"  manifest          : {campaign.path(summary.manifest)}")
    out.print(f"  evaluation report : {store.join(result.evaluation_url, 'report.html')}")
    out.print(
        f"[bold]registry[/]: {result.model}/{result.version} @candidate "
        f"(`farm registry show {result.model}@candidate`)"
    )
    evaluation = result.evaluation
    gated = ", ".join(
        f"{k} {evaluation.metrics.get(k, {}).get('value', float('nan')):.3g}" for k in GATES
    )
    if evaluation.verdict == "pass":
        out.print(f"[bold green]verdict: PASS[/] against the gates ({gated})")
        out.print(
            f"promote it: farm registry promote {result.model} {result.version} --alias production"
        )
    else:
        out.print(f"[bold red]verdict: FAIL[/] {'; '.join(evaluation.failures)}")
        out.print("not promoted: `farm registry promote` refuses a version that fails its gates")
    out.print("browse runs and models: farm registry ui   (MLflow UI on http://127.0.0.1:5000)")
    return 0 if evaluation.verdict == "pass" else 1  # a model that fails its gates fails the run
