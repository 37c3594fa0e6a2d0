"""Training data from a job's data spec: samples in physical units, their split and provenance."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from farm import store
from farm.cards import ModelCard
from farm.data.jets import JetGenConfig, generate_jets_sharded
from farm.data.shower_sim import SIMULATOR_VERSION, check_energies, energy_range
from farm.data.showers import simulate_in_memory
from farm.data.splits import split_indices
from farm.errors import FarmError
from farm.formats.reader import read_jets, read_points, read_showers, shower_geometry
from farm.formats.shower_rows import ShowerSource
from farm.geometry import load_geometry
from farm.samples import EventSample, JetSample, PointSample, ShowerSample
from farm.specs import (
    CaloChallengeData,
    EventFileData,
    JetFileData,
    SimulatedEventsData,
    SimulatedJetsData,
    SimulatedPointsData,
    SimulatedShowersData,
)


def simulated_provenance(spec: Any, geometry: Any, simulator: str) -> dict[str, Any]:
    """What a card records of simulated training data: spec, simulator and energy range."""
    return {
        "source": spec.source,
        "geometry": geometry.name,
        "events": spec.events,
        "seed": spec.seed,
        "energies": spec.energies,
        "simulator": simulator,
        "simulator_version": SIMULATOR_VERSION,
        "e_inc_range": [min(spec.energies), max(spec.energies)]
        if spec.energies
        else list(energy_range(geometry)),
    }


def load_showers(
    spec: SimulatedShowersData | CaloChallengeData, part: str | None = None
) -> ShowerSample:
    """Load (or simulate) the showers a data spec names; shower files read only split `part`."""
    geometry = load_geometry(spec.geometry)
    if isinstance(spec, SimulatedShowersData):
        check_memory(spec.events, geometry.n_voxels, f"data.events ({spec.events:,} showers)")
        showers, e_inc = simulate_in_memory(geometry, spec.events, spec.seed, spec.energies)
        provenance = simulated_provenance(spec, geometry, "farm.data.shower_sim")
    elif isinstance(spec, CaloChallengeData):
        source = ShowerSource(spec.url, geometry)  # a file, a folder of shards or a campaign
        shower_geometry([f.url for f in source.files], geometry)  # what the files record
        n = min(source.n, spec.max_events or source.n)
        rows = np.arange(n) if part is None else split_rows(n, spec)[part]
        showers, e_inc = source.take(rows)
        check_finite_showers(spec.url, showers, e_inc)
        provenance = {
            "source": spec.source,
            "url": spec.url,
            "geometry": geometry.name,
            "events": n,
            "e_inc_range": [float(np.min(e_inc)), float(np.max(e_inc))],
        }
        if part is not None:
            provenance["part"] = part
    else:  # pragma: no cover - the spec union is closed
        raise FarmError(f"unsupported data source {spec!r}")
    return ShowerSample(
        np.asarray(showers, np.float32),
        np.asarray(e_inc, np.float64).reshape(-1),
        geometry,
        provenance,
    )


TRAINING_COPIES = 3
"""Copies of the showers training holds at once: the sample, its split, the workers' arrays."""


def check_memory(events: int, n_voxels: int, what: str) -> None:
    """FarmError before simulating showers that cannot fit in this machine's memory."""
    import psutil

    need = events * n_voxels * 4 * TRAINING_COPIES
    have = psutil.virtual_memory().total
    if need > have:
        raise FarmError(
            f"{what}: {events:,} showers of {n_voxels:,} voxels need about {need / 2**30:,.1f} "
            f"GiB of memory to train on, this machine has {have / 2**30:,.1f} GiB; use fewer "
            "events or train on a file (data.source: calochallenge)"
        )


