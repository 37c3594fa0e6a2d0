"""Campaign driver: validate and record a submission, then keep a pool of Ray actors busy until
every shard is committed exactly once; resumable after any failure (committed shards are skipped).
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import time
from collections.abc import Callable
from typing import Any

from farm import registry, store
from farm.campaign import manifest, records
from farm.campaign.conditions import energy_bounds, read_truth_energies
from farm.campaign.plan import Plan
from farm.errors import FarmError
from farm.specs import CampaignJob, resolved

ENV_TO_ACTORS = (
    "FARM_HOME",
    "FARM_S3_ENDPOINT_URL",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_S3_ENDPOINT_URL",
    "FARM_ARTIFACT_ROOT",
)


class CampaignFailed(FarmError):
    """A shard failed repeatedly; nothing bad was committed."""


def _check_sampler_options(
    ref: str, sampler: str, nfe: int, options: dict[str, Any], cond: list[float]
) -> None:
    """Generate one event with the options before any work: a bad option fails here, not in shards."""
    import torch

    model, _, _ = registry.load(ref)
    try:
        model.generate(
            torch.tensor([cond], dtype=torch.float32),
            sampler=sampler,
            nfe=nfe,
            options=options,
            generator=torch.Generator().manual_seed(0),
        )
    except (TypeError, ValueError) as exc:
        raise FarmError(f"sampler_options {options} for {sampler!r}: {exc}") from None


def submit(job: CampaignJob) -> dict[str, Any]:
    """Validate everything before any work, resolve the model version once, store the campaign."""
    from farm.data.geometry import load_geometry
    from models.config import ModelConfig

    mv = registry.resolve(job.model)
    info = registry.show(f"{mv.name}/{mv.version}")
    card = info["card"]
    config = ModelConfig.model_validate(card["config"])
    process = config.process.build()
    sampler = job.sampler or config.sampler.name or process.default_sampler
    nfe = job.nfe or config.sampler.nfe
    try:
        process.check_sampler(sampler, nfe)
    except ValueError as exc:
        raise FarmError(f"{job.name}: {exc}") from None
    kind = card.get("data", {}).get("kind", "showers")
    if (kind == "jets") != (job.conditions.distribution == "jet-truth"):
        want = "jet-truth (a jets file)" if kind == "jets" else "an incident-energy distribution"
        raise FarmError(
            f"{job.name}: conditions.distribution: model {mv.name}/{mv.version} generates {kind} "
            f"and takes {want}, got {job.conditions.distribution!r}"
        )
    if kind == "jets":
        _check_jet_truth(job, card, mv, sampler, nfe)
        return _store(job, mv, sampler, nfe, None, kind)
    geometry = card.get("data", {}).get("geometry")
    if geometry is None:
        raise FarmError(f"model {mv.name}/{mv.version} has no geometry in its model card")
    load_geometry(geometry).check_voxels(card["dim"], f"model {mv.name}/{mv.version}")
    truth = (
        read_truth_energies(job.conditions.url) if job.conditions.distribution == "file" else None
    )
    lo, hi = energy_bounds(job.conditions, truth)
    trained = card.get("data", {}).get("e_inc_range")
    if (
        trained
        and not job.allow_out_of_range
        and (lo < trained[0] * 0.999 or hi > trained[1] * 1.001)
    ):
        raise FarmError(
            f"{job.name}: conditions span {lo:.4g}-{hi:.4g} MeV but model {mv.name}/{mv.version} "
            f"was trained on {trained[0]:.4g}-{trained[1]:.4g} MeV (set allow_out_of_range: true "
            "to generate anyway)"
        )
    if job.sampler_options:
        _check_sampler_options(f"{mv.name}/{mv.version}", sampler, nfe, job.sampler_options, [lo])
    from farm.campaign import validate

    validate.check(job, card, geometry, f"{mv.name}/{mv.version}", (lo, hi))
    return _store(job, mv, sampler, nfe, geometry, kind)


def _check_jet_truth(job: CampaignJob, card: dict[str, Any], mv, sampler: str, nfe: int) -> None:
    """A jet campaign's truth file must exist and fit the model's constituent slots."""
    from farm.campaign.conditions import read_truth_jets
    from farm.specs import JET_POINT_FEATURES

    if job.validation is not None:
        raise FarmError(
            f"{job.name}: validation: campaign validation covers showers; validate jets with "
            "`farm evaluate CAMPAIGN_ID REFERENCE`"
        )
    truth = read_truth_jets(job.conditions.url)
    slots = card["dim"] // JET_POINT_FEATURES
    if truth["counts"].max() > slots or truth["counts"].min() < 1:
        raise FarmError(
            f"{job.conditions.url}: constituent counts {truth['counts'].min()}.."
            f"{truth['counts'].max()} do not fit model {mv.name}/{mv.version} (1..{slots})"
        )
    if job.sampler_options:
        cond = [float(truth["pt"][0]), float(truth["counts"][0])]
        _check_sampler_options(f"{mv.name}/{mv.version}", sampler, nfe, job.sampler_options, cond)


def _store(
    job: CampaignJob, mv, sampler: str, nfe: int, geometry: str | None, kind: str
) -> dict[str, Any]:
    """Record a validated campaign (plan, resolved model version) and tag the model version."""
    campaign_id = records.new_id(job.name)
    output = store.normalize(job.output) if job.output else records.url(campaign_id, "output")
    output = store.join(output, campaign_id) if job.output else output
    store.check_writable(output)
    spec = resolved(job)
    spec.update(sampler=sampler, nfe=nfe)
    if job.validation is not None:
        spec["validation"]["events"] = job.validation_events
    campaign = {
        "id": campaign_id,
        "job": spec,
        "output": output,
        "kind": kind,
        "geometry": geometry,
        "model": {
            "ref": job.model,
            "name": mv.name,
            "version": str(mv.version),
            "source": mv.source,
            "run_id": mv.run_id,
        },
        "plan": Plan(job.events, job.shard_size, job.seed).to_dict(),
        "created": time.time(),
    }
    records.save(campaign)
    records.write_status(
        campaign_id,
        {"state": "submitted", "shards_done": 0, "shards_total": Plan(**campaign["plan"]).n_shards},
    )
    registry.client().set_model_version_tag(
        mv.name, mv.version, f"farm.campaign.{campaign_id}", output
    )
    return campaign


def _actor_env() -> dict[str, str]:
    env = {k: os.environ[k] for k in ENV_TO_ACTORS if os.environ.get(k)}
    env["FARM_HOME"] = store.home()
    env.setdefault("MLFLOW_TRACKING_URI", registry.tracking_uri())
    return env


class _Pool:
    """Actors with at most `depth` shards in flight each; dead actors are replaced.

    A replacement gets work only once it has loaded its model, so a lost node whose actor cannot
    be placed again (no free resources) never stalls the campaign: the other actors carry on.
    """

    def __init__(self, campaign: dict[str, Any], depth: int = 2):
        import ray

        from farm.campaign.worker import ShardWorker

        res = campaign["job"]["resources"]
        gpus = res["gpus_per_actor"]
        self.depth = depth
        self.campaign = campaign
        self.device = "cuda" if gpus > 0 else "cpu"
        self.remote_cls = ray.remote(ShardWorker)
        self.options = dict(
            num_cpus=res["cpus_per_actor"],
            num_gpus=gpus,
            resources=res.get("custom_resources") or None,
            max_concurrency=depth,
            max_restarts=0,
            runtime_env={"env_vars": _actor_env()},
        )
        self.threads = max(int(res["cpus_per_actor"]), 1)
        self.actors: dict[int, Any] = {}
        self.starting: dict[int, Any] = {}  # slot -> ready() ref of a replacement actor
        self.serial = 0
        self.restarts_left = max(3, 2 * res["actors"])
        slots = [self.spawn(wait=False) for _ in range(res["actors"])]
        for slot in slots:
            self.wait_ready(slot)

    def spawn(self, wait: bool = True) -> int:
        slot = self.serial
        self.serial += 1
        name = f"farm-{self.campaign['id']}-{slot}"
        self.actors[slot] = self.remote_cls.options(name=name, **self.options).remote(
            self.campaign, self.device, self.threads
        )
        if wait:
            self.wait_ready(slot)
        return slot

    def wait_ready(self, slot: int) -> None:
        """Block until an actor has loaded its model; a start-up error fails the campaign."""
        import ray

        try:
            ray.get(self.actors[slot].ready.remote())
        except Exception as exc:
            self.kill_all()
            raise CampaignFailed(
                f"campaign {self.campaign['id']}: generation actor failed to "
                f"start: {root_cause(exc)}"
            ) from None

    def replace(self, slot: int) -> None:
        """Replace a dead actor, within the restart budget."""
        if slot not in self.actors:
            return
        del self.actors[slot]
        if self.restarts_left == 0:
            self.kill_all()
            raise CampaignFailed(
                f"campaign {self.campaign['id']}: generation actors keep dying "
                "(restart budget exhausted); committed shards are kept, resume "
                "with `farm campaign resume`"
            )
        self.restarts_left -= 1
        slot = self.spawn(wait=False)
        self.starting[slot] = self.actors[slot].ready.remote()

    def ready_slots(self) -> list[int]:
        """Slots whose actor can take work: replacements that finished starting move here."""
        import ray

        if self.starting:
            refs = list(self.starting.values())
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            for slot, ref in list(self.starting.items()):
                if ref in ready:
                    del self.starting[slot]
                    try:
                        ray.get(ref)
                    except Exception:
                        self.replace(slot)
        return [slot for slot in self.actors if slot not in self.starting]

    def kill_all(self) -> None:
        import ray

        for actor in self.actors.values():
            ray.kill(actor)
        self.actors.clear()
        self.starting.clear()


def root_cause(exc: BaseException) -> str:
    """The last meaningful line of a (Ray-wrapped) error, for one-line reports."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    for line in reversed(lines):
        if "Error" in line or "Exception" in line or "Output" in line:
            return line[:400]
    return (lines[-1] if lines else type(exc).__name__)[:400]


