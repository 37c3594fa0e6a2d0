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
from farm.generation import (
    NonFiniteOutput,
    SamplerSettings,
    event_sample,
    jet_sample,
    point_sample,
)
from farm.generation.jets import jet_slots
from farm.generation.settings import refuse_non_finite
from farm.geometry import load_cell_geometry
from farm.samples import DIS_KINEMATICS, EventSample, JetTruth, unknown_pdg
from farm.serve.api import KIND_UNITS, UNITS, Job, Result, error

log = logging.getLogger(__name__)
BATCH_LOG = 1000
"""Batch sizes kept for /v1/models (the last this many sampler calls)."""
CONDITIONED_AS = {"showers": "showers", "points": "showers", "jets": "jets", "events": "events"}
"""The request kind (energies, jets, truth) that conditions each model kind."""


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
            **_slots(loaded),
            "geometry": card.data.geometry,
            "e_inc_range": card.data.e_inc_range,
            "sampler": loaded.model.default_sampler,
            "nfe": loaded.model.config.sampler.nfe,
            "units": KIND_UNITS.get(card.kind, UNITS),
            "batch_sizes": list(self.batch_sizes),
        }

    def check(self, job: Job) -> Result | None:
        """A 4xx for conditions of another kind or outside the trained range, or a bad sampler."""
        loaded = self.loaded
        kind = loaded.card.kind
        if job.kind != CONDITIONED_AS[kind]:
            want = {"showers": "energies", "jets": "jets", "events": "truth"}[CONDITIONED_AS[kind]]
            given = {"showers": "energies", "jets": "jets", "events": "truth"}[job.kind]
            return error(400, f"model {loaded.key} generates {kind}: give '{want}', not '{given}'")
        checks = {"showers": _check_energies, "jets": _check_jets, "events": _check_events}
        refused = checks[job.kind](loaded, job)
        if refused is not None:
            return refused
        sampler, nfe = _sampler(loaded, job)
        try:
            process = getattr(loaded.model, "process", None) or loaded.model.config.process.build()
            process.check_sampler(sampler, nfe)
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


def _slots(loaded) -> dict[str, int]:
    """The model's set sizes: constituent slots (jets) or truth / reco slots (events)."""
    kind = loaded.card.kind
    if kind == "jets":
        return {"constituent_slots": jet_slots(loaded.model)}
    if kind == "events":
        return {"truth_slots": loaded.model.truth_max, "reco_slots": loaded.model.reco_max}
    return {}


def _sampler(loaded, job: Job) -> tuple[str, int | None]:
    """The sampler name and NFE a job runs with (the card's unless the request names them)."""
    model = loaded.model
    if hasattr(model, "sampler_settings"):  # GenerativeModel: its own defaults
        sampler, nfe, _ = model.sampler_settings(job.sampler, job.nfe, None)
        return sampler, nfe
    return job.sampler or model.default_sampler, job.nfe or model.config.sampler.nfe


def _check_energies(loaded, job: Job) -> Result | None:
    """Incident energies must be positive, finite and inside the trained range."""
    lo, hi = float(job.conditions.min()), float(job.conditions.max())
    if not (np.isfinite(lo) and np.isfinite(hi) and lo > 0):
        return error(400, "energies must be positive and finite (MeV)")
    if loaded.card.outside_trained_range(lo, hi):
        a, b = loaded.card.data.e_inc_range
        return error(
            400,
            f"energies span {lo:.4g}-{hi:.4g} MeV but model {loaded.key} was trained on "
            f"{a:.4g}-{b:.4g} MeV",
        )
    return None


def _check_jets(loaded, job: Job) -> Result | None:
    """Constituent counts must fit the model's slots (what a jet card records of its range)."""
    slots, counts = jet_slots(loaded.model), job.conditions.counts
    if counts.max() > slots:
        return error(
            400,
            f"field 'jets': n up to {int(counts.max())} but model {loaded.key} has "
            f"{slots} constituent slots (n in 1..{slots})",
        )
    return None


def _check_events(loaded, job: Job) -> Result | None:
    """Events conditioned as the model is (truth sets or the scattered electron), truth pdg ids.

    Truth sets must fit the truth slots unless truncated; see `_check_electrons`.
    """
    truth, condition = job.conditions, getattr(loaded.model, "condition", "truth_set")
    if condition != job.condition:
        asked = (
            "the scattered electron: give 'electrons' (truth may come with them, for charges)"
            if condition == "scattered_electron"
            else "truth sets: give 'truth' without 'electrons'"
        )
        return error(400, f"model {loaded.key} is conditioned on {asked}")
    bad = unknown_pdg(truth.truth["pdg"])
    if bad is not None:
        return error(400, f"field 'truth': unknown pdg id {bad} (not a stable particle)")
    if condition == "scattered_electron":
        return _check_electrons(loaded, job)
    slots = loaded.model.truth_max
    over = int((truth.truth_counts > slots).sum())
    if over and not job.truncate:
        return error(
            400,
            f"field 'truth': {over} event(s) have more than {slots} truth particles (largest "
            f"{int(truth.truth_counts.max())}); model {loaded.key} takes at most {slots}: "
            "set truncate: true to keep the highest-pT ones",
        )
    return None


