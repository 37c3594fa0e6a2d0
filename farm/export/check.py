"""Check an exported farm model against the events farm's own sampler made (reference.npz).

Runs model.onnx with ONNX Runtime (or model.pt with torch.jit) on the reference noise and
conditions, and on a batch of another size; prints the largest deviation and exits 1 when it
exceeds the card's tolerance. Needs numpy and onnxruntime (or torch), not farm.

    python check.py [--provider CPUExecutionProvider]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def run_exported(fmt: str, path: Path, provider: str = "CPUExecutionProvider"):
    """A function (noise, conditions) -> events (numpy) for an exported model.onnx or model.pt."""
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=[provider])
        return lambda z, c: session.run(None, {"noise": z, "conditions": c})[0]
    import torch

    module = torch.jit.load(str(path))

    def run(z: np.ndarray, c: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(z), torch.from_numpy(c)).numpy()

    return run


def main() -> int:
    """Compare the exported graph with the reference events; 0 when within tolerance."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", default="CPUExecutionProvider", help="ONNX Runtime provider")
    args = parser.parse_args()
    card = json.loads((HERE / "card.json").read_text())
    tol = card["export"]["tolerance"]
    ref = np.load(HERE / "reference.npz")
    run = run_exported(card["export"]["format"], HERE / card["export"]["file"], args.provider)
    events = run(ref["noise"], ref["conditions"])
    if events.shape != ref["events"].shape:
        print(f"FAIL: events of shape {events.shape}, reference {ref['events'].shape}")
        return 1
    excess = np.abs(events - ref["events"]) - (tol["atol"] + tol["rtol"] * np.abs(ref["events"]))
    half = len(ref["noise"]) // 2 or 1  # another batch size: the batch axis is dynamic
    part = run(ref["noise"][:half], ref["conditions"][:half])
    worst = float(np.abs(events - ref["events"]).max(initial=0.0))
    ok = bool(excess.max(initial=-1.0) <= 0) and np.allclose(part, events[:half], **tol)
    unit = card["export"]["outputs"]["events"]["unit"]
    print(
        f"{'OK' if ok else 'FAIL'}: {len(events)} events, max |exported - farm| = {worst:.3g} "
        f"{unit} (tolerance atol {tol['atol']} + rtol {tol['rtol']} x |farm|)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
