"""The driver lease: one driver per campaign at a time, a heartbeat, and take-over after expiry.

A driver takes `campaigns/<id>/lease.json` (`records.DriverLease`: host, pid, since, expires)
before it touches the campaign, and a heartbeat thread renews it every `ttl / 5` seconds. A
second driver is refused while the lease is live, with one line naming the holder; once the
holder stops renewing (killed, machine lost), the lease lapses after `ttl` seconds and the next
`farm campaign resume` takes over. A holder on the same machine (same boot and pid namespace)
whose process is gone has lapsed at once.

Object stores have no compare-and-swap, so taking a lease is write, wait `SETTLE_SECONDS`, read
back: of two drivers starting at once, the one whose write landed last wins and the other is
refused. Every renewal first checks that the lease is still the driver's own; a driver that finds
another's token (it was frozen past its expiry and someone took over) marks the lease lost and
stops. Exactly-once never depends on the lease (shards are deterministic and committed by one
record each); the lease keeps two drivers from generating the same shards twice.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator

from farm import records
from farm.errors import FarmError
from farm.records import DriverLease

LEASE_ENV = "FARM_LEASE_SECONDS"
DEFAULT_TTL = 30.0
SETTLE_SECONDS = 0.5


class LeaseHeld(FarmError):
    """Another live driver holds the campaign."""


class LeaseLost(FarmError):
    """This driver's lease was taken over by another driver; it must stop."""


def lease_seconds() -> float:
    """How long a lease lives without a heartbeat: FARM_LEASE_SECONDS, default 30."""
    raw = os.environ.get(LEASE_ENV)
    if not raw:
        return DEFAULT_TTL
    try:
        ttl = float(raw)
    except ValueError:
        raise FarmError(f"{LEASE_ENV}={raw!r}: must be a number of seconds") from None
    if not 1.0 <= ttl <= 86_400.0:
        raise FarmError(f"{LEASE_ENV}={raw}: must lie between 1 and 86400 seconds")
    return ttl


def _when(t: float) -> str:
    """A time as HH:MM:SS UTC."""
    return time.strftime("%H:%M:%S UTC", time.gmtime(t))


def refusal(campaign_id: str, lease: DriverLease) -> str:
    """The one line that refuses a second driver: holder, since when, how to take over."""
    return (
        f"campaign {campaign_id} is being driven by {lease.holder} since {_when(lease.since)} "
        f"(heartbeat {max(time.time() - lease.heartbeat, 0):.0f} s ago); its lease expires at "
        f"{_when(lease.expires)} if the heartbeat stops, after which `farm campaign resume "
        f"{campaign_id}` takes over; `farm campaign cancel {campaign_id}` stops that driver"
    )


class Lease:
    """A held lease and its heartbeat thread; `lost` turns true if another driver took it."""

    def __init__(self, campaign_id: str, ttl: float):
        """A lease not yet taken: call `acquire`."""
        self.campaign_id = campaign_id
        self.ttl = ttl
        self.token = uuid.uuid4().hex
        self.since = time.time()
        self.lost_to: DriverLease | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def lost(self) -> bool:
        """Whether another driver has taken the lease over."""
        return self.lost_to is not None

    def _record(self) -> DriverLease:
        now = time.time()
        return DriverLease(
            token=self.token,
            host=socket.gethostname(),
            pid=os.getpid(),
            since=self.since,
            heartbeat=now,
            expires=now + self.ttl,
            process_space=records.process_space(),
        )

    def acquire(self) -> None:
        """Take the lease (LeaseHeld naming the holder if another live driver has it)."""
        current = records.read_lease(self.campaign_id)
        if current is not None and current.token != self.token and not current.lapsed():
            raise LeaseHeld(refusal(self.campaign_id, current))
        records.write_lease(self.campaign_id, self._record())
        time.sleep(SETTLE_SECONDS)
        current = records.read_lease(self.campaign_id)
        if current is None or current.token != self.token:
            if current is None:
                raise LeaseHeld(f"campaign {self.campaign_id}: its lease vanished while taken")
            raise LeaseHeld(refusal(self.campaign_id, current))
        self._thread = threading.Thread(target=self._beat, name="farm-lease", daemon=True)
        self._thread.start()

    def renew(self) -> bool:
        """Extend the lease if it is still this driver's; False (and `lost`) if it is not."""
        current = records.read_lease(self.campaign_id)
        if current is not None and current.token != self.token:
            self.lost_to = current
            return False
        records.write_lease(self.campaign_id, self._record())
        return True

    def _beat(self) -> None:
        """Renew every ttl/5 seconds until released or lost; storage errors retry next beat."""
        while not self._stop.wait(self.ttl / 5):
            try:
                if not self.renew():
                    return
            except Exception:  # a storage hiccup: the next beat tries again before expiry
                continue

    def check(self) -> None:
        """Raise LeaseLost if another driver has taken the campaign over."""
        if self.lost_to is not None:
            raise LeaseLost(
                f"campaign {self.campaign_id}: {self.lost_to.holder} took over the lease; this "
                "driver stopped (its in-flight shards were dropped uncommitted)"
            )

    def release(self) -> None:
        """Stop the heartbeat and delete the lease if it is still this driver's."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with contextlib.suppress(Exception):  # an expired lease lapses anyway
            current = records.read_lease(self.campaign_id)
            if current is not None and current.token == self.token:
                records.remove_lease(self.campaign_id)


@contextlib.contextmanager
def held(campaign_id: str) -> Iterator[Lease]:
    """Hold a campaign's lease for the duration of a block (refused if another driver holds it)."""
    lease = Lease(campaign_id, lease_seconds())
    lease.acquire()
    try:
        yield lease
    finally:
        lease.release()
