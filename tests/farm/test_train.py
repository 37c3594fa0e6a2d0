"""farm train: Ray Train (2 DDP workers), MLflow tracking, registration, and resume after a crash."""

import glob
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from farm import registry
from farm.errors import FarmError
from farm.specs import parse_job
from farm.train import FAULT_ENV, run_training


def tiny_job(epochs: int = 3) -> object:
    return parse_job(
        {
            "kind": "train",
            "name": "tiny-showers",
            "data": {
                "source": "simulated_showers",
                "geometry": "ds1-photons",
                "events": 1200,
                "seed": 5,
                "energies": [1024.0, 65536.0],
            },
            "model": {
                "network": {"kind": "mlp", "width": 32, "depth": 1, "embed_dim": 16},
                "sampler": {"name": "euler", "nfe": 2},
            },
            "optim": {"epochs": epochs, "batch_size": 128, "lr": 1e-3, "warmup_steps": 2},
            "resources": {"workers": 2, "use_gpu": False},
            "validation_events": 50,
        },
        "test",
        kind="train",
    )


def test_train_registers_a_version_with_tracking(ray_session, farm_home):
    result = run_training(tiny_job(epochs=2))
    assert result.version == "1" or int(result.version) == 1
    client = registry.client()
    run = client.get_run(result.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["optim.epochs"] == "2"
    assert [m.step for m in client.get_metric_history(result.mlflow_run_id, "val_loss")] == [1, 2]
    artifacts = {a.path for a in client.list_artifacts(result.mlflow_run_id)}
    assert {"job.yaml", "validation.png", "model"} <= artifacts
    info = registry.show("tiny-showers@candidate")
    card = info["card"]
    assert card["data"]["geometry"] == "ds1-photons"
    assert card["data"]["split"]["n_train"] == 840
    assert card["data"]["e_inc_range"] == [1024.0, 65536.0]  # campaigns refuse conditions outside
    assert card["config"]["preprocessing"]["layer_sizes"] == [8, 160, 190, 5, 5]
    assert card["job"]["name"] == "tiny-showers"
    model = registry.load("tiny-showers@candidate").model
    showers = model.generate(
        torch.full((16, 1), 1024.0), generator=torch.Generator().manual_seed(0)
    )
    assert showers.shape == (16, 368) and torch.isfinite(showers).all() and (showers >= 0).all()


def _final_train_state(farm_home, run_name):
    states = sorted(glob.glob(f"{farm_home}/ray/{run_name}/checkpoint_*/train_state.json"))
    docs = {p: json.loads(Path(p).read_text()) for p in states}
    path = max(docs, key=lambda p: docs[p]["epoch"])
    return docs[path], load_file(path.replace(".json", ".safetensors"))


def test_crash_after_first_checkpoint_then_resume(ray_session, farm_home, monkeypatch):
    job = tiny_job(epochs=3)
    monkeypatch.setenv(FAULT_ENV, "1")
    with pytest.raises(FarmError, match=r"simulated crash after epoch 1.*resume"):
        run_training(job)
    monkeypatch.delenv(FAULT_ENV)
    index = json.loads(Path(glob.glob(f"{farm_home}/train/tiny-showers/*.json")[0]).read_text())
    assert index["status"] == "failed"

    result = run_training(job)  # the same job again: resumes
    assert result.resumed_from_epoch == 1
    assert result.run_name == index["run_name"]
    assert result.mlflow_run_id == index["mlflow_run_id"]  # the same MLflow run, not a duplicate
    epochs = [m.step for m in registry.client().get_metric_history(result.mlflow_run_id, "epoch")]
    assert sorted(epochs) == [1, 2, 3]  # epoch 1 was not trained (or logged) twice
    state, tensors = _final_train_state(farm_home, result.run_name)
    steps_per_epoch = 840 // 128
    assert state["epoch"] == 3 and state["step"] == 3 * steps_per_epoch
    # AdamW's per-parameter step count continued from the checkpoint instead of restarting
    adam_steps = {float(v) for k, v in tensors.items() if k.endswith(".step")}
    assert adam_steps == {float(3 * steps_per_epoch)}
    assert len(registry.list_models()) == 1


@pytest.mark.slow  # two Ray Train runs (~60 s); versioning is also covered by the registry tests
def test_rerunning_a_finished_job_starts_a_new_version(ray_session, farm_home):
    first = run_training(tiny_job(epochs=1))
    second = run_training(tiny_job(epochs=1))
    assert second.run_name != first.run_name
    assert int(second.version) == int(first.version) + 1
    assert os.path.exists(f"{farm_home}/mlflow.db")
