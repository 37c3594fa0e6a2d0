"""Sharded, seeded, resumable shower generation over Ray tasks (simulator: farm.data.shower_sim).

Shard k holds events k*shard_size ... and draws from its `Shard.rng()` (numpy
default_rng([seed, k]), farm.sharding), so a (seed, shard) pair reproduces bit for bit whatever ran
before it or where it runs.
"""

from __future__ import annotations

import sys

import numpy as np

from farm import store
from farm.data.shower_sim import (
    SIMULATOR_VERSION,
    check_energies,
    incident_energies,
    simulate_showers,
)
from farm.formats.files import EXTENSION, check_formats
from farm.geometry import CaloGeometry, load_geometry
from farm.sharding import Plan, Shard, check_output_record, run_shards

RECORD = "showers.json"


def simulate_shard(
    geometry: CaloGeometry, shard: Shard, energies: list[float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(showers (n, V) float32 MeV, e_inc (n,) float64 MeV) of one shard; a pure function."""
    rng = shard.rng()
    if energies:
        e_inc = rng.choice(np.asarray(energies, dtype=np.float64), size=shard.n)
    else:
        e_inc = incident_energies(geometry, shard.n, rng)
    return simulate_showers(geometry, e_inc, rng), e_inc


def shard_url(out_url: str, geometry_name: str, shard_id: int, fmt: str) -> str:
    """Final name of a shard file: OUT/showers-<geometry>-<shard:05d>.<h5|parquet>."""
    return store.join(out_url, f"showers-{geometry_name}-{shard_id:05d}.{EXTENSION[fmt]}")


def _write_shard(
    geometry: CaloGeometry,
    shard: Shard,
    energies: list[float] | None,
    out_url: str,
    formats: tuple[str, ...],
) -> list[str]:
    """Simulate one shard and write it in each format (each file atomically)."""
    from farm.formats.calochallenge import write_calochallenge
    from farm.formats.showers_parquet import write_showers_parquet

    showers, e_inc = simulate_shard(geometry, shard, energies)
    meta = {
        "seed": shard.plan_seed,
        "shard": shard.id,
        "simulator": "farm.data.shower_sim",
        "simulator_version": SIMULATOR_VERSION,
    }
    urls = []
    for fmt in formats:
        url = shard_url(out_url, geometry.name, shard.id, fmt)
        if fmt == "h5":
            write_calochallenge(url, showers, e_inc, geometry, meta)
        else:
            write_showers_parquet(url, showers, e_inc, shard.event_ids(), geometry.name, meta)
        urls.append(url)
    return urls


def _use_ray(n_tasks: int) -> bool:
    """Use Ray when it is already initialised and there is more than one task.

    Ray not imported yet cannot be initialised: simulating then needs no Ray installed.
    """
    ray = sys.modules.get("ray")
    return n_tasks > 1 and ray is not None and ray.is_initialized()


def generate_showers(
    geometry_name: str,
    n: int,
    out_url: str,
    seed: int,
    shard_size: int = 10_000,
    formats=("h5",),
    energies: list[float] | None = None,
) -> list[str]:
    """Write n simulated showers as shard files under out_url; skips shards already written.

    Returns the URLs of all shard files (written now or before), in shard order. Ray tasks are used
    when Ray is initialised (farm.ray_utils.ensure_ray); else shards run one after another.
    """
    geometry = load_geometry(geometry_name)
    formats = check_formats(formats, "shower")
    if energies:
        check_energies(geometry, np.asarray(energies, dtype=np.float64))
        energies = [float(e) for e in energies]
    plan = Plan(n, shard_size, seed)
    record = {
        "geometry": geometry.name,
        "n": n,
        "seed": seed,
        "shard_size": shard_size,
        "energies": energies,
        "simulator": "farm.data.shower_sim",
        "simulator_version": SIMULATOR_VERSION,
    }
    check_output_record(store.join(out_url, RECORD), record)
    todo = [
        s
        for s in plan.shards()
        if not all(store.exists(shard_url(out_url, geometry.name, s.id, f)) for f in formats)
    ]
    calls = [(geometry, s, energies, out_url, formats) for s in todo]
    run_shards(
        _write_shard,
        calls,
        f"showers {geometry.name}",
        use_ray=_use_ray(len(todo)),
        weights=[s.n for s in todo],
        done=n - sum(s.n for s in todo),
    )
    return [shard_url(out_url, geometry.name, s.id, f) for s in plan.shards() for f in formats]


def simulate_in_memory(
    geometry: CaloGeometry | str,
    n: int,
    seed: int,
    energies: list[float] | None = None,
    shard_size: int = 10_000,
) -> tuple[np.ndarray, np.ndarray]:
    """(showers (n, V) float32, e_inc (n,) float64): the events generate_showers would write."""
    geo = load_geometry(geometry) if isinstance(geometry, str) else geometry
    if energies:
        check_energies(geo, np.asarray(energies, dtype=np.float64))
    shards = list(Plan(n, shard_size, seed).shards())
    calls = [(geo, s, energies) for s in shards]
    parts = run_shards(
        simulate_shard,
        calls,
        f"showers {geo.name}",
        use_ray=_use_ray(len(shards)),
        weights=[s.n for s in shards],
    )
    return (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
    )
