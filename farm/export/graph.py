"""`farm export`: the model's deterministic sampler unrolled for fixed NFE, traced to ONNX or TorchScript.

The graph is `models.unrolled.UnrolledSampler` (the preprocessing inverse included), from prior
noise z ~ N(0, I) [batch, noise_dim] and physical conditions [batch, cond_dim] to events in
physical units, with a free batch axis. The export checks itself before anything gets its final
name: the exported graph must reproduce farm's own sampler (`farm.generation`) on the same noise
within TOLERANCE, on two batch sizes; the folder then appears at once (written beside, renamed).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from farm import registry, store
from farm.errors import FarmError
from farm.export.check import run_exported
from farm.generation import SamplerSettings

EXPORT_FORMATS = ("onnx", "torchscript")
ExportFormat = Literal["onnx", "torchscript"]
FILES = {"onnx": "model.onnx", "torchscript": "model.pt"}
ONNX_OPSET = 17
TOLERANCE = {"rtol": 1e-4, "atol": 1e-3}
"""fp32 agreement of the exported graph with farm's sampler: |exported - farm| <= atol + rtol |farm|
(events in MeV; the graph's operations are reordered and fused, and ONNX Runtime evaluates
erf in float32)."""
REFERENCE_EVENTS = 8
CHECK_SCRIPT = Path(__file__).with_name("check.py")


@dataclass(frozen=True)
class ExportResult:
    """What `export_model` wrote: the folder, the version, the sampler and the measured deviation."""

    out: str
    key: str
    format: str
    sampler: str
    nfe: int
    max_abs_deviation: float


def _unrolled(model, key: str, sampler: str | None, nfe: int | None):
    """The UnrolledSampler of a loaded model (one FarmError line when it cannot be unrolled)."""
    from models.unrolled import UnrolledSampler

    try:
        return UnrolledSampler(model, sampler, nfe)
    except ValueError as exc:
        raise FarmError(f"model {key}: {exc}") from None


def _reference(module, card, key: str, seed: int) -> dict[str, np.ndarray]:
    """Noise, conditions and farm's own events for them (`farm.generation`, the same seed)."""
    from models.noise import randn

    lo, hi = card.data.e_inc_range or tuple(module.model.preprocessing.e_inc_range.tolist())
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo <= hi):
        raise FarmError(f"model {key} records no finite incident-energy range to check against")
    e_inc = np.geomspace(lo, hi, REFERENCE_EVENTS).astype(np.float32).reshape(-1, 1)
    cond = torch.from_numpy(e_inc)
    settings = SamplerSettings(sampler=module.sampler, nfe=module.nfe, options=module.options)
    events = settings.generate(module.model, cond, torch.Generator().manual_seed(seed))
    noise = randn((len(cond), module.noise_dim), torch.Generator().manual_seed(seed))
    return {"noise": noise.numpy(), "conditions": e_inc, "events": events.astype(np.float32)}


def _erf_in_float32(path: Path) -> None:
    """Evaluate double-precision Erf nodes in float32 (ONNX Runtime has no double Erf kernel)."""
    import onnx
    from onnx import TensorProto, helper, shape_inference

    graph_model = onnx.load(str(path))
    inferred = shape_inference.infer_shapes(graph_model).graph
    types = {
        v.name: v.type.tensor_type.elem_type
        for v in [*inferred.value_info, *inferred.input, *inferred.output]
    }
    nodes = []
    for node in graph_model.graph.node:
        if node.op_type != "Erf" or types.get(node.input[0]) != TensorProto.DOUBLE:
            nodes.append(node)
            continue
        x32, y32 = f"{node.input[0]}_f32", f"{node.output[0]}_f32"
        nodes += [
            helper.make_node("Cast", [node.input[0]], [x32], to=TensorProto.FLOAT),
            helper.make_node("Erf", [x32], [y32]),
            helper.make_node("Cast", [y32], [node.output[0]], to=TensorProto.DOUBLE),
        ]
    del graph_model.graph.node[:]
    graph_model.graph.node.extend(nodes)
    onnx.checker.check_model(graph_model, full_check=True)
    onnx.save(graph_model, str(path))


