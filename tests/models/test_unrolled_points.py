"""The unrolled point-cloud sampler is PointShowerModel.generate's computation on given noise."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "farm"))
from tiny_kinds import tiny_point_model

from models.noise import randn
from models.points import UnrolledPoints


def test_unrolled_points_equal_generate_bit_for_bit():
    model = tiny_point_model()
    cond = torch.tensor([[1.0e4], [1.4e4], [2.0e4]])
    want = model.generate(cond, generator=torch.Generator().manual_seed(4))
    counts = model.cardinality.sample(cond, torch.Generator().manual_seed(4))
    gen = torch.Generator().manual_seed(4)  # generate's draws in order: totals, then hits
    z_count = randn((2, 3), gen, like=model.cardinality.mu_coef).T
    module = UnrolledPoints(model)
    z = randn((3, module.noise_dim), gen)
    hits, mask, got_counts = module(z, z_count, cond)
    assert torch.equal(hits.reshape(3, -1), want) and torch.equal(got_counts, counts)
    assert torch.equal(mask, hits[..., 3] > 0) and hits.shape == (3, model.n_max, 4)
    assert torch.equal(mask.sum(1), counts)  # log E: every slot below the count is a hit
    assert module.nfe == 2 and module.sampler == "euler"
