"""The generation actor: loads a registered model once, samples shards, commits them exactly once.

Up to `max_in_flight` calls run at once per actor (max_concurrency): sampling is serialised by a
lock (one model, one device) and each sampled shard then waits for one of `writers` writer slots
(a bounded semaphore) to compress and upload it, so the device does not wait on I/O and at most
`max_in_flight` shards per actor are in memory (backpressure: the driver hands an actor a new shard
only when one of its calls returns). With `writers: 0` the sampling lock is the only writer slot:
each shard is written before the next is sampled. The record is written last, after every file is
in place (the commit point), so a writer killed or failing leaves a shard to redo, never a
duplicate.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from collections.abc import Callable

import numpy as np

from farm import faults, store
from farm.campaign import manifest
from farm.campaign.conditions import shard_energies, shard_event_truth, shard_jet_truth
from farm.formats.files import EXTENSION
from farm.generation import (
    SamplerSettings,
    event_sample,
    jet_sample,
    point_sample,
    shower_sample,
)
from farm.geometry import load_cell_geometry, load_geometry
from farm.records import CampaignRecord, ShardFile, ShardRecord
from farm.samples import JetSample, PointSample, ShowerSample
from farm.sharding import Shard
from farm.store import with_retries


def shard_path(fmt: str, shard_id: int) -> str:
    """A shard file's path relative to the campaign output: <fmt>/shard-<id:08d>.<ext>."""
    return f"{fmt}/shard-{shard_id:08d}.{EXTENSION[fmt]}"


def content_checksum(events: np.ndarray, conditions: np.ndarray, event_ids: np.ndarray) -> str:
    """sha256 of a shard's arrays, independent of file-format timestamps.

    Hashes event ids, conditions (incident energies, or jet features) and events (voxel energies,
    or jet constituents).
    """
    h = hashlib.sha256()
    for a in (event_ids.astype(np.int64), conditions.astype(np.float64), events.astype(np.float32)):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


