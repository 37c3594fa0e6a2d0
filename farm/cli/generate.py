"""`farm generate MODEL`: a quick sample from a registered model with reference truth conditions."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="generate a sample from a registered model, conditioned like reference events",
        description="Generate showers or jets from a registered model with the truth conditions "
        "(incident energy; jet pT, eta and constituent count) of reference events: by default "
        "the model's own held-out test split, rebuilt from its model card. Writes the sample "
        "(.parquet or .h5) and, with --reference-out, the matching reference events, so that "
        "`farm evaluate OUT REFERENCE_OUT` compares like with like. For production volumes use "
        "`farm campaign submit`.",
    )
    p.add_argument("model", help="NAME@ALIAS, NAME/VERSION or NAME (latest)")
    p.add_argument("--out", required=True, help="output file URL (.parquet, .h5)")
    p.add_argument(
        "--conditions",
        default="test",
        help="'test' (the model's held-out test split; default) or a showers/jets file URL",
    )
    p.add_argument("--events", type=int, default=None, help="at most this many (random subset)")
    p.add_argument("--reference-out", default=None, help="also write the reference events here")
    p.add_argument("--sampler", default=None, help="sampler name (default: the model's)")
    p.add_argument("--nfe", type=int, default=None, help="network evaluations (default: model's)")
    p.add_argument("--seed", type=int, default=0, help="sampling and subset seed (default 0)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import time

    from farm import registry
    from farm.cli.progress import out
    from farm.errors import FarmError
    from farm.generation import generate_like, reference_sample, write_sample

    if args.events is not None and args.events < 1:
        raise FarmError(f"--events must be positive, got {args.events}")
    if args.nfe is not None and args.nfe < 1:
        raise FarmError(f"--nfe must be positive, got {args.nfe}")
    for url in (args.out, args.reference_out):
        if url is not None and not url.endswith((".h5", ".hdf5", ".parquet")):
            raise FarmError(f"{url}: output must end in .h5, .hdf5 or .parquet")
    model, card, mv = registry.load(args.model)
    reference = reference_sample(card, args.conditions, args.events, args.seed)
    t0 = time.perf_counter()
    try:
        sample = generate_like(
            model, card, reference, seed=args.seed, sampler=args.sampler, nfe=args.nfe
        )
    except ValueError as exc:  # an unknown sampler or an NFE it cannot take
        raise FarmError(str(exc)) from None
    seconds = time.perf_counter() - t0
    meta = {"model": f"{mv.name}/{mv.version}", "conditions": args.conditions, "seed": args.seed}
    write_sample(args.out, sample, meta)
    if args.reference_out:
        write_sample(args.reference_out, reference, {"conditions": args.conditions})
    out.print(
        f"{len(reference)} {'jets' if sample.kind == 'jets' else 'showers'} from "
        f"{mv.name}/{mv.version} in {seconds:.1f} s ({len(reference) / seconds:,.0f}/s) -> {args.out}"
    )
    return 0
