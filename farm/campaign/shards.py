"""A campaign's shard path without Ray or MLflow: sample, write the files, commit the record last.

`ShardMaker` holds one loaded model and runs shards the way a generation actor does: sampling is
serialised by a lock (one model, one device) and each sampled shard then waits for one of
`resources.writers` writer slots (a bounded semaphore) to encode and write it, so at most
`writers` shards encode at once while the next one samples. With `writers: 0` the sampling lock
is the only writer slot: each shard is written before the next is sampled. Callers run up to
`resources.max_in_flight` `run` calls at once from threads (a Ray actor's max_concurrency, or
bench/gpu_campaign.py's thread pool). The record is written last, after every file is in place
(the commit point of exactly-once), so a writer killed or failing leaves a shard to redo, never a
duplicate.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from farm import store
from farm.campaign import manifest
from farm.campaign.conditions import (
    pythia_config,
    shard_energies,
    shard_event_truth,
    shard_jet_truth,
    shard_pythia_truth,
)
from farm.errors import FarmError
from farm.formats.files import EXTENSION
from farm.generation import (
    NonFiniteOutput,
    SamplerSettings,
    event_sample,
    jet_sample,
    point_sample,
    shower_sample,
)
from farm.geometry import load_cell_geometry, load_geometry
from farm.records import CampaignRecord, ShardFile, ShardRecord
from farm.samples import EventSample, JetSample, PointSample, ShowerSample
from farm.sharding import Shard
from farm.store import with_retries

Sample = ShowerSample | JetSample | PointSample | EventSample


def shard_path(fmt: str, shard_id: int) -> str:
    """A shard file's path relative to the campaign output: <fmt>/shard-<id:08d>.<ext>."""
    return f"{fmt}/shard-{shard_id:08d}.{EXTENSION[fmt]}"


def content_checksum(events: np.ndarray, conditions: np.ndarray, event_ids: np.ndarray) -> str:
    """sha256 of a shard's arrays, independent of file-format timestamps.

    Hashes event ids, conditions (incident energies, or jet features) and events (voxel energies,
    or jet constituents).
    """
    h = hashlib.sha256()
    for a, dtype in ((event_ids, np.int64), (conditions, np.float64), (events, np.float32)):
        # the arrays' own buffers when they already have the dtype (no copies: the digest is
        # the same, a 15k DS1 shard hashes in 16 ms instead of 23)
        h.update(np.ascontiguousarray(a, dtype=dtype))
    return h.hexdigest()


class ShardMaker:
    """One loaded model's shard path: sample under a lock, write in a writer slot, commit last."""

    def __init__(self, campaign: CampaignRecord, model: Any, device: str):
        """Hold the model (loaded by the caller) and the campaign's truth conditions if any."""
        import torch

        from farm.formats.reader import read_events, read_truth_energies, read_truth_jets

        self.campaign = campaign
        self.device = device
        self.model = model
        job = campaign.job
        self.conditions = job.conditions
        self.jets = campaign.kind == "jets"
        self.points = campaign.kind == "points"
        self.events = campaign.kind == "events"
        self.pythia = self.conditions.distribution == "pythia"
        if self.points:
            self.geometry = load_cell_geometry(campaign.geometry)
        else:
            self.geometry = None if self.jets or self.events else load_geometry(campaign.geometry)
        self.pythia8mc = None
        if self.pythia:
            from farm.data.events import pythia_version

            self.truth = None  # generated per shard (`shard_truth`)
            self.pythia8mc = pythia_version()
        elif self.events:
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

    def run(self, shard: Shard) -> ShardRecord:
        """Generate, check, write and commit one shard; returns its manifest record."""
        t_truth = time.perf_counter()
        truth = self.shard_truth(shard)  # Pythia, outside the lock: overlaps others' sampling
        t0 = time.perf_counter()
        with self.lock:
            t_wait = time.perf_counter()
            sample = self.sample(shard, truth)
            t_sampled = time.perf_counter()
        sample.event_id = shard.event_ids()
        with self.writer_slots:  # a free writer slot (the sampling lock itself when writers = 0)
            files, nbytes = self._write_files(shard, sample)
        t_written = time.perf_counter()
        checksum = self._checksum(sample)
        times = (t0, t_wait, t_sampled, t_written)
        return self._commit(shard, files, nbytes, checksum, times, t0 - t_truth)

    def warm_up(self) -> None:
        """Sample one batch of the first shard's conditions and discard it (not for Pythia truth).

        Pages the sampler's heap in and loads the device's kernels (a compiled model compiles
        here) before the first shard, so the shard records time the steady state and a bare
        sampler warmed the same way is a fair baseline. The batch draws from its own generator
        seeded like shard 0: no shard's output changes. A non-finite batch is left for the shard
        path to refuse and report; a Pythia-truth campaign is not warmed (its truth would cost a
        Pythia initialisation).
        """
        if self.pythia:
            return
        first = self.campaign.plan.shard(0)
        batch = dataclasses.replace(first, n=min(first.n, self.settings.batch_size))
        with self.lock, contextlib.suppress(NonFiniteOutput):
            self.sample(batch)

    def shard_truth(self, shard: Shard) -> EventSample | None:
        """A `distribution: pythia` shard's truth events, generated from its Pythia seed, else None.

        Refused (FarmError) on a worker whose pythia8mc is not the campaign's: the same seed
        reproduces the same truth only with the same Pythia.
        """
        if not self.pythia:
            return None
        generator = self.campaign.truth_generator
        if generator is not None and self.pythia8mc != (want := generator.pythia8mc):
            raise FarmError(
                f"shard {shard.id}: pythia8mc {self.pythia8mc} on {self.name}, but campaign "
                f"{self.campaign.id} generates its truth with {want} (install pythia8mc=={want})"
            )
        return shard_pythia_truth(self.conditions.pythia, shard)

    def sample(self, shard: Shard, truth: EventSample | None = None) -> Sample:
        """The shard's events from its conditions and seed (NonFiniteOutput refuses the shard).

        `truth`: the shard's generated truth events (`shard_truth`; generated here when None).
        """
        import torch

        generator = torch.Generator(self.device).manual_seed(shard.seed)
        if self.events:
            if self.pythia:
                truth = truth if truth is not None else self.shard_truth(shard)
            else:
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

    def _checksum(self, sample: Sample) -> str:
        """The shard's content checksum over the arrays of its kind."""
        if self.events:
            reco = np.stack([sample.reco[k].astype(np.float32) for k in ("pt", "eta", "phi")])
            counts = np.concatenate([sample.truth_counts, sample.reco_counts])
            if self.pythia:  # the truth is the campaign's own output too: hashed with the reco
                keys = ("pt", "eta", "phi", "pdg", "charge")
                truth = np.concatenate([sample.truth[k].astype(np.float32) for k in keys])
                reco = np.concatenate([reco.ravel(), truth])
            return content_checksum(reco, counts, sample.event_id)
        if self.jets:
            return content_checksum(sample.constituents, sample.jet_features, sample.event_id)
        if self.points:
            hits = np.concatenate([sample.hits.ravel(), sample.layer.astype(np.float32)])
            conditions = np.concatenate([sample.e_inc, sample.counts])
            return content_checksum(hits, conditions, sample.event_id)
        return content_checksum(sample.showers, sample.e_inc, sample.event_id)

    def _commit(
        self,
        shard: Shard,
        files: dict[str, ShardFile],
        nbytes: int,
        checksum: str,
        times: tuple[float, float, float, float],
        seconds_truth: float = 0.0,
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
            pythia_seed=shard.pythia_seed if self.pythia else None,
            pythia8mc=self.pythia8mc,
            seconds_truth=seconds_truth if self.pythia else None,
        )
        output = campaign.output_url
        with_retries(
            lambda: manifest.write_record(output, record), f"manifest for shard {shard.id}"
        )
        return record

    def _write_files(self, shard: Shard, sample: Sample) -> tuple[dict[str, ShardFile], int]:
        """Each format's file (Parquet in the job's parquet_layout), atomic, with retries."""
        from farm.formats.reader import write_sample

        meta = {"campaign": self.campaign.id, "model": self.campaign.model.key, "shard": shard.id}
        if self.pythia:  # the truth columns' provenance: Pythia version, settings, seed
            from farm.data.events import truth_metadata

            config = pythia_config(self.conditions.pythia, shard.n)
            meta["truth"] = truth_metadata(config, shard.pythia_seed)
        files, nbytes = {}, 0
        for fmt in self.campaign.job.formats:
            path = shard_path(fmt, shard.id)
            url = self.campaign.path(path)
            layout = self.campaign.job.parquet_layout if fmt == "parquet" else "dense"
            write: Callable[[], str] = lambda url=url, layout=layout: write_sample(  # noqa: E731
                url, sample, meta, layout
            )
            with_retries(write, f"writing {url}")
            fs, fs_path = store.filesystem(url)
            size = int(with_retries(lambda fs=fs, p=fs_path: fs.size(p), f"stat {url}"))
            files[fmt] = ShardFile(path=path, bytes=size)
            nbytes += size
        return files, nbytes
