"""Events through farm train, the registry and farm generate (set-to-set model, DIS truth sets)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from farm import registry
from farm.data.events import EventGenConfig, generate_events
from farm.errors import FarmError
from farm.formats.events import read_events_parquet, write_events_parquet
from farm.samples import pad_sets
from farm.specs import load_job, parse_job
from farm.train import run_training

SLOTS = 24


@pytest.fixture(scope="module")
def dis_file(tmp_path_factory) -> str:
    url = str(tmp_path_factory.mktemp("events") / "dis.parquet")
    return write_events_parquet(url, generate_events(EventGenConfig("dis", 240), seed=5))


def tiny_events_job(url: str) -> object:
    doc = load_job("jobs/train-events-ttbar-flow.yaml").model_dump(mode="json")
    doc.update(
        name="tiny-events",
        data={"source": "events", "url": url, "max_truth": SLOTS, "max_reco": SLOTS,
              "truncate": True},
        model={"kind": "sets", "width": 16, "heads": 2, "layers": 1,
               "sampler": {"name": "euler", "nfe": 2}},
        optim={"epochs": 2, "batch_size": 32, "lr": 2e-3, "warmup_steps": 2},
        resources={"workers": 1, "use_gpu": False},
    )  # fmt: skip
    return parse_job(doc, "test", kind="train")


def test_padding_refuses_or_truncates_by_pt():
    counts = np.array([3, 1])
    values = {"pt": np.array([1.0, 5.0, 3.0, 2.0]), "eta": np.array([0.125, 0.5, 0.25, 0.75])}
    with pytest.raises(FarmError, match=r"1 event.* more than 2 reco particles .*--truncate"):
        pad_sets(counts, values, ("pt", "eta"), 2, "reco")
    out = pad_sets(counts, values, ("pt", "eta"), 2, "reco", truncate=True)
    np.testing.assert_array_equal(out[0], [[5.0, 0.5], [3.0, 0.25]])  # highest pT first
    np.testing.assert_array_equal(out[1], [[2.0, 0.75], [0.0, 0.0]])  # padding is zero


def test_job_file_parses_and_kinds_must_match(dis_file):
    job = load_job("jobs/train-events-ttbar-flow.yaml")
    assert job.model.kind == "sets" and job.data.source == "simulated_events"
    doc = job.model_dump(mode="json")
    doc["model"] = {"kind": "point_showers"}
    with pytest.raises(FarmError, match="'sets'"):
        parse_job(doc, "test", kind="train")


def test_train_register_and_generate_events(ray_session, farm_home, tmp_path, capsys, dis_file):
    from farm.cli import main

    run_training(tiny_events_job(dis_file))
    card = registry.show("tiny-events@candidate")["card"]
    assert card["data"]["kind"] == "events" and card["config"]["kind"] == "sets"
    sets = card["data"]["sets"]
    assert (sets["max_truth"], sets["max_reco"], sets["truncate"]) == (SLOTS, SLOTS, True)
    assert sets["truncated_events"] > 0  # DIS events above 24 particles were truncated

    gen = tmp_path / "gen.parquet"
    argv = ["generate", "tiny-events@candidate", "--conditions", dis_file, "--out", str(gen)]
    assert main(argv) != 0
    assert f"more than {SLOTS} truth particles" in capsys.readouterr().err
    assert not gen.exists()  # refused before anything was written
    assert main([*argv, "--truncate", "--seed", "3"]) == 0, capsys.readouterr().err
    sample, truth = read_events_parquet(str(gen)), read_events_parquet(dis_file)
    assert len(sample) == len(truth)
    np.testing.assert_array_equal(sample.truth_counts, truth.truth_counts)  # truth kept as is
    np.testing.assert_array_equal(sample.truth["pt"], truth.truth["pt"])
    assert (sample.reco_counts <= SLOTS).all() and (sample.reco["pt"] > 0).all()
    assert sample.reco_counts.std() > 0  # multiplicities come from the event model, per event
    owner = np.repeat(np.arange(len(sample)), sample.reco_counts)
    ht = np.bincount(owner, weights=sample.reco["pt"], minlength=len(sample))
    np.testing.assert_allclose(sample.event["ht"], ht, rtol=1e-5)
    charged = np.isin(sample.reco["class"], [0, 1, 2])
    assert (np.abs(sample.reco["charge"][~charged]) == 0).all()

    ev = tmp_path / "ev"
    argv = ["evaluate", str(gen), dis_file, "--out", str(ev), "--no-classifier"]
    assert main(argv) == 0, capsys.readouterr().err
    metrics = json.loads((ev / "metrics.json").read_text())["metrics"]
    assert {"sep/n_reco", "sep/met", "sep_particle_log_pt"} <= set(metrics)

    # a campaign: event i takes truth event i of the file (cyclically), Parquet shards, once
    from farm.campaign.run import execute, submit
    from farm.formats.reader import read_sample

    small = write_events_parquet(str(tmp_path / "truth30.parquet"), truth.subset(np.arange(30)))
    doc = {
        "kind": "campaign",
        "name": "events-campaign",
        "model": "tiny-events@candidate",
        "events": 40,
        "shard_size": 20,
        "seed": 4,
        "conditions": {"distribution": "event-truth", "url": small},
        "resources": {"actors": 1, "batch_size": 64},
    }
    with pytest.raises(FarmError, match="more than 24 truth particles"):
        submit(parse_job(doc, "test", kind="campaign"))
    doc["conditions"]["truncate"] = True
    campaign = submit(parse_job(doc, "test", kind="campaign"))
    summary = execute(campaign.id)
    assert summary.events == 40 and summary.shards == 2
    data = read_sample(campaign.id)
    assert data.kind == "events" and sorted(data.event_id) == list(range(40))
    order = np.argsort(data.event_id)
    expect = truth.subset(np.arange(40) % 30)
    np.testing.assert_array_equal(data.subset(order).truth_counts, expect.truth_counts)
    np.testing.assert_array_equal(data.subset(order).truth["pt"], expect.truth["pt"])
    assert (data.reco_counts <= SLOTS).all()
