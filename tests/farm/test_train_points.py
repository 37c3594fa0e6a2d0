"""Point-cloud showers through the whole path: farm train, registry, generate, evaluate, distil."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_kinds import register_model, tiny_point_model

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


@pytest.fixture(scope="module")
def points_home(tmp_path_factory, ray_session):
    """A FARM_HOME with the tiny teacher trained through `farm train`; yields (home, result)."""
    home = tmp_path_factory.mktemp("points-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FARM_HOME", str(home))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("MLFLOW_REGISTRY_URI", raising=False)
        yield home, run_training(tiny_points_job())


@pytest.fixture
def teacher(points_home, monkeypatch):
    """The environment of points_home; returns the teacher's TrainResult."""
    monkeypatch.setenv("FARM_HOME", str(points_home[0]))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    return points_home[1]


def test_train_register_generate_and_evaluate(teacher, tmp_path, capsys):
    from farm.cli import main

    result = teacher
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


def test_distil_job_file_to_a_one_step_student(teacher, tmp_path, capsys):
    """jobs/distill-points-ild-epic.yaml, shrunk, through `farm train`: a 1-step student that keeps
    the teacher's count and visible-energy model and its data split."""
    import yaml

    from farm.cli import main
    from farm.generation import point_sample
    from farm.geometry import load_cell_geometry

    job = load_job("jobs/distill-points-ild-epic.yaml")
    assert job.kind == "distill" and job.distill.sampler_nfe == 1
    assert job.teacher == "points-ild-epic@candidate"  # the train job's name and alias
    assert load_job("jobs/train-points-ild-epic.yaml").name == job.teacher.split("@")[0]
    doc = job.model_dump(mode="json", exclude_none=True)
    doc.update(
        name="tiny-points-cd",
        teacher="tiny-points@candidate",
        optim={"epochs": 2, "batch_size": 32, "warmup_steps": 0},
        resources={"workers": 1, "use_gpu": False},
        validation_events=40,
    )
    doc["distill"]["n_steps"] = 6
    path = tmp_path / "distill.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["train", str(path)]) == 0, capsys.readouterr().err

    mv = registry.resolve("tiny-points-cd@candidate")
    assert mv.tags["farm.teacher"] == f"tiny-points/{teacher.version}"
    assert "sep_mean" in mv.tags["farm.gates"]
    student = registry.load("tiny-points-cd@candidate")
    config = student.card.config
    assert config["kind"] == "point_showers"
    assert config["hits"]["process"]["kind"] == "consistency"
    assert config["hits"]["sampler"] == {"name": "consistency", "nfe": 1, "options": {}}
    assert (
        student.card.data.split == registry.show("tiny-points@candidate")["card"]["data"]["split"]
    )
    t_model, s_model = registry.load("tiny-points@candidate").model, student.model
    t_card, s_card = t_model.cardinality.state_dict(), s_model.cardinality.state_dict()
    assert t_card.keys() == s_card.keys()
    for k in t_card:  # the count model is copied, not retrained
        torch.testing.assert_close(s_card[k], t_card[k], rtol=0, atol=0)

    calls = []
    s_model.net.register_forward_hook(lambda *args: calls.append(1))
    e_inc = torch.tensor([[1e4], [2e4], [1.5e4]])
    clouds = s_model.generate(e_inc, generator=torch.Generator().manual_seed(5))
    assert len(calls) == 1  # one network evaluation for the whole batch
    _, e_sum = s_model.cardinality.sample_totals(e_inc, torch.Generator().manual_seed(5))
    e_hits = clouds.reshape(3, -1, 4)[..., 3].double().sum(1)
    torch.testing.assert_close(e_hits, e_sum, rtol=1e-5, atol=0)  # calibrated to E_sum
    geo = load_cell_geometry("ild-ecal-like")
    gen = point_sample(s_model, np.full(8, 1e4), geo, generator=torch.Generator().manual_seed(1))
    assert geo.contains(gen.hits[:, 0], gen.hits[:, 1], gen.layer).all()
    assert (gen.hits[:, 3] > 0).all() and (gen.counts >= 1).all()

    # a student is not a teacher: one line, exit 2
    doc.update(name="tiny-points-cd2", teacher="tiny-points-cd@candidate")
    path.write_text(yaml.safe_dump(doc))
    capsys.readouterr()
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("farm: error: teacher tiny-points-cd@candidate (tiny-points-cd/1) is ")
    assert err.endswith("already a consistency model; distil a diffusion or flow-matching model")
    with pytest.raises(FarmError, match="not found"):
        registry.resolve("tiny-points-cd2@candidate")  # nothing registered