def _check_electrons(loaded, job: Job) -> Result | None:
    """Nothing to truncate; a model with dis_kinematics needs x, q2 and y of every electron."""
    if job.truncate:
        return error(
            400,
            f"truncate: model {loaded.key} is conditioned on the scattered electron, not on "
            "truth sets: nothing to truncate",
        )
    if not loaded.model.config.dis_kinematics:
        return None
    event = job.conditions.event
    names = ("x", "q2", "y")
    missing = [
        k for k, c in zip(names, DIS_KINEMATICS, strict=True) if not np.isfinite(event[c]).all()
    ]
    if missing:
        return error(
            400,
            f"field 'electrons': model {loaded.key} is conditioned on x, Q^2 and y as well "
            f"(dis_kinematics): give {', '.join(missing)} for every electron",
        )
    return None


def _merge(jobs: list[Job]) -> Any:
    """The conditions of several jobs of one kind, in order."""
    parts = [job.conditions for job in jobs]
    kind = jobs[0].kind
    if kind == "jets":
        return JetTruth(
            *(np.concatenate([getattr(p, a) for p in parts]) for a in JetTruth.__dataclass_fields__)
        )
    if kind == "events":
        merged = EventSample.concat(parts, {})
        merged.event["event_index"] = np.arange(len(merged))
        merged.event_id = np.arange(len(merged))
        return merged
    return np.concatenate(parts)


def _generate(loaded, job: Job, conditions: Any, generator: torch.Generator) -> Any:
    """Showers (array), a PointSample, JetSample or EventSample, as `farm generate` samples."""
    settings = SamplerSettings(sampler=job.sampler, nfe=job.nfe)
    if job.kind == "jets":
        return jet_sample(loaded.model, conditions, generator=generator, settings=settings)
    if job.kind == "events":
        return event_sample(
            loaded.model, conditions, generator=generator, settings=settings, truncate=job.truncate
        )
    if loaded.card.kind == "points":
        geometry = load_cell_geometry(loaded.card.data.geometry)
        return point_sample(
            loaded.model, conditions, geometry, generator=generator, settings=settings
        )
    cond = torch.from_numpy(conditions).reshape(-1, 1).float()
    showers = settings.generate(loaded.model, cond, generator)
    refuse_non_finite("voxel", showers)
    return showers


def _sample(loaded, jobs: list[Job]) -> list[Result]:
    """Sample the jobs of one batch (runs off the event loop)."""
    results: list[Result | None] = [None] * len(jobs)
    groups: dict[tuple, list[int]] = {}
    for i, job in enumerate(jobs):
        key = (
            ("seed", i) if job.seed is not None else (job.kind, job.sampler, job.nfe, job.truncate)
        )
        groups.setdefault(key, []).append(i)
    for members in groups.values():
        first = jobs[members[0]]
        seed = first.seed if first.seed is not None else int(time.time_ns() % 2**63)
        conditions = first.conditions if len(members) == 1 else _merge([jobs[i] for i in members])
        try:
            out = _generate(loaded, first, conditions, torch.Generator().manual_seed(seed))
        except (NonFiniteOutput, FarmError, ValueError) as exc:
            for i in members:
                results[i] = error(500 if isinstance(exc, NonFiniteOutput) else 400, str(exc))
            continue
        sampler, nfe = _sampler(loaded, first)
        kind = loaded.card.kind if loaded.card.kind == "points" else first.kind
        header = {
            "model": loaded.version.name,
            "version": str(loaded.version.version),
            "served_by": loaded.key,
            "kind": kind,
            "geometry": loaded.card.data.geometry,
            "sampler": sampler,
            "nfe": nfe,
            "seed": first.seed,
            "merged_requests": len(members),
            "units": KIND_UNITS[kind],
        }
        start = 0
        for i in members:
            n = len(jobs[i])
            rows = np.arange(start, start + n)
            if kind == "showers":
                results[i] = Result(showers=out[rows], e_inc=jobs[i].conditions, header=header)
            else:
                part = out if len(members) == 1 else out.subset(rows)
                if first.kind == "events":
                    part = _own_events(part, jobs[i], out.provenance)
                    header = {**header, "sets": part.provenance}
                results[i] = Result(sample=part, header=header)
            start += n
    return [r for r in results if r is not None]


def _own_events(part: EventSample, job: Job, provenance: dict[str, Any]) -> EventSample:
    """A request's share of a merged events batch, numbered from 0 with its own provenance."""
    n = len(part)
    part.event_id = np.arange(n)
    part.event = {**part.event, "event_index": np.arange(n)}
    truncated = (
        0
        if job.condition == "scattered_electron"
        else int((job.conditions.truth_counts > provenance["truth_slots"]).sum())
    )
    part.provenance = {**provenance, "truncated_events": truncated}
    return part
