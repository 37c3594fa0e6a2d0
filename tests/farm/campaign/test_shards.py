"""ShardMaker's warm-up: one batch of shard 0 sampled and dropped, no shard's output changed."""

from __future__ import annotations

import pytest
from test_campaign import job

from farm import registry
from farm.campaign.run import submit
from farm.campaign.shards import ShardMaker
from farm.generation import NonFiniteOutput

BATCH = 400


def _maker(name: str, model: str = "tiny@candidate") -> ShardMaker:
    resources = {"actors": 1, "batch_size": BATCH}
    campaign = submit(job(name, model, events=3_000, shard_size=1_000, resources=resources))
    return ShardMaker(campaign, registry.load(campaign.model.key, device="cpu").model, "cpu")


def test_warm_up_samples_one_batch_of_shard_0_and_changes_no_shard(in_store):
    cold, warm = _maker("cold"), _maker("warm")
    seen: list[tuple[int, int, int]] = []
    sample = warm.sample
    warm.sample = lambda shard, truth=None: (
        seen.append((shard.id, shard.start, shard.n)) or sample(shard, truth)
    )
    warm.warm_up()
    assert seen == [(0, 0, BATCH)]  # one batch of the first shard's conditions
    assert not warm.lock.locked()
    for shard_id in (0, 2):
        shard = cold.campaign.plan.shard(shard_id)
        before, after = cold.sample(shard), warm.sample(shard)
        assert before.showers.tobytes() == after.showers.tobytes()
        assert before.e_inc.tobytes() == after.e_inc.tobytes()


def test_a_non_finite_warm_up_is_left_for_the_shard_path_to_refuse(in_store):
    maker = _maker("nan-warm", "nan-model@candidate")
    maker.warm_up()  # no error at start-up: the shard reports it, with its retries
    with pytest.raises(NonFiniteOutput):
        maker.sample(maker.campaign.plan.shard(0))
