"""`farm evaluate`: generated vs reference -> metrics table (with noise floors), plots, report."""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> argparse.ArgumentParser:
    """Add the `evaluate` command."""
    p = subparsers.add_parser(
        "evaluate",
        help="validate generated showers or jets against a reference sample",
        description="Compare a generated sample with a reference one using the CaloChallenge "
        "(showers) or JetNet (jets) metrics: separation powers, Wasserstein-1, FPD/KPD and "
        "classifier AUCs, each beside its reference-vs-reference noise floor. Writes "
        "metrics.json, PNG plots and report.html under --out.",
    )
    p.add_argument(
        "generated",
        metavar="GENERATED",
        help="generated file or folder URL, or a campaign id (its output is used)",
    )
    p.add_argument("reference", metavar="REFERENCE", help="reference file or folder URL")
    p.add_argument(
        "--geometry",
        default=None,
        help="showers' geometry: ds1-photons, ds1-pions, ds2, ds3 or a binning .xml path "
        "(default: the one recorded in Parquet files; not used for jets)",
    )
    p.add_argument("--out", default=None, help="output folder URL for metrics.json, plots, report")
    p.add_argument("--no-classifier", action="store_true", help="skip the classifier AUCs")
    p.add_argument(
        "--max-events", type=int, default=None, help="use at most N events of each sample"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    p.add_argument(
        "--model",
        default=None,
        help="NAME/VERSION or NAME@ALIAS: log the metrics and report to that version's MLflow run "
        "and record them for its promotion gates (default: a campaign's model)",
    )
    p.add_argument(
        "--stream",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="read shower files chunk by chunk instead of whole (default: automatic when the "
        "showers would take more than a quarter of the memory, at most 8 GiB; "
        "FARM_EVAL_STREAM_BYTES sets it). Separation powers are then exact, Wasserstein-1 comes "
        "with a binning-error bound, FPD/KPD/classifiers/plots use a random --subsample",
    )
    p.add_argument(
        "--subsample",
        type=int,
        default=None,
        help="streaming: events per sample for FPD, KPD, classifiers and plots (default 50,000, "
        "fewer for big geometries: at most 1 GiB of showers)",
    )
    p.add_argument("--json", action="store_true", help="print the metrics as JSON, not a table")
    p.add_argument("--full", action="store_true", help="print every per-feature metric")
    p.set_defaults(handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Handler: evaluate, print the table (or JSON), report where the files went."""
    from farm.errors import FarmError
    from farm.evaluation.evaluate import evaluate_files
    from farm.evaluation.options import EvaluationOptions

    if args.max_events is not None and args.max_events < 4:
        raise FarmError(f"--max-events must be >= 4, got {args.max_events}")
    if args.subsample is not None and args.subsample < 2:
        raise FarmError(f"--subsample must be >= 2, got {args.subsample}")
    generated, geometry, model = _resolve_campaign(args.generated, args.geometry, args.model)
    args.geometry, args.model = geometry, model
    labels = {"generated": args.generated, "reference": args.reference}
    if model:
        labels["model"] = model
    if generated != args.generated:
        labels["campaign"] = args.generated
    options = EvaluationOptions(
        seed=args.seed,
        classifier=not args.no_classifier,
        max_events=args.max_events,
        stream=args.stream,
        subsample=args.subsample,
        labels=labels,
    )
    result = evaluate_files(generated, args.reference, args.geometry, args.out, options)
    logged = ""
    if args.model:
        from farm import registry
        from farm.evaluation.gates import judge

        mv = registry.log_evaluation(args.model, result.metrics, args.out)
        verdict = judge(result, registry.gates(mv))
        if args.out:
            result.write(args.out)  # the report names the verdict
        logged = f"logged to {mv.name}/{mv.version} (run {mv.run_id}); gates: {verdict}"
        logged += "".join(f"\n  gate failed: {f}" for f in result.failures)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, default=float))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"farm evaluate ({result.kind}, {result.details.get('n_compared')} events)")
    for column in ("metric", "value ± error", "floor (ref vs ref)"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for row in result.table(full=args.full):
        table.add_row(*row)
    console = Console()
    console.print(table)
    for note in result.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    if args.out:
        console.print(f"report: {args.out.rstrip('/')}/report.html")
    if logged:
        console.print(logged)
    return 0


def _resolve_campaign(generated: str, geometry: str | None, model: str | None):
    """A campaign id stands for its output, its geometry and (unless given) its model."""
    from farm import records, store
    from farm.formats.reader import resolve

    if not records.exists(generated) or store.exists(generated):
        return generated, geometry, model
    campaign = records.load(generated)
    return resolve(generated), geometry or campaign.geometry, model or campaign.model.key
