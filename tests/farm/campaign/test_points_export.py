"""`farm campaign export` of a point-cloud campaign: one farm-points Parquet file as the format
defines it, or the CaloChallenge HDF5 of its voxel projection; nothing under the final name on a
bad shard."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tiny_kinds import POINT_ENERGIES, register_model, tiny_point_model

from farm import records, store
from farm.campaign.run import execute, submit
from farm.cli import main
from farm.formats.points_parquet import FORMAT, metadata
from farm.formats.reader import read_points, read_sample, read_showers
from farm.geometry import load_cell_geometry
from farm.specs import parse_job

GEO = load_cell_geometry("ild-ecal-like")


@pytest.fixture(scope="module")
def points_campaign(tmp_path_factory, ray_session):
    """FARM_HOME with a tiny points model and a finished 3-shard campaign; yields (home, id)."""
    home = tmp_path_factory.mktemp("points-export-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FARM_HOME", str(home))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        torch.set_num_threads(1)
        register_model("pts", tiny_point_model(), "points", home)
        doc = {
            "kind": "campaign",
            "name": "pexport",
            "model": "pts@candidate",
            "events": 50,
            "shard_size": 20,
            "seed": 4,
            "conditions": {"distribution": "discrete", "values": list(POINT_ENERGIES)},
            "formats": ["parquet"],
            "resources": {"actors": 1, "batch_size": 64},
        }
        campaign = submit(parse_job(doc, "test", kind="campaign"))
        assert execute(campaign.id).events == 50
        yield home, campaign.id


@pytest.fixture
def campaign_id(points_campaign, monkeypatch):
    monkeypatch.setenv("FARM_HOME", str(points_campaign[0]))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return points_campaign[1]


def _no_temporaries(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if store.is_temporary(p.name)]


def test_points_campaign_exports_one_points_parquet(campaign_id, tmp_path, capsys):
    shards = read_points(campaign_id)
    out = tmp_path / "all.parquet"
    assert main(["campaign", "export", campaign_id, "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out and _no_temporaries(tmp_path)
    back = read_sample(str(out))  # the farm-points format, checked on reading
    assert back.kind == "points" and back.geometry.name == GEO.name
    order = np.argsort(shards.event_id)
    np.testing.assert_array_equal(back.event_id, np.arange(50))
    want = shards.subset(order)
    np.testing.assert_array_equal(back.counts, want.counts)
    np.testing.assert_array_equal(back.hits, want.hits)
    np.testing.assert_array_equal(back.layer, want.layer)
    np.testing.assert_array_equal(back.e_inc, want.e_inc)
    pf = pq.ParquetFile(out)
    assert pf.num_row_groups == 3  # a row group per shard
    meta = metadata(pf.schema_arrow)
    assert meta["format"] == FORMAT and meta["campaign"] == campaign_id and meta["events"] == 50
    assert meta["units"]["e"] == "MeV" and meta["nfe"] == records.load(campaign_id).nfe
    table = pq.read_table(out)  # plain Arrow list columns, no farm needed
    assert table.column("n_hits").to_pylist() == [len(v) for v in table.column("e").to_pylist()]


def test_points_campaign_exports_its_voxel_projection_as_calochallenge_h5(campaign_id, tmp_path):
    shards = read_points(campaign_id)
    out = tmp_path / "all.h5"
    assert main(["campaign", "export", campaign_id, "--out", str(out)]) == 0
    want = shards.subset(np.argsort(shards.event_id)).to_voxels()  # the projection farm evaluates
    with h5py.File(out) as f:
        assert f["showers"].shape == (50, GEO.voxel_binning.n_voxels)
        np.testing.assert_array_equal(f["showers"][:], want.showers)
        np.testing.assert_array_equal(f["incident_energies"][:, 0], want.e_inc)
        attrs = json.loads(f.attrs["farm"])
    assert attrs["geometry"] == "ild-ecal-like-voxels" and attrs["events"] == 50
    assert attrs["projected_from"]["geometry"] == GEO.name
    assert attrs["binning"]["layers"][0]["r_edges"][-1] == 150.0
    # energy is conserved within the last ring; farm reads the file back by its geometry's name
    np.testing.assert_allclose(
        want.showers.sum(1), shards.subset(np.argsort(shards.event_id)).energy_sums(), rtol=1e-5
    )
    back = read_showers(str(out))
    assert back.geometry == GEO.voxel_binning
    np.testing.assert_array_equal(back.showers, want.showers)


def test_a_bad_shard_leaves_nothing_under_the_final_name(campaign_id, tmp_path, capsys):
    campaign = records.load(campaign_id)
    shard_url = Path(campaign.path("parquet")) / sorted(store.listdir(campaign.path("parquet")))[1]
    keep = shard_url.read_bytes()
    try:
        table = pq.read_table(shard_url)
        pq.write_table(table.slice(0, 5), shard_url)  # a shard that lost rows
        for name in ("all.parquet", "all.h5"):
            capsys.readouterr()
            assert main(["campaign", "export", campaign_id, "--out", str(tmp_path / name)]) == 2
            err = capsys.readouterr().err.strip()
            assert "5 events, but shard 1 holds 20" in err and len(err.splitlines()) == 1, err
            assert not (tmp_path / name).exists() and _no_temporaries(tmp_path)
    finally:
        shard_url.write_bytes(keep)
