"""Campaigns of a set model conditioned on the scattered electron over DIS events (docs/events.md)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from tiny_kinds import SET_SLOTS, register_model, tiny_electron_model, tiny_set_model

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


ELECTRONS = [
    {"e": 12.0, "pt": 3.1, "eta": -1.9, "phi": 0.4},
    {"e": 7.5, "pt": 2.2, "eta": -1.6, "phi": -2.8},
    {"e": 15.0, "pt": 1.4, "eta": -3.0, "phi": 3.0},
]
TRUTH = [
    [{"pt": 2.0, "eta": 0.3, "phi": -2.7, "pdg": 211, "charge": 1}],
    [{"pt": 1.5, "eta": 1.0, "phi": 0.5, "pdg": -211, "charge": -1},
     {"pt": 3.0, "eta": 0.8, "phi": 0.3, "pdg": 22, "charge": 0}],
    [{"pt": 1.0, "eta": 2.0, "phi": -0.1, "pdg": 321, "charge": 1}],
]  # fmt: skip


def _served_job(**body):
    from farm.serve.api import GenerateRequest
    from farm.serve.app import ServeOptions, _job

    job = _job(GenerateRequest(**body), ServeOptions())
    assert not hasattr(job, "status_code"), job  # a Job, not a 4xx response
    return job


def test_serve_generates_events_for_scattered_electrons_as_farm_generate(farm_home, tmp_path):
    from farm.cli import main
    from farm.formats.reader import read_events
    from farm.serve.app import ServeOptions, build
    from farm.serve.replica import ModelServer, _sample

    register_model("tiny-eic", tiny_electron_model(), "events", tmp_path)
    build(["tiny-eic@candidate"], ServeOptions())  # served like every other set model
    server = SimpleNamespace(loaded=registry.load("tiny-eic@candidate"))
    job = _served_job(electrons=ELECTRONS, truth=TRUTH, seed=3)
    assert job.condition == "scattered_electron" and ModelServer.check(server, job) is None
    (result,) = _sample(server.loaded, [job])
    assert result.status == 200 and result.header["sets"]["condition"] == "scattered_electron"
    # `farm generate --seed 3` on a DIS file holding these electrons and truth sets
    file_events = job.conditions.subset(np.arange(len(ELECTRONS)))
    file_events.event.update({k: np.zeros(len(ELECTRONS)) for k in ("met_x", "met_y", "ht")})
    conditions = write_events_parquet(str(tmp_path / "dis.parquet"), file_events)
    out = str(tmp_path / "reco.parquet")
    assert main(["generate", "tiny-eic@candidate", "--conditions", conditions, "--out", out,
                 "--seed", "3"]) == 0  # fmt: skip
    want, got = read_events(out), result.sample
    assert np.array_equal(got.reco_counts, want.reco_counts) and want.reco_counts.sum() > 0
    for k in ("pt", "eta", "phi", "class", "charge"):
        assert np.array_equal(got.reco[k], want.reco[k]), k
    np.testing.assert_array_equal(got.event["electron_pt"], [e["pt"] for e in ELECTRONS])
    # without truth the events still generate (charges unknown: 0), the same reco kinematics
    (bare,) = _sample(server.loaded, [_served_job(electrons=ELECTRONS, seed=3)])
    assert np.array_equal(bare.sample.reco["pt"], want.reco["pt"])
    assert (bare.sample.truth_counts == 0).all() and (bare.sample.reco["charge"] == 0).all()


def test_serve_refuses_conditions_the_model_does_not_take_in_one_line(farm_home, tmp_path):
    from pydantic import ValidationError

    from farm.serve.replica import ModelServer

    register_model("tiny-eic", tiny_electron_model(), "events", tmp_path)
    register_model("tiny-sets", tiny_set_model(), "events", tmp_path)
    eic = SimpleNamespace(loaded=registry.load("tiny-eic@candidate"))
    sets = SimpleNamespace(loaded=registry.load("tiny-sets@candidate"))
    refusals = [
        (eic, {"truth": TRUTH}, "tiny-eic/1 is conditioned on the scattered electron: give "
         "'electrons'"),
        (sets, {"electrons": ELECTRONS}, "tiny-sets/1 is conditioned on truth sets: give 'truth'"),
        (eic, {"electrons": ELECTRONS, "truncate": True}, "nothing to truncate"),
    ]  # fmt: skip
    for server, body, text in refusals:
        result = ModelServer.check(server, _served_job(**body))
        assert result.status == 400 and text in result.error and "\n" not in result.error, body
    dis = SimpleNamespace(loaded=registry.load("tiny-eic@candidate"))
    dis.loaded.model.config = dis.loaded.model.config.model_copy(update={"dis_kinematics": True})
    result = ModelServer.check(dis, _served_job(electrons=[{**ELECTRONS[0], "x": 0.01}]))
    assert result.status == 400 and "give q2, y for every electron" in result.error
    with pytest.raises(ValidationError, match=r"electrons has 3 events but truth 1"):
        _served_job(electrons=ELECTRONS, truth=TRUTH[:1])
    with pytest.raises(ValidationError, match=r"give exactly one of energies"):
        _served_job(electrons=ELECTRONS, jets=[{"pt": 300.0, "eta": 0.0, "n": 2}])
