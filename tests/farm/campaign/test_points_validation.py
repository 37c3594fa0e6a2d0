"""Validation blocks of point-cloud campaigns: seeded events, hit-simulator or file reference,
point features and the voxel projection's, gates, one-line refusals at submit."""

from __future__ import annotations

import json
import tempfile

import numpy as np
import pytest
import torch

from farm import records, registry, store
from farm.campaign.points_validation import read_point_events
from farm.campaign.run import execute, submit
from farm.campaign.validate import sample_event_ids
from farm.cli import main
from farm.data.points import simulate_point_shard
from farm.errors import FarmError
from farm.formats.calochallenge import write_calochallenge
from farm.formats.points_parquet import write_points_parquet
from farm.formats.reader import read_sample
from farm.geometry import load_cell_geometry
from farm.sharding import Plan
from farm.specs import parse_job

pytestmark = pytest.mark.filterwarnings("ignore::farm.evaluation.checks.SmallSampleWarning")

GEO = load_cell_geometry("ild-ecal-like")
ENERGIES = [1e4, 2e4]
TINY = {
    "kind": "point_showers",
    "hits": {
        "network": {"kind": "epic", "n_features": 4, "width": 16, "global_dim": 4, "depth": 1},
        "process": {"kind": "flow_matching"},
        "preprocessing": {"kind": "pointcloud", "n_features": 4, "log_features": [3]},
        "sampler": {"name": "euler", "nfe": 2},
    },
}


def _register(name: str, source: str | None) -> None:
    """A tiny point-cloud model (one epoch on simulated hits) registered as NAME@candidate."""
    from models.checkpoint import save_model
    from models.config import OptimConfig, parse_model_config
    from models.data import TrainData
    from models.training import fit

    ref = simulate_point_shard(GEO, Plan(200, 200, 3).shard(0), ENERGIES)
    x, c = ref.model_inputs()
    data = TrainData(torch.from_numpy(x), torch.from_numpy(c))
    optim = OptimConfig(epochs=1, batch_size=100, warmup_steps=1)
    model = fit(parse_model_config(TINY), optim, data, data, lambda m, d: None)
    card = {"geometry": GEO.name, "kind": "points", "e_inc_range": [1e4, 2e4]}
    with tempfile.TemporaryDirectory() as ckpt:
        save_model(model, ckpt, card={"data": {**card, **({"source": source} if source else {})}})
        run = registry.client().create_run(registry.experiment_id(name))
        registry.register(name, run.info.run_id, ckpt, aliases=["candidate"])


@pytest.fixture(scope="module")
def points_store(tmp_path_factory, ray_session):
    """FARM_HOME with 'pts' (card: simulated_points) and 'pts-file' (no source) registered."""
    home = tmp_path_factory.mktemp("points-campaign-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FARM_HOME", str(home))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        torch.set_num_threads(1)
        _register("pts", "simulated_points")
        _register("pts-file", None)
        yield home


@pytest.fixture
def in_store(points_store, monkeypatch):
    monkeypatch.setenv("FARM_HOME", str(points_store))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return points_store


def job(name: str, model: str, validation: dict | None, **extra) -> object:
    doc = {
        "kind": "campaign",
        "name": name,
        "model": model,
        "events": 60,
        "shard_size": 25,
        "seed": 2,
        "conditions": {"distribution": "discrete", "values": ENERGIES},
        "formats": ["parquet"],
        "resources": {"actors": 1, "batch_size": 64},
        "validation": validation,
        **extra,
    }
    return parse_job(doc, "test", kind="campaign")


