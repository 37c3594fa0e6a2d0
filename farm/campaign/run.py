"""Campaign driver: keep a pool of Ray actors busy until every shard is committed exactly once.

Resumable after any failure (committed shards are skipped), then finalize and validate.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import itertools
import os
import time
from collections.abc import Callable

from farm import records, store
from farm.campaign import lease, manifest
from farm.campaign.lease import LeaseHeld, LeaseLost
from farm.campaign.pool import ActorPool, CampaignFailed
from farm.campaign.submit import submit
from farm.campaign.validate import validate
from farm.errors import FarmError, root_cause
from farm.records import CampaignRecord, CampaignStatus, CampaignSummary, ShardRecord

__all__ = ["CampaignFailed", "LeaseHeld", "LeaseLost", "execute", "finalize", "submit"]


class _Progress:
    """The driver's counters, as a CampaignStatus on demand."""

    def __init__(self, campaign: CampaignRecord, done: set[int]):
        self.plan = campaign.plan
        self.done = done
        self.skipped = len(done)
        self.events = sum(self.plan.shard(i).n for i in done)
        self.bytes = self.actor_restarts = self.retries = self.running = 0
        self.t0, self.events_at_start = time.time(), self.events

    def status(self, state: str) -> CampaignStatus:
        elapsed = max(time.time() - self.t0, 1e-9)
        rate = (self.events - self.events_at_start) / elapsed
        remaining = self.plan.events - self.events
        return CampaignStatus(
            state=state,
            shards_done=len(self.done),
            shards_total=self.plan.n_shards,
            shards_running=self.running,
            shards_skipped=self.skipped,
            events_done=self.events,
            events_total=self.plan.events,
            events_per_second=rate,
            eta_seconds=remaining / rate if rate > 0 else None,
            bytes_written=self.bytes,
            actor_restarts=self.actor_restarts,
            shard_retries=self.retries,
            pid=os.getpid(),
            started=self.t0,
        )


def execute(
    campaign_id: str,
    on_progress: Callable[[CampaignStatus], None] | None = None,
    poll_seconds: float = 0.5,
) -> CampaignSummary | CampaignStatus:
    """Run (or resume) a campaign until all shards are committed, holding its driver lease.

    Returns the summary, or the final status when it was cancelled. A second driver is refused
    (LeaseHeld) while this one's heartbeat renews the lease.
    """
    campaign = records.load(campaign_id)
    with lease.held(campaign_id) as held:
        try:
            return _execute(campaign, held, on_progress, poll_seconds)
        except (LeaseLost, KeyboardInterrupt, SystemExit) as exc:
            if not isinstance(exc, LeaseLost) and not held.lost:
                _stopped(campaign_id, "cancelled", "interrupted (Ctrl-C or SIGTERM)")
            raise
        except BaseException as exc:
            if not held.lost:
                _stopped(campaign_id, "failed", root_cause(exc))
            raise


def _stopped(campaign_id: str, state: str, error: str) -> None:
    """Record how a driver stopped (best effort: the store itself may be what failed)."""
    with contextlib.suppress(Exception):
        records.update_status(campaign_id, state=state, error=error, shards_running=0)


def clean_leftovers(campaign: CampaignRecord) -> int:
    """Delete temporaries killed writers left in the output, and dead uploads' staging folders.

    Called while this driver holds the lease and runs no actors (before the pool starts, and
    after every shard is committed), so nothing is writing them.
    """
    folders = ["", manifest.MANIFEST_DIR, *campaign.job.formats]
    removed = sum(store.remove_temporaries(campaign.path(f)) for f in folders)
    return removed + store.clean_stale_uploads()


def _execute(
    campaign: CampaignRecord,
    held: lease.Lease,
    on_progress: Callable[[CampaignStatus], None] | None,
    poll_seconds: float,
) -> CampaignSummary | CampaignStatus:
    """Drive the shards that are not committed yet, finalize and validate (lease held)."""
    campaign_id, output = campaign.id, campaign.output_url
    records.clear_cancel(campaign_id)
    clean_leftovers(campaign)
    done = manifest.committed_ids(output)
    todo = collections.deque(i for i in range(campaign.plan.n_shards) if i not in done)
    progress = _Progress(campaign, done)
    state = "running"
    if todo:  # a complete campaign (finalize or validation still to do) needs no actors
        from farm.ray_utils import ensure_ray

        ensure_ray()
        pool = ActorPool(campaign)
        try:
            records.write_status(campaign_id, progress.status(state))
            state = _drive(campaign, pool, todo, progress, on_progress, poll_seconds, held)
        finally:
            progress.actor_restarts = pool.restarts
            pool.kill_all()
    if state == "cancelled":
        final = progress.status("cancelled")
        records.write_status(campaign_id, final)
        return final
    held.check()
    clean_leftovers(campaign)
    summary = finalize(campaign)
    finished = progress.status("finished")
    records.write_status(campaign_id, finished.model_copy(update={"summary": summary}))
    if on_progress:
        on_progress(finished)
    if campaign.job.validation is not None:
        summary = summary.model_copy(update={"validation": validate(campaign).summary()})
    return summary


