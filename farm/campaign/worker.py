"""The generation actor: loads a registered model once, samples shards, commits them exactly once.

Two calls run at once per actor (max_concurrency=2): sampling is serialised by a lock (one model,
one device) while the other call compresses and uploads, so the device does not wait on I/O and
at most two shards per actor are in memory (backpressure).
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from typing import Any

import numpy as np

from farm import store
from farm.campaign import manifest
from farm.campaign.conditions import (
    read_truth_energies,
    read_truth_jets,
    shard_energies,
    shard_jet_truth,
)
from farm.campaign.plan import Shard
from farm.specs import EnergyConditions
from farm.store import with_retries

EXTENSIONS = {"parquet": "parquet", "h5": "h5"}


class NonFiniteOutput(RuntimeError):
    """The model produced NaN or Inf: the shard is refused, never written."""


def shard_url(output: str, fmt: str, shard_id: int) -> str:
    return store.join(output, fmt, f"shard-{shard_id:08d}.{EXTENSIONS[fmt]}")


def content_checksum(events: np.ndarray, conditions: np.ndarray, event_ids: np.ndarray) -> str:
    """sha256 of a shard's arrays, independent of file-format timestamps: event ids, conditions
    (incident energies, or jet features) and events (voxel energies, or jet constituents)."""
    h = hashlib.sha256()
    for a in (event_ids.astype(np.int64), conditions.astype(np.float64), events.astype(np.float32)):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


class ShardWorker:
    """Ray actor body (wrapped with ray.remote by the driver)."""

    def __init__(self, campaign: dict[str, Any], device: str, threads: int | None = None):
        import torch

        from farm import registry

        if threads:
            torch.set_num_threads(threads)
        self.campaign = campaign
        self.device = device
        model_ref = f"{campaign['model']['name']}/{campaign['model']['version']}"
        self.model, self.card, _ = registry.load(model_ref, device=device)
        if campaign["job"]["resources"].get("compile"):
            self.model.net = torch.compile(self.model.net)
        self.conditions = EnergyConditions.model_validate(campaign["job"]["conditions"])
        self.jets = campaign.get("kind") == "jets"
        if self.jets:
            self.truth = read_truth_jets(self.conditions.url)
        elif self.conditions.distribution == "file":
            self.truth = read_truth_energies(self.conditions.url)
        else:
            self.truth = None
        self.lock = threading.Lock()
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def ready(self) -> str:
        return self.name

    def run(self, shard_doc: dict[str, Any]) -> dict[str, Any]:
        """Generate, check, write and commit one shard; returns its manifest record."""
        import torch

        job = self.campaign["job"]
        shard = Shard(**shard_doc)
        if self.jets:
            return self._run_jets(job, shard)
        t0 = time.perf_counter()
        e_inc = shard_energies(self.conditions, shard, self.truth)
        with self.lock:
            t_wait = time.perf_counter()
            generator = torch.Generator(self.device).manual_seed(shard.seed)
            autocast = self._autocast(job)
            showers = (
                self.model.generate(
                    torch.from_numpy(e_inc).reshape(-1, 1).float(),
                    sampler=job["sampler"],
                    nfe=job["nfe"],
                    generator=generator,
                    batch_size=job["resources"]["batch_size"],
                    autocast_dtype=autocast,
                    options=job.get("sampler_options") or None,
                )
                .cpu()
                .numpy()
            )
            t_sampled = time.perf_counter()
        bad = int((~np.isfinite(showers)).sum())
        if bad:
            raise NonFiniteOutput(f"shard {shard.id}: model produced {bad} non-finite voxel values")
        event_ids = np.arange(shard.start, shard.stop, dtype=np.int64)
        files, nbytes = self._write_files(
            job, shard, lambda fmt, url: self._write(fmt, url, showers, e_inc, event_ids)
        )
        t_written = time.perf_counter()
        checksum = content_checksum(showers, e_inc, event_ids)
        return self._commit(job, shard, files, nbytes, checksum, (t0, t_wait, t_sampled, t_written))

    def _commit(
        self,
        job: dict[str, Any],
        shard: Shard,
        files: dict[str, Any],
        nbytes: int,
        checksum: str,
        times: tuple[float, float, float, float],
    ) -> dict[str, Any]:
        """Write the shard's manifest record: the commit point of exactly-once."""
        output = self.campaign["output"]
        t0, t_wait, t_sampled, t_written = times
        record = {
            "shard": shard.id,
            "events": shard.n,
            "event_id_start": shard.start,
            "event_id_stop": shard.stop,
            "seed": shard.seed,
            "model": f"{self.campaign['model']['name']}/{self.campaign['model']['version']}",
            "sampler": job["sampler"],
            "nfe": job["nfe"],
            "sampler_options": job.get("sampler_options") or {},
            "compiled": bool(job["resources"].get("compile")),
            "content_sha256": checksum,
            "files": files,
            "bytes": nbytes,
            "worker": self.name,
            "device": self.device,
            "seconds_wait": t_wait - t0,
            "seconds_sample": t_sampled - t_wait,
            "seconds_write": t_written - t_sampled,
            "committed_at": time.time(),
        }
        with_retries(
            lambda: manifest.write_record(output, record), f"manifest for shard {shard.id}"
        )
        return record

    def _run_jets(self, job: dict[str, Any], shard: Shard) -> dict[str, Any]:
        """Jets for the shard's truth rows (pT, eta, count), written in the JetNet layout."""
        import torch

        from farm.formats.jets import write_jets
        from farm.generation import jets_from_model

        t0 = time.perf_counter()
        pt, eta, counts = shard_jet_truth(self.truth, shard)
        with self.lock:
            t_wait = time.perf_counter()
            jets = jets_from_model(
                self.model,
                pt,
                eta,
                counts,
                generator=torch.Generator(self.device).manual_seed(shard.seed),
                sampler=job["sampler"],
                nfe=job["nfe"],
                batch_size=job["resources"]["batch_size"],
                autocast_dtype=self._autocast(job),
                options=job.get("sampler_options") or None,
            )
            t_sampled = time.perf_counter()
        bad = sum(int((~np.isfinite(a)).sum()) for a in jets.values())
        if bad:
            raise NonFiniteOutput(f"shard {shard.id}: model produced {bad} non-finite jet values")
        event_ids = np.arange(shard.start, shard.stop, dtype=np.int64)
        data = {**jets, "event_id": event_ids}
        meta = {"campaign": self.campaign["id"], "model": self.campaign["model"]}
        files, nbytes = self._write_files(job, shard, lambda _, url: write_jets(url, data, meta))
        t_written = time.perf_counter()
        checksum = content_checksum(jets["constituents"], jets["jet_features"], event_ids)
        return self._commit(job, shard, files, nbytes, checksum, (t0, t_wait, t_sampled, t_written))

    def _write_files(
        self, job: dict[str, Any], shard: Shard, write: Any
    ) -> tuple[dict[str, Any], int]:
        """Each format's file, committed atomically with retries: ({fmt: {url, bytes}}, bytes)."""
        files, nbytes = {}, 0
        for fmt in job["formats"]:
            url = shard_url(self.campaign["output"], fmt, shard.id)
            with_retries(lambda fmt=fmt, url=url: write(fmt, url), f"writing {url}")
            fs, path = store.filesystem(url)
            size = int(with_retries(lambda fs=fs, path=path: fs.size(path), f"stat {url}"))
            files[fmt] = {"url": url, "bytes": size}
            nbytes += size
        return files, nbytes

    def _autocast(self, job: dict[str, Any]):
        import torch

        on_gpu = self.device.startswith("cuda") and job["resources"]["bf16"]
        return torch.bfloat16 if on_gpu else None

    def _write(
        self, fmt: str, url: str, showers: np.ndarray, e_inc: np.ndarray, event_ids: np.ndarray
    ) -> None:
        geometry = self.campaign["geometry"]
        if fmt == "parquet":
            from farm.formats.showers_parquet import write_showers_parquet

            write_showers_parquet(
                url,
                showers,
                e_inc,
                event_ids,
                geometry,
                extra_metadata={"campaign": self.campaign["id"], "model": self.campaign["model"]},
            )
        else:
            from farm.formats.calochallenge import write_calochallenge

            write_calochallenge(url, showers, e_inc, geometry)
