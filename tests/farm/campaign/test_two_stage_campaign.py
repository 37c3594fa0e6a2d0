"""A two-stage shower model is one model version: one card, one load, one campaign."""

from __future__ import annotations

import tempfile

import numpy as np
import pytest
import torch
from test_campaign import assert_complete, job, read_dataset
from tiny_data import tiny_showers

from farm import registry
from farm.campaign.run import execute, submit
from models.config import OptimConfig, parse_model_config, with_geometry
from models.training import TrainData, fit
from models.two_stage.model import TwoStageModel

LAYER_SHAPES = [(1, 2), (2, 3)]
"""(angular, radial) bins of the campaign tests' tiny geometry: 2 + 6 voxels."""


@pytest.fixture(scope="module")
def two_stage_version(campaign_store):
    """'tiny-two-stage' trained on the tiny showers and registered with alias candidate."""
    home, geometry = campaign_store
    showers, e_inc = tiny_showers(2000, 0)
    data = TrainData(torch.from_numpy(showers).float(), torch.from_numpy(e_inc).reshape(-1, 1))
    tiny = {"kind": "mlp", "width": 16, "depth": 1, "embed_dim": 8}
    config = parse_model_config(
        {
            "kind": "two_stage",
            "preprocessing": {"kind": "shower_stages", "threshold_mev": 1.0},
            "energy": {"network": tiny, "sampler": {"nfe": 2}},
            "shape": {"network": tiny, "sampler": {"nfe": 2}},
        }
    )
    config = with_geometry(config, LAYER_SHAPES)
    optim = OptimConfig(epochs=1, batch_size=256, warmup_steps=1)
    model = fit(config, optim, data, data, lambda metrics, ckpt: None)
    from models.checkpoint import save_model

    card = {"data": {"geometry": geometry, "kind": "showers", "e_inc_range": [1e3, 1e5]}}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FARM_HOME", str(home))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        with tempfile.TemporaryDirectory() as ckpt:
            save_model(model, ckpt, card=card)
            run = registry.client().create_run(registry.experiment_id("tiny-two-stage"))
            registry.register("tiny-two-stage", run.info.run_id, ckpt, aliases=["candidate"])
    return model


def test_two_stage_round_trips_through_the_registry(in_store, two_stage_version):
    loaded = registry.load("tiny-two-stage@candidate")
    assert isinstance(loaded.model, TwoStageModel)
    assert loaded.card.config["kind"] == "two_stage"
    cond = torch.full((64, 1), 1e4)
    want = two_stage_version.generate(cond, generator=torch.Generator().manual_seed(5))
    got = loaded.model.generate(cond, generator=torch.Generator().manual_seed(5))
    assert torch.equal(want, got)  # the same weights, preprocessing and samplers


def test_two_stage_campaign_is_complete_and_exact(in_store, two_stage_version):
    campaign = submit(job("two-stage", model="tiny-two-stage@candidate", events=20_000))
    summary = execute(campaign.id)
    data = assert_complete(campaign, 20_000)
    assert summary.shards == 2
    # the shape stage's shares sum to one, so each generated shower carries the energy stage's
    # E_tot; the tiny showers deposit E_tot ~ E_inc (the profile sums to one, lognormal spread)
    response = data["showers"].sum(1) / data["incident_energy"]
    assert 0.5 < np.median(response) < 2.0
    again = submit(job("two-stage-again", model="tiny-two-stage@candidate", events=20_000))
    assert execute(again.id).dataset_sha256 == summary.dataset_sha256
    assert np.array_equal(read_dataset(again.output_url)["showers"], data["showers"])
