"""Shared fixtures: one Ray session (2 CPUs, no dashboard), a throwaway farm home, a moto S3 server."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid

import pytest


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray instance shared by the whole test session."""
    import ray

    if not ray.is_initialized():
        # address="local": always a fresh instance, never another session's cluster on the machine
        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    yield ray
    ray.shutdown()


@pytest.fixture
def farm_home(tmp_path, monkeypatch):
    """A fresh FARM_HOME (store, MLflow SQLite, artifacts) for one test."""
    home = tmp_path / "farm-home"
    monkeypatch.setenv("FARM_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    return home


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on 127.0.0.1: the same code path as AWS or MinIO. Yields the endpoint URL."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError("moto server did not start")
    yield endpoint
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def s3_bucket(s3_server, monkeypatch):
    """A fresh bucket on the moto server; sets the AWS variables farm reads. Yields 's3://bucket'."""
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("FARM_S3_ENDPOINT_URL", s3_server)
    name = f"farm-test-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1").create_bucket(Bucket=name)
    import fsspec

    fsspec.filesystem("s3").clear_instance_cache()
    yield f"s3://{name}"
