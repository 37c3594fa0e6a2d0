"""The operator's view: `farm campaign submit --detach | status | ls | cancel | resume` as processes.

Each command runs as a subprocess with RAY_ADDRESS set to this session's Ray, so drivers join the
session cluster instead of starting their own.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest
import yaml
from test_campaign import assert_complete

from farm import records, store
from farm.campaign import manifest
from farm.campaign.run import submit
from farm.specs import parse_job

FINAL = ("finished", "failed", "cancelled")


@pytest.fixture
def cli(in_store, tmp_path):
    """Run `farm ...` in a subprocess joined to the session's Ray; returns CompletedProcess."""
    import ray

    env = {
        **os.environ,
        "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
        "COLUMNS": "250",  # rich tables unwrapped
    }

    def run(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "farm.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    run.env = env
    started: list[str] = []
    run.started = started
    yield run
    for cid in started:  # never leave a detached driver running after a failed test
        if records.read_status(cid).state not in FINAL:
            records.request_cancel(cid)


def job_doc(name: str, events: int, shard_size: int, nfe: int = 2) -> dict:
    return {
        "kind": "campaign",
        "name": name,
        "model": "tiny@candidate",
        "events": events,
        "shard_size": shard_size,
        "nfe": nfe,
        "seed": 5,
        "conditions": {"distribution": "log-uniform", "min": 2e3, "max": 5e4},
        "formats": ["parquet"],
        "resources": {"actors": 2, "batch_size": shard_size},
    }


def submit_detached(cli, tmp_path, doc: dict) -> str:
    path = tmp_path / f"{doc['name']}.yaml"
    path.write_text(yaml.safe_dump(doc))
    before = set(records.list_ids())
    proc = cli("campaign", "submit", str(path), "--detach")
    assert proc.returncode == 0, proc.stderr
    (cid,) = set(records.list_ids()) - before
    cli.started.append(cid)
    assert re.search(rf"campaign {re.escape(cid)}: {doc['events']:,} events", proc.stdout)
    assert f"farm campaign status {cid}" in proc.stdout
    return cid


def status_json(cli, cid: str) -> dict:
    proc = cli("campaign", "status", cid, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def wait_until(predicate, what: str, timeout: float = 150, every: float = 0.1):
    deadline = time.time() + timeout
    while not (value := predicate()):
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(every)
    return value


def test_submit_detach_returns_at_once_and_the_background_driver_finishes(cli, tmp_path):
    cid = submit_detached(cli, tmp_path, job_doc("cli-detach", 60_000, 10_000))
    # The command came back before any work was done: the driver runs on in the background.
    assert records.read_status(cid).state == "submitted"
    assert manifest.committed_ids(records.load(cid).output_url) == set()

    wait_until(lambda: records.read_status(cid).state in FINAL, "the detached driver")
    status = status_json(cli, cid)
    assert status["state"] == "finished", status
    assert status["shards_committed"] == status["shards_total"] == 6
    assert status["events_committed"] == status["events_total"] == 60_000
    assert status["summary"]["events"] == 60_000
    assert_complete(records.load(cid), 60_000)
    assert "done 60,000 events in 6 shards" in store.read_text(
        records.campaign_url(cid, "driver.log")
    )


def test_cancel_stops_a_running_campaign_and_resume_completes_it(cli, tmp_path):
    # 40 shards at NFE 20: long enough that the cancel lands mid-campaign.
    cid = submit_detached(cli, tmp_path, job_doc("cli-cancel", 400_000, 10_000, nfe=20))
    output = records.load(cid).output_url
    wait_until(lambda: manifest.committed_ids(output), "a first committed shard")

    proc = cli("campaign", "cancel", cid)
    assert proc.returncode == 0 and "cancel requested" in proc.stdout, proc.stderr
    wait_until(lambda: records.read_status(cid).state in FINAL, "the driver to stop")
    status = status_json(cli, cid)
    assert status["state"] == "cancelled"
    kept = manifest.read_records(output)
    assert 0 < len(kept) < 40  # stopped mid-way, committed shards kept
    assert status["shards_committed"] == len(kept)

    proc = cli("campaign", "resume", cid)
    assert proc.returncode == 0, proc.stderr
    assert "done 400,000 events in 40 shards" in proc.stdout
    status = status_json(cli, cid)
    assert status["state"] == "finished" and status["shards_skipped"] >= len(kept)
    assert_complete(records.load(cid), 400_000)
    # Shards committed before the cancel were skipped, not regenerated.
    after = {r.shard: r for r in manifest.read_records(output)}
    assert all(after[r.shard] == r for r in kept)


def test_ls_and_status_show_submitted_campaigns(cli):
    campaign = submit(parse_job(job_doc("cli-ls", 20_000, 10_000), "test", kind="campaign"))
    cid = campaign.id
    proc = cli("campaign", "ls")
    assert proc.returncode == 0, proc.stderr
    (row,) = [line for line in proc.stdout.splitlines() if cid in line]
    assert re.search(r"tiny/\d+\s*│\s*20,000\s*│\s*submitted", row), row

    proc = cli("campaign", "status", cid)
    assert proc.returncode == 0, proc.stderr
    assert f"{cid}: submitted" in proc.stdout
    assert "shards: 0/2 committed" in proc.stdout and "events: 0/20,000" in proc.stdout

    proc = cli("campaign", "status", "no-such-campaign")
    assert proc.returncode == 2 and "farm: error: campaign 'no-such-campaign' not found" in (
        proc.stderr
    )
