"""Campaign validation: a seeded subset of a finished campaign against a reference, gates, MLflow."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml
from test_campaign import assert_complete, job
from tiny_data import tiny_showers

from farm import records, registry, store
from farm.campaign.run import execute, submit
from farm.campaign.validate import read_events, sample_event_ids, validate
from farm.cli import main
from farm.errors import FarmError
from farm.formats.calochallenge import write_calochallenge
from farm.specs import parse_job, resolved

pytestmark = pytest.mark.filterwarnings("ignore::farm.evaluation.checks.SmallSampleWarning")


def small(name: str, model: str, validation: dict, formats=("parquet", "h5")) -> object:
    return job(
        name,
        model=model,
        events=3000,
        shard_size=1000,
        formats=list(formats),
        resources={"actors": 1, "batch_size": 1000},
        validation=validation,
    )


def test_validation_spec_errors():
    base = {
        "kind": "campaign",
        "name": "v",
        "model": "m/1",
        "events": 100,
        "conditions": {"distribution": "log-uniform", "min": 2e3, "max": 5e4},
        "shard_size": 50,
    }
    cases = [
        ({"reference": "simulator", "evnts": 10}, "unknown key 'validation.evnts' (allowed: ref"),
        ({"events": 10}, "missing required key 'validation.reference'"),
        (
            {"reference": "simulator", "events": 200},
            "validation.events (200) is larger than events",
        ),
        ({"reference": "simulator", "events": 2}, "validation.events: Input should be greater"),
        ({"reference": "  "}, "validation.reference: give a reference URL or 'simulator'"),
        ({"reference": "x.h5", "gates": {"sep_mean": {"mx": 1}}}, "unknown key 'validation.gates"),
    ]
    for validation, message in cases:
        with pytest.raises(FarmError) as err:
            parse_job({**base, "validation": validation}, "c.yaml", kind="campaign")
        assert str(err.value).startswith("c.yaml: ") and message in str(err.value), err.value
        assert "\n" not in str(err.value)
    ok = parse_job({**base, "validation": {"reference": "simulator"}}, "c.yaml", kind="campaign")
    assert ok.validation_events == 100 and ok.validation.classifier


def test_submit_refuses_bad_validation(in_store, tmp_path):
    with pytest.raises(FarmError, match="'simulator' needs a model trained on simulated showers"):
        submit(small("v", "tiny@candidate", {"reference": "simulator"}))
    with pytest.raises(FarmError, match=r"nothing\.h5: file not found"):
        submit(small("v", "tiny@candidate", {"reference": str(tmp_path / "nothing.h5")}))
    wrong = tmp_path / "wrong.h5"
    write_calochallenge(str(wrong), np.ones((10, 9), np.float32), np.full(10, 1e4))
    with pytest.raises(FarmError, match="9 voxels per shower"):
        submit(small("v", "tiny@candidate", {"reference": str(wrong)}))
    assert not [c for c in records.list_ids() if c.startswith("v-")]  # nothing recorded


def test_sample_is_seeded_and_reads_only_those_events(in_store):
    ids = sample_event_ids(10**9, 1000, seed=4)
    assert len(np.unique(ids)) == 1000 and ids.max() < 10**9
    assert np.array_equal(ids, sample_event_ids(10**9, 1000, seed=4))
    assert not np.array_equal(ids, sample_event_ids(10**9, 1000, seed=5))
    assert len(sample_event_ids(50, 100, seed=0)) == 50


def test_simulator_validation_fails_its_gate_but_keeps_the_data(in_store, tmp_path, capsys):
    gates = {"sep/e_ratio": {"max": 1e-6}}
    spec = {"reference": "simulator", "events": 800, "seed": 5, "gates": gates, "classifier": False}
    path = tmp_path / "vsim.yaml"
    path.write_text(yaml.safe_dump(resolved(small("vsim", "tiny-sim@candidate", spec, ["h5"]))))
    assert main(["campaign", "submit", str(path)]) == 1  # failed validation: exit code 1
    assert "validated: fail" in capsys.readouterr().out
    (cid,) = [c for c in records.list_ids() if c.startswith("vsim-")]
    campaign = records.load(cid)
    output = campaign.output_url
    doc = json.loads(store.read_text(store.join(output, "validation.json")))
    assert doc["validated"] == "fail" and "sep/e_ratio" in doc["failures"][0]
    assert doc["events"] == 800 and doc["reference_events"] == 1600
    e_ratio = doc["metrics"]["sep/e_ratio"]
    assert math.isfinite(e_ratio["value"]) and 0 <= e_ratio["floor"] < e_ratio["value"] <= 1
    assert "floor" in doc["headline"]["sep/e_ratio"] and "fpd" in doc["headline"]
    assert store.exists(store.join(output, "validation", "report.html"))
    assert doc["logged"] is True
    status = records.read_status(cid)
    assert status.state == "finished" and status.validated == "fail"
    saved = json.loads(store.read_text(store.join(output, "summary.json")))
    assert saved["validation"]["validated"] == "fail" and saved["events"] == 3000
    assert store.exists(store.join(output, "h5", "shard-00000002.h5"))  # nothing deleted
    mv = registry.resolve(f"tiny-sim/{campaign.model.version}")
    assert mv.tags[f"farm.validation.{cid}"] == "fail"
    run = registry.client().get_run(mv.run_id)
    assert run.data.metrics["eval.sep/e_ratio"] == pytest.approx(e_ratio["value"])
    assert main(["campaign", "status", cid]) == 0
    out = capsys.readouterr().out
    assert "validated: fail" in out and "gate failed: sep/e_ratio" in out and "floor" in out
    assert main(["campaign", "ls"]) == 0
    assert "fail" in capsys.readouterr().out


def test_reference_validation_passes_and_reproduces(in_store, tmp_path):
    reference = tmp_path / "ref.h5"
    write_calochallenge(str(reference), *tiny_showers(3000, seed=9), in_store[1])
    spec = {"reference": str(reference), "events": 600, "seed": 2, "classifier": False}
    spec["gates"] = {"sep/e_ratio": {"max": 0.9}}
    campaign = submit(small("vref", "tiny@candidate", spec, formats=["parquet"]))
    summary = execute(campaign.id)
    data = assert_complete(campaign, 3000)
    first = json.loads(store.read_text(store.join(campaign.output_url, "validation.json")))
    assert summary.validation.validated == "pass" and first["reference_events"] == 1200
    assert "auc_low" not in first["metrics"]
    # the validated events are exactly the campaign's rows with those ids
    ids = sample_event_ids(3000, 600, seed=2)
    events = read_events(campaign, ids)
    showers, e_inc = events.showers, events.e_inc
    assert np.array_equal(e_inc, data["incident_energy"][np.argsort(data["event_id"])][ids])
    assert np.array_equal(showers, data["showers"][np.argsort(data["event_id"])][ids])
    # an existing result is reused (also by a resume, which needs no actors)
    assert validate(campaign.id).finished == first["finished"]
    assert execute(campaign.id).validation.validated == "pass"
    # rerun (forced) with the same seed: the same events and the same numbers
    assert main(["campaign", "validate", campaign.id]) == 0
    again = json.loads(store.read_text(store.join(campaign.output_url, "validation.json")))
    assert again["finished"] > first["finished"]
    assert again["event_ids_sha256"] == first["event_ids_sha256"]
    assert again["metrics"] == first["metrics"]
