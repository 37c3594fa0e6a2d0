"""Benchmark reference events: events/s on one core for Pythia 8 alone and Pythia + detector response.

Per process (qcd, ttbar at 13.6 TeV, dis at 18 x 275 GeV) with the defaults of `farm data events`.
Pythia's initialisation is timed apart; the detector response (farm.data.detector) is timed on the
same truth sets; medians of --repeats runs. Wall and CPU time both shown (a shared machine inflates
wall time). Run: python bench/events.py [--n 200] [--repeats 3]. Never asserts timings.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from farm.data.detector import DETECTORS
from farm.data.events import (
    DETECTOR_STREAM,
    PROCESSES,
    EventGenConfig,
    build_sample,
    pythia_settings,
    truth_particles,
)
from farm.data.jets import make_pythia


def one_core(process: str, n: int, seed: int) -> dict[str, float]:
    """Init time, Pythia + truth extraction events/s, detector events/s, set sizes (one run)."""
    config = EventGenConfig(process, n)
    w0 = time.perf_counter()
    pythia = make_pythia(pythia_settings(config, seed), process)
    init = time.perf_counter() - w0
    w0, c0 = time.perf_counter(), time.process_time()
    truths = []
    while len(truths) < n:
        if pythia.next():
            truth = truth_particles(pythia.event, config.truth_pt_min, config.truth_eta_max)
            if len(truth):
                truths.append(truth)
    gen_wall, gen_cpu = time.perf_counter() - w0, time.process_time() - c0
    w0, c0 = time.perf_counter(), time.process_time()
    rng = np.random.default_rng([seed, DETECTOR_STREAM])
    sample = build_sample(truths, np.arange(n), None, DETECTORS[config.detector], rng)
    det_wall, det_cpu = time.perf_counter() - w0, time.process_time() - c0
    return {
        "init": init,
        "pythia": n / gen_wall,
        "pythia_cpu": n / gen_cpu,
        "detector": n / det_wall,
        "detector_cpu": n / det_cpu,
        "total": n / (gen_wall + det_wall),
        "total_cpu": n / (gen_cpu + det_cpu),
        "n_truth": float(sample.truth_counts.mean()),
        "n_reco": float(sample.reco_counts.mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200, help="events per process per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--processes", nargs="+", default=list(PROCESSES), choices=PROCESSES)
    args = parser.parse_args()
    head = (
        f"{'process':<8}{'init s':>8}{'Pythia ev/s':>13}{'(CPU)':>8}{'detector ev/s':>15}"
        f"{'(CPU)':>9}{'total ev/s':>12}{'(CPU)':>8}{'<n_truth>':>11}{'<n_reco>':>10}"
    )
    print(f"one core, {args.n} events per run, median of {args.repeats} runs")
    print(head)
    for process in args.processes:
        runs = [one_core(process, args.n, seed) for seed in range(1, args.repeats + 1)]
        m = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(
            f"{process:<8}{m['init']:>8.2f}{m['pythia']:>13.1f}{m['pythia_cpu']:>8.1f}"
            f"{m['detector']:>15.0f}{m['detector_cpu']:>9.0f}{m['total']:>12.1f}"
            f"{m['total_cpu']:>8.1f}{m['n_truth']:>11.1f}{m['n_reco']:>10.1f}"
        )
    print("ratio detector/Pythia time per event = (Pythia ev/s) / (detector ev/s)")


if __name__ == "__main__":
    main()
