"""Exact rebuild: integer quanta sum exactly at every level, hits keep the threshold (hand cases
and random stress in float64 and float32)."""

from __future__ import annotations

import pytest
import torch

from models.two_stage.rebuild import (
    QUANTUM_BITS,
    VoxelLayout,
    apportion,
    cumulative_round,
    hit_quanta,
    rebuild_layers,
    rebuild_voxels,
    shower_quantum,
)


def _split(total: int, values: list[float], c_min: int) -> list[int]:
    out = apportion(
        torch.tensor([[total]]),
        torch.tensor([[values]], dtype=torch.float64),
        torch.tensor([c_min]),
    )
    return out[0, 0].tolist()


def test_cumulative_round_hand_case():
    # cumulative quotas 10/3, 20/3, 10 round to 3, 7, 10
    out = cumulative_round(torch.tensor([10]), torch.tensor([[1.0, 1.0, 1.0]], dtype=torch.float64))
    assert out.tolist() == [[3, 4, 3]]
    zero = cumulative_round(torch.tensor([7]), torch.tensor([[0.0, 2.0, 0.0, 5.0]]).double())
    assert zero.tolist() == [[0, 2, 0, 5]]


def test_apportion_hand_cases():
    # all three candidates stay hits after sharing 100: 10 each + 70 split 42.6 : 21.6 : 5.8
    assert _split(100, [50.0, 30.0, 15.0, 5.0], 10) == [53, 31, 16, 0]
    # sharing 25 among three would give the third 7.6 < 10 quanta: only the two largest
    assert _split(25, [12.0, 11.0, 10.0], 10) == [13, 12, 0]
    # no part is a hit on its own: the largest takes everything
    assert _split(30, [3.0, 4.0, 2.0], 10) == [0, 30, 0]
    assert _split(0, [50.0, 30.0], 10) == [0, 0]
    # padding (negative values) never receives quanta
    assert _split(40, [-1.0, 0.0, -1.0], 10) == [0, 40, 0]
    with pytest.raises(ValueError, match="below c_min"):
        _split(5, [50.0], 10)


def test_apportion_takes_the_requested_number_of_parts():
    def split_n(total: int, values: list[float], c_min: int, n: int) -> list[int]:
        v = torch.tensor([[values]], dtype=torch.float64)
        out = apportion(torch.tensor([[total]]), v, torch.tensor([c_min]), torch.tensor([[n]]))
        return out[0, 0].tolist()

    # the two largest of four, although all four would stay hits: 10 each, and the other 80 in
    # proportion to what each holds above 10 (40 : 20)
    assert split_n(100, [50.0, 30.0, 15.0, 5.0], 10, 2) == [63, 37, 0, 0]
    # three requested where the proportional rule takes two: the third gets the 10 of a hit
    assert split_n(40, [12.0, 11.0, 1.0], 10, 3) == [17, 13, 10]
    # a rescale down keeps the order and flattens nothing onto c: 10 + 30 x (20 : 10 : 2) / 32
    assert split_n(60, [30.0, 20.0, 12.0], 10, 3) == [29, 19, 12]
    # more than the total allows (40 // 10 = 4) or than there are parts: clamped
    assert split_n(40, [5.0, 4.0, 3.0, 2.0, 1.0], 10, 9) == [10, 10, 10, 10, 0]
    assert split_n(40, [5.0, -1.0, -1.0], 10, 3) == [40, 0, 0]
    # zero requested for a nonzero total still makes one hit; a zero total none
    assert split_n(30, [1.0, 2.0], 10, 0) == [0, 30]
    assert split_n(0, [1.0, 2.0], 10, 2) == [0, 0]


def test_apportion_random_is_exact_and_takes_the_largest():
    gen = torch.Generator().manual_seed(0)
    b, g, p = 64, 5, 37
    c_min = torch.randint(1, 50, (b,), generator=gen)
    values = torch.rand(b, g, p, generator=gen, dtype=torch.float64) ** 8 * 400
    values[:, :, -3:] = -1.0  # padding
    totals = torch.randint(0, 2000, (b, g), generator=gen)
    totals = torch.where(totals < c_min[:, None], 0, totals)
    counts = apportion(totals, values, c_min)
    assert torch.equal(counts.sum(-1), totals)
    c = c_min.view(-1, 1, 1)
    assert bool(((counts == 0) | (counts >= c)).all())
    assert bool((counts[:, :, -3:] == 0).all())
    # a part is taken only if every larger part is taken too
    hit = counts > 0
    larger = values.unsqueeze(-1) > values.unsqueeze(-2)  # [b, g, i, j]: v_i > v_j
    assert not bool((hit.unsqueeze(-2) & larger & ~hit.unsqueeze(-1)).any())