def test_generate_refuses_voxels_other_geometries_and_bad_files(farm_home, tmp_path, capsys):
    """A point-cloud model asked for voxels, or conditioned on another geometry's showers, or on
    a broken point-cloud file: one line naming the file and both geometries, exit 2, no output."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from farm.cli import main
    from farm.data.points import simulate_point_shard
    from farm.formats.calochallenge import write_calochallenge
    from farm.formats.points_parquet import METADATA_KEY, to_table
    from farm.geometry import load_cell_geometry, load_geometry
    from farm.sharding import Plan

    register_model("tiny-points", tiny_point_model(), "points", tmp_path)  # untrained, no Ray

    def refused(*argv: str) -> str:
        capsys.readouterr()
        assert main(["generate", "tiny-points@candidate", *argv]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1, lines
        return lines[0]

    out, ref_out = tmp_path / "gen.parquet", tmp_path / "ref.h5"
    model = "model tiny-points/1 generates point-cloud showers of geometry 'ild-ecal-like'"
    err = refused("--out", str(tmp_path / "gen.h5"))
    assert (
        err == f"farm: error: {tmp_path / 'gen.h5'}: {model}, written as Parquet (.parquet), "
        "not voxels in HDF5"
    )
    assert model in refused("--out", str(out), "--reference-out", str(ref_out))

    ds2 = load_geometry("ds2")
    voxels = tmp_path / "ds2.h5"
    write_calochallenge(str(voxels), np.zeros((4, ds2.n_voxels), np.float32), np.full(4, 1e4), ds2)
    err = refused("--out", str(out), "--conditions", str(voxels))
    assert err.startswith(f"farm: error: {voxels}: holds voxel showers of geometry 'ds2', but ")
    assert model in err

    geo = load_cell_geometry("ild-ecal-like")
    table = to_table(simulate_point_shard(geo, Plan(6, 6, 1).shard(0), [1e4]))
    meta = json.loads(table.schema.metadata[METADATA_KEY])
    other = tmp_path / "other.parquet"
    meta_other = {METADATA_KEY: json.dumps({**meta, "geometry": "hgcal-like"}).encode()}
    pq.write_table(table.replace_schema_metadata(meta_other), other)
    err = refused("--out", str(out), "--conditions", str(other))
    assert f"{other}: holds point clouds of geometry 'hgcal-like', but {model}" in err

    # broken point-cloud files as conditions: the reader's one line names the file
    counts = table.column("n_hits").to_numpy().copy()
    counts[2] -= 1
    bad_count = tmp_path / "count.parquet"
    i = table.schema.get_field_index("n_hits")
    pq.write_table(table.set_column(i, "n_hits", pa.array(counts.astype(np.int32))), bad_count)
    err = refused("--out", str(out), "--conditions", str(bad_count))
    assert f"{bad_count}: row 2 has n_hits = {counts[2]} but {counts[2] + 1} values" in err
    layer = table.column("layer").combine_chunks()
    flat = layer.flatten().to_numpy().copy()
    flat[0] = geo.n_layers  # one past the last layer
    outside = tmp_path / "outside.parquet"
    col = pa.ListArray.from_arrays(layer.offsets, pa.array(flat, pa.int16()))
    pq.write_table(table.set_column(table.schema.get_field_index("layer"), "layer", col), outside)
    err = refused("--out", str(out), "--conditions", str(outside))
    assert f"{outside}: hit at x = " in err and "layer 30 lies outside geometry" in err
    capsys.readouterr()
    good = tmp_path / "good.parquet"
    pq.write_table(table, good)
    for gen, ref in ((outside, good), (good, outside)):
        assert main(["evaluate", str(gen), str(ref), "--out", str(tmp_path / "ev")]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"farm: error: {outside}: hit at") and err.count("\n") == 1
    assert not (tmp_path / "ev").exists()
    assert not out.exists() and not ref_out.exists() and not (tmp_path / "gen.h5").exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries
