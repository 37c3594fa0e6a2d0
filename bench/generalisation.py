"""Generalisation table of the set-to-set flow (Parnassus, arXiv:2406.01620, its OOD tests).

Trains one `models.set_model.SetModel` on QCD (pT-hat 100-300 GeV) + ttbar reference events, then
evaluates it (farm.evaluation.events, each metric beside the reference-vs-reference floor) on fresh
events of the processes it saw and of a pT-hat range it never saw (QCD 300-600 GeV): one row per
(train, test) pair with the event-classifier AUC, the matched-jet pT response median and
resolution of generated and reference, and sep of the response and of C2. Small by design so it
runs in minutes on a CPU: no MPI, truth particles above 1 GeV, width 32; the absolute numbers
measure an under-trained model, the rows compare in- with out-of-distribution.
Run: OMP_NUM_THREADS=1 python bench/generalisation.py [--train-events 400 --epochs 6].
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from farm.data.events import EventGenConfig, generate_events
from farm.evaluation.events import evaluate_events
from farm.generation.events import event_sample
from farm.generation.settings import SamplerSettings
from farm.samples import EventSample
from models.config import OptimConfig, SetModelConfig
from models.data import TrainData
from models.set_model import fit_sets

TRAIN = (("qcd", 100.0, 300.0), ("ttbar", None, None))
TESTS = (("qcd", 100.0, 300.0), ("ttbar", None, None), ("qcd", 300.0, 600.0))
"""(process, pT-hat min, max GeV; None: the process default)."""


def name(process: str, lo: float | None, hi: float | None) -> str:
    """Row label of a sample: process and pT-hat window."""
    return process if lo is None else f"{process}[{lo:.0f},{hi:.0f}]"


def events(process: str, lo, hi, n: int, seed: int) -> EventSample:
    """n reference events (no MPI, truth pT > 1 GeV) of one process and pT-hat window."""
    cfg = EventGenConfig(process, n, pt_hat_min=lo, pt_hat_max=hi, mpi=False, truth_pt_min=1.0)
    return generate_events(cfg, seed)


def train(args) -> tuple[object, float]:
    """The model fitted on the TRAIN processes (90/10 split), with its training seconds."""
    parts = [events(*p, args.train_events, seed=100 + i) for i, p in enumerate(TRAIN)]
    sample = EventSample.concat(parts, {})
    x, cond = sample.model_inputs(args.truth_slots, args.reco_slots, truncate=True)
    perm = np.random.default_rng(0).permutation(len(x))
    x, cond = torch.from_numpy(x[perm]).float(), torch.from_numpy(cond[perm]).float()
    n_val = max(len(x) // 10, 1)
    config = SetModelConfig(width=args.width, heads=4, layers=args.layers)
    optim = OptimConfig(epochs=args.epochs, batch_size=32, lr=1e-3, warmup_steps=50, seed=0)
    t0 = time.perf_counter()
    model = fit_sets(
        config,
        optim,
        TrainData(x[n_val:], cond[n_val:]),
        TrainData(x[:n_val], cond[:n_val]),
        lambda metrics, ckpt: None,
    )
    return model, time.perf_counter() - t0


def row(model, test, args) -> dict[str, float]:
    """Metrics of the model on fresh events of one test sample (generated from their truth)."""
    reference = events(*test, args.test_events, seed=200)
    gen = event_sample(
        model,
        reference,
        generator=torch.Generator().manual_seed(1),
        settings=SamplerSettings(nfe=args.nfe),
        truncate=True,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = evaluate_events(reference, gen, seed=0, plots=False)
    m, d = res.metrics, res.details["jet_response"]
    return {
        "auc": m["auc_event"]["value"],
        "auc_floor": m["auc_event"]["floor"],
        "resp_g": d["g"].get("median", np.nan),
        "resp_a": d["a"].get("median", np.nan),
        "res_g": d["g"].get("resolution", np.nan),
        "res_a": d["a"].get("resolution", np.nan),
        "sep_resp": m.get("sep_jet_response", {}).get("value", np.nan),
        "sep_resp_floor": m.get("sep_jet_response", {}).get("floor", np.nan),
        "sep_c2": m.get("sep_jet_c2", {}).get("value", np.nan),
        "sep_c2_floor": m.get("sep_jet_c2", {}).get("floor", np.nan),
        "n_reco_g": res.details["mean_n_reco"]["g"],
        "n_reco_a": res.details["mean_n_reco"]["a"],
        "truncated": gen.provenance["truncated_events"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train-events", type=int, default=400, help="per training process")
    parser.add_argument("--test-events", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--nfe", type=int, default=10, help="midpoint ODE evaluations")
    parser.add_argument("--truth-slots", type=int, default=224)
    parser.add_argument("--reco-slots", type=int, default=192)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, seconds = train(args)
    n_params = sum(p.numel() for p in model.parameters())
    trained_on = " + ".join(name(*p) for p in TRAIN)
    print(
        f"trained on {trained_on}, {args.train_events} events each, {args.epochs} epochs, "
        f"{n_params / 1e3:.0f} k parameters, {seconds:.0f} s; {args.test_events} test events, "
        f"midpoint nfe {args.nfe}; value (floor); response: generated / reference half A"
    )
    head = (
        f"{'train':<22}{'test':<16}{'seen':>5}{'auc_event':>16}{'resp median':>14}"
        f"{'resp resol.':>14}{'sep resp':>15}{'sep C2':>15}{'<n_reco>':>12}{'trunc':>6}"
    )
    print(head)
    for test in TESTS:
        r = row(model, test, args)
        print(
            f"{trained_on:<22}{name(*test):<16}{'yes' if test in TRAIN else 'no':>5}"
            f"{r['auc']:>8.3f} ({r['auc_floor']:.3f})"
            f"{r['resp_g']:>7.3f}/{r['resp_a']:.3f}{r['res_g']:>8.3f}/{r['res_a']:.3f}"
            f"{r['sep_resp']:>8.3f} ({r['sep_resp_floor']:.3f})"
            f"{r['sep_c2']:>8.3f} ({r['sep_c2_floor']:.3f})"
            f"{r['n_reco_g']:>6.0f}/{r['n_reco_a']:.0f}{r['truncated']:>6}"
        )


if __name__ == "__main__":
    main()
