"""Campaigns writing the sparse shower layout: sparse shards, the dense campaign's showers, resume."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from test_campaign import job

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tiny_kinds import POINT_ENERGIES, register_model, tiny_jet_model, tiny_point_model

from farm import records, store
from farm.campaign import manifest
from farm.campaign.export import export_campaign
from farm.campaign.run import CampaignFailed, execute, submit
from farm.campaign.validate import read_events, sample_event_ids
from farm.campaign.worker import shard_path
from farm.errors import FarmError
from farm.formats.reader import read_sample, read_showers, write_sample
from farm.formats.shower_rows import ShowerSource
from farm.formats.showers_parquet import metadata, read_showers_parquet
from farm.specs import parse_job

PLAN = {"events": 2_000, "shard_size": 500}
SHARDS = 4


def _job(name: str, layout: str | None = None, **resources):
    res = {"actors": 1, "batch_size": 10_000, "writers": 1, **resources}
    extra = {"parquet_layout": layout} if layout else {}
    return job(name, resources=res, **PLAN, **extra)


def _shard(campaign, shard_id: int) -> str:
    return campaign.path(shard_path("parquet", shard_id))


@pytest.fixture(scope="module")
def dense_and_sparse(campaign_store):
    """The same spec and seed run dense and sparse: ((campaign, summary), (campaign, summary))."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FARM_HOME", str(campaign_store[0]))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        dense = submit(_job("layout-dense"))
        sparse = submit(_job("layout-sparse", "sparse"))
        return (dense, execute(dense.id)), (sparse, execute(sparse.id))


def test_sparse_shards_densify_to_the_dense_campaign(in_store, dense_and_sparse):
    (dense, dense_summary), (sparse, sparse_summary) = dense_and_sparse
    for i in range(SHARDS):
        schema = pq.read_schema(_shard(sparse, i))
        assert metadata(schema)["layout"] == "sparse"
        assert {"voxel_index", "voxel_energy"} <= set(schema.names)
        assert "showers" not in schema.names
        assert "layout" not in metadata(pq.read_schema(_shard(dense, i)))
        got, want = read_showers_parquet(_shard(sparse, i)), read_showers_parquet(_shard(dense, i))
        for key in ("event_id", "incident_energy", "showers"):
            assert got[key].tobytes() == want[key].tobytes(), (i, key)
    # the checksums hash the (dense) arrays: the same per shard and for the dataset
    assert sparse_summary.dataset_sha256 == dense_summary.dataset_sha256
    sums = [r.content_sha256 for r in manifest.read_records(sparse.output_url)]
    assert sums == [r.content_sha256 for r in manifest.read_records(dense.output_url)]
    # farm's readers take the campaign by id; validation reads rows of the sparse shards
    whole = read_sample(sparse.id)
    assert whole.kind == "showers" and len(whole) == PLAN["events"]
    assert whole.showers.tobytes() == read_showers(dense.id).showers.tobytes()
    ids = sample_event_ids(PLAN["events"], 300, 7)
    picked = read_events(sparse, ids).showers
    assert picked.tobytes() == read_events(dense, ids).showers.tobytes()
    assert np.count_nonzero(picked) > 0


def test_a_sparse_campaign_exports_and_streams_as_the_dense_one(
    in_store, dense_and_sparse, tmp_path
):
    (dense, _), (sparse, _) = dense_and_sparse
    got = export_campaign(sparse.id, str(tmp_path / "sparse.parquet"))
    want = export_campaign(dense.id, str(tmp_path / "dense.parquet"))
    a, b = read_showers_parquet(got), read_showers_parquet(want)
    assert "layout" not in a["metadata"]  # the export is one dense file
    assert a["showers"].tobytes() == b["showers"].tobytes()
    assert np.array_equal(a["event_id"], np.arange(PLAN["events"]))
    source = ShowerSource(sparse.id)  # what training and streamed evaluation read
    assert (source.n, source.n_voxels) == (PLAN["events"], b["showers"].shape[1])


def test_export_layout_sparse_is_lossless_and_smaller_whatever_the_shards(
    in_store, dense_and_sparse, tmp_path
):
    (dense, _), (sparse, _) = dense_and_sparse
    dense_file = export_campaign(dense.id, str(tmp_path / "dense.parquet"))
    want = read_showers_parquet(dense_file)
    for campaign in (dense, sparse):
        url = export_campaign(campaign.id, str(tmp_path / f"{campaign.id}.parquet"), None, "sparse")
        schema = pq.read_schema(url)
        assert metadata(schema)["layout"] == "sparse" and "showers" not in schema.names
        assert pq.ParquetFile(url).metadata.num_row_groups == SHARDS  # a row group per shard
        got = read_showers_parquet(url)
        for key in ("event_id", "incident_energy", "showers"):
            assert got[key].tobytes() == want[key].tobytes(), (campaign.id, key)
        assert os.path.getsize(url) < os.path.getsize(dense_file)


