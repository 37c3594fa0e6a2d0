"""Why a writer on another core slows the CPU sampler: the shower inverse next to two neighbours.

The 1-step student's CPU sampling time is mostly `ShowerPreprocessing.inverse` (un-standardising
float64 batch x voxel arrays; the network is a few percent at width 32), which streams memory.
This bench times that inverse alone on one core, then next to a process on the other core that
either runs a compute loop on arrays in the L1 cache (it shares no memory bandwidth) or copies a
64 MiB array over and over (a stand-in for a writer compressing a shard). A slowdown next to the
copy and none next to the compute loop means the two cores compete for memory bandwidth and the
last-level cache, not for a core: a writer thread costs the sampler in proportion to its memory
traffic, whatever the scheduler does. Per batch size, medians of --repeats, showers/s; a table,
nothing asserted. Needs two cores (it pins the sampler to the first and the neighbour to the
second); runs under farm.allocator's malloc settings, as generation actors do.

    python bench/memory_interference.py
    python bench/memory_interference.py --batch-size 1024 4096 --seconds 4 --repeats 5
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time
from multiprocessing.synchronize import Event
from pathlib import Path

if __package__ in (None, ""):  # run as a script: farm and models from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from farm.allocator import ALLOCATORS, reexec_with
from farm.geometry import load_geometry
from models.preprocessing import ShowerPreprocessing


def idle(stop: Event, core: int) -> None:
    """No neighbour: waits."""
    stop.wait()


def l1_compute(stop: Event, core: int) -> None:
    """A float multiply loop on 8 kB arrays (in L1): a busy core, no memory traffic."""
    os.sched_setaffinity(0, {core})
    a, b = np.ones(2048, np.float32), np.ones(2048, np.float32)
    while not stop.is_set():
        for _ in range(1000):
            np.multiply(a, b, out=a)


def memory_stream(stop: Event, core: int) -> None:
    """Copies a 64 MiB array (twice the last-level cache of the development VM) in a loop."""
    os.sched_setaffinity(0, {core})
    a = np.ones(16 << 20, np.float32)
    b = np.empty_like(a)
    while not stop.is_set():
        np.copyto(b, a)


NEIGHBOURS = {"alone": idle, "L1 compute loop": l1_compute, "memory stream": memory_stream}


def inverse_rate(pre: ShowerPreprocessing, batch: int, seconds: float) -> float:
    """Showers/s of pre.inverse on one batch of standard normal network outputs."""
    x = torch.randn(batch, pre.out_dim, generator=torch.Generator().manual_seed(0))
    e_inc = torch.full((batch, 1), 1.0e4)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        pre.inverse(x, e_inc)
        n += batch
    return n / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--geometry", default="ds1-photons")
    p.add_argument("--batch-size", type=int, nargs="+", default=[1024, 2048, 4096, 8192])
    p.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--allocator", choices=ALLOCATORS, default="farm")
    args = p.parse_args(argv)
    if argv is None:
        reexec_with(args.allocator)
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        p.error(f"needs two cores, this process may use {len(cores)}")
    sampler_core, neighbour_core = cores[0], cores[1]
    os.sched_setaffinity(0, {sampler_core})
    torch.set_num_threads(1)
    geometry = load_geometry(args.geometry)
    sizes = [layer.n_voxels for layer in geometry.active_layers]
    pre = ShowerPreprocessing(geometry.n_voxels, 1, layer_sizes=sizes)
    print(
        f"{args.geometry} ({geometry.n_voxels} voxels), sampler on core {sampler_core}, "
        f"neighbour on core {neighbour_core}, allocator {args.allocator}",
        flush=True,
    )
    ctx = mp.get_context("spawn")
    rows = []
    for batch in args.batch_size:
        inverse_rate(pre, batch, 1.0)  # warm-up: the heap and the kernels
        rates: dict[str, list[float]] = {name: [] for name in NEIGHBOURS}
        for _ in range(args.repeats):  # interleaved: ratios within a repeat
            for name, target in NEIGHBOURS.items():
                stop = ctx.Event()
                neighbour = ctx.Process(target=target, args=(stop, neighbour_core))
                neighbour.start()
                time.sleep(0.5)
                rates[name].append(inverse_rate(pre, batch, args.seconds))
                stop.set()
                neighbour.join()
        alone = rates["alone"]
        ratios = {
            name: statistics.median(r / a for r, a in zip(rs, alone, strict=True))
            for name, rs in rates.items()
            if name != "alone"
        }
        rows.append((batch, statistics.median(alone), ratios))
        print(f"batch {batch:,}: alone {rows[-1][1]:,.0f}/s, {ratios}", flush=True)
    names = [n for n in NEIGHBOURS if n != "alone"]
    print(
        f"\n| batch | inverse alone, showers/s | {' | '.join(names)} |   (medians of {args.repeats})"
    )
    print("|---|---|" + "---|" * len(names))
    for batch, alone, ratios in rows:
        cells = " | ".join(f"{ratios[n]:.2f}" for n in names)
        print(f"| {batch:,} | {alone:,.0f} | {cells} |")


if __name__ == "__main__":
    main()
