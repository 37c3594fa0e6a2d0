"""A campaign on a real multi-raylet cluster (`ray start` processes) that loses a worker node.

The head and two worker nodes are separate `ray start` processes on this machine (fixture
`ray_nodes`); `farm campaign submit` joins them through RAY_ADDRESS, as on a real cluster. One
generation actor runs per worker node (pinned by a custom resource); once the victim node's actor
has committed a shard, all of that node's processes are SIGKILLed, raylet included.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest
import yaml
from test_campaign import assert_complete, job

from farm import records
from farm.campaign import manifest
from farm.campaign.run import execute, submit

EVENTS, SHARD_SIZE, NFE = 1_000_000, 10_000, 30
NODE_RESOURCE = "farm_gen"
CAMPAIGN = {
    "kind": "campaign",
    "name": "ray-cluster",
    "model": "tiny@candidate",
    "events": EVENTS,
    "shard_size": SHARD_SIZE,
    "nfe": NFE,
    "seed": 11,
    "conditions": {"distribution": "log-uniform", "min": 2e3, "max": 5e4},
    "formats": ["parquet"],
    "resources": {
        "actors": 2,
        "batch_size": SHARD_SIZE,
        "custom_resources": {NODE_RESOURCE: 1},
    },
}


def _campaign_id(log_path, driver: subprocess.Popen, timeout: float = 120) -> str:
    """The id `farm campaign submit` printed, read from its log as it runs."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = re.search(r"campaign (\S+): ", log_path.read_text())
        if found:
            return found[1]
        assert driver.poll() is None, log_path.read_text()[-3000:]
        time.sleep(0.1)
    raise AssertionError(f"no campaign id printed: {log_path.read_text()[-3000:]}")


def _pid(record) -> int:
    """The generation actor's process id in a shard record (worker is HOST:PID)."""
    return int(record.worker.rsplit(":", 1)[1])


@pytest.mark.slow
def test_worker_node_lost_mid_campaign_completes_exactly_once(in_store, ray_nodes, tmp_path):
    home, _ = in_store
    kept = ray_nodes.add_worker("keep", resources=f'{{"{NODE_RESOURCE}": 1}}')
    victim = ray_nodes.add_worker("victim", resources=f'{{"{NODE_RESOURCE}": 1}}')
    job_file = tmp_path / "campaign.yaml"
    job_file.write_text(yaml.safe_dump(CAMPAIGN))
    log_path = tmp_path / "driver.log"
    env = {**ray_nodes.env, "RAY_ADDRESS": ray_nodes.address, "FARM_HOME": str(home)}
    with open(log_path, "w") as log:
        driver = subprocess.Popen(
            [sys.executable, "-m", "farm.cli", "campaign", "submit", str(job_file)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        campaign = records.load(_campaign_id(log_path, driver))
        raylet, deadline = ray_nodes.raylet(victim), time.time() + 240
        while True:  # until the victim node's actor has committed a shard
            victim_pids = {p.pid for p in raylet.children(recursive=True)}
            done = manifest.read_records(campaign.output_url)
            if any(_pid(r) in victim_pids for r in done):
                break
            assert time.time() < deadline and driver.poll() is None, log_path.read_text()[-3000:]
            time.sleep(0.05)
        kept_pids = {p.pid for p in ray_nodes.processes(kept)}
        killed_at = ray_nodes.kill(victim)  # the node goes away: raylet, workers, agents
        committed_before = len(manifest.committed_ids(campaign.output_url))
        rc = driver.wait(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert rc == 0, log_path.read_text()[-3000:]
    n_shards = -(-EVENTS // SHARD_SIZE)
    recs = manifest.read_records(campaign.output_url)
    timeline = [(r.shard, _pid(r), round(r.committed_at - killed_at, 2)) for r in recs]
    assert committed_before < n_shards // 2, (victim_pids, timeline[:12])  # most still to do
    assert not ray_nodes.processes(victim)

    # Exactly N events once, one record per shard with contiguous event ranges.
    assert_complete(campaign, EVENTS)
    assert [(r.event_id_start, r.event_id_stop) for r in recs] == [
        (i * SHARD_SIZE, (i + 1) * SHARD_SIZE) for i in range(n_shards)
    ]
    status = records.read_status(campaign.id)
    assert status.state == "finished" and status.actor_restarts >= 1

    # The victim's actor committed shards only before its node died; every other shard was
    # committed by the actor on the node that stayed.
    on_victim = [r for r in recs if _pid(r) in victim_pids]
    assert on_victim and all(r.committed_at < killed_at for r in on_victim)
    assert all(_pid(r) in kept_pids for r in recs if r not in on_victim)

    # Losing a node changes nothing in the data: identical to an uninterrupted local run.
    summary = records.read_summary(campaign)
    assert summary.events == EVENTS and summary.shards == n_shards
    clean = submit(job("ray-cluster-clean", events=EVENTS, shard_size=SHARD_SIZE, nfe=NFE))
    assert execute(clean.id).dataset_sha256 == summary.dataset_sha256
