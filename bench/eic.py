"""The EIC model on real DIS events: physics summaries and a fidelity table against the floor.

Trains the set model conditioned on the scattered electron (the recipe
jobs/train-events-eic-electron.yaml: `condition: scattered_electron`, docs/events.md; width,
layers and heads overridable to fit a CPU) on fresh Pythia DIS events (seed 11, validation seed
13), generates the reco sets of held-out events (seed 14) given their electrons through
farm.generation.events (what `farm generate` and campaigns call), and prints:

1. for reference and generated sets: the mean number of candidates, the correlation of the
   electron pT with HT and with the multiplicity, and the median |sum of candidate pT| (momentum
   balance: the reco set holds the electron's own candidate, so a balanced event sums to ~0);
2. the fidelity table of farm.evaluation.events (what `farm evaluate` reports for sets): every
   metric's value beside the reference-vs-reference floor: --test-events generated events
   against a reference of 2 x --test-events independent events (seed 12), whose two halves
   give the floor.

Run: python bench/eic.py [--train-events 10000 --test-events 10000 --epochs 20 --width 64
--layers 3 --threads 2]. Never asserts.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from farm.data.events import EventGenConfig, generate_events
from farm.evaluation.events import evaluate_events
from farm.generation.events import event_sample
from farm.generation.settings import SamplerSettings
from farm.specs import load_job
from models.data import TrainData
from models.training import fit

RECIPE = Path(__file__).resolve().parent.parent / "jobs" / "train-events-eic-electron.yaml"
KEYS = {"condition": "scattered_electron"}


def summaries(sets: np.ndarray, cond: np.ndarray) -> dict[str, float]:
    """Mean multiplicity, corr(pT_e, HT), corr(pT_e, n) and median |sum pT| of padded sets."""
    valid = sets[..., 0] > 0
    pt = sets[..., 0] * valid
    px, py = (pt * np.cos(sets[..., 2])).sum(1), (pt * np.sin(sets[..., 2])).sum(1)
    n, ht = valid.sum(1), pt.sum(1)
    return {
        "mean n": float(n.mean()),
        "corr(pT_e, HT)": float(np.corrcoef(cond[:, 1], ht)[0, 1]),
        "corr(pT_e, n)": float(np.corrcoef(cond[:, 1], n)[0, 1]),
        "median |sum pT| GeV": float(np.median(np.hypot(px, py))),
    }


def train(args: argparse.Namespace, slots: int):
    """The recipe's model (sizes from args) fitted on fresh DIS events; with its seconds."""
    job = load_job(RECIPE, kind="train")
    size = {"width": args.width, "layers": args.layers, "heads": args.heads}
    config = job.model.model_copy(update=size)
    optim = job.optim.model_copy(
        update={"epochs": args.epochs, "batch_size": args.batch_size, "warmup_steps": 200}
    )
    train_events = generate_events(EventGenConfig("dis", args.train_events), seed=11)
    val_events = generate_events(EventGenConfig("dis", max(200, args.train_events // 10)), seed=13)
    x, c = (torch.from_numpy(a) for a in train_events.model_inputs(0, slots, True, **KEYS))
    xv, cv = (torch.from_numpy(a) for a in val_events.model_inputs(0, slots, True, **KEYS))

    def report(metrics: dict[str, float], checkpoint_dir: str | None = None) -> None:
        print(f"  epoch {metrics['epoch']}: val_loss {metrics['val_loss']:.4f}", flush=True)

    t0 = time.perf_counter()
    model = fit(config, optim, TrainData(x, c), TrainData(xv, cv), report)
    return model, time.perf_counter() - t0


def main() -> None:
    """Train, generate, print the summaries and the fidelity table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--train-events", type=int, default=10_000)
    p.add_argument("--test-events", type=int, default=10_000, help="generated events compared")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--nfe", type=int, default=20, help="midpoint ODE evaluations")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    slots = load_job(RECIPE, kind="train").data.max_reco
    model, seconds = train(args, slots)
    n_params = sum(q.numel() for q in model.parameters())
    print(
        f"trained on {args.train_events:,} DIS events x {args.epochs} epochs, width {args.width} "
        f"x {args.layers} layers, {n_params / 1e3:.0f} k parameters: {seconds:.0f} s"
    )
    reference = generate_events(EventGenConfig("dis", 2 * args.test_events), seed=12)
    test = generate_events(EventGenConfig("dis", args.test_events), seed=14)
    t0 = time.perf_counter()
    settings = SamplerSettings(sampler="midpoint", nfe=args.nfe, batch_size=1000)
    gen = event_sample(model, test, generator=torch.Generator().manual_seed(0), settings=settings)
    print(f"generated {args.test_events:,} events in {time.perf_counter() - t0:.0f} s")
    _, ct = test.model_inputs(0, slots, True, **KEYS)
    xg, _ = gen.model_inputs(0, slots, True, **KEYS)
    xr, _ = test.model_inputs(0, slots, True, **KEYS)
    print("\n| | " + " | ".join(summaries(xr.reshape(len(ct), slots, 4), ct)) + " |")
    print("| --- " * 5 + "|")
    for name, sets in (("reference", xr), ("generated", xg)):
        row = summaries(sets.reshape(len(ct), slots, 4), ct)
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in row.values()) + " |")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = evaluate_events(reference, gen, seed=0, plots=False)
    print(f"\n{result.details['n_compared']:,} generated vs reference halves of the same size")
    print("\n| metric | generated | floor (ref vs ref) |")
    print("| --- | --- | --- |")
    for key, m in sorted(result.metrics.items()):
        print(f"| {key} | {m['value']:.4g} | {m.get('floor', float('nan')):.4g} |")
    response = result.details["jet_response"]
    print(
        "\nmatched-jet pT response median / resolution: generated "
        f"{response['g'].get('median', np.nan):.3f} / {response['g'].get('resolution', np.nan):.3f}"
        f", reference {response['a'].get('median', np.nan):.3f} / "
        f"{response['a'].get('resolution', np.nan):.3f}"
    )


if __name__ == "__main__":
    main()
