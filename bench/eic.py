"""A small EIC model on real DIS events: multiplicity and the final state's response to the electron.

Trains the set model conditioned on the scattered electron (`condition: scattered_electron`,
docs/events.md) on fresh Pythia DIS events (seed 11), generates the reco sets of held-out events
(seed 12) given their electrons, and prints, for reference and generated sets: the mean number of
candidates, the correlation of the electron pT with HT and with the multiplicity, and the median
|sum of candidate pT| (momentum balance: the reco set holds the electron's own candidate, so a
balanced event sums to about 0). One CPU thread. Run: python bench/eic.py [--epochs 25]
[--train-events 3000 --test-events 1000 --width 32 --layers 2]. Never asserts.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from farm.data.events import EventGenConfig, generate_events
from models.config import OptimConfig, parse_model_config
from models.data import TrainData
from models.training import fit

SLOTS = 50


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


def main() -> None:
    """Train, generate, print one line per side."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--train-events", type=int, default=3000)
    p.add_argument("--test-events", type=int, default=1000)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--layers", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(1)
    keys = {"condition": "scattered_electron"}
    train = generate_events(EventGenConfig("dis", args.train_events), seed=11)
    test = generate_events(EventGenConfig("dis", args.test_events), seed=12)
    x, c = (torch.from_numpy(a) for a in train.model_inputs(0, SLOTS, True, **keys))
    xt, ct = test.model_inputs(0, SLOTS, True, **keys)
    val = TrainData(torch.from_numpy(xt[:200]), torch.from_numpy(ct[:200]))
    config = parse_model_config(
        {"kind": "sets", **keys, "width": args.width, "heads": 4, "layers": args.layers}
    )
    optim = OptimConfig(epochs=args.epochs, batch_size=64, lr=1e-3, warmup_steps=20)
    t0 = time.perf_counter()
    model = fit(config, optim, TrainData(x, c), val, lambda metrics, ckpt: None)
    print(f"training {time.perf_counter() - t0:.0f} s")
    g = torch.Generator().manual_seed(0)
    gen = model.generate(torch.from_numpy(ct), nfe=10, sampler="midpoint", generator=g)
    for name, sets in (("reference", xt), ("generated", gen.numpy())):
        row = summaries(sets.reshape(len(ct), SLOTS, 4), ct)
        print(name, "  ".join(f"{k} {v:.3f}" for k, v in row.items()))


if __name__ == "__main__":
    main()
