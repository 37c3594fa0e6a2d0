"""Sampler benchmark: speed and fidelity of every sampler at several NFE for a small DS1-photon model.

Trains small VP-SDE, EDM and flow-matching models (residual MLP, hierarchical shower
preprocessing) on showers from farm's built-in DS1-photon simulator, distils the EDM model into
a 1-step consistency student, and for each sampler and NFE prints events/s and the separation
power (CaloChallenge eq. 15; 0 = identical) of E_tot/E_inc and of the layer-energy fractions
E_layer/E_inc (mean over layers) against a held-out reference. The "floor" row compares two
independent reference samples. Tables only; nothing is asserted.

Question it answers: which sampler reaches the 1000-step predictor-corrector's fidelity with the
fewest network evaluations, and how close the distilled 1-step student comes.

    python bench/samplers.py                              # GPU if available, defaults
    python bench/samplers.py --device cpu --n-train 8000 --n-test 4000 --epochs 5 --quick
    python bench/samplers.py --cpu-events 2000            # also time sampling on CPU
"""

from __future__ import annotations

import argparse
import itertools
import time
import warnings

import numpy as np
import torch

from farm.data.shower_sim import incident_energies, simulate_showers
from farm.geometry import load_geometry
from models.config import ModelConfig, OptimConfig
from models.distill import DistillConfig, distill
from models.generative import GenerativeModel
from models.training import TrainData, fit

try:
    from farm.evaluation.metrics import separation_power as _farm_sep
except ImportError:  # evaluation not there yet: a plain histogram separation power
    _farm_sep = None

NFES = (1, 2, 4, 10, 20, 40, 100, 1000)
LONG_ONLY = {"euler_maruyama", "pc", "ode_euler", "euler"}  # first-order: 1000 is meaningful
PLANS = {
    "vp_sde": (
        "euler_maruyama",
        "pc",
        "ode_euler",
        "ode_heun",
        "heun",
        "stochastic_heun",
        "restart",
        "dpmpp_2m",
        "ode_rk45",
    ),
    "edm": ("euler", "heun", "stochastic_heun", "restart", "dpmpp_2m", "rk45"),
    "flow_matching": ("euler", "midpoint", "heun", "dpmpp_2m", "rk45"),
}
ADAPTIVE = {"rk45", "ode_rk45"}


def separation(ref: np.ndarray, gen: np.ndarray, bins: int = 50) -> float:
    if _farm_sep is not None:
        return _farm_sep(ref, gen, bins=bins, n_bootstrap=2)[0]
    edges = np.quantile(ref, np.linspace(0, 1, bins + 1))
    p = np.histogram(np.clip(ref, edges[0], edges[-1]), edges)[0] / len(ref)
    q = np.histogram(np.clip(gen, edges[0], edges[-1]), edges)[0] / len(gen)
    m = (p + q) > 0
    return float(0.5 * ((p[m] - q[m]) ** 2 / (p[m] + q[m])).sum())


def features(showers: np.ndarray, e_inc: np.ndarray, slices: list[slice]) -> dict[str, np.ndarray]:
    """E_tot/E_inc and E_layer/E_inc; events with non-finite voxels are dropped."""
    ok = np.isfinite(showers).all(axis=1)
    showers, e = showers[ok], e_inc.reshape(-1)[ok]
    out = {"etot": showers.sum(1) / e, "nhit": (showers > 0).sum(1).astype(np.float64)}
    for i, s in enumerate(slices):
        out[f"layer{i}"] = showers[:, s].sum(1) / e
    return out


def fidelity(ref: dict, gen: dict) -> tuple[float, float, float]:
    """Separation powers: E_tot/E_inc, mean over layers of E_layer/E_inc, voxels above threshold."""
    layers = [k for k in ref if k.startswith("layer")]
    return (
        separation(ref["etot"], gen["etot"]),
        float(np.mean([separation(ref[k], gen[k]) for k in layers])),
        separation(ref["nhit"], gen["nhit"]),
    )


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed_generate(
    model: GenerativeModel,
    cond: torch.Tensor,
    sampler: str,
    nfe: int,
    device: torch.device,
    batch: int,
) -> tuple[np.ndarray, float]:
    gen = torch.Generator(device=device).manual_seed(123)
    model.generate(cond[:64].to(device), sampler=sampler, nfe=min(nfe, 2), generator=gen)  # warm-up
    sync(device)
    t0 = time.perf_counter()
    x = model.generate(cond.to(device), sampler=sampler, nfe=nfe, generator=gen, batch_size=batch)
    sync(device)
    return x.cpu().numpy(), cond.shape[0] / (time.perf_counter() - t0)


