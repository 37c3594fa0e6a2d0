"""Sharded, seeded, resumable shower generation over Ray tasks (simulator: farm.data.shower_sim).

Shard k holds events k*shard_size ... and draws from np.random.default_rng([seed, k]), so a
(seed, shard) pair reproduces bit for bit whatever ran before it or where it runs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from farm import store
from farm.data.geometry import CaloGeometry, load_geometry
from farm.data.shower_sim import check_energies, incident_energies, simulate_showers
from farm.errors import FarmError

FORMATS = {"h5": "h5", "parquet": "parquet"}  # format name -> file suffix
RECORD = "showers.json"


@dataclass(frozen=True)
class Shard:
    """One unit of work: shard id, first event id, number of events."""

    shard_id: int
    first_event: int
    n: int


def plan_shards(n: int, shard_size: int) -> list[Shard]:
    """Split n events into shards of shard_size (the last one shorter)."""
    if n < 1 or shard_size < 1:
        raise FarmError(f"need n >= 1 and shard_size >= 1, got n={n}, shard_size={shard_size}")
    return [
        Shard(k, k * shard_size, min(shard_size, n - k * shard_size))
        for k in range(math.ceil(n / shard_size))
    ]


def shard_rng(seed: int, shard_id: int) -> np.random.Generator:
    """The generator of one shard: default_rng([seed, shard_id]) (SeedSequence entropy list)."""
    return np.random.default_rng([int(seed), int(shard_id)])


def simulate_shard(
    geometry: CaloGeometry, n: int, seed: int, shard_id: int, energies: list[float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(showers (n, V) float32 MeV, e_inc (n,) float64 MeV) of one shard; a pure function."""
    rng = shard_rng(seed, shard_id)
    if energies:
        e_inc = rng.choice(np.asarray(energies, dtype=np.float64), size=n)
    else:
        e_inc = incident_energies(geometry, n, rng)
    return simulate_showers(geometry, e_inc, rng), e_inc


def shard_url(out_url: str, geometry_name: str, shard_id: int, fmt: str) -> str:
    """Final name of a shard file: OUT/showers-<geometry>-<shard:05d>.<h5|parquet>."""
    return store.join(out_url, f"showers-{geometry_name}-{shard_id:05d}.{FORMATS[fmt]}")


def _write_shard(
    geometry: CaloGeometry,
    shard: Shard,
    seed: int,
    energies: list[float] | None,
    out_url: str,
    formats: tuple[str, ...],
) -> list[str]:
    """Simulate one shard and write it in each format (each file atomically)."""
    from farm.formats.calochallenge import write_calochallenge
    from farm.formats.showers_parquet import write_showers_parquet

    showers, e_inc = simulate_shard(geometry, shard.n, seed, shard.shard_id, energies)
    urls = []
    for fmt in formats:
        url = shard_url(out_url, geometry.name, shard.shard_id, fmt)
        if fmt == "h5":
            write_calochallenge(url, showers, e_inc, geometry)
        else:
            ids = shard.first_event + np.arange(shard.n, dtype=np.int64)
            meta = {"seed": seed, "shard": shard.shard_id, "simulator": "farm.data.shower_sim"}
            write_showers_parquet(url, showers, e_inc, ids, geometry.name, meta)
        urls.append(url)
    return urls


def _check_formats(formats) -> tuple[str, ...]:
    formats = tuple(dict.fromkeys(formats))
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise FarmError(
            f"unknown shower format {bad[0] if bad else ''!r}: allowed {', '.join(FORMATS)}"
        )
    return formats


def _check_record(out_url: str, record: dict) -> None:
    """Write the generation record once; refuse to resume into a folder made with other settings."""
    url = store.join(out_url, RECORD)
    if store.exists(url):
        old = json.loads(store.read_text(url))
        diff = sorted(k for k in record if old.get(k) != record[k])
        if diff:
            raise FarmError(
                f"{url}: output folder was made with other settings ({', '.join(diff)}: "
                f"{[old.get(k) for k in diff]} != {[record[k] for k in diff]}); use a new --out"
            )
        return
    store.write_text(url, json.dumps(record, indent=2, sort_keys=True))


def _use_ray(n_tasks: int) -> bool:
    """Use Ray when it is already initialised and there is more than one task."""
    if n_tasks < 2:
        return False
    try:
        import ray
    except ImportError:  # pragma: no cover - ray is a dependency
        return False
    return ray.is_initialized()


def _run(fn, args_list: list[tuple], description: str, use_ray: bool) -> list:
    """Run fn(*args) for each args over Ray tasks (one CPU each) or locally, with a progress bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    results: list = [None] * len(args_list)
    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(description, total=len(args_list))
        if not use_ray:
            for i, args in enumerate(args_list):
                results[i] = fn(*args)
                bar.advance(task)
            return results
        import ray

        remote = ray.remote(num_cpus=1)(fn)
        refs = {remote.remote(*args): i for i, args in enumerate(args_list)}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                results[refs[ref]] = ray.get(ref)
                bar.advance(task)
    return results


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
    formats = _check_formats(formats)
    if energies:
        check_energies(geometry, np.asarray(energies, dtype=np.float64))
        energies = [float(e) for e in energies]
    shards = plan_shards(n, shard_size)
    record = {
        "geometry": geometry.name,
        "n": n,
        "seed": seed,
        "shard_size": shard_size,
        "energies": energies,
        "simulator": "farm.data.shower_sim",
    }
    _check_record(out_url, record)
    todo = [
        s
        for s in shards
        if not all(store.exists(shard_url(out_url, geometry.name, s.shard_id, f)) for f in formats)
    ]
    args = [(geometry, s, seed, energies, out_url, formats) for s in todo]
    _run(_write_shard, args, f"showers {geometry.name}", _use_ray(len(todo)))
    return [shard_url(out_url, geometry.name, s.shard_id, f) for s in shards for f in formats]


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
    shards = plan_shards(n, shard_size)
    args = [(geo, s.n, seed, s.shard_id, energies) for s in shards]
    parts = _run(simulate_shard, args, f"showers {geo.name}", _use_ray(len(shards)))
    return (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
    )
