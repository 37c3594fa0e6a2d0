"""Writer slots per campaign actor: the same dataset for 0, 1 or 2 writers, failures redo a shard."""

from __future__ import annotations

import os

import pytest
from test_campaign import assert_complete, job, read_dataset

from farm import faults, records, store
from farm.campaign import manifest
from farm.campaign.run import CampaignFailed, execute, submit
from farm.campaign.worker import shard_path
from farm.errors import FarmError

PLAN = {"events": 4_000, "shard_size": 500}


def _writers(name: str, writers: int, in_flight: int | None = None, **extra):
    res = {"actors": 1, "batch_size": 10_000, "writers": writers}
    if in_flight is not None:
        res["max_in_flight"] = in_flight
    return job(name, resources=res, **PLAN, **extra)


@pytest.fixture(scope="module")
def one_writer(campaign_store):
    """The campaign of PLAN with one writer slot (today's layout): what every variant must match."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FARM_HOME", str(campaign_store[0]))
        campaign = submit(_writers("one-writer", 1))
        return campaign, execute(campaign.id)


@pytest.mark.parametrize(
    ("writers", "in_flight"),
    [
        (2, 3),
        pytest.param(0, None, marks=pytest.mark.slow),
        pytest.param(2, 5, marks=pytest.mark.slow),
    ],
)
def test_writer_slots_give_the_same_dataset_exactly_once(in_store, one_writer, writers, in_flight):
    reference, ref_summary = one_writer
    campaign = submit(_writers(f"writers-{writers}-{in_flight}", writers, in_flight))
    summary = execute(campaign.id)
    data = assert_complete(campaign, PLAN["events"])
    assert summary.dataset_sha256 == ref_summary.dataset_sha256
    shards = [r.content_sha256 for r in manifest.read_records(campaign.output_url)]
    assert shards == [r.content_sha256 for r in manifest.read_records(reference.output_url)]
    ref_data = read_dataset(reference.output_url)
    for key, values in data.items():
        assert values.tobytes() == ref_data[key].tobytes(), key
    recorded = records.load(campaign.id).job.resources
    assert (recorded.writers, recorded.max_in_flight) == (writers, in_flight or writers + 1)


def test_max_in_flight_below_the_writer_slots_is_refused():
    with pytest.raises(FarmError) as err:
        _writers("too-few", 2, 2)
    assert "max_in_flight (2) must be at least writers + 1 (3)" in str(err.value)


def test_writer_killed_mid_write_redoes_its_shard_only(in_store, one_writer, tmp_path, monkeypatch):
    kills = tmp_path / "kills"
    monkeypatch.setenv(faults.KILL_ENV, f"writing:{kills}")
    campaign = submit(_writers("writer-killed", 2, 3))
    summary = execute(campaign.id)
    assert faults.kills_injected(str(kills)) == ["writing"]
    assert records.read_status(campaign.id).actor_restarts == 1
    assert summary.dataset_sha256 == one_writer[1].dataset_sha256
    assert_complete(campaign, PLAN["events"])
    parquet = campaign.path("parquet")
    assert sorted(os.listdir(parquet)) == [f"shard-{i:08d}.parquet" for i in range(8)]


def test_failing_writer_fails_its_shard_clearly_and_resume_completes(in_store, one_writer):
    doc = {"actors": 1, "batch_size": 10_000, "writers": 2, "max_shard_retries": 0}
    campaign = submit(job("writer-fails", resources=doc, **PLAN))
    # a folder where shard 2's file must go: every write of that shard fails (IsADirectoryError)
    blocked = campaign.path(shard_path("parquet", 2))
    os.makedirs(blocked)
    with pytest.raises(CampaignFailed) as err:
        execute(campaign.id)
    assert "shard 2 failed 1 times" in str(err.value)
    assert "writing" in str(err.value) and "shard-00000002.parquet" in str(err.value)
    assert 2 not in manifest.committed_ids(campaign.output_url)  # no record without its file
    assert records.read_status(campaign.id).state == "failed"
    os.rmdir(blocked)
    summary = execute(campaign.id)  # resume: only the shards without a record are generated
    assert summary.dataset_sha256 == one_writer[1].dataset_sha256
    assert_complete(campaign, PLAN["events"])
    assert store.exists(campaign.path(shard_path("parquet", 2)))
