"""A campaign whose model lives on a real `mlflow server` (SQL backend, artifacts on S3)."""

from __future__ import annotations

import boto3
from test_campaign import assert_complete, job

from farm import registry
from farm.campaign.run import execute, submit


def _s3_keys(destination: str, endpoint: str) -> list[str]:
    """Every object key under an s3://bucket/prefix on the moto server."""
    bucket, _, prefix = destination.removeprefix("s3://").partition("/")
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def test_register_promote_load_and_campaign_through_the_server(on_server, s3_server):
    home, _, uri, destination = on_server
    assert registry.tracking_uri() == uri
    mv = registry.resolve("tiny@candidate")
    # the server chose where the artifacts go (proxied), and they are on its S3 store
    assert mv.source.startswith("mlflow-artifacts:/") and mv.source.endswith("/model")
    keys = _s3_keys(destination, s3_server)
    run_keys = [k for k in keys if f"/{mv.run_id}/artifacts/model/" in k]
    assert sorted(k.rsplit("/", 1)[1] for k in run_keys) == ["model.json", "weights.safetensors"]

    promoted = registry.promote("tiny", mv.version, "production")  # no gates on this version
    assert "production" in promoted.aliases
    loaded = registry.load("tiny@production")
    assert loaded.key == f"tiny/{mv.version}" and loaded.card.data.kind == "showers"

    campaign = submit(job("on-server", model="tiny@production", events=20_000))
    assert campaign.model.version == mv.version and campaign.model.source == mv.source
    summary = execute(campaign.id)  # the actors load the model through the server too
    assert_complete(campaign, 20_000)
    assert summary.events == 20_000 and summary.shards == 2
    assert not (home / "mlflow.db").exists()  # nothing fell back to the local SQLite registry