def check_finite_showers(url: str, showers: np.ndarray, e_inc: np.ndarray) -> None:
    """FarmError naming the file and counting the bad values, unless every value is usable.

    Training needs finite voxel energies and finite, positive incident energies (the
    preprocessing takes their logarithm).
    """
    bad_e = int(np.count_nonzero(~np.isfinite(e_inc)))
    bad_showers = int(np.count_nonzero(~np.isfinite(showers)))
    non_positive = int(np.count_nonzero(np.isfinite(e_inc) & (e_inc <= 0)))
    if not (bad_e or bad_showers or non_positive):
        return
    bad_rows = ~np.isfinite(e_inc).reshape(-1) | (e_inc.reshape(-1) <= 0)
    bad_rows |= ~np.isfinite(showers).all(axis=1)
    problems = [
        f"{n:,} {what}"
        for n, what in (
            (bad_e, "NaN/Inf values in 'incident_energies'"),
            (non_positive, "non-positive values in 'incident_energies'"),
            (bad_showers, "NaN/Inf values in 'showers'"),
        )
        if n
    ]
    raise FarmError(
        f"{url}: {', '.join(problems)} ({int(bad_rows.sum()):,} of {len(e_inc):,} events); "
        "training needs finite energies and positive incident energies"
    )


def jets_cache_url(spec: SimulatedJetsData) -> str:
    """Where `simulated_jets` data is generated once and reused (keyed by the generator settings)."""
    key = spec.model_dump(mode="json", exclude={"split"})
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return store.join(store.home(), "datasets", "jets", f"{spec.process}-{digest}")


def load_jets(spec: SimulatedJetsData | JetFileData, progress: bool = False) -> JetSample:
    """Load (or generate with Pythia once, cached under FARM_HOME) the jets a data spec names."""
    if isinstance(spec, SimulatedJetsData):
        config = JetGenConfig(
            process=spec.process,
            n_jets=spec.events,
            pt_hat_min=spec.pt_hat_min,
            pt_hat_max=spec.pt_hat_max,
            n_constituents=spec.n_constituents,
        )
        url = jets_cache_url(spec)
        generate_jets_sharded(config, spec.seed, url, spec.shard_size, progress=progress)
        provenance = {
            "source": spec.source,
            "process": spec.process,
            "events": spec.events,
            "seed": spec.seed,
            "pt_hat": [spec.pt_hat_min, spec.pt_hat_max],
            "cache": url,
            "generator": "farm.data.jets (Pythia 8 + FastJet anti-kt R=0.8)",
        }
    else:
        url = spec.url
        provenance = {"source": spec.source, "url": url}
    jets = read_jets(url)
    stop = spec.max_events if isinstance(spec, JetFileData) else None  # the cache holds `events`
    constituents, features = jets.constituents[:stop], jets.jet_features[:stop]
    if not (np.isfinite(constituents).all() and np.isfinite(features).all()):
        raise FarmError(f"{url}: NaN/Inf values in the jets")
    provenance.update(events=len(features), n_particles=constituents.shape[1])
    return JetSample(
        np.asarray(constituents, np.float32), np.asarray(features, np.float32), provenance
    )


def load_points(spec: SimulatedPointsData) -> PointSample:
    """Simulate the point-cloud showers a data spec names (the events `farm data showers` writes)."""
    from farm.data.points import simulate_point_shard
    from farm.formats.points_parquet import concat_points
    from farm.geometry import load_cell_geometry
    from farm.sharding import Plan

    geometry = load_cell_geometry(spec.geometry)
    if spec.energies:
        check_energies(geometry, np.asarray(spec.energies, dtype=np.float64))
    shards = Plan(spec.events, 10_000, spec.seed).shards()
    provenance = simulated_provenance(spec, geometry, "farm.data.hit_sim")
    parts = [simulate_point_shard(geometry, s, spec.energies) for s in shards]
    return concat_points(parts, provenance)


