"""Train the quickstart model with plain fit() on one device, then time generation (printed only).

    python bench/fit_device.py --device cuda --precision bf16 --compile --events 60000 --epochs 30
    python bench/fit_device.py --device cpu --events 8000 --epochs 2      # a smoke run

No Ray, no MLflow: the pure models/ path, so it also runs on machines without the farm edge
(set FARM_GEOMETRY_DIR to the folder with the CaloChallenge binning XML files). Prints epoch
times, samples/s, and per-NFE showers/s with separation powers against held-out reference.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def separation_power(a: np.ndarray, b: np.ndarray, bins: int = 50) -> float:
    """CaloChallenge separation power of two 1-D samples on reference quantile bins."""
    edges = np.unique(np.quantile(a, np.linspace(0, 1, bins + 1)))
    ha = np.histogram(a, edges)[0] / len(a)
    hb = np.histogram(np.clip(b, edges[0], edges[-1]), edges)[0] / len(b)
    s = ha + hb
    return float(0.5 * np.sum(np.where(s > 0, (ha - hb) ** 2 / np.where(s > 0, s, 1), 0)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--events", type=int, default=60_000)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--width", type=int, default=384)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--generate", type=int, default=20_000)
    p.add_argument("--nfe", type=int, nargs="+", default=[2, 4, 10, 20, 40])
    args = p.parse_args()

    from farm.data.shower_sim import DS1_ENERGIES, simulate_showers
    from farm.geometry import load_geometry
    from models.config import ModelConfig, OptimConfig
    from models.training import TrainData, fit

    geometry = load_geometry("ds1-photons")
    rng = np.random.default_rng(2022)
    n_ref = args.generate
    e_inc = rng.choice(DS1_ENERGIES, size=args.events + n_ref)
    showers = simulate_showers(geometry, e_inc, rng)
    n_train = int(0.9 * args.events)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    train = TrainData(t(showers[:n_train]), t(e_inc[:n_train]).reshape(-1, 1))
    val = TrainData(
        t(showers[n_train : args.events]), t(e_inc[n_train : args.events]).reshape(-1, 1)
    )
    ref_s, ref_e = showers[args.events :], e_inc[args.events :]
    config = ModelConfig.model_validate(
        {
            "network": {"kind": "mlp", "width": args.width, "depth": 3, "embed_dim": 64},
            "preprocessing": {
                "kind": "shower",
                "layer_sizes": [layer.n_voxels for layer in geometry.active_layers],
            },
            "sampler": {"name": "midpoint", "nfe": 20},
        }
    )
    optim = OptimConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_steps=200,
        precision=args.precision,
        compile=args.compile,
        checkpoint_every=10_000,
    )
    epoch_times = []
    t0 = time.perf_counter()
    model = fit(
        config,
        optim,
        train,
        val,
        lambda m, d: epoch_times.append(m["epoch_seconds"]),
        device=args.device,
    )
    train_s = time.perf_counter() - t0
    print(
        f"# {args.device} {torch.cuda.get_device_name() if args.device == 'cuda' else ''} "
        f"precision={args.precision} compile={args.compile} torch={torch.__version__}"
    )
    print(
        f"train: {args.epochs} epochs x {n_train} showers in {train_s:.1f} s; median epoch "
        f"{np.median(epoch_times):.2f} s ({n_train / np.median(epoch_times):,.0f} showers/s)"
    )
    cond = torch.from_numpy(ref_e).reshape(-1, 1).float()
    ratio_ref = showers[args.events :].sum(1) / ref_e
    print(
        f"{'sampler':<10}{'NFE':>5}{'bf16':>6}{'showers/s':>12}{'sep E/Einc':>12}"
        f"{'sep E_layer2':>14}{'sep n_hit':>11}"
    )
    for nfe in args.nfe:
        for bf16 in [False, True] if args.device == "cuda" else [False]:
            kwargs = dict(
                sampler="midpoint",
                nfe=nfe,
                batch_size=10_000,
                autocast_dtype=torch.bfloat16 if bf16 else None,
            )
            model.generate(
                cond[:1000], generator=torch.Generator(args.device).manual_seed(0), **kwargs
            )  # warm-up
            if args.device == "cuda":
                torch.cuda.synchronize()
            t1 = time.perf_counter()
            gen = (
                model.generate(
                    cond, generator=torch.Generator(args.device).manual_seed(1), **kwargs
                )
                .cpu()
                .numpy()
            )
            if args.device == "cuda":
                torch.cuda.synchronize()
            rate = len(gen) / (time.perf_counter() - t1)
            l2 = geometry.layer_slices[2]
            print(
                f"{'midpoint':<10}{nfe:>5}{bf16!s:>6}{rate:>12,.0f}"
                f"{separation_power(ratio_ref, gen.sum(1) / ref_e):>12.4f}"
                f"{separation_power(ref_s[:, l2].sum(1), gen[:, l2].sum(1)):>14.4f}"
                f"{separation_power((ref_s > 0).sum(1), (gen > 0).sum(1)):>11.4f}"
            )


if __name__ == "__main__":
    main()
