"""Sharded, seeded, resumable point-cloud showers (hits of a CellGeometry, farm.data.hit_sim).

The same contract as farm.data.showers: shard k holds events k*shard_size ... drawn from its
`Shard.rng()` (farm.sharding), shards already written are skipped, a record refuses to mix
settings in one folder; files are farm's points Parquet (farm.formats.points_parquet).
"""

from __future__ import annotations

import numpy as np

from farm import store
from farm.data.hit_sim import simulate_hits
from farm.data.shower_sim import SIMULATOR_VERSION, check_energies, incident_energies
from farm.errors import FarmError
from farm.geometry import CellGeometry, load_cell_geometry
from farm.samples import PointSample
from farm.sharding import Plan, Shard, check_output_record, run_shards

RECORD = "showers.json"


def simulate_point_shard(
    geometry: CellGeometry, shard: Shard, energies: list[float] | None = None
) -> PointSample:
    """The point-cloud showers of one shard; a pure function of (seed, shard)."""
    rng = shard.rng()
    if energies:
        e_inc = rng.choice(np.asarray(energies, dtype=np.float64), size=shard.n)
    else:
        e_inc = incident_energies(geometry, shard.n, rng)
    h = simulate_hits(geometry, e_inc, rng)
    return PointSample(h.counts, h.hits, h.layer, e_inc, geometry, {}, shard.event_ids())


def points_url(out_url: str, geometry_name: str, shard_id: int) -> str:
    """Final name of a shard file: OUT/points-<geometry>-<shard:05d>.parquet."""
    return store.join(out_url, f"points-{geometry_name}-{shard_id:05d}.parquet")


def _write_point_shard(
    geometry: CellGeometry, shard: Shard, energies: list[float] | None, out_url: str
) -> str:
    from farm.formats.points_parquet import write_points_parquet

    meta = {
        "seed": shard.plan_seed,
        "shard": shard.id,
        "simulator": "farm.data.hit_sim",
        "simulator_version": SIMULATOR_VERSION,
    }
    url = points_url(out_url, geometry.name, shard.id)
    return write_points_parquet(url, simulate_point_shard(geometry, shard, energies), meta)


def generate_points(
    geometry_name: str,
    n: int,
    out_url: str,
    seed: int,
    shard_size: int = 10_000,
    formats=("parquet",),
    energies: list[float] | None = None,
) -> list[str]:
    """Write n point-cloud showers as Parquet shards under out_url; returns every shard's URL."""
    geometry = load_cell_geometry(geometry_name)
    if tuple(formats) != ("parquet",):
        raise FarmError(
            f"geometry {geometry_name!r} makes point-cloud showers, written as Parquet only "
            f"(got --format {', '.join(formats)})"
        )
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
        "simulator": "farm.data.hit_sim",
        "simulator_version": SIMULATOR_VERSION,
    }
    check_output_record(store.join(out_url, RECORD), record)
    todo = [s for s in plan.shards() if not store.exists(points_url(out_url, geometry.name, s.id))]
    import ray

    run_shards(
        _write_point_shard,
        [(geometry, s, energies, out_url) for s in todo],
        f"points {geometry.name}",
        use_ray=len(todo) > 1 and ray.is_initialized(),
        weights=[s.n for s in todo],
        done=n - sum(s.n for s in todo),
    )
    return [points_url(out_url, geometry.name, s.id) for s in plan.shards()]
