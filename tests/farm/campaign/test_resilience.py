"""Campaign failures found by an independent fault run (issue 17): S3 resume, actors killed while
loading, a second driver, status after a dead driver, temporary files left by killed writers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytest
from test_campaign import assert_complete, job

from farm import faults, records, store
from farm.campaign import manifest
from farm.campaign.lease import LEASE_ENV, LeaseHeld
from farm.campaign.run import execute, submit
from farm.errors import FarmError
from farm.records import DriverLease

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from campaign_state import forget_shards


def test_resume_on_s3_generates_the_missing_shards_and_finalizes(in_store, s3_bucket):
    campaign = submit(job("s3-resume", events=6_000, shard_size=1_000, output=f"{s3_bucket}/c"))
    first = execute(campaign.id)
    forget_shards(campaign, [3, 4, 5])
    # this process lists the manifest now, as a driver does when it starts: s3fs may cache it
    assert manifest.committed_ids(campaign.output_url) == {0, 1, 2}
    summary = execute(campaign.id)  # generates shards 3..5 on the actors, then finalizes
    assert summary.dataset_sha256 == first.dataset_sha256
    assert records.read_status(campaign.id).shards_skipped == 3
    assert_complete(campaign, 6_000)


SMALL = {"events": 4_000, "shard_size": 1_000}


@pytest.fixture(scope="module")
def small_reference(campaign_store):
    """The dataset_sha256 of an uninterrupted run of the small plan every test below repeats."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FARM_HOME", str(campaign_store[0]))
        return execute(submit(job("small-reference", **SMALL)).id).dataset_sha256


def test_actor_killed_while_loading_its_model_is_replaced(
    in_store, small_reference, tmp_path, monkeypatch
):
    kills = tmp_path / "kills"
    monkeypatch.setenv(faults.KILL_ENV, f"loading:{kills}")
    campaign = submit(job("kill-loading", **SMALL))
    summary = execute(campaign.id)
    assert faults.kills_injected(str(kills)) == ["loading"]
    assert records.read_status(campaign.id).actor_restarts == 1
    assert summary.dataset_sha256 == small_reference
    assert_complete(campaign, 4_000)


def _temporaries(root: str) -> list[str]:
    return [
        os.path.join(folder, name)
        for folder, _, names in os.walk(root)
        for name in names
        if store.is_temporary(name)
    ]


def _dead_uploads() -> list[str]:
    root = tempfile.gettempdir()
    return [
        n
        for n in os.listdir(root)
        if (pid := store._upload_owner(n)) is not None and not psutil.pid_exists(pid)
    ]


@pytest.mark.parametrize("where", ["local", "s3"])
def test_no_temporaries_left_after_a_kill_mid_write(
    where, in_store, small_reference, tmp_path, monkeypatch, request
):
    base = str(tmp_path / "out") if where == "local" else request.getfixturevalue("s3_bucket")
    kills = tmp_path / "kills"
    monkeypatch.setenv(faults.KILL_ENV, f"writing:{kills}")
    campaign = submit(job(f"kill-writing-{where}", output=base, **SMALL))
    summary = execute(campaign.id)
    assert faults.kills_injected(str(kills)) == ["writing"]
    assert summary.dataset_sha256 == small_reference
    assert_complete(campaign, 4_000)
    if where == "local":
        assert _temporaries(campaign.output_url) == []
    assert _dead_uploads() == []  # staging folders of killed uploads (S3) are gone too


def test_leftovers_of_an_earlier_driver_are_removed_on_resume(in_store, small_reference):
    campaign = submit(job("leftovers", **SMALL))
    execute(campaign.id)
    forget_shards(campaign, [3])
    planted = [
        os.path.join(campaign.output_url, "parquet", ".shard-00000003.parquet.tmp-0123456789ab"),
        os.path.join(campaign.output_url, "_manifest", ".shard-00000003.json.tmp-0123456789ab"),
    ]
    for path in planted:
        open(path, "wb").close()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    upload = tempfile.mkdtemp(prefix=f"{store.UPLOAD_PREFIX}{dead.pid}-")
    assert execute(campaign.id).dataset_sha256 == small_reference
    assert _temporaries(campaign.output_url) == [] and not os.path.exists(upload)


def test_a_second_driver_is_refused_while_the_first_holds_the_lease(in_store, small_reference):
    campaign = submit(job("two-drivers", **SMALL))
    outcome = {}
    first = threading.Thread(target=lambda: outcome.update(summary=execute(campaign.id)))
    first.start()
    try:
        while records.read_lease(campaign.id) is None:  # bounded by pytest-timeout, not a clock
            assert first.is_alive(), "the first driver ended without taking a lease"
            time.sleep(0.02)
        with pytest.raises(LeaseHeld) as refused:
            execute(campaign.id)
    finally:
        first.join(timeout=300)
    message = str(refused.value)
    holder = f"{socket.gethostname()} pid {os.getpid()} since "
    assert holder in message and f"`farm campaign resume {campaign.id}` takes over" in message
    assert outcome["summary"].dataset_sha256 == small_reference  # the first driver carried on
    assert records.read_lease(campaign.id) is None  # released when it finished


def test_second_driver_from_the_cli_gets_one_line_naming_the_holder(in_store):
    campaign = submit(job("cli-second", **SMALL))
    now = time.time()
    records.write_lease(
        campaign.id,
        DriverLease(
            token="t", host="gen-node-7", pid=4242, since=now - 60, heartbeat=now, expires=now + 600
        ),
    )
    proc = subprocess.run(
        [sys.executable, "-m", "farm.cli", "campaign", "resume", campaign.id],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert line.startswith(
        f"farm: error: campaign {campaign.id} is being driven by gen-node-7 pid 4242"
    )
    assert "lease expires at" in line and "takes over" in line
    assert manifest.committed_ids(campaign.output_url) == set()


def test_status_after_a_killed_driver_is_orphaned_and_resume_takes_over(in_store, small_reference):
    import ray

    campaign = submit(job("orphan", events=20_000, shard_size=1_000))
    env = {
        **os.environ,
        "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
        LEASE_ENV: "3",
    }
    driver = subprocess.Popen(
        [sys.executable, "-m", "farm.cli", "campaign", "resume", campaign.id],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait(lambda: manifest.committed_ids(campaign.output_url), "a committed shard")
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    _wait(lambda: records.observed_status(campaign.id)[0].state == "orphaned", "orphaned")
    shown = subprocess.run(
        [sys.executable, "-m", "farm.cli", "campaign", "status", campaign.id],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "250"},
    )
    assert f"{campaign.id}: orphaned" in shown.stdout, shown.stdout + shown.stderr
    assert f"`farm campaign resume {campaign.id}` continues it" in shown.stdout
    execute(campaign.id)  # the lease expired: this driver takes over and completes it
    assert records.observed_status(campaign.id)[0].state == "finished"
    assert_complete(campaign, 20_000)


def test_status_after_a_failed_finalize_is_failed_with_the_cause(in_store):
    campaign = submit(job("bad-finalize", **SMALL))
    execute(campaign.id)
    forget_shards(campaign, [])
    store.write_text(manifest.record_url(campaign.output_url, 0), '{"shard": "zero"}')
    with pytest.raises(FarmError, match=r"shard-00000000.json: unreadable shard record"):
        execute(campaign.id)
    status, lease = records.observed_status(campaign.id)
    assert status.state == "failed" and "unreadable shard record" in status.error
    assert lease is None


def _wait(predicate, what: str) -> None:
    """Poll until `what` holds; pytest-timeout bounds the wait (no wall-clock deadline here)."""
    while not predicate():
        time.sleep(0.1)