def execute(
    campaign_id: str,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    poll_seconds: float = 0.5,
) -> dict[str, Any]:
    """Run (or resume) a campaign until all shards are committed; returns the summary."""
    import ray
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, RayTaskError

    from farm.ray_utils import ensure_ray

    campaign = records.load(campaign_id)
    plan = Plan(**campaign["plan"])
    output = campaign["output"]
    max_retries = campaign["job"]["resources"]["max_shard_retries"]
    records.clear_cancel(campaign_id)
    done = manifest.committed_ids(output)
    todo = collections.deque(i for i in range(plan.n_shards) if i not in done)
    skipped = len(done)
    pool = None
    if todo:  # a complete campaign (finalize or validation still to do) needs no actors
        ensure_ray()
        try:
            pool = _Pool(campaign)
        except CampaignFailed:
            records.write_status(
                campaign_id,
                {"state": "failed", "shards_done": len(done), "shards_total": plan.n_shards},
            )
            raise
    in_flight: dict[Any, tuple[int, int]] = {}
    attempts: collections.Counter[int] = collections.Counter()
    per_actor: collections.Counter[int] = collections.Counter()
    stats = {
        "events": sum(plan.shard(i).n for i in done),
        "bytes": 0,
        "actor_restarts": 0,
        "retries": 0,
    }
    t0, events_at_start, last_status = time.time(), stats["events"], 0.0
    state = "running"

    def status(final: str | None = None) -> dict[str, Any]:
        elapsed = max(time.time() - t0, 1e-9)
        rate = (stats["events"] - events_at_start) / elapsed
        remaining = plan.events - stats["events"]
        doc = {
            "state": final or state,
            "shards_done": len(done),
            "shards_total": plan.n_shards,
            "shards_running": len(in_flight),
            "shards_skipped": skipped,
            "events_done": stats["events"],
            "events_total": plan.events,
            "events_per_second": rate,
            "eta_seconds": remaining / rate if rate > 0 else None,
            "bytes_written": stats["bytes"],
            "actor_restarts": stats["actor_restarts"],
            "shard_retries": stats["retries"],
            "pid": os.getpid(),
            "started": t0,
        }
        return doc

    records.write_status(campaign_id, status())
    try:
        while todo or in_flight:
            for slot in pool.ready_slots():
                while todo and per_actor[slot] < pool.depth:
                    shard_id = todo.popleft()
                    ref = pool.actors[slot].run.remote(plan.shard(shard_id).to_dict())
                    in_flight[ref] = (slot, shard_id)
                    per_actor[slot] += 1
            waiting = list(in_flight) + list(pool.starting.values())
            ready, _ = ray.wait(waiting, num_returns=1, timeout=poll_seconds)
            for ref in ready:
                if ref not in in_flight:
                    continue  # a replacement actor is ready: it gets work next round
                slot, shard_id = in_flight.pop(ref)
                per_actor[slot] -= 1
                try:
                    record = ray.get(ref)
                except (ActorDiedError, ActorUnavailableError, RayActorError):
                    # The actor is gone: replace it once, requeue everything it held.
                    if slot in pool.actors:
                        stats["actor_restarts"] += 1
                    todo.appendleft(shard_id)
                    pool.replace(slot)
                    continue
                except RayTaskError as exc:
                    attempts[shard_id] += 1
                    stats["retries"] += 1
                    cause = root_cause(exc)
                    if attempts[shard_id] > max_retries:
                        raise CampaignFailed(
                            f"campaign {campaign_id}: shard {shard_id} failed "
                            f"{attempts[shard_id]} times ({cause}); no bad shard was committed, "
                            f"{len(done)} of {plan.n_shards} shards are complete"
                        ) from None
                    todo.append(shard_id)
                    continue
                done.add(shard_id)
                stats["events"] += record["events"]
                stats["bytes"] += record["bytes"]
            if records.cancel_requested(campaign_id):
                state = "cancelled"
                break
            if time.time() - last_status > 2.0 or not (todo or in_flight):
                last_status = time.time()
                doc = status()
                records.write_status(campaign_id, doc)
                if on_progress:
                    on_progress(doc)
    except CampaignFailed:
        records.write_status(campaign_id, status("failed"))
        raise
    finally:
        if pool is not None:
            pool.kill_all()
    if state == "cancelled":
        records.write_status(campaign_id, status("cancelled"))
        return status("cancelled")
    summary = finalize(campaign)
    records.write_status(campaign_id, {**status("finished"), "summary": summary})
    if on_progress:
        on_progress(status("finished"))
    if campaign["job"].get("validation"):
        from farm.campaign.validate import short, validate

        summary["validation"] = short(validate(campaign))
    return summary


