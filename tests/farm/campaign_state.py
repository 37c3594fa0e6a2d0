"""Put a finished campaign back into the state its driver would leave by dying mid-campaign."""

from __future__ import annotations

from farm import records, store
from farm.campaign import manifest


def forget_shards(campaign, shard_ids) -> None:
    """Make a finished campaign look like one whose driver died after committing the others."""
    fs, _ = store.filesystem(campaign.output_url)
    for shard_id in shard_ids:
        fs.rm_file(store.filesystem(manifest.record_url(campaign.output_url, shard_id))[1])
    for name in ("summary.json", manifest.MANIFEST_PARQUET):
        fs.rm_file(store.filesystem(store.join(campaign.output_url, name))[1])
    records.update_status(campaign.id, state="running", summary=None)
