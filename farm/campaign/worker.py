"""The generation actor: loads a registered model once, samples shards, commits them exactly once.

The actor is farm.campaign.shards.ShardMaker (the shard path, no Ray or MLflow) with the model
loaded from the registry. Up to `max_in_flight` calls run at once per actor (max_concurrency):
sampling is serialised by a lock (one model, one device) and each sampled shard then waits for one
of `writers` writer slots (a bounded semaphore) to compress and upload it, so the device does not
wait on I/O and at most `max_in_flight` shards per actor are in memory (backpressure: the driver
hands an actor a new shard only when one of its calls returns). With `writers: 0` the sampling
lock is the only writer slot: each shard is written before the next is sampled. The record is
written last, after every file is in place (the commit point), so a writer killed or failing
leaves a shard to redo, never a duplicate.
"""

from __future__ import annotations

from farm import faults, store
from farm.campaign.shards import ShardMaker, content_checksum, shard_path
from farm.records import CampaignRecord

__all__ = ["ShardWorker", "content_checksum", "shard_path"]


class ShardWorker(ShardMaker):
    """Ray actor body (wrapped with ray.remote by the driver)."""

    def __init__(self, campaign: CampaignRecord, device: str, threads: int | None = None):
        """Load the campaign's model version once, and its truth conditions if any."""
        import torch

        from farm import registry

        if threads:
            torch.set_num_threads(threads)
        faults.arm_actor()
        store.clean_stale_uploads()  # staging folders of actors killed mid-upload on this node
        faults.kill_once("loading")
        model = registry.load(campaign.model.key, device=device).model
        if campaign.job.resources.compile:
            model.net = torch.compile(model.net)
        super().__init__(campaign, model, device)
        self.warm_up()

    def ready(self) -> str:
        """The actor's name, once its model is loaded and warmed up."""
        return self.name
