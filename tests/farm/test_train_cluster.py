"""`farm train` with 2 DDP workers across a real multi-raylet cluster (`ray start` processes).

Each node has one CPU and each Ray Train worker asks for one, so the two ranks run in raylets
of different nodes; `farm train` joins the cluster through RAY_ADDRESS as on a real cluster.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import yaml
from test_train import tiny_job

from farm import registry

TRAIN_WORKER = "RayTrainWorker"


def _nodes_running_train_workers(ray_nodes) -> set[str]:
    """Temp dirs of the nodes whose raylet has a Ray Train worker process right now."""
    import psutil

    found = set()
    for node in ray_nodes.nodes:
        try:
            children = ray_nodes.raylet(node).children(recursive=True)
        except (psutil.Error, StopIteration):
            continue
        for child in children:
            try:
                if TRAIN_WORKER in " ".join(child.cmdline()):
                    found.add(node)
            except psutil.Error:
                continue
    return found


@pytest.mark.slow
def test_two_worker_training_across_nodes_registers_a_version(ray_nodes, tmp_path, monkeypatch):
    for name in ("a", "b"):
        ray_nodes.add_worker(name)
    home = tmp_path / "home"
    job_file = tmp_path / "train.yaml"
    job_file.write_text(
        yaml.safe_dump(tiny_job(epochs=2).model_dump(mode="json", exclude_none=True))
    )
    env = {**ray_nodes.env, "RAY_ADDRESS": ray_nodes.address, "FARM_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    log_path = tmp_path / "train.log"
    with open(log_path, "w") as log:
        driver = subprocess.Popen(
            [sys.executable, "-m", "farm.cli", "train", str(job_file)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    seen: set[str] = set()
    deadline = time.time() + 400
    try:
        while driver.poll() is None:
            seen |= _nodes_running_train_workers(ray_nodes)
            assert time.time() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.2)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, log_path.read_text()[-3000:]
    assert len(seen) == 2, (seen, ray_nodes.nodes)  # the two ranks on two different raylets

    monkeypatch.setenv("FARM_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mv = registry.resolve("tiny-showers@candidate")
    run = registry.client().get_run(mv.run_id)
    assert run.info.status == "FINISHED" and run.data.params["resources.workers"] == "2"
    assert registry.load("tiny-showers@candidate").card.data.geometry == "ds1-photons"
