"""Failures that used to leave state behind or read badly (issue 17, item 7)."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_train import tiny_job

from farm import registry
from farm.cli import main
from farm.data.shower_sim import energy_range
from farm.data.showers import simulate_in_memory
from farm.errors import FarmError
from farm.formats.calochallenge import write_calochallenge
from farm.geometry import load_geometry
from farm.specs import parse_job
from farm.train import FAULT_ENV, run_training


def one_line(capfd) -> str:
    err = capfd.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("farm: error: ")
    return lines[0]


def showers_file(path: Path, n: int = 300, nan_energies: int = 0) -> str:
    geometry = load_geometry("ds1-photons")
    showers, e_inc = simulate_in_memory(geometry, n, seed=1, energies=[1024.0, 4096.0])
    e_inc = e_inc.astype(np.float64)
    e_inc[:nan_energies] = np.nan
    write_calochallenge(str(path), showers, e_inc, geometry)
    return str(path)


def calo_job(url: str) -> object:
    doc = tiny_job().model_dump(mode="json")
    doc["data"] = {"source": "calochallenge", "url": url, "geometry": "ds1-photons"}
    return parse_job(doc, "test", kind="train")


def all_runs() -> list:
    client = registry.client()
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids) if ids else []


def test_training_on_nan_energies_names_the_file_and_count_and_leaves_nothing(farm_home, tmp_path):
    url = showers_file(tmp_path / "nan.h5", nan_energies=7)
    with pytest.raises(FarmError) as err:
        run_training(calo_job(url))
    assert str(err.value).startswith(f"{url}: 7 NaN/Inf values in 'incident_energies'")
    assert "(7 of 300 events)" in str(err.value)
    # the data failed before any run existed: no MLflow run, no job.yaml, no resume index
    assert all_runs() == []
    assert not (farm_home / "train").exists()


def test_training_on_missing_data_leaves_no_run(farm_home, tmp_path):
    with pytest.raises(FarmError, match=r"file not found"):
        run_training(calo_job(str(tmp_path / "absent.h5")))
    assert all_runs() == [] and not (farm_home / "train").exists()


@pytest.mark.slow  # ~30 s; the killed-run test covers the run status path by default
def test_a_failed_training_run_ends_failed(ray_session, farm_home, monkeypatch):
    monkeypatch.setenv(FAULT_ENV, "1")
    with pytest.raises(FarmError, match=r"simulated crash after epoch 1"):
        run_training(tiny_job(epochs=2))
    (run,) = all_runs()
    assert run.info.status == "FAILED" and run.data.tags["farm.status"] == "failed"
    index = json.loads(Path(glob.glob(f"{farm_home}/train/tiny-showers/*.json")[0]).read_text())
    assert index["status"] == "failed"  # the same job resumes it


def test_a_killed_training_run_ends_killed(ray_session, farm_home, tmp_path):
    job = tiny_job(epochs=200).model_dump(mode="json")
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(job))
    env = {**os.environ, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address}
    proc = subprocess.Popen(
        [sys.executable, "-m", "farm.cli", "train", str(path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    while not glob.glob(f"{farm_home}/train/tiny-showers/*.json"):  # pytest-timeout bounds it
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "farm: stopped (SIGTERM)" in err
    (run,) = all_runs()
    assert run.info.status == "KILLED" and run.data.tags["farm.status"] == "killed"


@pytest.mark.parametrize(
    ("name", "make", "why"),
    [
        ("empty.h5", lambda p, good: p.write_bytes(b""), "the file is empty"),
        (
            "truncated.h5",
            lambda p, good: p.write_bytes(Path(good).read_bytes()[:20_000]),
            "truncated or corrupt",
        ),
        (
            "renamed.h5",
            lambda p, good: p.write_bytes(b"PAR1" + b"\0" * 64),
            "it holds Parquet data under a .h5 name; rename it",
        ),
        (
            "notes.h5",
            lambda p, good: p.write_text("secret text " * 100),
            "it does not start like an HDF5 file",
        ),
    ],
)
def test_evaluate_on_a_bad_file_names_it(name, make, why, farm_home, tmp_path, capfd):
    good = showers_file(tmp_path / "good.h5")
    bad = tmp_path / name
    make(bad, good)
    assert main(["evaluate", str(bad), good, "--no-classifier"]) == 2
    line = one_line(capfd)
    assert line.startswith(f"farm: error: {bad}: not a readable HDF5 file: {why}")
    assert "storage:" not in line and "secret" not in line


HOME_COMMANDS = [
    ["registry", "ls"],
    ["registry", "show", "m@candidate"],
    ["registry", "promote", "m", "1", "--alias", "production"],
    ["registry", "ui"],
    ["train", "JOB"],
    ["tune", "status", "x"],
    ["tune", "resume", "x"],
    ["campaign", "submit", "CAMPAIGN"],
    ["campaign", "status", "x"],
    ["campaign", "ls"],
    ["campaign", "cancel", "x"],
    ["campaign", "resume", "x"],
    ["campaign", "validate", "x"],
    ["campaign", "export", "x", "--out", "all.h5"],
    ["generate", "m@candidate", "--out", "gen.parquet"],
    ["evaluate", "gen.h5", "ref.h5"],
    ["quickstart"],
]


@pytest.mark.parametrize("argv", HOME_COMMANDS, ids=" ".join)
@pytest.mark.parametrize("where", ["is", "under"])
def test_farm_home_a_file_is_one_line_for_every_command(argv, where, tmp_path, monkeypatch, capfd):
    blocker = tmp_path / "home-file"
    blocker.write_text("not a folder")
    home = blocker if where == "is" else blocker / "home"
    monkeypatch.setenv("FARM_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    train = tiny_job().model_dump(mode="json")
    (tmp_path / "JOB").write_text(yaml.safe_dump(train))
    lo, _ = energy_range(load_geometry("ds1-photons"))
    (tmp_path / "CAMPAIGN").write_text(
        "kind: campaign\nname: c\nmodel: m@candidate\nevents: 10\nshard_size: 5\n"
        f"conditions: {{distribution: discrete, values: [{lo}]}}\n"
    )
    assert main(argv) == 2
    line = one_line(capfd)
    assert f"FARM_HOME={home}: store is not writable ({blocker} is a file, not a folder)" in line
