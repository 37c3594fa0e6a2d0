"""Benchmark the set-to-set flow (models.sets): ms per generated event at 20 and 40 ODE steps.

Sampling cost does not depend on the weights, so an untrained model is timed: event flow, then the
particle flow over n_max reco slots cross-attending to n_truth truth tokens (padded slots cost the
same as real ones). Euler steps (1 NFE each), torch threads as given. Parnassus quotes about 14 ms
per event at batch 1000, 40 steps, on a GPU. Run: python bench/sets.py [--batch 50]
[--device cpu|cuda] [--width 128 --layers 3]. Medians of --repeats; never asserts timings.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from models.sets import SetFlowConfig, SetToSetModel


def time_generate(model, truth, truth_mask, steps: int, repeats: int) -> float:
    """Median seconds of one `generate` call (after one warm-up)."""
    sync = torch.cuda.synchronize if truth.is_cuda else (lambda: None)
    g = torch.Generator(device=truth.device).manual_seed(0)
    model.generate(truth, truth_mask, nfe=steps, sampler="euler", generator=g)
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        model.generate(truth, truth_mask, nfe=steps, sampler="euler", generator=g)
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument(
        "--n-truth", type=int, default=400, help="truth tokens per event (qcd ~370)"
    )
    parser.add_argument("--n-max", type=int, default=256, help="reco slots per event (qcd ~190)")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = SetFlowConfig(
        truth_dim=8, reco_dim=4, n_classes=5, event_dim=3, n_max=args.n_max,
        width=args.width, layers=args.layers, heads=args.heads,
    )  # fmt: skip
    torch.manual_seed(0)
    model = SetToSetModel(config).eval().to(args.device)
    n_params = sum(p.numel() for p in model.parameters())
    truth = torch.randn(args.batch, args.n_truth, 8, device=args.device)
    truth_mask = torch.ones(args.batch, args.n_truth, dtype=torch.bool, device=args.device)
    print(
        f"models.sets, {n_params / 1e6:.2f} M parameters, batch {args.batch}, {args.n_truth} truth "
        f"tokens, {args.n_max} reco slots, {args.device}, {args.threads} thread(s)"
    )
    print(f"{'steps':>6}{'s per batch':>13}{'ms per event':>14}{'events/s':>10}")
    for steps in (20, 40):
        sec = time_generate(model, truth, truth_mask, steps, args.repeats)
        print(f"{steps:>6}{sec:>13.2f}{1e3 * sec / args.batch:>14.1f}{args.batch / sec:>10.1f}")


if __name__ == "__main__":
    main()
