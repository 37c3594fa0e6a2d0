"""A campaign on a simulated multi-node Ray cluster that loses a worker node mid-campaign.

Run as a script by test_multinode.py (a process holds one Ray connection, and the test session
already has one). FARM_HOME must point at a store with the model registered. Writes a JSON
file: the campaign, its summary and status, and what happened to the cluster.

    FARM_HOME=... python multinode_driver.py --result out.json --events 60000 --shard-size 2000
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time

NODE_RESOURCE = "farm_gen"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--result", required=True, help="JSON file to write")
    parser.add_argument("--model", default="tiny@candidate")
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--shard-size", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--nfe", type=int, default=6)
    parser.add_argument("--timeout", type=float, default=150.0)
    args = parser.parse_args(argv)

    import ray
    from ray.cluster_utils import Cluster

    from farm import records
    from farm.campaign import manifest
    from farm.campaign.run import execute, submit
    from farm.specs import parse_job

    t0 = time.time()
    os.environ.pop("RAY_ADDRESS", None)
    # Fast node-failure detection (defaults take tens of seconds); the head runs no actors.
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "include_dashboard": False,
            "_system_config": {
                "health_check_initial_delay_ms": 0,
                "health_check_period_ms": 200,
                "health_check_timeout_ms": 500,
                "health_check_failure_threshold": 3,
            },
        },
    )
    watchdog = threading.Timer(args.timeout, lambda: os._exit(3))  # never hang the test session
    watchdog.daemon = True
    watchdog.start()
    try:
        workers = [
            cluster.add_node(wait=False, num_cpus=1, resources={NODE_RESOURCE: 1}) for _ in range(2)
        ]
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
        campaign = submit(
            parse_job(
                {
                    "kind": "campaign",
                    "name": "multinode",
                    "model": args.model,
                    "events": args.events,
                    "shard_size": args.shard_size,
                    "nfe": args.nfe,
                    "seed": args.seed,
                    "conditions": {"distribution": "log-uniform", "min": 2e3, "max": 5e4},
                    "formats": ["parquet"],
                    "resources": {
                        "actors": 2,
                        "batch_size": args.shard_size,
                        "custom_resources": {NODE_RESOURCE: 1},
                    },
                },
                "multinode",
                kind="campaign",
            )
        )
        _log(f"cluster of 3 nodes up, campaign {campaign.id} submitted", t0)
        removal: dict = {}

        def remove_a_node() -> None:
            """Once the victim node's actor has committed a shard, lose the node: its processes
            die with it (SIGKILL, as when a machine goes away), then its raylet and store."""
            victim = workers[1].node_id
            while True:
                pids = {pid for pid, node in _actor_nodes().items() if node == victim}
                done = manifest.read_records(campaign.output_url)
                if any(r.worker.rsplit(":", 1)[1] in pids for r in done):
                    break
                time.sleep(0.05)
            removal.update(actors=_actor_nodes(), node_id=victim)
            for pid in pids:
                os.kill(int(pid), signal.SIGKILL)
            removal["at"] = time.time()
            removal["committed_before"] = len(manifest.committed_ids(campaign.output_url))
            cluster.remove_node(workers[1], allow_graceful=False)
            _log(f"node removed after {removal['committed_before']} committed shards", t0)

        remover = threading.Thread(target=remove_a_node, daemon=True)
        remover.start()
        summary = execute(campaign.id, poll_seconds=0.1)
        remover.join(timeout=10)
        _log("campaign finished", t0)
        result = {
            "campaign": campaign.model_dump(mode="json"),
            "summary": summary.model_dump(mode="json"),
            "status": records.read_status(campaign.id).model_dump(mode="json"),
            "removal": removal,
            "alive_nodes": sorted(n["NodeID"] for n in ray.nodes() if n["Alive"]),
            "worker_nodes": [w.node_id for w in workers],
        }
        with open(args.result, "w") as f:
            json.dump(result, f)
        return 0
    finally:
        watchdog.cancel()
        ray.shutdown()
        cluster.shutdown()
        _log("cluster shut down", t0)


def _log(message: str, t0: float) -> None:
    print(f"[multinode {time.time() - t0:5.1f} s] {message}", file=sys.stderr, flush=True)


def _actor_nodes() -> dict[str, str]:
    """{worker pid: node id} of the alive generation actors, from the GCS actor table."""
    from ray._private.state import actors

    return {
        str(a["Pid"]): a["Address"]["NodeID"]
        for a in actors().values()
        if a["State"] == "ALIVE" and "ShardWorker" in a.get("ActorClassName", "")
    }


if __name__ == "__main__":
    sys.exit(main())
