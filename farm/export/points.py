"""The point-cloud graph of `farm export`: (noise, count noise, E_inc) -> (hits, mask, counts).

`models.points.UnrolledPoints` of a point-cloud shower model (models.points): the count and
visible-energy model's closed-form draw from its own N(0, 1) noise `count_noise` [batch, 2]
(float64, as the model computes), the hits model's sampler unrolled for its NFE over the fixed
n_max hit slots with the mask from the count, the preprocessing inverse and the calibration of
the hit energies to E_sum. Outputs are `PointShowerModel.generate`'s hits in physical units
(x, y mm, layer, E MeV; zero on padding and on hits whose energy came back <= 0), the mask
(E > 0) and the drawn counts. The reference is farm's own sampler on the noise of a seed; the cell
assignment (`farm.generation.points.cells_from_points`: each hit to its own pad, the nearest
free one) stays outside the graph.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from farm.errors import FarmError
from farm.export.check import POINT_INPUTS, POINT_OUTPUTS, points_mismatch, run_points
from farm.export.trace import REFERENCE_EVENTS, TOLERANCE, write_graph
from farm.generation import SamplerSettings

FEATURES = ("x", "y", "layer", "e")
DEVIATION_UNIT = "mm or MeV (hits x, y, layer, E)"
UNITS = {"x": "mm", "y": "mm", "layer": "index (continuous; round into the stack)", "e": "MeV"}


def unrolled(model, key: str, sampler: str | None, nfe: int | None):
    """The UnrolledPoints of a loaded points model (one FarmError line when it cannot be)."""
    from models.points import UnrolledPoints

    try:
        return UnrolledPoints(model, sampler, nfe)
    except ValueError as exc:
        raise FarmError(f"model {key}: {exc}") from None


def reference(module, card, key: str, seed: int) -> dict[str, np.ndarray]:
    """Noise, count noise, E_inc and farm's own hits, masks and counts for them (same seed)."""
    from models.noise import randn

    model = module.model
    lo, hi = card.data.e_inc_range or (float("nan"), float("nan"))
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo <= hi):
        raise FarmError(f"model {key} records no finite incident-energy range to check against")
    e_inc = np.geomspace(lo, hi, REFERENCE_EVENTS).astype(np.float32).reshape(-1, 1)
    cond = torch.from_numpy(e_inc)
    settings = SamplerSettings(sampler=module.sampler, nfe=module.nfe, options=module.options)
    events = settings.generate(model, cond, torch.Generator().manual_seed(seed))
    hits = events.reshape(len(e_inc), model.n_max, len(FEATURES)).astype(np.float32)
    bad = int((~np.isfinite(hits)).sum())
    if bad:
        raise FarmError(
            f"model {key}: farm's own sampler gives {bad} non-finite hit values on the reference "
            "energies; nothing to export"
        )
    counts = model.cardinality.sample(cond, torch.Generator().manual_seed(seed))
    # the draws of PointShowerModel.generate, in order: the totals' noise, then the hits'
    gen = torch.Generator().manual_seed(seed)
    count_noise = randn((2, len(cond)), gen, like=model.cardinality.mu_coef).T.contiguous()
    noise = randn((len(cond), module.noise_dim), gen)
    return {
        "noise": noise.numpy(),
        "count_noise": count_noise.numpy(),
        "conditions": e_inc,
        "hits": hits,
        "mask": hits[..., -1] > 0,
        "counts": counts.numpy(),
    }


def write(module, fmt: str, path: Path, ref: dict[str, np.ndarray]) -> None:
    """The points graph, traced on two reference showers."""
    example = tuple(torch.from_numpy(ref[k][:2]) for k in POINT_INPUTS)
    write_graph(module, fmt, path, example, (POINT_INPUTS, POINT_OUTPUTS))


def deviation(fmt: str, path: Path, ref: dict[str, np.ndarray], key: str) -> float:
    """Max |exported - farm| over the hits, refusing the export on any mismatch (two batch sizes)."""
    run = run_points(fmt, path)
    inputs = [ref[k] for k in POINT_INPUTS]
    want = {k: ref[k] for k in POINT_OUTPUTS}
    got = run(*inputs)
    part = {k: v[:3] for k, v in want.items()}
    why = points_mismatch(got, want, TOLERANCE) or points_mismatch(
        run(*(a[:3] for a in inputs)), part, TOLERANCE
    )
    if why:
        raise FarmError(
            f"model {key}: the exported {fmt} graph does not reproduce farm's sampler ({why}; "
            f"rtol {TOLERANCE['rtol']}, atol {TOLERANCE['atol']}); nothing written"
        )
    return float(np.abs(got[0] - want["hits"]).max(initial=0.0))


def io(loaded, module) -> tuple[dict, dict]:
    """The points graph's (inputs, outputs) with shapes, dtypes and units, for the card."""
    n_max = module.model.n_max
    inputs = {
        "noise": {"shape": ["batch", module.noise_dim], "dtype": "float32", "law": "N(0, 1)"},
        "count_noise": {
            "shape": ["batch", 2],
            "dtype": "float64",
            "law": "N(0, 1)",
            "meaning": "the count model's noise: column 0 the count, column 1 E_sum",
        },
        "conditions": {
            "shape": ["batch", 1],
            "dtype": "float32",
            "unit": "MeV",
            "meaning": "incident energy",
            "trained_range": loaded.card.data.e_inc_range,
        },
    }
    outputs = {
        "hits": {
            "shape": ["batch", n_max, len(FEATURES)],
            "dtype": "float32",
            "features": list(FEATURES),
            "units": UNITS,
            "meaning": "generated hits; zero where mask is false",
        },
        "mask": {
            "shape": ["batch", n_max],
            "dtype": "bool",
            "meaning": "a hit of the shower: slot < count and E > 0 after the inverse",
        },
        "counts": {"shape": ["batch"], "dtype": "int64", "meaning": "drawn number of hit slots"},
    }
    return inputs, outputs