def _drive(
    campaign: CampaignRecord,
    pool: ActorPool,
    todo: collections.deque[int],
    progress: _Progress,
    on_progress: Callable[[CampaignStatus], None] | None,
    poll_seconds: float,
    held: lease.Lease,
) -> str:
    """Feed shards to actors until none is left; 'finished' or 'cancelled' (LeaseLost if taken)."""
    import ray
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, RayTaskError

    plan, done = campaign.plan, progress.done
    max_retries = campaign.job.resources.max_shard_retries
    in_flight: dict = {}
    attempts: collections.Counter[int] = collections.Counter()
    per_actor: collections.Counter[int] = collections.Counter()
    last_status = 0.0
    while todo or in_flight:
        for slot in pool.ready_slots():
            while todo and per_actor[slot] < pool.depth:
                shard_id = todo.popleft()
                in_flight[pool.actors[slot].run.remote(plan.shard(shard_id))] = (slot, shard_id)
                per_actor[slot] += 1
        progress.running = len(in_flight)
        waiting = list(in_flight) + list(pool.starting.values())
        ready, _ = ray.wait(waiting, num_returns=1, timeout=poll_seconds)
        for ref in ready:
            if ref not in in_flight:
                continue  # a replacement actor is ready: it gets work next round
            slot, shard_id = in_flight.pop(ref)
            per_actor[slot] -= 1
            try:
                record: ShardRecord = ray.get(ref)
            except (ActorDiedError, ActorUnavailableError, RayActorError):
                # The actor is gone: replace it once, requeue everything it held.
                todo.appendleft(shard_id)
                pool.replace(slot)
                continue
            except RayTaskError as exc:
                attempts[shard_id] += 1
                progress.retries += 1
                if attempts[shard_id] > max_retries:
                    raise CampaignFailed(
                        f"campaign {campaign.id}: shard {shard_id} failed "
                        f"{attempts[shard_id]} times ({root_cause(exc)}); no bad shard was "
                        f"committed, {len(done)} of {plan.n_shards} shards are complete"
                    ) from None
                todo.append(shard_id)
                continue
            done.add(shard_id)
            progress.events += record.events
            progress.bytes += record.bytes
        progress.running = len(in_flight)
        progress.actor_restarts = pool.restarts
        held.check()
        if records.cancel_requested(campaign.id):
            return "cancelled"
        if time.time() - last_status > 2.0 or not (todo or in_flight):
            last_status = time.time()
            status = progress.status("running")
            records.write_status(campaign.id, status)
            if on_progress:
                on_progress(status)
    return "finished"


def finalize(campaign: CampaignRecord) -> CampaignSummary:
    """Check completeness (exact events, no duplicate ids), write manifest.parquet + summary.json."""
    plan, output = campaign.plan, campaign.output_url
    recs = store.with_retries(lambda: manifest.read_records(output), "reading the manifest")
    ids = [r.shard for r in recs]
    if sorted(ids) != list(range(plan.n_shards)):
        missing = sorted(set(range(plan.n_shards)) - set(ids))[:10]
        raise FarmError(f"campaign {campaign.id}: shards missing from the manifest: {missing}")
    covered = sum(r.event_id_stop - r.event_id_start for r in recs)
    events = sum(r.events for r in recs)
    ranges_ok = all(a.event_id_stop == b.event_id_start for a, b in itertools.pairwise(recs))
    if events != plan.events or covered != plan.events or not ranges_ok:
        raise FarmError(
            f"campaign {campaign.id}: manifest covers {covered} events, expected {plan.events}"
        )
    store.with_retries(
        lambda: manifest.write_parquet(output, recs), f"writing the manifest of {campaign.id}"
    )
    summary = CampaignSummary(
        campaign=campaign.id,
        events=events,
        shards=len(recs),
        model=campaign.model.key,
        sampler=campaign.sampler,
        nfe=campaign.nfe,
        geometry=campaign.geometry,
        formats=list(campaign.job.formats),
        bytes=sum(r.bytes for r in recs),
        event_id_range=(0, plan.events),
        seed=plan.seed,
        manifest=manifest.MANIFEST_PARQUET,
        files={fmt: fmt for fmt in campaign.job.formats},
        sample_seconds=sum(r.seconds_sample for r in recs),
        write_seconds=sum(r.seconds_write for r in recs),
        dataset_sha256=dataset_checksum(recs),
    )
    records.write_json(campaign.path("summary.json"), summary)
    return summary


def dataset_checksum(recs: list[ShardRecord]) -> str:
    """sha256 over the shards' content checksums, in shard order."""
    h = hashlib.sha256()
    for r in recs:
        h.update(r.content_sha256.encode())
    return h.hexdigest()
