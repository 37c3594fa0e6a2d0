"""bench/gpu_campaign.py imports and runs with Ray and MLflow unimportable, end to end on the CPU.

The script runs in a subprocess whose sys.meta_path refuses `ray` and `mlflow` (as on a GPU machine
without them): it builds tiny checkpoints, loads them with models.loading, samples, writes Parquet
and HDF5 shards and commits every record; the table it prints has one row per case. With pydantic
refused too it exits with one line naming pydantic (models' configs need it), not a traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from farm.allocator import ALLOCATOR_VAR, MALLOC_ENV

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu_campaign.py"

BLOCKED_RUN = """
import importlib.abc, runpy, sys
BLOCK = set(sys.argv[1].split(","))
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCK:
            raise ImportError(f"{name} is blocked", name=name)
sys.meta_path.insert(0, Refuse())
script, args = sys.argv[2], sys.argv[3:]
sys.argv = [script, *args]
try:
    runpy.run_path(script, run_name="__main__")
finally:
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCK)
    print("LOADED", loaded)
"""

TINY = [
    "--geometry", "ds1-photons", "--width", "16", "--depth", "1", "--events", "600",
    "--shard-size", "200", "--batch-size", "200", "--repeats", "1", "--writers", "0", "2",
]  # fmt: skip


def _run(blocked: str, args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    # farm's malloc settings already set: the script does not re-execute itself (and lose the hook)
    env = {
        **os.environ,
        **MALLOC_ENV,
        ALLOCATOR_VAR: "farm",
        "OMP_NUM_THREADS": "1",
        "FARM_HOME": str(tmp_path / "home"),
    }
    return subprocess.run(
        [sys.executable, "-c", BLOCKED_RUN, blocked, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )


def test_runs_end_to_end_without_ray_or_mlflow(tmp_path):
    out = tmp_path / "shards"
    proc = _run("ray,mlflow", [*TINY, "--formats", "parquet", "h5", "--output", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "LOADED []" in proc.stdout
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ds1-photons-")]
    cells = [[c.strip() for c in row.split("|")[1:-1]] for row in rows]
    assert [(c[0], c[1], c[2]) for c in cells] == [
        ("ds1-photons-student", "consistency NFE 1", "0"),
        ("ds1-photons-student", "consistency NFE 1", "2"),
        ("ds1-photons-flow20", "midpoint NFE 20", "0"),
        ("ds1-photons-flow20", "midpoint NFE 20", "2"),
    ]
    for c in cells:
        bare, campaign, ratio = (float(x.replace(",", "")) for x in c[3:6])
        assert bare > 0 and campaign > 0 and ratio > 0
    assert not any(out.iterdir()), "each run's shards are removed after it is measured"


def test_shards_and_records_of_a_run_are_complete(tmp_path):
    """One case, its output kept by reading it from inside the script's own modules."""
    check = tmp_path / "check.py"
    check.write_text(
        f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
import runpy
bench = runpy.run_path({str(SCRIPT)!r})
from farm.campaign import manifest
from farm.formats.reader import read_showers
from pathlib import Path
args = bench["argparse"].Namespace(
    events=500, shard_size=200, sampler=None, nfe=None, formats=["parquet", "h5"],
    batch_size=200, max_in_flight=None, no_bf16=False)
ckpt = bench["make_checkpoint"](Path({str(tmp_path)!r}), "ds1-photons", "student", 16, 1)
record = bench["campaign_record"](args, ckpt, Path({str(tmp_path / "out")!r}), "run", 1)
maker = bench["ShardMaker"](record, bench["load_model"](ckpt), "cpu")
rate, share, size = bench["campaign_rate"](maker, record.plan, 2)
recs = manifest.read_records(record.output_url)
data = read_showers(record.path("parquet"), "ds1-photons")
print("OK", [r.shard for r in recs], sorted(r.events for r in recs), len(data),
      sorted(data.event_id.tolist()) == list(range(500)), size > 0)
"""
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FARM_HOME": str(tmp_path / "home")}
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKED_RUN, "ray,mlflow", str(check)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OK [0, 1, 2] [100, 200, 200] 500 True True" in proc.stdout
    assert "LOADED []" in proc.stdout


def test_without_pydantic_one_line_names_it(tmp_path):
    proc = _run("ray,mlflow,pydantic", TINY, tmp_path)
    assert proc.returncode != 0
    message = proc.stderr.strip().splitlines()
    assert message == ["bench/gpu_campaign.py needs pydantic (pip install pydantic): "
                       "pydantic is blocked"]  # fmt: skip
