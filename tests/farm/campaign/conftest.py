"""A store with small registered models over a tiny 8-voxel geometry, for campaign tests."""

from __future__ import annotations

import tempfile

import pytest
import torch
from tiny_data import tiny_showers

TINY_GEOMETRY = """<Bins>
  <Bin pid="22" name="photon">
    <Layer id="0" r_edges="0,5,20" n_bin_alpha="1"/>
    <Layer id="1" r_edges="0,5,20,50" n_bin_alpha="2"/>
  </Bin>
</Bins>
"""


def _train_and_register(
    name: str, geometry_path: str, poison: bool = False, source: str | None = None
) -> None:
    from farm import registry
    from models.config import ModelConfig, OptimConfig
    from models.training import TrainData, fit

    showers, e_inc = tiny_showers(2000, 0)
    data = TrainData(torch.from_numpy(showers).float(), torch.from_numpy(e_inc).reshape(-1, 1))
    config = ModelConfig.model_validate(
        {
            "network": {"kind": "mlp", "width": 16, "depth": 1, "embed_dim": 8},
            "preprocessing": {"kind": "shower", "layer_sizes": [2, 6]},
            "sampler": {"name": "euler", "nfe": 2},
        }
    )
    model = fit(
        config,
        OptimConfig(epochs=1, batch_size=256, warmup_steps=1),
        data,
        data,
        lambda metrics, ckpt: None,
    )
    if poison:
        with torch.no_grad():
            next(iter(model.net.out.parameters())).fill_(float("nan"))
    from models.checkpoint import save_model

    with tempfile.TemporaryDirectory() as ckpt:
        save_model(
            model,
            ckpt,
            card={
                "data": {
                    "geometry": geometry_path,
                    "kind": "showers",
                    "e_inc_range": [1e3, 1e5],
                    **({"source": source} if source else {}),
                }
            },
        )
        client = registry.client()
        run = client.create_run(registry.experiment_id(name))
        registry.register(name, run.info.run_id, ckpt, aliases=["candidate"])


@pytest.fixture(scope="session")
def campaign_store(tmp_path_factory, ray_session):
    """FARM_HOME with models 'tiny', 'nan-model' and 'tiny-sim' (card: trained on simulated
    showers) registered; yields (home, geometry path)."""
    home = tmp_path_factory.mktemp("campaign-home")
    geometry = home / "tiny_geometry.xml"
    geometry.write_text(TINY_GEOMETRY)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FARM_HOME", str(home))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        _train_and_register("tiny", str(geometry))
        _train_and_register("nan-model", str(geometry), poison=True)
        _train_and_register("tiny-sim", str(geometry), source="simulated_showers")
        yield home, str(geometry)


@pytest.fixture
def in_store(campaign_store, monkeypatch):
    monkeypatch.setenv("FARM_HOME", str(campaign_store[0]))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return campaign_store


@pytest.fixture(scope="session")
def server_store(tmp_path_factory, ray_session, mlflow_server):
    """FARM_HOME with model 'tiny' registered on the real MLflow server (artifacts on moto S3);
    returns (home, geometry path, tracking URI, artifacts destination)."""
    home = tmp_path_factory.mktemp("server-home")
    geometry = home / "tiny_geometry.xml"
    geometry.write_text(TINY_GEOMETRY)
    uri, destination = mlflow_server
    with pytest.MonkeyPatch.context() as mp:  # the environment ends with the registration
        mp.setenv("FARM_HOME", str(home))
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.delenv("FARM_ARTIFACT_ROOT", raising=False)
        _train_and_register("tiny", str(geometry))
    return home, str(geometry), uri, destination


@pytest.fixture
def on_server(server_store, monkeypatch):
    """The environment of a farm user pointed at the MLflow server: FARM_HOME and the URI."""
    monkeypatch.setenv("FARM_HOME", str(server_store[0]))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server_store[2])
    monkeypatch.delenv("FARM_ARTIFACT_ROOT", raising=False)
    return server_store
