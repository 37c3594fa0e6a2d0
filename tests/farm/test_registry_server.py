"""The registry on a real `mlflow server`: concurrent registrations, and an unreachable server."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from farm import registry
from farm.errors import FarmError
from models.checkpoint import save_model
from models.config import ModelConfig
from models.generative import GenerativeModel

NAME, COUNT = "concurrent", 2


@pytest.fixture
def on_server(mlflow_server, farm_home, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server[0])
    monkeypatch.delenv("FARM_ARTIFACT_ROOT", raising=False)
    return mlflow_server[0]


def _training(tag: str, start: threading.Barrier, ckpt: Path) -> list[dict[str, str]]:
    """One 'training': COUNT versions of NAME registered, each with alias trainer-<tag>."""
    start.wait(timeout=30)
    created = []
    for _ in range(COUNT):
        run = registry.client().create_run(registry.experiment_id(NAME))
        mv = registry.register(NAME, run.info.run_id, str(ckpt), aliases=[f"trainer-{tag}"])
        created.append({"version": mv.version, "run_id": run.info.run_id})
    return created


def test_two_concurrent_trainings_get_distinct_versions_and_keep_their_aliases(on_server, tmp_path):
    torch.manual_seed(0)
    ckpt = tmp_path / "ckpt"
    save_model(
        GenerativeModel(ModelConfig(), 12, 1), ckpt, card={"data": {"geometry": "ds1-photons"}}
    )
    start = threading.Barrier(2)  # both race on the experiment, the model and the versions
    with ThreadPoolExecutor(2) as pool:
        futures = {tag: pool.submit(_training, tag, start, ckpt) for tag in ("a", "b")}
        created = {tag: f.result(timeout=120) for tag, f in futures.items()}

    versions = [v["version"] for tag in created for v in created[tag]]
    assert sorted(versions, key=int) == [str(i) for i in range(1, 2 * COUNT + 1)]  # distinct
    c = registry.client()
    for tag, mine in created.items():
        for v in mine:  # each version is the run that registered it
            assert c.get_model_version(NAME, v["version"]).run_id == v["run_id"]
        # no lost alias: each training's alias points at the last version it registered
        assert c.get_model_version_by_alias(NAME, f"trainer-{tag}").version == mine[-1]["version"]
    assert len(c.search_experiments(filter_string=f"name = '{NAME}'")) == 1
    last = max(versions, key=int)
    assert registry.load(f"{NAME}/{last}").key == f"{NAME}/{last}"


@pytest.fixture
def dead_address(dead_port):
    """An http address on 127.0.0.1 where nothing listens."""
    return f"http://127.0.0.1:{dead_port}"


def test_unreachable_server_is_one_line_and_registers_nothing(
    on_server, dead_address, s3_server, tmp_path, monkeypatch
):
    run = registry.client().create_run(registry.experiment_id("unreachable"))
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "model.json").write_text("{}")
    for address, why in ((dead_address, "Connection refused"), (s3_server, "HTTP 40")):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", address)
        with pytest.raises(FarmError, match=f"MLflow server {address} is unreachable \\({why}"):
            registry.register("unreachable", run.info.run_id, str(ckpt), aliases=["candidate"])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", on_server)
    c = registry.client()
    assert c.search_registered_models(filter_string="name = 'unreachable'") == []
    assert c.list_artifacts(run.info.run_id) == []  # not even the checkpoint was uploaded


def test_cli_names_the_unreachable_address_and_exits_nonzero(farm_home, dead_address, cli_error):
    line = cli_error(["registry", "ls"], FARM_HOME=str(farm_home), MLFLOW_TRACKING_URI=dead_address)
    assert f"MLflow server {dead_address} is unreachable" in line


@pytest.mark.slow
def test_farm_train_logs_and_registers_through_the_server(on_server, ray_session, mlflow_server):
    from test_train import tiny_job

    from farm.train import run_training

    result = run_training(tiny_job(epochs=2))
    c = registry.client()
    run = c.get_run(result.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")  # the server's store (S3)
    # rank 0 of Ray Train logged each epoch over HTTP
    assert [m.step for m in c.get_metric_history(result.mlflow_run_id, "val_loss")] == [1, 2]
    mv = registry.promote("tiny-showers", result.version, "production", force_reason="server test")
    assert "production" in mv.aliases
    assert registry.load("tiny-showers@production").key == f"tiny-showers/{result.version}"
