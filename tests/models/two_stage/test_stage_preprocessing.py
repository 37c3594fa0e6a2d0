"""Stage coordinates: polynomial standardisation recovers known moments (chunked = one pass),
energy and shape coordinates invert exactly on hits and keep empties below threshold."""

from __future__ import annotations

import pytest
import torch

from models import stage_preprocessing as pre
from models.stage_preprocessing import (
    LayerEnergyPreprocessing,
    PolynomialStandardiser,
    VoxelShapePreprocessing,
)
from models.two_stage.rebuild import rebuild_layers

THRESHOLD = 0.5


def _gaussian_in_log_e(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """z = 1 + 2 l - 0.5 l^2 + exp(0.1 + 0.3 l) n with l the standardised log E_inc."""
    gen = torch.Generator().manual_seed(seed)
    e_inc = 10 ** (3 + 3 * torch.rand(n, generator=gen, dtype=torch.float64))
    log_e = e_inc.log()
    l = (log_e - log_e.mean()) / log_e.std()
    noise = torch.randn(n, generator=gen, dtype=torch.float64)
    z = 1 + 2 * l - 0.5 * l**2 + torch.exp(0.1 + 0.3 * l) * noise
    return z.unsqueeze(1), e_inc


def test_polynomial_standardiser_recovers_moments_in_chunks():
    z, e_inc = _gaussian_in_log_e(40_000, 0)

    def one_pass():
        yield z, e_inc

    def chunked():
        for rows in torch.arange(len(z)).split(3_000):
            yield z[rows], e_inc[rows]

    whole = PolynomialStandardiser(1, sigma_floor=1e-3, sigma_cap=1e3)
    whole.fit(one_pass, e_inc)
    parts = PolynomialStandardiser(1, sigma_floor=1e-3, sigma_cap=1e3)
    parts.fit(chunked, e_inc)
    assert torch.allclose(whole.mu_coef, parts.mu_coef, rtol=0, atol=1e-10)
    assert torch.allclose(whole.log_var_coef, parts.log_var_coef, rtol=0, atol=1e-10)
    l = torch.linspace(-1.5, 1.5, 7, dtype=torch.float64)
    e = torch.exp(l * e_inc.log().std() + e_inc.log().mean())
    mu, sigma = whole.moments(e)
    assert torch.allclose(mu[:, 0], 1 + 2 * l - 0.5 * l**2, atol=0.03)
    assert torch.allclose(sigma[:, 0], torch.exp(0.1 + 0.3 * l), rtol=0.05)
    x = whole.standardise(z, e_inc)
    assert torch.allclose(whole.unstandardise(x, e_inc), z, atol=1e-12)
    assert abs(float(x.mean())) < 0.02 and abs(float(x.std()) - 1) < 0.02


def test_polynomial_standardiser_lowers_the_degree_for_few_energies():
    e_inc = torch.tensor([100.0, 1000.0, 10_000.0], dtype=torch.float64).repeat(50)
    z = torch.log(e_inc).unsqueeze(1) * 2 + 1

    def chunks():
        yield z, e_inc

    std = PolynomialStandardiser(1, sigma_floor=1e-6, sigma_cap=1e3)
    std.fit(chunks, e_inc)
    assert bool((std.mu_coef[3:] == 0).all())  # three energies: a quadratic at most
    mu, _ = std.moments(e_inc)
    assert torch.allclose(mu, z, atol=1e-9)


def _showers(n: int, sizes: list[int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    e_inc = 10 ** (2 + 2 * torch.rand(n, 1, generator=gen))
    voxels = torch.rand(n, sum(sizes), generator=gen) ** 4 * e_inc / 10
    voxels = torch.where(voxels < THRESHOLD, 0.0, voxels)
    voxels[0, : sizes[0]] = 0  # an empty layer
    return voxels, e_inc


def _layer_sums(voxels: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    return torch.stack([v.double().sum(1) for v in voxels.split(sizes, dim=1)], dim=1)


def test_layer_energy_coordinates_invert():
    sizes = [6, 4, 3]
    voxels, e_inc = _showers(500, sizes, 0)
    layer_e = _layer_sums(voxels, sizes)
    p = LayerEnergyPreprocessing(len(sizes), 1, THRESHOLD, 0.1)
    p.fit(layer_e, e_inc, torch.Generator().manual_seed(1))
    x, c = p.transform(layer_e, e_inc, torch.Generator().manual_seed(2))
    assert x.shape == (500, 4) and c.shape == (500, 1) and x.dtype == torch.float32
    back = p.inverse(x.double(), e_inc)
    hit = layer_e > 0
    assert bool((back[~hit] < THRESHOLD).all())
    assert torch.allclose(back.sum(1), layer_e.sum(1), rtol=1e-5)  # E_tot
    # the empty layers' band takes a sliver of the softmax; the rebuild gives it back to the hits
    counts, q = rebuild_layers(back, THRESHOLD)
    rebuilt = counts.double() * q[:, None]
    assert torch.allclose(rebuilt, layer_e, rtol=1e-5, atol=0)


def test_voxel_shape_coordinates_invert_in_chunks(monkeypatch):
    sizes = [6, 4, 3]
    voxels, e_inc = _showers(300, sizes, 3)
    cond = torch.cat([e_inc.double(), _layer_sums(voxels, sizes)], dim=1)
    monkeypatch.setattr(pre, "CHUNK_ELEMENTS", 13 * 7)  # 7 events per chunk
    p = VoxelShapePreprocessing(13, 4, THRESHOLD, sizes, 0.1)
    p.fit(voxels, cond, torch.Generator().manual_seed(1))
    x, c = p.transform(voxels, cond, torch.Generator().manual_seed(2))
    assert x.shape == (300, 13) and c.shape == (300, 4)
    assert torch.equal(c, p.transform_cond(cond))  # conditions are deterministic
    back = p.inverse(x.double(), cond)
    hit = voxels > 0
    assert torch.allclose(back[hit], voxels.double()[hit], rtol=1e-5)
    assert bool((back[~hit] < THRESHOLD).all())
    # each voxel's share of its layer: at most the whole layer
    assert bool((back <= cond[:, 1:].repeat_interleave(torch.tensor(sizes), dim=1) + 1e-9).all())


def test_layer_energy_quantiles_gaussianise_and_invert():
    sizes = [6, 4, 3]
    voxels, e_inc = _showers(4_000, sizes, 5)
    layer_e = _layer_sums(voxels, sizes)
    p = LayerEnergyPreprocessing(len(sizes), 1, THRESHOLD, 0.1, quantiles=32, quantile_knots=4)
    p.fit(layer_e, e_inc, torch.Generator().manual_seed(1))
    x, _ = p.transform(layer_e, e_inc, torch.Generator().manual_seed(2))
    # each coordinate is marginally N(0, 1) after the rank-Gaussian map
    assert bool((x.mean(0).abs() < 0.05).all()) and bool(((x.std(0) - 1).abs() < 0.05).all())
    back = p.inverse(x.double(), e_inc)
    counts, q = rebuild_layers(back, THRESHOLD)
    exact = torch.isclose(counts.double() * q[:, None], layer_e, rtol=1e-5, atol=0).all(1)
    # exact wherever the tables cover the event; the table ends clip (|x| = Phi^-1(1 - U_EPS))
    inside = (x.abs() < 4.75).all(1)
    assert bool(exact[inside].all()) and float(inside.float().mean()) > 0.99
    # the tables travel in the state dict: a fresh module built the same way inverts the same
    fresh = LayerEnergyPreprocessing(len(sizes), 1, THRESHOLD, 0.1, quantiles=32, quantile_knots=4)
    fresh.load_state_dict(p.state_dict())
    assert torch.equal(fresh.inverse(x.double(), e_inc), back)


def test_layer_hit_counts_invert_beside_the_energies():
    sizes = [6, 4, 3]
    voxels, e_inc = _showers(2_000, sizes, 6)
    layer_e = _layer_sums(voxels, sizes)
    hits = torch.stack(
        [(v >= THRESHOLD).sum(1) for v in voxels.split(sizes, dim=1)], dim=1
    ).double()
    p = LayerEnergyPreprocessing(
        2 * len(sizes), 1, THRESHOLD, 0.1, quantiles=32, quantile_knots=4, layer_hits=True
    )
    p.fit(torch.cat([layer_e, hits], 1), e_inc, torch.Generator().manual_seed(1))
    x, _ = p.transform(torch.cat([layer_e, hits], 1), e_inc, torch.Generator().manual_seed(2))
    assert x.shape == (2_000, 1 + 2 * len(sizes))
    back = p.inverse(x.double(), e_inc)
    assert back.shape == (2_000, 2 * len(sizes))
    inside = (x.abs() < 4.75).all(1)  # 7 coordinates: the table ends clip about 1.4% of events
    assert float(inside.float().mean()) > 0.98
    # counts come back as the integers they were (float32 network space: all but a sliver)
    same = (back[:, len(sizes) :] == hits).all(1)
    assert float(same[inside].double().mean()) > 0.999
    counts, q = rebuild_layers(back[:, : len(sizes)], THRESHOLD)
    exact = torch.isclose(counts.double() * q[:, None], layer_e, rtol=1e-5, atol=0).all(1)
    assert bool(exact[inside].all())
    config = pre.ShowerStagesConfig(threshold_mev=THRESHOLD, layer_sizes=sizes, layer_hits=True)
    assert config.energy().build(2 * len(sizes), 1).layer_hits
    assert "layer_hits" not in pre.ShowerStagesConfig(threshold_mev=THRESHOLD).model_dump()
    with pytest.raises(ValueError, match="layer_hits"):
        LayerEnergyPreprocessing(3, 1, THRESHOLD, 0.1, layer_hits=True)


@pytest.mark.parametrize("share_of", ["incident", "layer"])
def test_hit_values_follow_each_voxels_hit_spectrum(share_of):
    sizes = [6, 4, 3]
    voxels, e_inc = _showers(6_000, sizes, 7)
    cond = torch.cat([e_inc.double(), _layer_sums(voxels, sizes)], dim=1)
    p = VoxelShapePreprocessing(
        13, 4, THRESHOLD, sizes, 0.1, voxel_quantiles=64, quantile_knots=8, share_of=share_of
    )
    p.fit(voxels, cond, torch.Generator().manual_seed(1))
    # the elements where the reference voxel is hit: a draw given the same E_inc has the same
    # spectrum, up to the tables' resolution (64 levels, linear between them)
    hit = voxels >= THRESHOLD
    rows, cols = hit.nonzero(as_tuple=True)
    draws = p.hit_values(cond, rows, cols, torch.Generator().manual_seed(2))
    assert draws.shape == rows.shape and bool((draws >= THRESHOLD).all())
    levels = torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9], dtype=torch.float64)
    ref_q = torch.quantile(voxels[hit].double().log(), levels)
    draw_q = torch.quantile(draws.log(), levels)
    assert torch.allclose(draw_q, ref_q, atol=0.2), (draw_q, ref_q)


def test_shower_stages_dump_omits_unset_energy_quantiles():
    base = pre.ShowerStagesConfig(threshold_mev=THRESHOLD, layer_sizes=[6, 4, 3])
    # unset, the option stays out of dumps: the cards of existing models keep their hash
    assert "energy_quantiles" not in base.model_dump()
    assert "quantiles" not in base.energy().model_dump()
    assert base.energy().build(3, 1).quantiles is None
    tuned = base.model_copy(update={"energy_quantiles": 64})
    assert tuned.model_dump()["energy_quantiles"] == 64
    assert tuned.energy().quantiles == 64
    assert pre.ShowerStagesConfig.model_validate(tuned.model_dump()) == tuned


def test_incident_shares_invert_and_keep_empties_in_a_fixed_band():
    sizes = [6, 4, 3]
    voxels, e_inc = _showers(300, sizes, 4)
    cond = torch.cat([e_inc.double(), _layer_sums(voxels, sizes)], dim=1)
    p = VoxelShapePreprocessing(13, 4, THRESHOLD, sizes, 0.1, share_of="incident")
    p.fit(voxels, cond, torch.Generator().manual_seed(1))
    z = p._coordinates(voxels, e_inc[:, 0], torch.Generator().manual_seed(2))
    empty = voxels == 0
    # empty voxels sit in the band log(floor 10^[-0.05, 0] / E_inc) whatever their layer's energy
    floor = 0.1 * THRESHOLD * torch.tensor([10**-0.05, 1.0], dtype=torch.float64)
    band = torch.log(floor / e_inc)
    assert bool(((z >= band[:, :1] - 1e-9) & (z <= band[:, 1:] + 1e-9) | ~empty).all())
    x, _ = p.transform(voxels, cond, torch.Generator().manual_seed(2))
    back = p.inverse(x.double(), cond)
    assert torch.allclose(back[~empty], voxels.double()[~empty], rtol=1e-5)
    assert bool((back[empty] < THRESHOLD).all())
    config = pre.ShowerStagesConfig(threshold_mev=THRESHOLD, layer_sizes=sizes)
    assert "share_of" not in config.model_dump() and "share_of" not in config.shape().model_dump()
    assert config.model_copy(update={"share_of": "incident"}).shape().share_of == "incident"