def _write_graph(module, fmt: str, path: Path, example: tuple[torch.Tensor, torch.Tensor]) -> None:
    """Trace the module to model.onnx (checked by onnx.checker) or model.pt (torch.jit.trace)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings: the loops are meant to unroll
        if fmt == "torchscript":
            torch.jit.save(torch.jit.trace(module, example, check_trace=False), str(path))
            return
        batch = {0: "batch"}
        torch.onnx.export(
            module,
            example,
            str(path),
            input_names=["noise", "conditions"],
            output_names=["events"],
            dynamic_axes={"noise": batch, "conditions": batch, "events": batch},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    _erf_in_float32(path)


def _deviation(fmt: str, path: Path, ref: dict[str, np.ndarray], key: str) -> float:
    """Max |exported - farm| on the reference, refusing the export beyond TOLERANCE."""
    run = run_exported(fmt, path)
    events = run(ref["noise"], ref["conditions"])
    half = run(ref["noise"][:3], ref["conditions"][:3])  # another batch size
    for got, want in ((events, ref["events"]), (half, ref["events"][:3])):
        if got.shape != want.shape or not np.allclose(got, want, **TOLERANCE):
            raise FarmError(
                f"model {key}: the exported {fmt} graph does not reproduce farm's sampler "
                f"within rtol {TOLERANCE['rtol']}, atol {TOLERANCE['atol']}; nothing written"
            )
    return float(np.abs(events - ref["events"]).max(initial=0.0))


def _card(loaded, module, fmt: str, deviation: float) -> dict:
    """The model card with an `export` section: file, sampler, inputs, outputs and units."""
    doc = loaded.card.model_dump(mode="json")
    doc["export"] = {
        "source": loaded.key,
        "format": fmt,
        "file": FILES[fmt],
        "opset": ONNX_OPSET if fmt == "onnx" else None,
        "sampler": module.sampler,
        "nfe": module.nfe,
        "sampler_options": module.options,
        "inputs": {
            "noise": {"shape": ["batch", module.noise_dim], "dtype": "float32", "law": "N(0, 1)"},
            "conditions": {
                "shape": ["batch", loaded.card.cond_dim],
                "dtype": "float32",
                "unit": "MeV",
                "meaning": "incident energy",
                "trained_range": loaded.card.data.e_inc_range,
            },
        },
        "outputs": {
            "events": {"shape": ["batch", loaded.card.dim], "dtype": "float32", "unit": "MeV"}
        },
        "tolerance": TOLERANCE,
        "max_abs_deviation": deviation,
    }
    return doc


def _check_out(out: str) -> Path:
    """A local folder that does not exist yet (one FarmError line otherwise)."""
    if not store.is_local(out):
        raise FarmError(f"--out {out}: exports are written to a local folder")
    path = Path(store.normalize(out))
    if path.exists():
        raise FarmError(f"--out {out} already exists; give a new folder")
    return path


def export_model(
    ref: str,
    fmt: str,
    out: str,
    *,
    sampler: str | None = None,
    nfe: int | None = None,
    seed: int = 0,
) -> ExportResult:
    """Export a registered shower model's unrolled sampler to `out` (a new local folder)."""
    if fmt not in EXPORT_FORMATS:
        raise FarmError(f"--format {fmt!r}: choose one of {', '.join(EXPORT_FORMATS)}")
    if nfe is not None and nfe < 1:
        raise FarmError(f"--nfe must be positive, got {nfe}")
    final = _check_out(out)
    loaded = registry.load(ref)
    if loaded.card.kind != "showers":
        raise FarmError(f"model {loaded.key} generates {loaded.card.kind}; export takes showers")
    module = _unrolled(loaded.model, loaded.key, sampler, nfe)
    ref_data = _reference(module, loaded.card, loaded.key, seed)
    example = (
        torch.from_numpy(ref_data["noise"][:2]),
        torch.from_numpy(ref_data["conditions"][:2]),
    )
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}{store.TMP_MARK}", dir=final.parent))
    try:
        _write_graph(module, fmt, tmp / FILES[fmt], example)
        deviation = _deviation(fmt, tmp / FILES[fmt], ref_data, loaded.key)
        card = _card(loaded, module, fmt, deviation)
        (tmp / "card.json").write_text(json.dumps(card, indent=2) + "\n")
        np.savez(tmp / "reference.npz", **ref_data)
        shutil.copyfile(CHECK_SCRIPT, tmp / "check.py")
        os.rename(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)
    return ExportResult(str(final), loaded.key, fmt, module.sampler, module.nfe, deviation)
