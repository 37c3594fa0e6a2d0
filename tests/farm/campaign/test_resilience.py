"""Campaign failures found by an independent fault run (issue 17): S3 resume, actors killed while
loading, a second driver, status after a dead driver, temporary files left by killed writers."""

from __future__ import annotations

from test_campaign import assert_complete, job

from farm import records, store
from farm.campaign import manifest
from farm.campaign.run import execute, submit


def _forget_shards(campaign, shard_ids) -> None:
    """Make a finished campaign look like one whose driver died after committing the others."""
    fs, _ = store.filesystem(campaign.output_url)
    for shard_id in shard_ids:
        fs.rm_file(store.filesystem(manifest.record_url(campaign.output_url, shard_id))[1])
    for name in ("summary.json", manifest.MANIFEST_PARQUET):
        fs.rm_file(store.filesystem(store.join(campaign.output_url, name))[1])
    records.update_status(campaign.id, state="running", summary=None)


def test_resume_on_s3_generates_the_missing_shards_and_finalizes(in_store, s3_bucket):
    campaign = submit(job("s3-resume", events=6_000, shard_size=1_000, output=f"{s3_bucket}/c"))
    first = execute(campaign.id)
    _forget_shards(campaign, [3, 4, 5])
    # this process lists the manifest now, as a driver does when it starts: s3fs may cache it
    assert manifest.committed_ids(campaign.output_url) == {0, 1, 2}
    summary = execute(campaign.id)  # generates shards 3..5 on the actors, then finalizes
    assert summary.dataset_sha256 == first.dataset_sha256
    assert records.read_status(campaign.id).shards_skipped == 3
    assert_complete(campaign, 6_000)
