"""A campaign on a simulated 3-node Ray cluster (ray.cluster_utils.Cluster) that loses a worker node.

A process holds one Ray connection and this session already has one, so the cluster runs in a
subprocess (multinode_driver.py) against the session's store; this test checks what it left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from test_campaign import assert_complete, job

from farm.campaign import manifest
from farm.campaign.run import execute, submit
from farm.records import CampaignRecord

DRIVER = Path(__file__).with_name("multinode_driver.py")
EVENTS, SHARD_SIZE, NFE = 60_000, 2_000, 6


def test_node_lost_mid_campaign_completes_exactly_once(in_store, tmp_path):
    result_file = tmp_path / "result.json"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["FARM_HOME"] = str(in_store[0])
    args = ["--events", str(EVENTS), "--shard-size", str(SHARD_SIZE), "--nfe", str(NFE)]
    proc = subprocess.run(
        [sys.executable, str(DRIVER), "--result", str(result_file), "--timeout", "150", *args],
        env=env,
        stdout=subprocess.DEVNULL,  # the in-process raylets log there
        stderr=subprocess.PIPE,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(result_file.read_text())
    campaign = CampaignRecord.model_validate(result["campaign"])
    removal, status = result["removal"], result["status"]
    n_shards = -(-EVENTS // SHARD_SIZE)

    # One generation actor per worker node (pinned by a custom resource), and the node that held
    # one of them went away while most of the campaign was still to do.
    lost, kept = (
        removal["node_id"],
        next(n for n in result["worker_nodes"] if n != removal["node_id"]),
    )
    assert sorted(removal["actors"].values()) == sorted([lost, kept])
    assert removal["committed_before"] < n_shards // 2
    assert lost not in result["alive_nodes"] and kept in result["alive_nodes"]
    assert status["state"] == "finished" and status["actor_restarts"] >= 1

    # Exactly N events, unique ids, one manifest record per shard with contiguous event ranges.
    assert_complete(campaign, EVENTS)
    recs = manifest.read_records(campaign.output_url)
    assert [(r.event_id_start, r.event_id_stop) for r in recs] == [
        (i * SHARD_SIZE, (i + 1) * SHARD_SIZE) for i in range(n_shards)
    ]
    assert result["summary"]["events"] == EVENTS and result["summary"]["shards"] == n_shards

    # The lost node's actor committed shards before it died (they are kept) and none after; every
    # other shard, including those it held in flight, was committed by the surviving node's actor.
    node_of = {pid: node for pid, node in removal["actors"].items()}
    by_node = {lost: [], kept: []}
    for r in recs:
        by_node[node_of[r.worker.rsplit(":", 1)[1]]].append(r)
    assert by_node[lost] and all(r.committed_at < removal["at"] for r in by_node[lost])
    assert len(by_node[kept]) >= n_shards - removal["committed_before"]

    # Losing a node changes nothing in the data: identical to an uninterrupted single-node run.
    clean = submit(job("multinode-clean", events=EVENTS, shard_size=SHARD_SIZE, nfe=NFE))
    assert execute(clean.id).dataset_sha256 == result["summary"]["dataset_sha256"]