def finalize(campaign: dict[str, Any]) -> dict[str, Any]:
    """Check completeness (exact events, no duplicate ids), write manifest.parquet + summary.json."""
    plan = Plan(**campaign["plan"])
    output = campaign["output"]
    recs = store.with_retries(lambda: manifest.read_records(output), "reading the manifest")
    ids = [r["shard"] for r in recs]
    if sorted(ids) != list(range(plan.n_shards)):
        missing = sorted(set(range(plan.n_shards)) - set(ids))[:10]
        raise FarmError(f"campaign {campaign['id']}: shards missing from the manifest: {missing}")
    covered = sum(r["event_id_stop"] - r["event_id_start"] for r in recs)
    events = sum(r["events"] for r in recs)
    ranges_ok = all(a["event_id_stop"] == b["event_id_start"] for a, b in itertools.pairwise(recs))
    if events != plan.events or covered != plan.events or not ranges_ok:
        raise FarmError(
            f"campaign {campaign['id']}: manifest covers {covered} events, expected {plan.events}"
        )
    manifest_url = store.with_retries(
        lambda: manifest.write_parquet(output, recs), f"writing the manifest of {campaign['id']}"
    )
    summary = {
        "campaign": campaign["id"],
        "events": events,
        "shards": len(recs),
        "model": f"{campaign['model']['name']}/{campaign['model']['version']}",
        "sampler": campaign["job"]["sampler"],
        "nfe": campaign["job"]["nfe"],
        "geometry": campaign["geometry"],
        "formats": campaign["job"]["formats"],
        "bytes": sum(r["bytes"] for r in recs),
        "event_id_range": [0, plan.events],
        "seed": plan.seed,
        "manifest": manifest_url,
        "files": {fmt: store.join(output, fmt) for fmt in campaign["job"]["formats"]},
        "sample_seconds": sum(r["seconds_sample"] for r in recs),
        "write_seconds": sum(r["seconds_write"] for r in recs),
        "dataset_sha256": _dataset_checksum(recs),
    }
    summary_url = store.join(output, "summary.json")
    store.with_retries(
        lambda: store.write_text(summary_url, json.dumps(summary, indent=2)),
        f"writing {summary_url}",
    )
    return summary


def _dataset_checksum(recs: list[dict[str, Any]]) -> str:
    import hashlib

    h = hashlib.sha256()
    for r in recs:
        h.update(r["content_sha256"].encode())
    return h.hexdigest()
