"""Streamed against in-memory shower evaluation: wall time, peak memory and the metrics' agreement.

    python bench/evaluation.py [--geometry ds2] [--events 20000] [--classifier]

Writes a reference and a "generated" sample (the simulator with another seed and a 2% energy
scale) as HDF5 shards in a temporary folder, then evaluates them in a fresh process each: once
in memory (`stream=False`) and once streamed (`stream=True`). Prints wall seconds, peak resident
memory, and the largest differences between the two: separation powers (expected 0), W1 (within
the reported binning_error) and FPD/KPD (0 while the parts fit in the subsample).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write_samples(folder: Path, geometry: str, events: int) -> None:
    import numpy as np

    from farm.data.showers import simulate_in_memory
    from farm.formats.calochallenge import write_calochallenge
    from farm.geometry import load_geometry

    geo = load_geometry(geometry)
    shard = 5000
    for name, seed, scale in (("ref", 11, 1.0), ("gen", 12, 1.02)):
        showers, e_inc = simulate_in_memory(geo, events, seed)
        for k in range(0, events, shard):
            url = str(folder / name / f"{k // shard:05d}.h5")
            write_calochallenge(
                url, showers[k : k + shard] * np.float32(scale), e_inc[k : k + shard], geo
            )


def worker(folder: str, geometry: str, stream: bool, classifier: bool) -> None:
    """Evaluate in this process; print one JSON line with time, peak memory and metrics."""
    import warnings

    from farm.evaluation.evaluate import evaluate_files
    from farm.evaluation.options import EvaluationOptions

    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    options = EvaluationOptions(classifier=classifier, stream=stream)
    result = evaluate_files(f"{folder}/gen", f"{folder}/ref", geometry, options=options)
    seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "metrics": result.metrics}))


def compare(memory: dict, streamed: dict) -> dict[str, float]:
    m, s = memory["metrics"], streamed["metrics"]
    sep = max(abs(s[k]["value"] - m[k]["value"]) for k in m if k.startswith("sep"))
    w1 = max(
        abs(s[k]["value"] - m[k]["value"]) / max(m[k]["value"], 1e-12)
        for k in m
        if k.startswith("w1/")
    )
    within = all(
        abs(s[k]["value"] - m[k]["value"]) <= s[k]["binning_error"] + 1e-12
        for k in m
        if k.startswith("w1/")
    )
    dist = max(
        abs(s[k]["value"] - m[k]["value"]) / max(abs(m[k]["value"]), 1e-12) for k in ("fpd", "kpd")
    )
    return {"sep_abs": sep, "w1_rel": w1, "w1_within_bound": within, "fpd_kpd_rel": dist}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--geometry", default="ds2")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--classifier", action="store_true")
    parser.add_argument("--worker", nargs=2, metavar=("FOLDER", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], args.geometry, args.worker[1] == "stream", args.classifier)
        return
    with tempfile.TemporaryDirectory(prefix="farm-bench-eval-") as folder:
        t0 = time.perf_counter()
        write_samples(Path(folder), args.geometry, args.events)
        print(
            f"{args.geometry}: 2 x {args.events} showers written in {time.perf_counter() - t0:.0f} s"
        )
        runs = {}
        for mode in ("memory", "stream"):
            cmd = [sys.executable, __file__, "--geometry", args.geometry, "--worker", folder, mode]
            cmd += ["--classifier"] if args.classifier else []
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            runs[mode] = json.loads(out.strip().splitlines()[-1])
        print(f"{'mode':<8} {'seconds':>8} {'peak MB':>8}")
        for mode, run in runs.items():
            print(f"{mode:<8} {run['seconds']:>8.1f} {run['peak_mb']:>8.0f}")
        diff = compare(runs["memory"], runs["stream"])
        print(
            f"max |sep streamed - in memory| = {diff['sep_abs']:.3g}; W1 max relative difference "
            f"{diff['w1_rel']:.3g} (within binning_error: {diff['w1_within_bound']}); "
            f"FPD/KPD max relative difference {diff['fpd_kpd_rel']:.3g}"
        )


if __name__ == "__main__":
    main()