def test_submit_refuses_bad_point_validation(in_store, tmp_path):
    sim = {"reference": "simulator"}
    with pytest.raises(FarmError, match="'simulator' needs a model trained on simulated_points"):
        submit(job("pv", "pts-file@candidate", sim))
    low = {"distribution": "discrete", "values": [5e3, 1e4]}
    with pytest.raises(FarmError, match=r"hit simulator covers 1e\+04-1e\+05 MeV for geometry "):
        submit(job("pv", "pts@candidate", sim, conditions=low, allow_out_of_range=True))
    voxels = tmp_path / "voxels.h5"
    write_calochallenge(str(voxels), np.ones((10, 9), np.float32), np.full(10, 1e4))
    with pytest.raises(FarmError) as err:
        submit(job("pv", "pts@candidate", {"reference": str(voxels)}))
    assert (
        "voxels.h5 holds showers, but model pts/1 generates point-cloud showers of geometry "
        "'ild-ecal-like'"
        in str(err.value)
        and "\n" not in str(err.value)
    )
    few = tmp_path / "few.parquet"
    write_points_parquet(str(few), simulate_point_shard(GEO, Plan(3, 3, 0).shard(0), ENERGIES))
    with pytest.raises(FarmError, match=r"few\.parquet holds only 3 events"):
        submit(job("pv", "pts@candidate", {"reference": str(few)}))
    with pytest.raises(FarmError, match=r"nothing\.parquet: file not found"):
        submit(job("pv", "pts@candidate", {"reference": str(tmp_path / "nothing.parquet")}))
    with pytest.raises(FarmError, match="geometry 'ild-ecal-like', written as Parquet only"):
        submit(job("pv", "pts@candidate", sim, formats=["h5"]))
    assert not [c for c in records.list_ids() if c.startswith("pv-")]  # nothing recorded


def test_simulator_validation_passes_loose_gates(in_store):
    validation = {
        "reference": "simulator",
        "events": 40,
        "seed": 5,
        "classifier": False,
        # the closed-form count and visible-energy model is right after one epoch (~0.47 here,
        # floors ~0.41 / 0.48 at 40 events); where the hits go is not (sep/cog_r 1.0)
        "gates": {"sep/n_hits": {"max": 0.9}, "sep/e_sum_ratio": {"max": 0.9}},
    }
    campaign = submit(job("psim", "pts@candidate", validation))
    summary = execute(campaign.id)
    assert summary.events == 60 and summary.validation.validated == "pass"
    doc = json.loads(store.read_text(campaign.path("validation.json")))
    assert doc["validated"] == "pass" and doc["events"] == 40 and doc["reference_events"] == 80
    for key in ("sep/n_hits", "sep/e_sum_ratio", "sep/cog_z", "sep_hit_spectrum", "fpd"):
        assert key in doc["metrics"], key  # point features and the voxel projection's
    assert all(0 <= doc["metrics"][k]["floor"] < 0.9 for k in ("sep/n_hits", "sep/e_sum_ratio"))
    assert doc["details"]["point_geometry"] == "ild-ecal-like"
    assert store.exists(campaign.path("validation/report.html"))
    # the validated events are the seeded draw, read from their shards only, clouds intact
    ids = sample_event_ids(60, 40, 5)
    got = read_point_events(records.load(campaign.id), ids, GEO)
    np.testing.assert_array_equal(got.event_id, ids)
    whole = read_sample(campaign.id)
    want = whole.subset(np.argsort(whole.event_id)[ids])
    np.testing.assert_array_equal(got.counts, want.counts)
    np.testing.assert_array_equal(got.hits, want.hits)
    mv = registry.resolve("pts@candidate")
    assert mv.tags[f"farm.validation.{campaign.id}"] == "pass"


def test_file_reference_failing_gate_exits_1_and_keeps_data(in_store, tmp_path, capsys):
    ref = tmp_path / "ref"
    for k in range(2):
        shard = Plan(100, 50, 9).shard(k)
        write_points_parquet(
            str(ref / f"ref-{k}.parquet"), simulate_point_shard(GEO, shard, ENERGIES)
        )
    validation = {
        "reference": str(ref),
        "events": 30,
        "reference_events": 60,
        "classifier": False,
        "gates": {"sep/n_hits": {"max": 0.0}},  # never met by a one-epoch model
    }
    campaign = submit(job("pfile", "pts-file@candidate", validation))
    summary = execute(campaign.id)
    assert summary.validation.validated == "fail" and summary.events == 60
    doc = json.loads(store.read_text(campaign.path("validation.json")))
    assert doc["reference_events"] == 60 and any("sep/n_hits" in f for f in doc["failures"])
    assert len(read_sample(campaign.id)) == 60  # the data stays
    capsys.readouterr()
    assert main(["campaign", "validate", campaign.id]) == 1
    assert "fail" in capsys.readouterr().out
