"""Plans are O(1): 10^9 events plan instantly, shards tile the event range, seeds are distinct."""

import numpy as np
import pytest

from farm.campaign.plan import Plan, shard_seed


def test_billion_event_plan_is_three_integers():
    plan = Plan(events=1_000_000_000, shard_size=1_000_000, seed=42)
    assert plan.n_shards == 1000
    assert plan.to_dict() == {"events": 1_000_000_000, "shard_size": 1_000_000, "seed": 42}
    last = plan.shard(999)
    assert last.stop == 1_000_000_000 and last.n == 1_000_000


def test_shards_tile_the_range_exactly_once():
    plan = Plan(events=10_007, shard_size=1000, seed=1)
    shards = [plan.shard(i) for i in range(plan.n_shards)]
    ids = np.concatenate([np.arange(s.start, s.stop) for s in shards])
    assert np.array_equal(ids, np.arange(10_007))
    assert shards[-1].n == 7
    with pytest.raises(IndexError):
        plan.shard(plan.n_shards)


def test_seeds_are_deterministic_and_distinct():
    seeds = {shard_seed(7, i) for i in range(10_000)}
    assert len(seeds) == 10_000
    assert shard_seed(7, 3) == Plan(100, 10, 7).shard(3).seed
    assert shard_seed(7, 3) != shard_seed(8, 3)