class ShardWorker:
    """Ray actor body (wrapped with ray.remote by the driver)."""

    def __init__(self, campaign: CampaignRecord, device: str, threads: int | None = None):
        """Load the campaign's model version once, and its truth conditions if any."""
        import torch

        from farm import registry
        from farm.formats.reader import read_truth_energies, read_truth_jets

        if threads:
            torch.set_num_threads(threads)
        faults.arm_actor()
        store.clean_stale_uploads()  # staging folders of actors killed mid-upload on this node
        self.campaign = campaign
        self.device = device
        job = campaign.job
        faults.kill_once("loading")
        self.model = registry.load(campaign.model.key, device=device).model
        if job.resources.compile:
            self.model.net = torch.compile(self.model.net)
        self.conditions = job.conditions
        self.jets = campaign.kind == "jets"
        self.points = campaign.kind == "points"
        self.events = campaign.kind == "events"
        if self.points:
            self.geometry = load_cell_geometry(campaign.geometry)
        else:
            self.geometry = None if self.jets or self.events else load_geometry(campaign.geometry)
        if self.events:
            from farm.formats.reader import read_events

            self.truth = read_events(self.conditions.url)
        elif self.jets:
            self.truth = read_truth_jets(self.conditions.url)
        elif self.conditions.distribution == "file":
            self.truth = read_truth_energies(self.conditions.url)
        else:
            self.truth = None
        on_gpu = device.startswith("cuda") and job.resources.bf16
        self.settings = SamplerSettings(
            sampler=campaign.sampler,
            nfe=campaign.nfe,
            options=dict(job.sampler_options),
            batch_size=job.resources.batch_size,
            autocast_dtype=torch.bfloat16 if on_gpu else None,
        )
        self.lock = threading.Lock()
        writers = job.resources.writers
        self.writer_slots = threading.BoundedSemaphore(writers) if writers else self.lock
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def ready(self) -> str:
        """The actor's name, once its model is loaded."""
        return self.name

    def run(self, shard: Shard) -> ShardRecord:
        """Generate, check, write and commit one shard; returns its manifest record."""
        import torch

        t0 = time.perf_counter()
        with self.lock:
            t_wait = time.perf_counter()
            generator = torch.Generator(self.device).manual_seed(shard.seed)
            sample = self._sample(shard, generator)
            t_sampled = time.perf_counter()
        sample.event_id = shard.event_ids()
        with self.writer_slots:  # a free writer slot (the sampling lock itself when writers = 0)
            files, nbytes = self._write_files(shard, sample)
        t_written = time.perf_counter()
        if self.events:
            reco = np.stack([sample.reco[k].astype(np.float32) for k in ("pt", "eta", "phi")])
            counts = np.concatenate([sample.truth_counts, sample.reco_counts])
            checksum = content_checksum(reco, counts, sample.event_id)
        elif self.jets:
            checksum = content_checksum(sample.constituents, sample.jet_features, sample.event_id)
        elif self.points:
            hits = np.concatenate([sample.hits.ravel(), sample.layer.astype(np.float32)])
            conditions = np.concatenate([sample.e_inc, sample.counts])
            checksum = content_checksum(hits, conditions, sample.event_id)
        else:
            checksum = content_checksum(sample.showers, sample.e_inc, sample.event_id)
        return self._commit(shard, files, nbytes, checksum, (t0, t_wait, t_sampled, t_written))

    def _sample(self, shard: Shard, generator) -> ShowerSample | JetSample | PointSample:
        """The shard's events from its conditions (NonFiniteOutput refuses the shard)."""
        if self.events:
            truth = shard_event_truth(self.truth, shard)
            return event_sample(
                self.model,
                truth,
                generator=generator,
                settings=self.settings,
                truncate=self.conditions.truncate,
            )
        if self.jets:
            truth = shard_jet_truth(self.truth, shard)
            return jet_sample(self.model, truth, generator=generator, settings=self.settings)
        e_inc = shard_energies(self.conditions, shard, self.truth)
        if self.points:
            return point_sample(
                self.model, e_inc, self.geometry, generator=generator, settings=self.settings
            )
        return shower_sample(
            self.model, e_inc, self.geometry, generator=generator, settings=self.settings
        )

    def _commit(
        self,
        shard: Shard,
        files: dict[str, ShardFile],
        nbytes: int,
        checksum: str,
        times: tuple[float, float, float, float],
    ) -> ShardRecord:
        """Write the shard's manifest record: the commit point of exactly-once."""
        campaign = self.campaign
        t0, t_wait, t_sampled, t_written = times
        record = ShardRecord(
            shard=shard.id,
            events=shard.n,
            event_id_start=shard.start,
            event_id_stop=shard.stop,
            seed=shard.seed,
            model=campaign.model.key,
            sampler=campaign.sampler,
            nfe=campaign.nfe,
            sampler_options=dict(campaign.job.sampler_options),
            compiled=campaign.job.resources.compile,
            content_sha256=checksum,
            files=files,
            bytes=nbytes,
            worker=self.name,
            device=self.device,
            seconds_wait=t_wait - t0,
            seconds_sample=t_sampled - t_wait,
            seconds_write=t_written - t_sampled,
            committed_at=time.time(),
        )
        output = campaign.output_url
        with_retries(
            lambda: manifest.write_record(output, record), f"manifest for shard {shard.id}"
        )
        return record

    def _write_files(
        self, shard: Shard, sample: ShowerSample | JetSample
    ) -> tuple[dict[str, ShardFile], int]:
        """Each format's file, committed atomically with retries: ({fmt: file}, bytes)."""
        from farm.formats.reader import write_sample

        meta = {"campaign": self.campaign.id, "model": self.campaign.model.key, "shard": shard.id}
        files, nbytes = {}, 0
        for fmt in self.campaign.job.formats:
            path = shard_path(fmt, shard.id)
            url = self.campaign.path(path)
            write: Callable[[], str] = lambda url=url: write_sample(url, sample, meta)  # noqa: E731
            with_retries(write, f"writing {url}")
            fs, fs_path = store.filesystem(url)
            size = int(with_retries(lambda fs=fs, p=fs_path: fs.size(p), f"stat {url}"))
            files[fmt] = ShardFile(path=path, bytes=size)
            nbytes += size
        return files, nbytes
