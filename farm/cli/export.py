"""`farm export MODEL`: the model's sampler unrolled for fixed NFE as one ONNX or TorchScript graph."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `farm export` command and its options."""
    p = sub.add_parser(
        "export",
        help="export a shower or point-cloud model as one ONNX or TorchScript graph",
        description="Write a registered shower model's deterministic sampler, unrolled for a fixed "
        "NFE with the preprocessing inverse included, as one graph from prior noise "
        "N(0, 1) [batch, noise_dim] and incident energies (MeV) [batch, 1] to voxel energies "
        "(MeV) [batch, voxels], for ONNX Runtime or LibTorch (Geant4 Par04, key4hep DDML); a "
        "point-cloud model's graph takes noise, count_noise [batch, 2] (float64) and energies "
        "and gives hits [batch, n_max, 4] (x, y mm, layer, E MeV), mask and counts. "
        "The folder gets model.onnx or model.pt, card.json (the model card and the graph's "
        "inputs, outputs and units), reference.npz (noise, energies and farm's own events for "
        "them) and check.py (compares the graph with them; needs numpy and onnxruntime or "
        "torch). The export is refused unless the graph reproduces farm's sampler on the same "
        "noise within rtol 1e-4, atol 1e-3 MeV, and for samplers that cannot be unrolled "
        "(adaptive rk45, stochastic samplers, multistep consistency).",
    )
    p.add_argument("model", help="NAME@ALIAS, NAME/VERSION or NAME (latest)")
    p.add_argument(
        "--format",
        required=True,
        choices=("onnx", "torchscript"),
        dest="fmt",
        help="onnx (model.onnx, opset 17, for ONNX Runtime) or torchscript (model.pt, LibTorch)",
    )
    p.add_argument("--out", required=True, help="new local folder to write")
    p.add_argument("--sampler", default=None, help="sampler name (default: the model's)")
    p.add_argument("--nfe", type=int, default=None, help="network evaluations (default: model's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the reference noise (default 0)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Export the model and print where it went and how closely it matches farm's sampler."""
    from farm.cli.progress import out
    from farm.export import export_model

    result = export_model(
        args.model, args.fmt, args.out, sampler=args.sampler, nfe=args.nfe, seed=args.seed
    )
    out.print(
        f"{result.key} ({result.sampler}, nfe {result.nfe}) -> {result.out} ({result.format}; "
        f"max |exported - farm| = {result.max_abs_deviation:.3g} {result.unit} on the reference)"
    )
    return 0