def test_export_layout_refuses_what_it_cannot_lay_out(in_store, dense_and_sparse, tmp_path):
    (dense, _), _ = dense_and_sparse
    out = tmp_path / "x.h5"
    with pytest.raises(FarmError, match=r"--layout sparse lays out voxel showers in Parquet"):
        export_campaign(dense.id, str(out), None, "sparse")
    assert not out.exists()


def test_the_layout_is_recorded_and_dense_campaign_json_is_unchanged(in_store, dense_and_sparse):
    (dense, _), (sparse, _) = dense_and_sparse
    assert records.load(sparse.id).job.parquet_layout == "sparse"
    assert records.load(dense.id).job.parquet_layout == "dense"
    stored = json.loads(store.read_text(records.campaign_url(dense.id, records.CAMPAIGN_JSON)))
    assert "parquet_layout" not in stored["job"]  # a default job records what it did before
    stored = json.loads(store.read_text(records.campaign_url(sparse.id, records.CAMPAIGN_JSON)))
    assert stored["job"]["parquet_layout"] == "sparse"


def test_resumed_sparse_campaign_writes_each_event_once(in_store, dense_and_sparse):
    reference = dense_and_sparse[1][1]
    campaign = submit(_job("sparse-resumed", "sparse", max_shard_retries=0))
    blocked = _shard(campaign, 2)  # a folder where shard 2's file goes: its every write fails
    os.makedirs(blocked)
    with pytest.raises(CampaignFailed, match="shard 2 failed 1 times"):
        execute(campaign.id)
    first = {r.shard: r for r in manifest.read_records(campaign.output_url)}
    assert 2 not in first and first  # no record without its file; others committed
    mtimes = {i: os.stat(_shard(campaign, i)).st_mtime_ns for i in first}
    os.rmdir(blocked)
    summary = execute(campaign.id)  # resume: only the shards without a record are generated
    recs = manifest.read_records(campaign.output_url)
    assert [r.shard for r in recs] == list(range(SHARDS))
    for r in recs:
        if r.shard in first:  # committed before the failure: neither rewritten nor recommitted
            assert r.committed_at == first[r.shard].committed_at
            assert os.stat(_shard(campaign, r.shard)).st_mtime_ns == mtimes[r.shard]
    ids = np.concatenate([read_showers_parquet(_shard(campaign, i))["event_id"] for i in range(4)])
    assert np.array_equal(ids, np.arange(PLAN["events"]))  # each event once, in order
    assert all(metadata(pq.read_schema(_shard(campaign, i)))["layout"] == "sparse" for i in first)
    assert summary.events == PLAN["events"]
    assert summary.dataset_sha256 == reference.dataset_sha256


def test_sparse_is_refused_for_hdf5_writes(in_store, dense_and_sparse, tmp_path):
    dense = dense_and_sparse[0][0]
    sample = read_showers(_shard(dense, 0), dense.geometry)
    with pytest.raises(FarmError, match=r"x\.h5: the sparse layout is one of voxel showers"):
        write_sample(str(tmp_path / "x.h5"), sample, layout="sparse")
    assert not (tmp_path / "x.h5").exists()


@pytest.mark.parametrize(
    ("kind", "conditions"),
    [
        ("jets", {"distribution": "jet-truth", "url": "jets.parquet"}),
        ("points", {"distribution": "discrete", "values": list(POINT_ENERGIES)}),
    ],
)
def test_sparse_is_refused_for_models_without_voxel_showers(
    tmp_path, monkeypatch, kind, conditions
):
    monkeypatch.setenv("FARM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    model = tiny_jet_model() if kind == "jets" else tiny_point_model()
    register_model(kind, model, kind, tmp_path)
    doc = {
        "kind": "campaign",
        "name": f"sparse-{kind}",
        "model": f"{kind}@candidate",
        "events": 20,
        "shard_size": 10,
        "conditions": conditions,
        "parquet_layout": "sparse",
    }
    with pytest.raises(FarmError) as err:
        submit(parse_job(doc, "test", kind="campaign"))
    message = str(err.value)
    assert message == (
        f"sparse-{kind}: parquet_layout: 'sparse' is a layout of voxel showers, but model "
        f"{kind}/1 generates {kind}; drop parquet_layout (or use 'dense')"
    )
    assert not (tmp_path / "home" / "campaigns").exists()
