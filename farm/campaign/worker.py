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
from farm.campaign.conditions import read_truth_energies, shard_energies
from farm.campaign.plan import Shard
from farm.specs import EnergyConditions
from farm.store import with_retries

EXTENSIONS = {"parquet": "parquet", "h5": "h5"}


class NonFiniteOutput(RuntimeError):
    """The model produced NaN or Inf: the shard is refused, never written."""


def shard_url(output: str, fmt: str, shard_id: int) -> str:
    return store.join(output, fmt, f"shard-{shard_id:08d}.{EXTENSIONS[fmt]}")


def content_checksum(showers: np.ndarray, e_inc: np.ndarray, event_ids: np.ndarray) -> str:
    """sha256 of the shard's arrays (independent of file-format timestamps)."""
    h = hashlib.sha256()
    for a in (event_ids.astype(np.int64), e_inc.astype(np.float64), showers.astype(np.float32)):
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
        self.conditions = EnergyConditions.model_validate(campaign["job"]["conditions"])
        self.truth = (
            read_truth_energies(self.conditions.url)
            if self.conditions.distribution == "file"
            else None
        )
        self.lock = threading.Lock()
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def ready(self) -> str:
        return self.name

    def run(self, shard_doc: dict[str, Any]) -> dict[str, Any]:
        """Generate, check, write and commit one shard; returns its manifest record."""
        import torch

        job = self.campaign["job"]
        shard = Shard(**shard_doc)
        t0 = time.perf_counter()
        e_inc = shard_energies(self.conditions, shard, self.truth)
        with self.lock:
            t_wait = time.perf_counter()
            generator = torch.Generator(self.device).manual_seed(shard.seed)
            autocast = (
                torch.bfloat16
                if (self.device.startswith("cuda") and job["resources"]["bf16"])
                else None
            )
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
        output = self.campaign["output"]
        files, nbytes = {}, 0
        for fmt in job["formats"]:
            url = shard_url(output, fmt, shard.id)
            with_retries(
                lambda url=url, fmt=fmt: self._write(fmt, url, showers, e_inc, event_ids),
                f"writing {url}",
            )
            fs, path = store.filesystem(url)
            size = int(with_retries(lambda fs=fs, path=path: fs.size(path), f"stat {url}"))
            files[fmt] = {"url": url, "bytes": size}
            nbytes += size
        t_written = time.perf_counter()
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
            "content_sha256": content_checksum(showers, e_inc, event_ids),
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
