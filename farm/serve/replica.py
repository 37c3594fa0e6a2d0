"""One model's Serve deployment: loads the version its reference points to, batches requests.

Concurrent requests are merged by Serve's dynamic batching (`serve.batch`) into one sampler call
through `farm.generation` (the NaN/Inf policy included). A seeded request is sampled on its own
with `torch.Generator().manual_seed(seed)`, exactly as `farm generate --seed` samples, because
matrix kernels round differently for different batch sizes. A thread polls the registry and
loads the version an alias moves to; batches already running keep the model they started with.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from typing import Any

import numpy as np
import torch
from ray import serve

from farm import registry
from farm.errors import FarmError
from farm.generation import NonFiniteOutput, SamplerSettings
from farm.generation.settings import refuse_non_finite
from farm.serve.api import UNITS, Job, Result, error

log = logging.getLogger(__name__)
BATCH_LOG = 1000
"""Batch sizes kept for /v1/models (the last this many sampler calls)."""


class ModelServer:
    """Serve replica of one registered model (NAME@ALIAS, NAME/VERSION or NAME)."""

    def __init__(
        self,
        ref: str,
        env: dict[str, str],
        *,
        device: str = "cpu",
        max_batch_size: int = 16,
        batch_wait_s: float = 0.01,
        poll_s: float = 5.0,
        threads: int = 1,
    ):
        """Load the model (FARM_HOME, MLflow from `env`), configure the batcher, start polling."""
        os.environ.update(env)
        torch.set_num_threads(threads)  # one per CPU of the replica, as campaign actors do
        self.ref, self.device, self.poll_s = ref, device, poll_s
        self.loaded = registry.load(ref, device=device)
        self.batch_sizes: list[int] = []
        self.generate_batch.set_max_batch_size(max_batch_size)
        self.generate_batch.set_batch_wait_timeout_s(batch_wait_s)
        self.stop = threading.Event()
        if registry.parse_ref(ref).version is None:  # an alias or "latest" can move
            threading.Thread(target=self._poll, daemon=True, name="farm-serve-poll").start()

    def _poll(self) -> None:
        """Load the version the reference points to whenever it changes (alias moves)."""
        while not self.stop.wait(self.poll_s):
            try:
                mv = registry.resolve(self.ref)
                if str(mv.version) != str(self.loaded.version.version):
                    self.loaded = registry.load(f"{mv.name}/{mv.version}", device=self.device)
                    log.info("%s now serves %s", self.ref, self.loaded.key)
            except Exception as exc:  # keep serving the loaded version; try again later
                log.warning("polling %s failed: %s", self.ref, exc)

    def info(self) -> dict[str, Any]:
        """The served version, its aliases, a card summary and the batch sizes seen."""
        loaded = self.loaded
        card = loaded.card
        return {
            "name": loaded.version.name,
            "ref": self.ref,
            "version": str(loaded.version.version),
            "aliases": sorted(loaded.version.aliases),
            "kind": card.kind,
            "dim": card.dim,
            "geometry": card.data.geometry,
            "e_inc_range": card.data.e_inc_range,
            "sampler": loaded.model.default_sampler,
            "nfe": loaded.model.config.sampler.nfe,
            "units": UNITS,
            "batch_sizes": list(self.batch_sizes),
        }

    def check(self, job: Job) -> Result | None:
        """A 4xx result for energies outside the trained range or an unknown sampler/NFE."""
        loaded = self.loaded
        lo, hi = float(job.e_inc.min()), float(job.e_inc.max())
        if not (np.isfinite(lo) and np.isfinite(hi) and lo > 0):
            return error(400, "energies must be positive and finite (MeV)")
        if loaded.card.outside_trained_range(lo, hi):
            a, b = loaded.card.data.e_inc_range
            return error(
                400,
                f"energies span {lo:.4g}-{hi:.4g} MeV but model {loaded.key} was trained on "
                f"{a:.4g}-{b:.4g} MeV",
            )
        sampler, nfe, _ = loaded.model.sampler_settings(job.sampler, job.nfe, None)
        try:
            loaded.model.process.check_sampler(sampler, nfe)
        except ValueError as exc:
            return error(400, str(exc))
        return None

    async def generate(self, job: Job) -> Result:
        """Showers for one request (checked first, then batched with concurrent ones)."""
        refused = self.check(job)
        return refused or await self.generate_batch(job)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def generate_batch(self, jobs: list[Job]) -> list[Result]:
        """One sampler call per (sampler, NFE) for unseeded jobs; seeded jobs one by one."""
        loaded = self.loaded  # a moved alias takes effect from the next batch
        self.batch_sizes = [*self.batch_sizes[-BATCH_LOG + 1 :], len(jobs)]
        return await asyncio.get_running_loop().run_in_executor(None, _sample, loaded, jobs)


def _sample(loaded, jobs: list[Job]) -> list[Result]:
    """Sample the jobs of one batch (runs off the event loop)."""
    results: list[Result | None] = [None] * len(jobs)
    groups: dict[tuple, list[int]] = {}
    for i, job in enumerate(jobs):
        key = ("seed", i) if job.seed is not None else (job.sampler, job.nfe)
        groups.setdefault(key, []).append(i)
    for members in groups.values():
        first = jobs[members[0]]
        settings = SamplerSettings(sampler=first.sampler, nfe=first.nfe)
        seed = first.seed if first.seed is not None else int(time.time_ns() % 2**63)
        e_inc = np.concatenate([jobs[i].e_inc for i in members])
        cond = torch.from_numpy(e_inc).reshape(-1, 1).float()
        try:
            showers = settings.generate(loaded.model, cond, torch.Generator().manual_seed(seed))
            refuse_non_finite("voxel", showers)
        except (NonFiniteOutput, FarmError, ValueError) as exc:
            for i in members:
                results[i] = error(500 if isinstance(exc, NonFiniteOutput) else 400, str(exc))
            continue
        sampler, nfe, _ = loaded.model.sampler_settings(first.sampler, first.nfe, None)
        header = {
            "model": loaded.version.name,
            "version": str(loaded.version.version),
            "served_by": loaded.key,
            "kind": "showers",
            "geometry": loaded.card.data.geometry,
            "sampler": sampler,
            "nfe": nfe,
            "seed": first.seed,
            "merged_requests": len(members),
            "units": UNITS,
        }
        start = 0
        for i in members:
            n = len(jobs[i].e_inc)
            results[i] = Result(
                showers=showers[start : start + n], e_inc=jobs[i].e_inc, header=header
            )
            start += n
    return [r for r in results if r is not None]
