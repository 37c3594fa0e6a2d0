"""Event campaigns whose truth is generated with Pythia in each shard (`distribution: pythia`)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from campaign_state import forget_shards
from tiny_kinds import (
    SET_SLOTS,
    register_model,
    tiny_electron_model,
    tiny_jet_model,
    tiny_set_model,
)

from farm import records, store
from farm.campaign import manifest
from farm.campaign.conditions import pythia_config, shard_pythia_truth
from farm.data.events import EventGenConfig, generate_events, pythia_version
from farm.errors import FarmError
from farm.samples import ELECTRON_COLUMNS
from farm.sharding import Plan
from farm.specs import CampaignJob, PythiaTruth, parse_job

TRUTH_KEYS = ("pt", "eta", "phi", "pdg", "charge")


def _doc(model: str = "tiny-sets@candidate", pythia: dict | None = None, **conditions) -> dict:
    return {
        "kind": "campaign",
        "name": "pythia-campaign",
        "model": model,
        "events": 24,
        "shard_size": 10,
        "seed": 7,
        "conditions": {"distribution": "pythia", "pythia": pythia or {"process": "dis"},
                       **conditions},
        "resources": {"actors": 1, "batch_size": 64},
    }  # fmt: skip


def _assert_same_truth(got, want) -> None:
    """The same truth sets (`want` cast to the dtypes `got` holds, e.g. float32 of a file)."""
    np.testing.assert_array_equal(got.truth_counts, want.truth_counts)
    for k in TRUTH_KEYS:
        expect = np.asarray(want.truth[k]).astype(got.truth[k].dtype)
        np.testing.assert_array_equal(got.truth[k], expect, err_msg=k)


def test_a_shard_seed_gives_the_same_truth_as_farm_data_events():
    spec = PythiaTruth(process="dis", q2_min=20.0)
    plan = Plan(30, 12, 5)
    shard = plan.shard(1)
    first, again = shard_pythia_truth(spec, shard), shard_pythia_truth(spec, shard)
    assert len(first) == shard.n and list(first.event_id) == list(range(12, 24))
    _assert_same_truth(again, first)
    for c in ELECTRON_COLUMNS:  # DIS truth carries the scattered electron
        np.testing.assert_array_equal(again.event[c], first.event[c])
    # what `farm data events --process dis --q2-min 20 --seed 5 --shard-size 12` holds in shard 1
    data_events = generate_events(EventGenConfig("dis", shard.n, q2_min=20.0), shard.pythia_seed)
    _assert_same_truth(first, data_events)
    _assert_same_truth(shard_pythia_truth(spec, shard, 4), first.subset(np.arange(4)))  # a prefix
    other = shard_pythia_truth(spec, plan.shard(0))
    assert not np.array_equal(other.truth_counts, first.truth_counts)  # its own seed


@pytest.mark.parametrize(
    ("conditions", "message"),
    [
        ({"pythia": {"process": "dijet"}},
         "conditions.pythia.process: Input should be 'qcd', 'ttbar' or 'dis'"),
        ({"pythia": {"process": "qcd", "q2_min": 5}},
         "conditions.pythia: q2_min applies to process dis, not 'qcd'"),
        ({"pythia": {"process": "dis", "sqrt_s": 140}},
         "conditions.pythia: sqrt_s applies to processes qcd, ttbar, not 'dis'"),
        ({"pythia": {"process": "qcd", "pt_hat_min": 300, "pt_hat_max": 200}},
         "conditions.pythia: pt_hat_min (300.0) must be below pt_hat_max (200.0)"),
        ({"pythia": {"process": "dis", "seed": 3}}, "unknown key 'conditions.pythia.seed' "
         "(allowed: process, pt_hat_min"),
        ({"pythia": {"process": "dis"}, "url": "x.parquet"},
         "conditions: distribution 'pythia' takes no url (it takes pythia)"),
        ({"pythia": None}, "conditions: distribution 'pythia' needs pythia"),
    ],
)  # fmt: skip
def test_the_spec_refuses_bad_pythia_blocks_in_one_line(conditions, message):
    doc = _doc()
    doc["conditions"] = {"distribution": "pythia", **conditions}
    with pytest.raises(FarmError) as err:
        parse_job(doc, "job.yaml", kind="campaign")
    text = str(err.value)
    assert text.startswith("job.yaml: ") and message in text and "\n" not in text, text


def test_a_pythia_block_belongs_to_distribution_pythia_only():
    doc = _doc(distribution="event-truth", url="x.parquet")
    with pytest.raises(FarmError, match=r"distribution 'event-truth' takes no pythia"):
        parse_job(doc, "job.yaml", kind="campaign")
    job = parse_job(_doc(), "job.yaml", kind="campaign")
    assert pythia_config(job.conditions.pythia, 3).truth_eta_max == 4.5  # the process default
    for pythia in ({"process": "dis", "q2_min": 25.0}, {"process": "qcd", "pt_hat_max": 500.0}):
        job = parse_job(_doc(pythia=pythia), "job.yaml", kind="campaign")
        assert CampaignJob.model_validate_json(job.model_dump_json()) == job  # campaign.json
    plain = _doc(distribution="event-truth", url="x.parquet", pythia=None)
    plain["conditions"].pop("pythia")
    dumped = parse_job(plain, "job.yaml", kind="campaign").model_dump(mode="json")
    assert "pythia" not in dumped["conditions"]  # other campaigns' records are unchanged


def test_submit_refuses_in_one_line_and_stores_nothing(farm_home, tmp_path, capsys):
    from farm.cli import main

    register_model("tiny-sets", tiny_set_model(), "events", tmp_path)
    register_model("tiny-eic", tiny_electron_model(), "events", tmp_path)
    register_model("tiny-jets", tiny_jet_model(), "jets", tmp_path)
    refusals = [
        (_doc("tiny-jets@candidate"), "conditions.distribution: model tiny-jets/1 generates jets "
         "and takes jet-truth (a jets file), got 'pythia'"),
        (_doc("tiny-eic@candidate", {"process": "qcd"}), "conditions.pythia.process: model "
         "tiny-eic/1 is conditioned on the scattered electron, which only process 'dis' has "
         "(allowed: dis), got 'qcd'"),
        (_doc("tiny-eic@candidate", truncate=True), "conditions.truncate: model tiny-eic/1 is "
         "conditioned on the scattered electron"),
        (_doc(pythia={"process": "qcd", "pt_hat_max": 50}), "pythia-campaign: conditions.pythia: "
         "pT-hat window must satisfy 0 <= min < max, got [100.0, 50.0] GeV"),
        (_doc(), "conditions.truncate: Pythia dis truth has events of up to"),
    ]  # fmt: skip
    path = tmp_path / "campaign.yaml"
    for doc, message in refusals:
        path.write_text(json.dumps(doc))  # JSON is YAML
        assert main(["campaign", "submit", str(path)]) != 0
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert f"more than model tiny-sets/1's {SET_SLOTS} truth slots" in err[0]
    assert records.list_ids() == []  # nothing stored


def test_truth_set_campaign_generates_truth_once_and_resumes_bit_for_bit(
    ray_session, farm_home, tmp_path
):
    from farm.campaign.run import execute, submit
    from farm.formats.reader import read_sample

    register_model("tiny-sets", tiny_set_model(), "events", tmp_path)
    campaign = submit(parse_job(_doc(truncate=True), "test", kind="campaign"))
    generator = campaign.truth_generator
    assert generator.pythia8mc == pythia_version() and generator.config["process"] == "dis"
    assert generator.config["q2_min"] == 10.0 and generator.config["truth_pt_min"] == 0.05
    assert "SeedSequence([campaign seed, shard id])" in generator.seeds
    assert records.load(campaign.id).truth_generator == generator  # in campaign.json
    clean = execute(campaign.id)
    assert clean.events == 24 and clean.shards == 3
    data = read_sample(campaign.id)
    assert data.kind == "events" and sorted(data.event_id) == list(range(24))  # each id once
    got = data.subset(np.argsort(data.event_id))
    spec = PythiaTruth(process="dis")
    for rec in manifest.read_records(campaign.output_url):
        shard = campaign.plan.shard(rec.shard)
        assert (rec.pythia_seed, rec.pythia8mc) == (shard.pythia_seed, pythia_version())
        assert rec.seconds_truth > 0
        part = got.subset(np.arange(shard.start, shard.stop))
        _assert_same_truth(part, shard_pythia_truth(spec, shard))  # truth kept whole, untruncated
        meta = json.loads(pq.read_schema(campaign.path(rec.files["parquet"].path)).metadata[
            b"farm.events"])  # fmt: skip
        assert meta["truth"]["pythia_seed"] == shard.pythia_seed
        assert f"Random:seed = {shard.pythia_seed}" in meta["truth"]["pythia_settings"]
    assert got.truth_counts.max() > SET_SLOTS  # truncated to the slots for the model only
    assert (got.reco_counts <= SET_SLOTS).all() and got.reco_counts.sum() > 0
    manifest_table = pq.read_table(store.join(campaign.output_url, "manifest.parquet"))
    assert {"pythia_seed", "pythia8mc"} <= set(manifest_table.column_names)

    forget_shards(campaign, [1, 2])  # a driver died after shard 0: resume regenerates 1 and 2
    resumed = execute(campaign.id)
    assert records.read_status(campaign.id).shards_skipped == 1
    assert resumed.dataset_sha256 == clean.dataset_sha256
    again = read_sample(campaign.id)
    _assert_same_truth(again.subset(np.argsort(again.event_id)), got)


def test_electron_campaign_takes_the_electron_of_its_generated_dis_events(
    ray_session, farm_home, tmp_path
):
    from farm.campaign.run import execute, submit
    from farm.formats.reader import read_sample

    register_model("tiny-eic", tiny_electron_model(), "events", tmp_path)
    pythia = {"process": "dis", "q2_min": 25.0, "electron_energy": 10.0, "mpi": False}
    campaign = submit(parse_job(_doc("tiny-eic@candidate", pythia), "test", kind="campaign"))
    assert campaign.truth_generator.config["electron_energy"] == 10.0
    summary = execute(campaign.id)
    assert summary.events == 24
    data = read_sample(campaign.id)
    got = data.subset(np.argsort(data.event_id))
    spec = PythiaTruth(**pythia)
    want = [shard_pythia_truth(spec, s) for s in campaign.plan.shards()]
    for c in ELECTRON_COLUMNS:
        expect = np.concatenate([w.event[c] for w in want]).astype(np.float32)
        np.testing.assert_array_equal(got.event[c], expect, err_msg=c)
    assert (got.event["q2"] > 25.0).all()
