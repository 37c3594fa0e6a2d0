"""The voxel-shower graph of `farm export`: (noise, conditions) -> events (MeV), checked on a reference.

`models.unrolled.UnrolledSampler` of a single-stage shower model; the reference is farm's own
sampler (`farm.generation`) on the noise of a seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from farm.errors import FarmError
from farm.export.check import run_exported
from farm.export.trace import REFERENCE_EVENTS, TOLERANCE, write_graph
from farm.generation import SamplerSettings

DEVIATION_UNIT = "MeV"


def unrolled(model, key: str, sampler: str | None, nfe: int | None):
    """The UnrolledSampler of a loaded model (one FarmError line when it cannot be unrolled)."""
    from models.unrolled import UnrolledSampler

    try:
        return UnrolledSampler(model, sampler, nfe)
    except ValueError as exc:
        raise FarmError(f"model {key}: {exc}") from None


def reference(module, card, key: str, seed: int) -> dict[str, np.ndarray]:
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


def deviation(fmt: str, path: Path, ref: dict[str, np.ndarray], key: str) -> float:
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


def io(loaded, module) -> tuple[dict, dict]:
    """The voxel graph's (inputs, outputs) with shapes, dtypes and units, for the card."""
    inputs = {
        "noise": {"shape": ["batch", module.noise_dim], "dtype": "float32", "law": "N(0, 1)"},
        "conditions": {
            "shape": ["batch", loaded.card.cond_dim],
            "dtype": "float32",
            "unit": "MeV",
            "meaning": "incident energy",
            "trained_range": loaded.card.data.e_inc_range,
        },
    }
    outputs = {"events": {"shape": ["batch", loaded.card.dim], "dtype": "float32", "unit": "MeV"}}
    return inputs, outputs


def write(module, fmt: str, path: Path, ref: dict[str, np.ndarray]) -> None:
    """The voxel graph (noise, conditions) -> events, traced on two reference events."""
    example = (torch.from_numpy(ref["noise"][:2]), torch.from_numpy(ref["conditions"][:2]))
    write_graph(module, fmt, path, example)
