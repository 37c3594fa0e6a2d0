"""Point-cloud showers through the whole path: farm train, registry, farm generate, evaluate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from farm import registry
from farm.errors import FarmError
from farm.formats.reader import read_sample
from farm.specs import load_job, parse_job
from farm.train import run_training


def tiny_points_job() -> object:
    doc = load_job("jobs/train-points-ild-epic.yaml").model_dump(mode="json")
    doc.update(
        name="tiny-points",
        data={
            "source": "simulated_points",
            "geometry": "ild-ecal-like",
            "events": 240,
            "seed": 3,
            "energies": [10000.0, 20000.0],
        },
        optim={"epochs": 2, "batch_size": 32, "lr": 2e-3, "warmup_steps": 2},
        resources={"workers": 1, "use_gpu": False},
        validation_events=40,
        gates={},
    )
    hits = doc["model"]["hits"]
    hits["network"].update(width=16, global_dim=4, depth=2, embed_dim=8)
    hits["sampler"] = {"name": "euler", "nfe": 2}
    return parse_job(doc, "test", kind="train")


def test_points_job_file_parses_and_kinds_must_match():
    job = load_job("jobs/train-points-ild-epic.yaml")
    assert job.model.kind == "point_showers" and job.data.source == "simulated_points"
    doc = job.model_dump(mode="json")
    doc["data"] = {"source": "simulated_showers", "geometry": "ds2"}
    with pytest.raises(FarmError, match="point_showers"):
        parse_job(doc, "test", kind="train")


def test_train_register_generate_and_evaluate(ray_session, farm_home, tmp_path, capsys):
    from farm.cli import main

    result = run_training(tiny_points_job())
    info = registry.show("tiny-points@candidate")
    assert info["card"]["data"]["kind"] == "points"
    assert info["card"]["data"]["geometry"] == "ild-ecal-like"
    client = registry.client()
    metrics = client.get_run(result.mlflow_run_id).data.metrics
    assert "val_sep_n_hits" in metrics and "val_mean_e_ratio_generated" in metrics
    loaded = registry.load("tiny-points@candidate").model
    out = loaded.generate(torch.full((4, 1), 1e4), generator=torch.Generator().manual_seed(0))
    assert out.shape[1] % 4 == 0 and torch.isfinite(out).all()

    gen, ref = tmp_path / "gen.parquet", tmp_path / "ref.parquet"
    argv = ["generate", "tiny-points@candidate", "--out", str(gen), "--events", "20"]
    assert main([*argv, "--reference-out", str(ref)]) == 0, capsys.readouterr().err
    sample, reference = read_sample(str(gen)), read_sample(str(ref))
    assert sample.kind == "points" and len(sample) == 20 and (sample.hits[:, 3] > 0).all()
    assert sample.geometry.name == "ild-ecal-like"
    np.testing.assert_array_equal(sample.e_inc, reference.e_inc)  # the test split's conditions
    ev = tmp_path / "ev"
    argv = ["evaluate", str(gen), str(ref), "--out", str(ev), "--no-classifier"]
    assert main(argv) == 0, capsys.readouterr().err
    assert (ev / "metrics.json").exists()

    # a campaign writes point-cloud Parquet shards, exactly once, readable as one sample
    from farm.campaign.run import execute, submit

    doc = {
        "kind": "campaign",
        "name": "points-campaign",
        "model": "tiny-points@candidate",
        "events": 40,
        "shard_size": 20,
        "seed": 4,
        "conditions": {"distribution": "uniform", "min": 1e4, "max": 2e4},
        "formats": ["parquet"],
        "resources": {"actors": 1, "batch_size": 64},
    }
    campaign = submit(parse_job(doc, "test", kind="campaign"))
    summary = execute(campaign.id)
    assert summary.events == 40 and summary.shards == 2
    data = read_sample(campaign.id)
    assert data.kind == "points" and sorted(data.event_id) == list(range(40))
    assert (data.hits[:, 3] > 0).all() and (data.counts >= 1).all()
    with pytest.raises(FarmError, match="Parquet only"):
        submit(parse_job({**doc, "name": "h5", "formats": ["h5"]}, "test", kind="campaign"))