def train(
    kind: str, args, data: TrainData, val: TrainData, layer_sizes: list[int], device: torch.device
) -> GenerativeModel:
    config = ModelConfig.model_validate(
        {
            "network": {"kind": "mlp", "width": args.width, "depth": args.depth},
            "process": {"kind": kind},
            "preprocessing": {"kind": "shower", "layer_sizes": layer_sizes},
        }
    )
    optim = OptimConfig(
        epochs=args.epochs, batch_size=args.batch, lr=args.lr, warmup_steps=200, ema_decay=0.999
    )
    t0 = time.perf_counter()
    losses = []
    model = fit(
        config, optim, data, val, lambda m, c=None: losses.append(m["val_loss"]), device=device
    )
    print(
        f"trained {kind}: {time.perf_counter() - t0:.0f} s, val loss {losses[0]:.4f} -> "
        f"{losses[-1]:.4f}"
    )
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--n-train", type=int, default=60_000)
    ap.add_argument("--n-test", type=int, default=20_000)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--distill-epochs", type=int, default=15)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--gen-batch", type=int, default=20_000)
    ap.add_argument("--processes", default="vp_sde,edm,flow_matching")
    ap.add_argument("--nfe", default=",".join(map(str, NFES)))
    ap.add_argument("--cpu-events", type=int, default=0, help="also time CPU sampling (NFE<=100)")
    ap.add_argument("--quick", action="store_true", help="skip NFE 1000")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    warnings.filterwarnings("ignore", message=".*recommended for a stable value")
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    nfes = [n for n in map(int, args.nfe.split(",")) if not (args.quick and n >= 1000)]

    geometry = load_geometry("ds1-photons")
    layer_sizes = [layer.n_voxels for layer in geometry.active_layers]
    bounds = np.cumsum([0, *layer_sizes])
    slices = [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    n_all = args.n_train + 3 * args.n_test
    e_inc = incident_energies(geometry, n_all, rng)
    showers = simulate_showers(geometry, e_inc, rng)
    print(
        f"simulated {n_all} DS1-photon showers in {time.perf_counter() - t0:.0f} s "
        f"({geometry.n_voxels} voxels, layers {layer_sizes})"
    )
    x = torch.from_numpy(showers)
    c = torch.from_numpy(e_inc.astype(np.float32)).reshape(-1, 1)
    n_tr, n_te = args.n_train, args.n_test
    data = TrainData(x[:n_tr], c[:n_tr])
    val = TrainData(x[n_tr : n_tr + n_te], c[n_tr : n_tr + n_te])
    ref_sl, floor_sl = slice(n_tr + n_te, n_tr + 2 * n_te), slice(n_tr + 2 * n_te, n_all)
    ref = features(showers[ref_sl], e_inc[ref_sl], slices)
    cond = c[ref_sl]
    floor = fidelity(ref, features(showers[floor_sl], e_inc[floor_sl], slices))

    rows = []
    models = {}
    for kind in args.processes.split(","):
        model = train(kind, args, data, val, layer_sizes, device)
        models[kind] = model
        for sampler in PLANS[kind]:
            for nfe in [1] if sampler in ADAPTIVE else nfes:
                if nfe >= 1000 and sampler not in LONG_ONLY:
                    continue
                out, rate = timed_generate(model, cond, sampler, nfe, device, args.gen_batch)
                cpu_rate = float("nan")
                if args.cpu_events and nfe <= 100 and sampler not in ADAPTIVE:
                    cpu_model = model.to("cpu")
                    _, cpu_rate = timed_generate(
                        cpu_model,
                        cond[: args.cpu_events],
                        sampler,
                        nfe,
                        torch.device("cpu"),
                        args.gen_batch,
                    )
                    model.to(device)
                sep = fidelity(ref, features(out, e_inc[ref_sl], slices))
                rows.append(
                    (
                        kind,
                        sampler,
                        "adaptive" if sampler in ADAPTIVE else nfe,
                        rate,
                        cpu_rate,
                        *sep,
                    )
                )
                print(
                    f"  {kind:13s} {sampler:16s} nfe {rows[-1][2]!s:>8s}  {rate:10.0f} ev/s  "
                    f"(cpu {cpu_rate:7.0f})  sep E_tot {sep[0]:.4f}  layers {sep[1]:.4f}  "
                    f"n_hit {sep[2]:.4f}",
                    flush=True,
                )

    if "edm" in models:
        t0 = time.perf_counter()
        optim = OptimConfig(
            epochs=args.distill_epochs,
            batch_size=args.batch,
            lr=args.lr / 2,
            warmup_steps=0,
            ema_decay=0.999,
        )
        student = distill(
            models["edm"],
            DistillConfig(n_steps=18),
            optim,
            data,
            lambda m, c=None: None,
            device=device,
        )
        print(f"distilled edm -> consistency: {time.perf_counter() - t0:.0f} s")
        for nfe in (1, 2, 4):
            out, rate = timed_generate(student, cond, "consistency", nfe, device, args.gen_batch)
            cpu_rate = float("nan")
            if args.cpu_events:
                _, cpu_rate = timed_generate(
                    student.to("cpu"),
                    cond[: args.cpu_events],
                    "consistency",
                    nfe,
                    torch.device("cpu"),
                    args.gen_batch,
                )
                student.to(device)
            rows.append(
                (
                    "consistency",
                    "consistency",
                    nfe,
                    rate,
                    cpu_rate,
                    *fidelity(ref, features(out, e_inc[ref_sl], slices)),
                )
            )

    print(
        f"\n## Samplers on DS1-photon-like showers ({device.type}; {args.n_test} events, "
        f"MLP {args.width}x{args.depth}, {args.epochs} epochs on {args.n_train})\n"
    )
    cpu_col = " CPU ev/s |" if args.cpu_events else ""
    print(
        f"| process | sampler | NFE | {device.type} ev/s |{cpu_col} sep E_tot/E_inc | "
        "sep E_layer/E_inc (mean) | sep n_hit |"
    )
    print("|---|---|---:|---:|" + ("---:|" if args.cpu_events else "") + "---:|---:|---:|")
    print(
        f"| reference floor | second reference sample | - | - |{' - |' if cpu_col else ''} "
        f"{floor[0]:.4f} | {floor[1]:.4f} | {floor[2]:.4f} |"
    )
    for kind, sampler, nfe, rate, cpu_rate, s_tot, s_lay, s_hit in rows:
        cpu = f" {cpu_rate:.0f} |" if args.cpu_events else ""
        print(
            f"| {kind} | {sampler} | {nfe} | {rate:.0f} |{cpu} {s_tot:.4f} | {s_lay:.4f} | "
            f"{s_hit:.4f} |"
        )


if __name__ == "__main__":
    main()
