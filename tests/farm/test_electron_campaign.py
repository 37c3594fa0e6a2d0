"""Campaigns of a set model conditioned on the scattered electron over DIS events (docs/events.md)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from tiny_kinds import SET_SLOTS, register_model, tiny_electron_model

from farm import records, registry
from farm.data.events import EventGenConfig, generate_events
from farm.errors import FarmError
from farm.formats.events import write_events_parquet
from farm.samples import ELECTRON_COLUMNS, EventSample
from farm.specs import parse_job

N_FILE = 30


@pytest.fixture(scope="module")
def dis() -> EventSample:
    return generate_events(EventGenConfig("dis", N_FILE), seed=4)


def _doc(url: str, **conditions) -> dict:
    return {
        "kind": "campaign",
        "name": "eic-campaign",
        "model": "tiny-eic@candidate",
        "events": 40,
        "shard_size": 16,
        "seed": 4,
        "conditions": {"distribution": "event-truth", "url": url, **conditions},
        "resources": {"actors": 1, "batch_size": 64},
    }


def test_campaign_takes_the_electron_of_event_i_mod_n(ray_session, farm_home, tmp_path, dis):
    from farm.campaign.run import execute, submit
    from farm.formats.reader import read_events, read_sample

    register_model("tiny-eic", tiny_electron_model(), "events", tmp_path)
    assert dis.truth_counts.max() > SET_SLOTS  # a truth-set check would refuse this file
    folder = tmp_path / "dis"
    folder.mkdir()
    write_events_parquet(str(folder / "part-0.parquet"), dis.subset(np.arange(18)))
    write_events_parquet(str(folder / "part-1.parquet"), dis.subset(np.arange(18, N_FILE)))
    campaign = submit(parse_job(_doc(str(folder)), "test", kind="campaign"))
    summary = execute(campaign.id)
    assert summary.events == 40 and summary.shards == 3
    data = read_sample(campaign.id)
    assert data.kind == "events" and sorted(data.event_id) == list(range(40))  # each id once
    got = data.subset(np.argsort(data.event_id))
    expect = read_events(str(folder)).subset(np.arange(40) % N_FILE)  # the file's events
    for c in ELECTRON_COLUMNS:
        np.testing.assert_array_equal(got.event[c], expect.event[c], err_msg=c)
    np.testing.assert_array_equal(got.truth_counts, expect.truth_counts)  # truth kept as is
    assert (got.reco_counts <= SET_SLOTS).all() and got.reco_counts.sum() > 0
    # the reco sets are the model's for those electrons, shard seed for shard seed
    model = registry.load("tiny-eic@candidate").model
    for i in range(campaign.plan.n_shards):
        shard = campaign.plan.shard(i)
        cond = torch.from_numpy(expect.subset(np.arange(shard.start, shard.stop)).electron_inputs())
        x = model.generate(cond, generator=torch.Generator().manual_seed(shard.seed)).numpy()
        pt = x.reshape(shard.n, SET_SLOTS, 4)[..., 0]
        np.testing.assert_array_equal((pt > 0).sum(1), got.reco_counts[shard.start : shard.stop])


def test_files_without_the_electron_and_truncate_are_refused_at_submit(
    farm_home, tmp_path, capsys, dis
):
    from farm.cli import main

    register_model("tiny-eic", tiny_electron_model(), "events", tmp_path)
    full = write_events_parquet(str(tmp_path / "dis.parquet"), dis)
    bad = str(tmp_path / "old.parquet")
    pq.write_table(pq.read_table(full).drop_columns(list(ELECTRON_COLUMNS)), bad)
    path = tmp_path / "campaign.yaml"
    path.write_text(json.dumps(_doc(bad)))  # JSON is YAML
    assert main(["campaign", "submit", str(path)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    missing = "['electron_e', 'electron_pt', 'electron_eta', 'electron_phi']"
    assert len(err) == 1 and f"{bad}: no column(s) {missing}" in err[0], err
    from farm.campaign.run import submit

    with pytest.raises(FarmError, match=r"conditions.truncate: .* nothing to truncate"):
        submit(parse_job(_doc(full, truncate=True), "test", kind="campaign"))
    assert records.list_ids() == []  # nothing stored


def test_serve_refuses_an_electron_model_in_one_line(farm_home, tmp_path, dis):
    from farm.serve.api import ELECTRON_REFUSED, Job, Particle, event_truth
    from farm.serve.app import ServeOptions, build
    from farm.serve.replica import ModelServer

    register_model("tiny-eic", tiny_electron_model(), "events", tmp_path)
    with pytest.raises(FarmError, match=r"^model tiny-eic/1: conditioned on the scattered"):
        build(["tiny-eic@candidate"], ServeOptions())
    # a replica whose alias moved to such a version answers 400 with the same line
    stub = SimpleNamespace(loaded=registry.load("tiny-eic@candidate"))
    truth = event_truth([[Particle(pt=5.0, eta=0.1, phi=0.2, pdg=211, charge=1)]])
    result = ModelServer.check(stub, Job("events", truth, None, None, 1, False))
    assert result.status == 400 and ELECTRON_REFUSED in result.error
