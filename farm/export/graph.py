"""`farm export`: the model's deterministic sampler unrolled for fixed NFE, traced to ONNX or TorchScript.

The graph is `models.unrolled.UnrolledSampler` (the preprocessing inverse included), from prior
noise z ~ N(0, I) [batch, noise_dim] and physical conditions [batch, cond_dim] to events in
physical units, with a free batch axis (farm.export.voxels); for a point-cloud model it is
`models.points.UnrolledPoints`, (noise, count noise, E_inc) -> (hits, mask, counts) over a
fixed maximum of hit slots (farm.export.points); tracing is farm.export.trace. The export checks
itself before anything gets its final name: the exported graph must reproduce farm's own sampler (`farm.generation`) on the same noise
within TOLERANCE, on two batch sizes; the folder then appears at once (written beside, renamed).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from farm import registry, store
from farm.errors import FarmError
from farm.export import points, voxels
from farm.export.trace import ONNX_OPSET, TOLERANCE

EXPORT_FORMATS = ("onnx", "torchscript")
EXPORT_KINDS = ("showers", "points")
ExportFormat = Literal["onnx", "torchscript"]
FILES = {"onnx": "model.onnx", "torchscript": "model.pt"}
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
    unit: str = "MeV"


def export_card(loaded, module, fmt: str, io: tuple[dict, dict], deviation: float) -> dict:
    """The model card with an `export` section: file, sampler, inputs, outputs and units."""
    doc = loaded.card.model_dump(mode="json")
    doc["export"] = {
        "source": loaded.key,
        "kind": loaded.card.kind,
        "format": fmt,
        "file": FILES[fmt],
        "opset": ONNX_OPSET if fmt == "onnx" else None,
        "sampler": module.sampler,
        "nfe": module.nfe,
        "sampler_options": module.options,
        "inputs": io[0],
        "outputs": io[1],
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
    """Export a registered shower or point-cloud model's unrolled sampler to `out` (new folder).

    The model's kind (card data.kind) picks the graph: farm.export.voxels or farm.export.points
    (each: unrolled, reference, write, deviation, io, DEVIATION_UNIT).
    """
    if fmt not in EXPORT_FORMATS:
        raise FarmError(f"--format {fmt!r}: choose one of {', '.join(EXPORT_FORMATS)}")
    if nfe is not None and nfe < 1:
        raise FarmError(f"--nfe must be positive, got {nfe}")
    final = _check_out(out)
    loaded = registry.load(ref)
    if loaded.card.kind not in EXPORT_KINDS:
        raise FarmError(
            f"model {loaded.key} generates {loaded.card.kind}; export takes "
            f"{' and '.join(EXPORT_KINDS)} models"
        )
    kind = points if loaded.card.kind == "points" else voxels
    module = kind.unrolled(loaded.model, loaded.key, sampler, nfe)
    ref_data = kind.reference(module, loaded.card, loaded.key, seed)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}{store.TMP_MARK}", dir=final.parent))
    try:
        kind.write(module, fmt, tmp / FILES[fmt], ref_data)
        deviation = kind.deviation(fmt, tmp / FILES[fmt], ref_data, loaded.key)
        card = export_card(loaded, module, fmt, kind.io(loaded, module), deviation)
        (tmp / "card.json").write_text(json.dumps(card, indent=2) + "\n")
        np.savez(tmp / "reference.npz", **ref_data)
        shutil.copyfile(CHECK_SCRIPT, tmp / "check.py")
        os.rename(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)
    return ExportResult(
        str(final), loaded.key, fmt, module.sampler, module.nfe, deviation, kind.DEVIATION_UNIT
    )
