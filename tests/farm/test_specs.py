"""Job specs: every shipped job parses; bad input is one line naming file, key and allowed values."""

from pathlib import Path

import pytest

from farm.errors import FarmError
from farm.specs import (
    CampaignJob,
    DistillJob,
    TrainJob,
    TuneJob,
    load_job,
    parse_job,
    resolved,
)

JOBS = sorted(Path(__file__).resolve().parents[2].joinpath("jobs").glob("*.yaml"))
CAMPAIGN = {
    "kind": "campaign",
    "name": "c",
    "model": "m@a",
    "events": 10,
    "shard_size": 5,
    "conditions": {"distribution": "uniform", "min": 1, "max": 2},
}
"""A valid campaign document the parquet_layout cases change one key of."""


@pytest.mark.parametrize("path", JOBS, ids=[p.name for p in JOBS])
def test_shipped_jobs_parse(path):
    job = load_job(path)
    assert isinstance(job, TrainJob | DistillJob | CampaignJob | TuneJob)
    assert resolved(job)["name"] in (job.name, None)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            {"kind": "train", "name": "x", "optim": {"lrr": 1}},
            "unknown key 'optim.lrr' (allowed: epochs, batch_size, lr,",
        ),
        (
            {"kind": "train", "name": "x", "model": {"network": {"kind": "mlp", "wid": 3}}},
            "unknown key 'model.network.wid' (allowed: kind, width",
        ),
        (
            {"kind": "train", "name": "x", "data": {"source": "calochallenge"}},
            "missing required key 'data.url'",
        ),
        (
            {"kind": "train", "name": "x", "optim": {"precision": "fp16"}},
            "optim.precision: Input should be 'fp32' or 'bf16'",
        ),
        (
            {"kind": "train", "name": "x", "data": {"source": "simulated_showers", "events": 0}},
            "data.events: Input should be greater than 0",
        ),
        (
            {"kind": "train", "name": "x", "data": {"events": 10}},
            "missing required key 'data.source' (allowed: 'simulated_showers', 'calochallenge', 'simulated_jets', 'jets'",
        ),
        (
            {"kind": "train", "name": "x", "data": {"source": "geant5"}},
            "data.source: 'geant5' is not one of: 'simulated_showers', 'calochallenge', 'simulated_jets', 'jets'",
        ),
        (
            {"kind": "train", "name": "x", "model": {"process": {"kind": "nope"}}},
            "model.process.kind: 'nope' is not one of: ",
        ),
        (
            {
                "kind": "campaign",
                "name": "c",
                "model": "m@a",
                "events": -5,
                "shard_size": 1,
                "conditions": {"distribution": "uniform", "min": 1, "max": 2},
            },
            "events: Input should be greater than 0",
        ),
        (
            {
                "kind": "campaign",
                "name": "c",
                "model": "m@a",
                "events": 10,
                "shard_size": 100,
                "conditions": {"distribution": "uniform", "min": 1, "max": 2},
            },
            "shard_size (100) is larger than events (10)",
        ),
        (
            {
                "kind": "campaign",
                "name": "c",
                "model": "m@a",
                "events": 10,
                "shard_size": 0,
                "conditions": {"distribution": "uniform", "min": 1, "max": 2},
            },
            "shard_size: Input should be greater than 0",
        ),
        (
            {
                "kind": "campaign",
                "name": "c",
                "model": "m@a",
                "events": 10,
                "conditions": {"distribution": "log-uniform", "min": 1},
            },
            "conditions: distribution 'log-uniform' needs max",
        ),
        (
            {**CAMPAIGN, "parquet_layout": "coo"},
            "parquet_layout: Input should be 'dense' or 'sparse'",
        ),
        (
            {**CAMPAIGN, "formats": ["h5"], "parquet_layout": "sparse"},
            "parquet_layout: 'sparse' lays out Parquet shards, but formats is [h5]; add parquet",
        ),
        ({"kind": "nope"}, "kind: must be one of train, distill, campaign, tune, got 'nope'"),
        (
            {"kind": "train", "name": "j", "data": {"source": "simulated_jets"}},
            "model.preprocessing.kind: jets need 'pointcloud', got 'shower'",
        ),
        (
            {
                "kind": "train",
                "name": "j",
                "data": {"source": "jets", "url": "x.parquet"},
                "model": {"preprocessing": {"kind": "pointcloud", "n_features": 4}},
            },
            "model.preprocessing.n_features: jets have 3 features per constituent",
        ),
        (
            {
                "kind": "train",
                "name": "s",
                "model": {"preprocessing": {"kind": "pointcloud", "n_features": 3}},
            },
            "model.preprocessing.kind: 'pointcloud' needs jets data",
        ),
        (
            {
                "kind": "train",
                "name": "j",
                "data": {"source": "simulated_jets", "process": "higgs"},
            },
            "data.process: Input should be 'gluon', 'quark', 'top', 'w' or 'z'",
        ),
        (
            {"kind": "distill", "name": "d", "teacher": "m@a", "resources": {"workers": 2}},
            "resources.workers: distillation runs on one worker, got 2",
        ),
        (
            {"kind": "distill", "name": "d", "teacher": "m@@a"},
            "teacher: 'm@@a' is not NAME, NAME@ALIAS or NAME/VERSION",
        ),
        ({"kind": "distill", "name": "d"}, "missing required key 'teacher'"),
        (
            {
                "kind": "campaign",
                "name": "c",
                "model": "jets@candidate",
                "events": 10,
                "shard_size": 5,
                "conditions": {"distribution": "jet-truth"},
            },
            "conditions: distribution 'jet-truth' needs url",
        ),
        (
            {"kind": "distill", "name": "d", "teacher": "m", "distill": {"n_step": 3}},
            "unknown key 'distill.n_step' (allowed: consistency, n_steps,",
        ),
    ],
)
def test_bad_specs_name_the_key(doc, message):
    with pytest.raises(FarmError) as err:
        parse_job(doc, "job.yaml")
    text = str(err.value)
    assert text.startswith("job.yaml: ")
    assert message in text
    assert "\n" not in text


def test_malformed_yaml_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: train\nname: [unclosed\n")
    with pytest.raises(FarmError, match=r"bad.yaml: malformed YAML at line \d+"):
        load_job(bad)


def test_missing_file(tmp_path):
    with pytest.raises(FarmError, match="job file not found"):
        load_job(tmp_path / "absent.yaml")


def test_wrong_kind_for_command(tmp_path):
    job = tmp_path / "t.yaml"
    job.write_text("kind: train\nname: x\n")
    with pytest.raises(FarmError, match="this command takes a 'campaign' job"):
        load_job(job, kind="campaign")


def test_resolved_spec_fills_defaults():
    spec = resolved(parse_job({"kind": "train", "name": "x"}, "job.yaml"))
    assert spec["optim"]["epochs"] >= 1
    assert spec["model"]["process"]["kind"] == "flow_matching"
    assert spec["data"]["split"] == {"train": 0.7, "val": 0.1, "seed": 0}
