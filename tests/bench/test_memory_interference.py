"""bench/memory_interference.py runs on two cores and prints one row per batch size."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from farm.allocator import ALLOCATOR_VAR, MALLOC_ENV

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "memory_interference.py"


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="the bench pins two cores")
def test_prints_a_ratio_per_neighbour_for_each_batch_size(tmp_path):
    env = {**os.environ, **MALLOC_ENV, ALLOCATOR_VAR: "farm", "OMP_NUM_THREADS": "1"}
    args = ["--batch-size", "64", "256", "--seconds", "0.05", "--repeats", "1"]
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [
        line for line in proc.stdout.splitlines() if line.startswith("| ") and "|---" not in line
    ]
    cells = [[c.strip() for c in row.split("|")[1:-1]] for row in rows[1:]]
    assert [c[0] for c in cells] == ["64", "256"]
    for c in cells:
        alone, *ratios = (float(x.replace(",", "")) for x in c[1:])
        assert alone > 0 and len(ratios) == 2 and all(r > 0 for r in ratios)


def test_one_core_is_refused_with_one_line(tmp_path):
    env = {**os.environ, **MALLOC_ENV, ALLOCATOR_VAR: "farm"}
    proc = subprocess.run(
        ["taskset", "-c", "0", sys.executable, str(SCRIPT), "--repeats", "1"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "needs two cores, this process may use 1" in proc.stderr.strip().splitlines()[-1]
