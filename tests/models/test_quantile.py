"""Conditional quantile Gaussianisation: exact inverse, Gaussian marginals, knot interpolation."""

from __future__ import annotations

import pytest
import torch

from models.config import parse_model_config
from models.generative import GenerativeModel
from models.quantile import ConditionalQuantiles, quantile_levels, sorted_quantiles


def test_sorted_quantiles_of_a_ramp_are_the_levels():
    z = torch.linspace(0, 1, 101, dtype=torch.float64).unsqueeze(1)
    q = sorted_quantiles(z, 4)
    assert torch.allclose(q, torch.tensor([[0.0, 0.25, 0.5, 0.75, 1.0]], dtype=torch.float64))


def test_round_trip_and_gaussian_marginals_at_discrete_energies():
    g = torch.Generator().manual_seed(0)
    l = torch.randint(0, 3, (30_000,), generator=g).double()
    # a spike (empty voxels) at -10 and hits spread in [0, 3 + l): a gap no Gaussian bridges
    empty = torch.rand(30_000, generator=g) < 0.3
    hits = torch.rand(30_000, generator=g).double() * (3 + l)
    z = torch.where(empty, -10 + 0.01 * torch.rand(30_000, generator=g).double(), hits)
    z = z.unsqueeze(1)
    q = ConditionalQuantiles(1, n_levels=64, n_knots=4)
    q.fit(z, l)
    assert torch.equal(q.knots[:3], torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64))
    x = q.transform(z, l)
    for k in range(3):
        xs = x[l == k, 0]
        assert abs(float(xs.mean())) < 0.03 and abs(float(xs.std()) - 1) < 0.03
    back = q.inverse(x.float(), l)
    assert torch.allclose(back, z, atol=1e-4)


def test_interpolation_between_knots_averages_the_quantile_functions():
    q = ConditionalQuantiles(1, n_levels=2, n_knots=2)
    q.knots.copy_(torch.tensor([0.0, 1.0], dtype=torch.float64))
    q.table.copy_(torch.tensor([[[0.0, 1.0, 2.0]], [[10.0, 11.0, 12.0]]]))
    median = torch.zeros(1, 1)
    assert torch.allclose(q.inverse(median, torch.tensor([0.5])).float(), torch.tensor([[6.0]]))
    assert torch.allclose(q.inverse(median, torch.tensor([7.0])).float(), torch.tensor([[11.0]]))


def test_shower_preprocessing_with_quantiles_round_trips_showers():
    g = torch.Generator().manual_seed(1)
    e_inc = 2.0 ** torch.randint(8, 12, (4000, 1), generator=g).float()
    share = torch.rand(4000, 12, generator=g) ** 4
    showers = share / share.sum(1, keepdim=True) * e_inc * 0.9
    showers = torch.where(showers < 1.0, 0.0, showers)
    config = parse_model_config(
        {"preprocessing": {"kind": "shower", "layer_sizes": [4, 8], "voxel_quantiles": 32}}
    )
    assert config.preprocessing.model_dump()["voxel_quantiles"] == 32
    model = GenerativeModel(config, 12, 1)
    model.preprocessing.fit(showers, e_inc, generator=torch.Generator().manual_seed(2))
    x, _ = model.preprocessing.transform(showers, e_inc, torch.Generator().manual_seed(3))
    assert abs(float(x[:, :12].std()) - 1) < 0.05
    back = model.preprocessing.inverse(x, e_inc)
    assert torch.allclose(back, showers, rtol=1e-3, atol=1e-3)


def test_default_voxel_options_stay_out_of_dumps():
    dump = parse_model_config({"preprocessing": {"kind": "shower"}}).model_dump()
    assert set(dump["preprocessing"]) == {"kind", "threshold_mev", "layer_sizes", "noise_fraction"}


