"""A campaign plan: shards with id, event range and a seed derived from (campaign seed, shard id).

The plan is O(1) to store and to plan (10^9 events are three integers); shard i is computed, never
listed, so any shard regenerates identically anywhere.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


def shard_seed(campaign_seed: int, shard_id: int) -> int:
    """A 63-bit seed for one shard from (campaign seed, shard id) via numpy's SeedSequence."""
    state = np.random.SeedSequence([campaign_seed, shard_id]).generate_state(1, dtype=np.uint64)
    return int(state[0] & np.uint64(2**63 - 1))


@dataclass(frozen=True)
class Shard:
    """Events [start, start + n) of a campaign, generated from `seed`."""

    id: int
    start: int
    n: int
    seed: int

    @property
    def stop(self) -> int:
        return self.start + self.n

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Plan:
    """`events` events in shards of `shard_size` (the last one shorter), seeded from `seed`."""

    events: int
    shard_size: int
    seed: int

    @property
    def n_shards(self) -> int:
        return -(-self.events // self.shard_size)

    def shard(self, shard_id: int) -> Shard:
        if not 0 <= shard_id < self.n_shards:
            raise IndexError(f"shard {shard_id} outside 0..{self.n_shards - 1}")
        start = shard_id * self.shard_size
        return Shard(
            shard_id,
            start,
            min(self.shard_size, self.events - start),
            shard_seed(self.seed, shard_id),
        )

    def to_dict(self) -> dict:
        return asdict(self)