def events_cache_url(spec: SimulatedEventsData) -> str:
    """Where `simulated_events` data is generated once and reused (keyed by the generator settings)."""
    key = spec.model_dump(mode="json", include={"process", "events", "seed", "pt_hat_min",
                                                 "pt_hat_max", "mpi", "shard_size"})  # fmt: skip
    if spec.process == "dis":  # DIS shards gained the scattered-electron columns: a new cache
        key["columns"] = "electron"
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return store.join(store.home(), "datasets", "events", f"{spec.process}-{digest}")


def load_events(spec: SimulatedEventsData | EventFileData, progress: bool = False) -> EventSample:
    """Load (or generate with Pythia once, cached under FARM_HOME) the events a data spec names."""
    from farm.data.events import EventGenConfig, generate_events_sharded
    from farm.formats.reader import read_events

    if isinstance(spec, SimulatedEventsData):
        config = EventGenConfig(
            spec.process, spec.events, spec.pt_hat_min, spec.pt_hat_max, mpi=spec.mpi
        )
        url = events_cache_url(spec)
        generate_events_sharded(config, spec.seed, url, spec.shard_size, progress=progress)
        provenance = {
            "source": spec.source, "process": spec.process, "seed": spec.seed, "cache": url,
            "generator": "farm.data.events (Pythia 8 + farm.data.detector, synthetic reco)",
        }  # fmt: skip
    else:
        url = spec.url
        provenance = {"source": spec.source, "url": url}
    sample = read_events(url)
    if isinstance(spec, EventFileData) and spec.max_events is not None:
        sample = sample.subset(np.arange(min(spec.max_events, len(sample))))
    sample.provenance = {**provenance, "events": len(sample)}
    return sample


def load_dataset(spec: Any, progress: bool = False) -> ShowerSample | JetSample | PointSample:
    """The showers, point-cloud showers or jets a training job's data spec names."""
    if isinstance(spec, SimulatedJetsData | JetFileData):
        return load_jets(spec, progress=progress)
    if isinstance(spec, SimulatedPointsData):
        return load_points(spec)
    if isinstance(spec, SimulatedEventsData | EventFileData):
        return load_events(spec, progress=progress)
    return load_showers(spec)


def split_rows(n: int, spec: Any) -> dict[str, np.ndarray]:
    """Sorted event indices of each part of a data spec's recorded split over n events."""
    s = spec.split
    return split_indices(n, s.train, s.val, s.seed)


def split(dataset: ShowerSample | JetSample, spec: Any) -> dict[str, Any]:
    """Deterministic train/val/test split; the split is recorded in the provenance."""
    s = spec.split
    idx = split_rows(len(dataset), spec)
    dataset.provenance["split"] = {
        "train": s.train,
        "val": s.val,
        "seed": s.seed,
        **{f"n_{k}": len(v) for k, v in idx.items()},
    }
    return {k: dataset.subset(v) for k, v in idx.items()}


def reference_sample(
    card: ModelCard, ref: str, source: str, events: int | None, seed: int
) -> ShowerSample | JetSample:
    """The reference events whose truth conditions a sample reproduces.

    Either the model's held-out test split (`source` = 'test', rebuilt from its card's data spec
    and split) or a file's events.
    """
    if source == "test":
        if (card.job or {}).get("data") is None:
            raise FarmError("the model card records no training data; give --conditions URL")
        data_spec = card.data_spec(ref)  # refuses files outside the store and allowed locations
        if isinstance(data_spec, CaloChallengeData):  # read only the test rows (files may be huge)
            sample = load_showers(data_spec, part="test")
        else:
            sample = split(load_dataset(data_spec), data_spec)["test"]
    elif card.kind == "jets":
        sample = read_jets(source)
    elif card.kind == "points":
        sample = read_points(source)
    elif card.kind == "events":
        from farm.formats.reader import read_events

        sample = read_events(source)
    else:
        sample = read_showers(source, card.data.geometry or "ds1-photons")
    if events is not None and events < len(sample):
        rng = np.random.default_rng(seed)
        sample = sample.subset(np.sort(rng.choice(len(sample), events, replace=False)))
    return sample