def test_shape_stage_with_quantiles_round_trips_voxel_shares():
    g = torch.Generator().manual_seed(4)
    e_inc = torch.exp(torch.rand(3000, 1, generator=g) * 6 + 7).double()
    share = torch.rand(3000, 10, generator=g) ** 4
    showers = share / share.sum(1, keepdim=True) * e_inc * 0.9
    showers = torch.where(showers < 1.0, 0.0, showers)
    config = parse_model_config(
        {
            "kind": "two_stage",
            "preprocessing": {"layer_sizes": [4, 6], "voxel_quantiles": 32, "quantile_knots": 8},
        }
    )
    shape = config.stage("shape").preprocessing.build(10, 3)
    layer_e = torch.stack([showers[:, :4].sum(1), showers[:, 4:].sum(1)], 1)
    cond = torch.cat([e_inc, layer_e], 1)
    shape.fit(showers, cond, generator=torch.Generator().manual_seed(5))
    x, _ = shape.transform(showers, cond, torch.Generator().manual_seed(6))
    assert abs(float(x.std()) - 1) < 0.05
    back = shape.inverse(x, cond)
    back = torch.where(back < 1.0, 0.0, back)
    error = (back - showers).abs() / showers.clamp_min(1.0)
    # between E_inc knots a value beyond the interpolated table's range is clipped to its edge
    assert float((error > 1e-3).double().mean()) < 0.005 and float(error.max()) < 0.05
    assert torch.equal(back > 0, showers > 0)


def test_tail_levels_are_sorted_and_spaced_in_the_gaussian_coordinate():
    levels = quantile_levels(64, 16)
    assert len(levels) == 65 + 32 and levels[0] == 0 and levels[-1] == 1
    assert bool((levels[1:] > levels[:-1]).all())
    assert torch.equal(quantile_levels(64), torch.linspace(0, 1, 65, dtype=torch.float64))
    upper = levels[levels > 63 / 64]  # past the last uniform level: 16 tail levels and 1
    assert len(upper) == 17 and float(1 - upper[-2]) < 5e-5  # the outermost near Phi(-4)


def _rare_hits(n: int, rate: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A voxel coordinate: an empty band in [-1, 0), hits above 5 in a fraction `rate`."""
    g = torch.Generator().manual_seed(seed)
    hit = torch.rand(n, generator=g) < rate
    z = torch.where(hit, 5 + torch.rand(n, generator=g).exp(), -torch.rand(n, generator=g))
    return z.unsqueeze(1), hit


def test_tail_levels_keep_a_rare_hit_rate_through_the_inverse():
    # an identity model (x ~ N(0, 1)) must generate hits as often as the data has them
    z, hit = _rare_hits(20_000, 0.002, 0)
    l = torch.zeros(len(z))
    noise = torch.randn(200_000, 1, generator=torch.Generator().manual_seed(1))
    rates = {}
    for tails in (0, 16):
        q = ConditionalQuantiles(1, 64, 2, tail_levels=tails)
        q.fit(z, l)
        rates[tails] = float((q.inverse(noise, torch.zeros(len(noise))) > 0).double().mean())
        back = q.inverse(q.transform(z, l), l)
        assert torch.allclose(back, z.double(), atol=2e-3), tails  # the data round-trips either way
    truth = float(hit.double().mean())
    assert rates[0] > 5 * truth  # one uniform level interval (1/64) holds every hit
    assert abs(rates[16] - truth) < 0.25 * truth


def test_quantile_tails_reach_both_shower_codings_and_stay_out_of_default_dumps():
    single = parse_model_config(
        {"preprocessing": {"kind": "shower", "voxel_quantiles": 32, "quantile_tails": 8}}
    )
    assert single.preprocessing.model_dump()["quantile_tails"] == 8
    assert GenerativeModel(single, 12, 1).preprocessing.quantiles.n_levels == 32 + 16
    two = parse_model_config(
        {"kind": "two_stage",
         "preprocessing": {"layer_sizes": [4, 6], "voxel_quantiles": 32, "quantile_tails": 8}}
    )  # fmt: skip
    assert two.stage("shape").preprocessing.build(10, 3).quantiles.n_levels == 48
    dump = parse_model_config({"kind": "two_stage"}).model_dump()["preprocessing"]
    assert "quantile_tails" not in dump


@pytest.mark.parametrize("tails", [0, 8])
def test_element_transforms_match_the_dense_ones(tails):
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(3_000, 5, generator=gen, dtype=torch.float64) ** 3
    l = torch.randn(3_000, generator=gen, dtype=torch.float64)
    q = ConditionalQuantiles(5, n_levels=16, n_knots=4, tail_levels=tails)
    q.fit(z, l)
    rows = torch.randint(0, 3_000, (400,), generator=gen)
    cols = torch.randint(0, 5, (400,), generator=gen)
    x = q.transform(z, l)
    assert torch.allclose(q.transform_elements(z[rows, cols], l[rows], cols), x[rows, cols])
    back = q.inverse(x, l)
    assert torch.allclose(q.inverse_elements(x[rows, cols], l[rows], cols), back[rows, cols])
