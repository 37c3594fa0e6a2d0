"""Sharding: a plan of shards (event ranges, seeds derived from (seed, shard id)) and its runner.

One home for what campaigns, `farm data showers` and `farm data jets` share. A plan of 10^9 events
is three integers; shard i is computed, never listed, and everything random in it derives from
numpy's SeedSequence([seed, i]), so any shard regenerates bit for bit anywhere, whatever ran
before it. The three derived seeds are fixed forever (changing one changes every dataset):

- `Shard.rng()`: numpy default_rng([seed, i]) (the built-in shower simulator);
- `Shard.seed`: a 63-bit integer from the same SeedSequence (campaign sampling and conditions);
- `Shard.pythia_seed`: 1 + that sequence's first 64-bit word mod 900,000,000 (Pythia's range).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

import numpy as np

from farm import store
from farm.errors import FarmError

MAX_PYTHIA_SEED = 900_000_000  # Pythia's Random:seed accepts 1..900_000_000
T = TypeVar("T")


def _first_word(seed: int, shard_id: int) -> np.uint64:
    state = np.random.SeedSequence([int(seed), int(shard_id)]).generate_state(1, dtype=np.uint64)
    return state[0]


def shard_seed(seed: int, shard_id: int) -> int:
    """A 63-bit seed for one shard from (plan seed, shard id) via numpy's SeedSequence."""
    return int(_first_word(seed, shard_id) & np.uint64(2**63 - 1))


def pythia_seed(seed: int, shard_id: int) -> int:
    """A Pythia Random:seed (1..900,000,000) for one shard from (plan seed, shard id)."""
    return int(_first_word(seed, shard_id) % MAX_PYTHIA_SEED) + 1


@dataclass(frozen=True)
class Shard:
    """Events [start, start + n) of a plan whose seed is `plan_seed`."""

    id: int
    start: int
    n: int
    plan_seed: int

    @property
    def stop(self) -> int:
        """One past the last event id."""
        return self.start + self.n

    @cached_property
    def seed(self) -> int:
        """The shard's 63-bit seed (campaign sampling and conditions)."""
        return shard_seed(self.plan_seed, self.id)

    @property
    def pythia_seed(self) -> int:
        """The shard's Pythia seed."""
        return pythia_seed(self.plan_seed, self.id)

    def rng(self) -> np.random.Generator:
        """Numpy's default_rng([plan seed, shard id]) (the shower simulator's stream)."""
        return np.random.default_rng([int(self.plan_seed), int(self.id)])

    def event_ids(self) -> np.ndarray:
        """(n,) int64 event ids of the shard."""
        return np.arange(self.start, self.stop, dtype=np.int64)


@dataclass(frozen=True)
class Plan:
    """`events` events in shards of `shard_size` (the last one shorter), seeded from `seed`."""

    events: int
    shard_size: int
    seed: int

    def __post_init__(self) -> None:
        """Refuse empty plans and non-positive shard sizes in one line."""
        if self.events < 1 or self.shard_size < 1:
            raise FarmError(
                f"need events >= 1 and shard_size >= 1, got events={self.events}, "
                f"shard_size={self.shard_size}"
            )

    @property
    def n_shards(self) -> int:
        """Number of shards."""
        return -(-self.events // self.shard_size)

    def shard(self, shard_id: int) -> Shard:
        """Shard `shard_id` (IndexError outside 0..n_shards-1)."""
        if not 0 <= shard_id < self.n_shards:
            raise IndexError(f"shard {shard_id} outside 0..{self.n_shards - 1}")
        start = shard_id * self.shard_size
        return Shard(shard_id, start, min(self.shard_size, self.events - start), self.seed)

    def shards(self) -> Iterator[Shard]:
        """All shards in order."""
        return (self.shard(i) for i in range(self.n_shards))

    def shard_of(self, event_ids: np.ndarray) -> np.ndarray:
        """The shard id holding each event id."""
        return np.asarray(event_ids) // self.shard_size


def check_output_record(url: str, record: dict[str, Any]) -> None:
    """Write a generation record once; refuse to resume into an output made with other settings."""
    if not store.exists(url):
        store.write_text(url, json.dumps(record, indent=2, sort_keys=True))
        return
    old, new = _flat(json.loads(store.read_text(url))), _flat(record)
    diff = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if diff:
        changes = ", ".join(f"{k}: {old.get(k)} -> {new.get(k)}" for k in diff)
        raise FarmError(f"{url}: output was made with other settings ({changes}); use a new --out")


def _flat(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def run_shards(
    fn: Callable[..., T],
    calls: Sequence[tuple],
    description: str,
    *,
    use_ray: bool,
    weights: Sequence[int] | None = None,
    done: int = 0,
    progress: bool = True,
) -> list[T]:
    """fn(*args) for each args, as Ray tasks (one CPU each) or one after another, in order.

    A progress bar advances by each call's weight (events; default 1) from `done`. When a task
    fails (or on Ctrl-C) the pending ones are cancelled; what they committed stays committed.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    weights = list(weights) if weights is not None else [1] * len(calls)
    results: list[Any] = [None] * len(calls)
    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=True, disable=not progress) as bar:
        task = bar.add_task(description, total=done + sum(weights), completed=done)
        if not use_ray:
            for i, args in enumerate(calls):
                results[i] = fn(*args)
                bar.advance(task, weights[i])
            return results
        import ray

        remote = ray.remote(num_cpus=1)(fn)
        refs = {remote.remote(*args): i for i, args in enumerate(calls)}
        pending = list(refs)
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                i = refs[ready[0]]
                results[i] = ray.get(ready[0])
                bar.advance(task, weights[i])
        finally:
            for ref in pending:
                ray.cancel(ref)
    return results
