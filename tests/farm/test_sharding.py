"""Plans are O(1): 10^9 events plan instantly, shards tile the event range, seeds are fixed."""

import json
from pathlib import Path

import numpy as np
import pytest

from farm.errors import FarmError
from farm.sharding import (
    MAX_PYTHIA_SEED,
    Plan,
    check_output_record,
    pythia_seed,
    run_shards,
    shard_seed,
)


def test_billion_event_plan_is_three_integers():
    plan = Plan(events=1_000_000_000, shard_size=1_000_000, seed=42)
    assert plan.n_shards == 1000
    last = plan.shard(999)
    assert last.stop == 1_000_000_000 and last.n == 1_000_000


def test_shards_tile_the_range_exactly_once():
    plan = Plan(events=10_007, shard_size=1000, seed=1)
    shards = list(plan.shards())
    ids = np.concatenate([s.event_ids() for s in shards])
    assert np.array_equal(ids, np.arange(10_007))
    assert shards[-1].n == 7
    np.testing.assert_array_equal(plan.shard_of(np.array([0, 999, 1000, 10_006])), [0, 0, 1, 10])
    with pytest.raises(IndexError):
        plan.shard(plan.n_shards)
    with pytest.raises(FarmError, match="shard_size >= 1"):
        Plan(10, 0, 1)


def test_seeds_are_deterministic_distinct_and_fixed_forever():
    seeds = {shard_seed(7, i) for i in range(10_000)}
    assert len(seeds) == 10_000
    shard = Plan(100, 10, 7).shard(3)
    assert shard.seed == shard_seed(7, 3) != shard_seed(8, 3)
    # the three derived seeds of one shard come from SeedSequence([seed, id]); these values are
    # what every dataset farm has written depends on, so they must never change
    word = np.random.SeedSequence([7, 3]).generate_state(1, dtype=np.uint64)[0]
    assert shard.seed == int(word & np.uint64(2**63 - 1))
    assert shard.pythia_seed == int(word % MAX_PYTHIA_SEED) + 1 == pythia_seed(7, 3)
    assert shard.rng().random() == np.random.default_rng([7, 3]).random()
    pythia = [Plan(1000, 10, 1).shard(k).pythia_seed for k in range(100)]
    assert len(set(pythia)) == 100 and all(1 <= s <= MAX_PYTHIA_SEED for s in pythia)


def test_output_record_is_written_once_and_guards_resume(tmp_path):
    url = str(tmp_path / "out" / "record.json")
    record = {"seed": 1, "config": {"process": "top", "n": 10}}
    check_output_record(url, record)
    check_output_record(url, record)  # the same settings resume
    assert json.loads(Path(url).read_text()) == record
    changed = {"seed": 1, "config": {"process": "gluon", "n": 10}}
    with pytest.raises(FarmError, match=r"other settings \(config\.process: top -> gluon\)"):
        check_output_record(url, changed)


def test_run_shards_keeps_order_locally_and_on_ray(ray_session):
    calls = [(7, i) for i in range(5)]  # a function the Ray workers can import
    expected = [pythia_seed(7, i) for i in range(5)]
    assert run_shards(pythia_seed, calls, "x", use_ray=False, progress=False) == expected
    assert run_shards(pythia_seed, calls, "x", use_ray=True, progress=False) == expected