def test_shower_quantum_is_a_power_of_two_bounding_the_count():
    e_tot = torch.tensor([1e-3, 0.7, 1.0, 3.3e5, 4.2e6, 1e12], dtype=torch.float64)
    q = shower_quantum(e_tot)
    mantissa, _ = torch.frexp(q)
    assert bool((mantissa == 0.5).all())
    assert bool((e_tot / q < 2.0**QUANTUM_BITS).all()) and bool((e_tot / q >= 2.0**47).all())


def _random_shower_values(b: int, sizes: list[int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    e_inc = 10 ** (3 + 3 * torch.rand(b, 1, generator=gen, dtype=torch.float64))
    fractions = torch.rand(b, len(sizes), generator=gen, dtype=torch.float64) ** 6
    layer_values = fractions / fractions.sum(1, keepdim=True) * e_inc
    layer_values[:3] = 1e-4  # showers below the threshold
    voxels = torch.rand(b, sum(sizes), generator=gen, dtype=torch.float64) ** 10 * 0.3 * e_inc
    return layer_values, voxels


@pytest.mark.parametrize("threshold", [1.0, 0.015])
def test_rebuilt_showers_sum_exactly_in_any_order(threshold):
    sizes = [8, 160, 190, 5, 5]
    layout = VoxelLayout(sizes)
    layer_values, voxel_values = _random_shower_values(200, sizes, seed=1)
    layer_counts, q = rebuild_layers(layer_values, threshold)
    voxel_counts = rebuild_voxels(layer_counts, voxel_values, q, threshold, layout)
    layer_e = layer_counts.double() * q[:, None]
    voxels = voxel_counts.double() * q[:, None]
    e_tot = layer_counts.sum(1).double() * q
    per_layer = torch.stack([v.sum(1) for v in torch.split(voxels, sizes, dim=1)], dim=1)
    reversed_order = torch.stack(
        [v.flip(1).cumsum(1)[:, -1] for v in torch.split(voxels, sizes, dim=1)], dim=1
    )
    assert torch.equal(per_layer, layer_e) and torch.equal(reversed_order, layer_e)
    assert torch.equal(layer_e.sum(1), e_tot) and torch.equal(layer_e.flip(1).sum(1), e_tot)
    assert torch.equal(voxels.sum(1), e_tot)
    # hits keep the threshold in float64 and after the float32 cast
    cast = voxels.float()
    for v, thr in (
        (voxels, threshold),
        (cast, torch.tensor(threshold).float()),
        (cast.double(), threshold),
    ):
        assert bool(((v == 0) | (v >= thr)).all())
    assert bool(((layer_e == 0) | (layer_e >= threshold)).all())
    assert bool((e_tot[:3] == 0).all()) and bool((e_tot[3:] > 0).all())
    # the rebuild follows the proposal: relative change of E_tot below 2^-47
    kept = e_tot > 0
    rel = (e_tot[kept] - layer_values.sum(1)[kept]).abs() / e_tot[kept]
    assert float(rel.max()) < 2.0**-47


def test_voxel_layout_round_trip():
    layout = VoxelLayout([2, 3, 1])
    x = torch.arange(1.0, 7.0).reshape(1, 6)
    padded = layout.padded(x, -1.0)
    assert padded.tolist() == [[[1, 2, -1], [3, 4, 5], [6, -1, -1]]]
    assert torch.equal(layout.flatten(padded), x)


def test_hit_quanta_margin():
    q = torch.tensor([2.0**-30], dtype=torch.float64)
    c = hit_quanta(0.015, q)
    assert float(c * q) >= 0.015 * (1 + 2**-21) > float(torch.tensor(0.015).float())
