"""Wall time and peak memory of each quickstart stage, as a table (printed, never asserted).

    python bench/quickstart.py          # the default quickstart sizes
    python bench/quickstart.py --ci     # the CI sizes (CI=true)

Memory is the peak resident set of the whole process tree (driver, Ray's raylet and workers),
sampled every 0.2 s, so it is what the machine has to hold.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import threading
import time

import psutil


class TreeMemory:
    """Samples the summed RSS of this process and all its descendants in a thread."""

    def __init__(self, interval: float = 0.2):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        me = psutil.Process()
        total = 0
        for p in [me, *me.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self._rss())

    def reset(self) -> int:
        peak, self.peak = self.peak, self._rss()
        return peak

    def __enter__(self) -> TreeMemory:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ci", action="store_true", help="use the CI sizes")
    args = parser.parse_args()
    if args.ci:
        os.environ["CI"] = "true"
    os.environ.setdefault("FARM_HOME", tempfile.mkdtemp(prefix="farm-bench-"))
    from farm.quickstart import QuickstartSizes, run_quickstart

    sizes = QuickstartSizes.for_environment()
    peaks: dict[str, int] = {}
    with TreeMemory() as memory:
        current = {"name": None}

        def on_stage(name: str) -> None:
            if current["name"]:
                peaks[current["name"]] = memory.reset()
            current["name"] = name

        t0 = time.perf_counter()
        result = run_quickstart(sizes, on_stage=on_stage)
        total = time.perf_counter() - t0
        peaks[current["name"]] = memory.reset()

    print(
        f"# farm quickstart stages ({'CI' if args.ci else 'default'} sizes: {sizes}), "
        f"{os.cpu_count()} CPUs, FARM_HOME={os.environ['FARM_HOME']}"
    )
    print(f"{'stage':<24}{'seconds':>10}{'peak RSS (GiB)':>16}  detail")
    for stage in result.stages:
        print(
            f"{stage.name:<24}{stage.seconds:>10.1f}{peaks[stage.name] / 2**30:>16.2f}  "
            f"{stage.detail}"
        )
    print(f"{'total':<24}{total:>10.1f}{max(peaks.values()) / 2**30:>16.2f}")
    m = result.evaluation.metrics
    print(
        "fidelity (value / reference floor): "
        + ", ".join(
            f"{k} {m[k]['value']:.3f}/{m[k].get('floor', float('nan')):.3f}"
            for k in ("sep/e_ratio", "sep_mean", "auc_low", "auc_high", "fpd")
            if k in m
        )
    )


if __name__ == "__main__":
    main()
