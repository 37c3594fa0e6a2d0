"""`farm generate MODEL`: a quick sample from a registered model with reference truth conditions."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `farm generate` command and its options."""
    p = sub.add_parser(
        "generate",
        help="generate a sample from a registered model, conditioned like reference events",
        description="Generate showers or jets from a registered model with the truth conditions "
        "(incident energy; jet pT, eta and constituent count) of reference events: by default "
        "the model's own held-out test split, rebuilt from its model card. Writes the sample "
        "(.parquet or .h5) and, with --reference-out, the matching reference events, so that "
        "`farm evaluate OUT REFERENCE_OUT` compares like with like. For production volumes use "
        "`farm campaign submit`. A model card may name only the shipped geometries and files "
        "inside FARM_HOME, FARM_GEOMETRY_DIR or FARM_ALLOWED_LOCATIONS (comma-separated folders "
        "or URLs); a card naming any other file is refused, nothing is read or copied.",
    )
    p.add_argument("model", help="NAME@ALIAS, NAME/VERSION or NAME (latest)")
    p.add_argument("--out", required=True, help="output file URL (.parquet, .h5)")
    p.add_argument(
        "--conditions",
        default="test",
        help="'test' (the model's held-out test split; default) or a showers/jets/events file URL",
    )
    p.add_argument("--events", type=int, default=None, help="at most this many (random subset)")
    p.add_argument("--reference-out", default=None, help="also write the reference events here")
    p.add_argument("--sampler", default=None, help="sampler name (default: the model's)")
    p.add_argument("--nfe", type=int, default=None, help="network evaluations (default: model's)")
    p.add_argument("--seed", type=int, default=0, help="sampling and subset seed (default 0)")
    p.add_argument(
        "--truncate",
        action="store_true",
        help="events: keep the highest-pT truth particles of events bigger than the model's "
        "truth slots (default: refuse them); recorded in the file's metadata",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Sample a registered model with reference truth conditions; write it (and the reference)."""
    import time

    import torch

    from farm import registry
    from farm.cli.progress import out
    from farm.data.sources import reference_sample
    from farm.errors import FarmError
    from farm.formats.files import file_format
    from farm.formats.reader import write_sample
    from farm.generation import SamplerSettings, sample_like

    if args.events is not None and args.events < 1:
        raise FarmError(f"--events must be positive, got {args.events}")
    if args.nfe is not None and args.nfe < 1:
        raise FarmError(f"--nfe must be positive, got {args.nfe}")
    for url in (args.out, args.reference_out):
        if url is not None:
            file_format(url)
    loaded = registry.load(args.model)
    if loaded.card.kind == "points":
        check_points_request(loaded.key, loaded.card.data.geometry, args)
    reference = reference_sample(loaded.card, loaded.key, args.conditions, args.events, args.seed)
    if args.reference_out and reference.kind == "events" and reference.truth_only:
        raise FarmError(
            f"{args.conditions}: a truth-only conditions file has no reco set to write as "
            "--reference-out"
        )
    t0 = time.perf_counter()
    settings = SamplerSettings(sampler=args.sampler, nfe=args.nfe)
    try:
        sample = sample_like(
            loaded.model,
            reference,
            generator=torch.Generator().manual_seed(args.seed),
            settings=settings,
            truncate=args.truncate,
        )
    except ValueError as exc:  # an unknown sampler or an NFE it cannot take
        raise FarmError(str(exc)) from None
    seconds = time.perf_counter() - t0
    meta = {"model": loaded.key, "conditions": args.conditions, "seed": args.seed}
    if sample.kind == "events":
        meta["sets"] = sample.provenance
    write_sample(args.out, sample, meta)
    if args.reference_out:
        write_sample(args.reference_out, reference, {"conditions": args.conditions})
    out.print(
        f"{len(reference)} {sample.kind} from {loaded.key} in {seconds:.1f} s "
        f"({len(reference) / seconds:,.0f}/s) -> {args.out}"
    )
    return 0


def check_points_request(key: str, geometry: str | None, args: argparse.Namespace) -> None:
    """Before any work: a point-cloud model writes Parquet and takes clouds of its own geometry.

    Otherwise one FarmError line naming the file, the model's geometry and the file's.
    """
    from farm.errors import FarmError
    from farm.formats.files import data_files, file_format
    from farm.formats.points_parquet import read_metadata
    from farm.formats.reader import kind_of, recorded_geometry, resolve

    model = f"model {key} generates point-cloud showers of geometry {geometry!r}"
    for url in (args.out, args.reference_out):
        if url is not None and file_format(url) != "parquet":
            raise FarmError(f"{url}: {model}, written as Parquet (.parquet), not voxels in HDF5")
    if args.conditions == "test":
        return
    kind = kind_of(args.conditions)
    described = {"showers": "voxel showers", "points": "point clouds"}
    first = data_files(resolve(args.conditions))[0]
    held = ""
    if kind == "showers":
        held = recorded_geometry(first)
    elif kind == "points":
        held = read_metadata(first).get("geometry", "")
    if kind != "points" or held != geometry:
        what = described.get(kind, kind) + (f" of geometry {held!r}" if held else "")
        raise FarmError(
            f"{args.conditions}: holds {what}, but {model}; give a point-cloud Parquet "
            "file of that geometry or --conditions test"
        )
