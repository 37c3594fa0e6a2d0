"""Check an exported farm model against the events farm's own sampler made (reference.npz).

Runs model.onnx with ONNX Runtime (or model.pt with torch.jit) on the reference noise and
conditions, and on a batch of another size; prints the largest deviation and exits 1 when it
exceeds the card's tolerance (a point-cloud graph must also give the same counts and masks).
Needs numpy and onnxruntime (or torch), not farm.

    python check.py [--provider CPUExecutionProvider]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
POINT_INPUTS = ("noise", "count_noise", "conditions")
POINT_OUTPUTS = ("hits", "mask", "counts")


def _runner(fmt: str, path: Path, inputs: tuple[str, ...], provider: str):
    """A function (*arrays) -> tuple of numpy outputs for an exported model.onnx or model.pt."""
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=[provider])
        return lambda *arrays: tuple(session.run(None, dict(zip(inputs, arrays, strict=True))))
    import torch

    module = torch.jit.load(str(path))

    def run(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
        with torch.no_grad():
            out = module(*(torch.from_numpy(a) for a in arrays))
        return tuple(o.numpy() for o in (out if isinstance(out, tuple) else (out,)))

    return run


def run_exported(fmt: str, path: Path, provider: str = "CPUExecutionProvider"):
    """A function (noise, conditions) -> events (numpy) for an exported voxel model."""
    run = _runner(fmt, path, ("noise", "conditions"), provider)
    return lambda z, c: run(z, c)[0]


def run_points(fmt: str, path: Path, provider: str = "CPUExecutionProvider"):
    """A function (noise, count_noise, conditions) -> (hits, mask, counts) for a points model."""
    return _runner(fmt, path, POINT_INPUTS, provider)


def points_mismatch(got: tuple[np.ndarray, ...], want: dict, tol: dict) -> str | None:
    """Why exported (hits, mask, counts) disagree with farm's (None when they agree).

    Counts must be equal, hits within tol; a mask may differ only where farm's hit energy is
    within atol of 0 (a hit on the edge of removal).
    """
    hits, mask, counts = got
    if hits.shape != want["hits"].shape or mask.shape != want["mask"].shape:
        return f"hits of shape {hits.shape}, mask {mask.shape}; reference {want['hits'].shape}"
    if not np.array_equal(counts, want["counts"]):
        return f"{int((counts != want['counts']).sum())} counts differ from farm's"
    if not np.allclose(hits, want["hits"], **tol):
        return f"hits differ by up to {float(np.abs(hits - want['hits']).max()):.3g}"
    flips = (mask != want["mask"]) & (np.abs(want["hits"][..., -1]) > tol["atol"])
    if flips.any():
        return f"{int(flips.sum())} hit masks differ from farm's"
    return None


def _check_points(card: dict, ref, provider: str) -> tuple[bool, str]:
    """(ok, message) of a point-cloud graph on the reference and on half of it."""
    export = card["export"]
    tol = export["tolerance"]
    run = run_points(export["format"], HERE / export["file"], provider)
    inputs = [ref[k] for k in POINT_INPUTS]
    want = {k: ref[k] for k in POINT_OUTPUTS}
    got = run(*inputs)
    why = points_mismatch(got, want, tol)
    half = len(inputs[0]) // 2 or 1  # another batch size: the batch axis is dynamic
    why = why or points_mismatch(
        run(*(a[:half] for a in inputs)), {k: v[:half] for k, v in want.items()}, tol
    )
    worst = float(np.abs(got[0] - want["hits"]).max(initial=0.0)) if not why else float("nan")
    text = why or (
        f"{len(inputs[0])} showers, counts and masks equal, max |exported - farm| = {worst:.3g} "
        f"(hits in mm, layer, MeV; tolerance atol {tol['atol']} + rtol {tol['rtol']} x |farm|)"
    )
    return why is None, text


def _check_voxels(card: dict, ref, provider: str) -> tuple[bool, str]:
    """(ok, message) of a voxel graph on the reference and on half of it."""
    tol = card["export"]["tolerance"]
    run = run_exported(card["export"]["format"], HERE / card["export"]["file"], provider)
    events = run(ref["noise"], ref["conditions"])
    if events.shape != ref["events"].shape:
        return False, f"events of shape {events.shape}, reference {ref['events'].shape}"
    excess = np.abs(events - ref["events"]) - (tol["atol"] + tol["rtol"] * np.abs(ref["events"]))
    half = len(ref["noise"]) // 2 or 1  # another batch size: the batch axis is dynamic
    part = run(ref["noise"][:half], ref["conditions"][:half])
    worst = float(np.abs(events - ref["events"]).max(initial=0.0))
    ok = bool(excess.max(initial=-1.0) <= 0) and np.allclose(part, events[:half], **tol)
    unit = card["export"]["outputs"]["events"]["unit"]
    return ok, (
        f"{len(events)} events, max |exported - farm| = {worst:.3g} "
        f"{unit} (tolerance atol {tol['atol']} + rtol {tol['rtol']} x |farm|)"
    )


def main() -> int:
    """Compare the exported graph with the reference events; 0 when within tolerance."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", default="CPUExecutionProvider", help="ONNX Runtime provider")
    args = parser.parse_args()
    card = json.loads((HERE / "card.json").read_text())
    ref = np.load(HERE / "reference.npz")
    points = card["export"].get("kind") == "points"
    ok, text = (_check_points if points else _check_voxels)(card, ref, args.provider)
    print(f"{'OK' if ok else 'FAIL'}: {text}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
