"""The pool of generation actors: at most `depth` shards in flight each, dead actors replaced."""

from __future__ import annotations

import os
from typing import Any

from farm import registry, store
from farm.allocator import malloc_env
from farm.errors import FarmError, root_cause
from farm.records import CampaignRecord

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
    "FARM_ALLOWED_LOCATIONS",
    "FARM_GEOMETRY_DIR",
    "FARM_FAULT_KILL_ACTOR",
)


class CampaignFailed(FarmError):
    """A shard failed repeatedly, or actors could not be kept alive; nothing bad was committed."""


def _actor_env() -> dict[str, str]:
    """The environment actors need (store, S3, MLflow), which remote nodes do not share.

    With farm.allocator's malloc settings (FARM_ALLOCATOR=glibc: none), since generation actors
    and Serve replicas sample batches.
    """
    env = {k: os.environ[k] for k in ENV_TO_ACTORS if os.environ.get(k)} | malloc_env()
    env["FARM_HOME"] = store.home()
    env.setdefault("MLFLOW_TRACKING_URI", registry.tracking_uri())
    return env


class ActorPool:
    """Actors with at most `depth` shards in flight each; dead actors are replaced.

    A replacement gets work only once it has loaded its model, so a lost node whose actor cannot
    be placed again (no free resources) never stalls the campaign: the other actors carry on. An
    actor killed while it loads its model (OOM, SIGKILL, a lost node) is replaced like one killed
    mid-shard; an error raised while loading (a bad model, a missing file) fails the campaign,
    since every replacement would raise it again.
    """

    def __init__(self, campaign: CampaignRecord, depth: int | None = None):
        """Start `resources.actors` actors and wait until each has loaded its model.

        `depth` (default `resources.max_in_flight`) bounds the shards in flight per actor.
        """
        import ray

        from farm.campaign.worker import ShardWorker

        res = campaign.job.resources
        gpus = res.gpus_per_actor
        self.depth = depth or res.max_in_flight or res.writers + 1
        self.campaign = campaign
        self.device = "cuda" if gpus > 0 else "cpu"
        self.remote_cls = ray.remote(ShardWorker)
        self.options = dict(
            num_cpus=res.cpus_per_actor,
            num_gpus=gpus,
            resources=res.custom_resources or None,
            max_concurrency=self.depth,
            max_restarts=0,
            runtime_env={"env_vars": _actor_env()},
        )
        self.threads = max(int(res.cpus_per_actor), 1)
        self.actors: dict[int, Any] = {}
        self.starting: dict[int, Any] = {}  # slot -> ready() ref of a replacement actor
        self.serial = 0
        self.restarts = 0
        self.restarts_left = max(3, 2 * res.actors)
        slots = [self.spawn() for _ in range(res.actors)]
        for slot in slots:
            self.wait_ready(slot)

    def spawn(self) -> int:
        """Start one actor in a new slot (it loads its model in the background)."""
        slot = self.serial
        self.serial += 1
        name = f"farm-{self.campaign.id}-{slot}"
        self.actors[slot] = self.remote_cls.options(name=name, **self.options).remote(
            self.campaign, self.device, self.threads
        )
        return slot

    def wait_ready(self, slot: int) -> None:
        """Block until an actor has loaded its model, replacing it (and its replacements) if killed."""
        import ray

        while True:
            try:
                ray.get(self.actors[slot].ready.remote())
                return
            except Exception as exc:
                self._start_failed(exc)
                slot = self._respawn(slot)

    def _start_failed(self, exc: BaseException) -> None:
        """Fail the campaign on an error raised while loading; return if the actor was killed."""
        if killed(exc):
            return
        self.kill_all()
        raise CampaignFailed(
            f"campaign {self.campaign.id}: generation actor failed to start: {root_cause(exc)}"
        ) from None

    def _respawn(self, slot: int) -> int:
        """A new actor in place of a dead one, within the restart budget; its slot."""
        del self.actors[slot]
        self.starting.pop(slot, None)
        if self.restarts_left == 0:
            self.kill_all()
            raise CampaignFailed(
                f"campaign {self.campaign.id}: generation actors keep dying "
                "(restart budget exhausted); committed shards are kept, resume "
                "with `farm campaign resume`"
            )
        self.restarts_left -= 1
        self.restarts += 1
        return self.spawn()

    def replace(self, slot: int) -> None:
        """Replace a dead actor, within the restart budget (it gets work once it has loaded)."""
        if slot not in self.actors:
            return
        slot = self._respawn(slot)
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
                    except Exception as exc:
                        self._start_failed(exc)
                        self.replace(slot)
        return [slot for slot in self.actors if slot not in self.starting]

    def kill_all(self) -> None:
        """Kill every actor of the pool."""
        import ray

        for actor in self.actors.values():
            ray.kill(actor)
        self.actors.clear()
        self.starting.clear()


def killed(exc: BaseException) -> bool:
    """Whether an actor error means the process died (killed, OOM, node lost), not an exception."""
    from ray.exceptions import ActorUnavailableError, RayActorError

    if isinstance(exc, ActorUnavailableError):
        return True
    return isinstance(exc, RayActorError) and not exc.actor_init_failed
