"""The driver lease on its own: refusal, expiry, take-over and loss (no Ray, no campaign run)."""

from __future__ import annotations

import time

import pytest

from farm import records
from farm.campaign import lease
from farm.records import DriverLease


def foreign(expires_in: float, pid: int = 4242) -> DriverLease:
    """A lease held by a driver on another machine (a process space that is not ours)."""
    now = time.time()
    return DriverLease(
        token="other",
        host="gen-node-7",
        pid=pid,
        since=now - 100,
        heartbeat=now,
        expires=now + expires_in,
        process_space="another-machine:1",
    )


@pytest.fixture(autouse=True)
def quick(monkeypatch, farm_home):
    monkeypatch.setattr(lease, "SETTLE_SECONDS", 0.0)


def test_a_live_lease_of_another_machine_is_refused_with_its_holder():
    records.write_lease("c1", foreign(600))
    with pytest.raises(lease.LeaseHeld, match=r"being driven by gen-node-7 pid 4242 since"):
        lease.Lease("c1", 30).acquire()
    assert records.read_lease("c1").token == "other"


def test_an_expired_lease_is_taken_over_and_released():
    records.write_lease("c2", foreign(-1))
    assert (
        records.observed_state(
            records.CampaignStatus(state="running"), records.read_lease("c2"), time.time()
        )
        == "orphaned"
    )
    with lease.held("c2") as mine:
        assert records.read_lease("c2").token == mine.token
    assert records.read_lease("c2") is None


def test_a_dead_holder_on_this_machine_lapses_at_once():
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = foreign(600, pid=gone.pid).model_copy(update={"process_space": records.process_space()})
    records.write_lease("c3", dead)
    assert dead.lapsed() and not dead.expired()
    with lease.held("c3") as mine:
        assert records.read_lease("c3").token == mine.token


def test_a_driver_whose_lease_was_taken_over_stops():
    mine = lease.Lease("c4", 30)
    mine.acquire()
    try:
        records.write_lease("c4", foreign(600))  # another driver took over while we were frozen
        assert mine.renew() is False and mine.lost
        with pytest.raises(lease.LeaseLost, match=r"gen-node-7 pid 4242 took over the lease"):
            mine.check()
    finally:
        mine.release()
    assert records.read_lease("c4").token == "other"  # release leaves the new holder's lease


def test_lease_seconds_bounds(monkeypatch):
    monkeypatch.setenv(lease.LEASE_ENV, "0.1")
    with pytest.raises(lease.FarmError, match=r"FARM_LEASE_SECONDS=0.1: must lie between 1 and"):
        lease.lease_seconds()
