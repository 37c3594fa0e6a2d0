"""farm.generation.cell_assignment: hits to distinct cells, nearest free cell first."""

from __future__ import annotations

import numpy as np

from farm.generation.cell_assignment import assign_free_cells


def _cells(group: np.ndarray, a) -> np.ndarray:
    return (group * 100 + a.iy) * 100 + a.ix


def test_a_lone_hit_keeps_the_cell_it_falls_in():
    a = assign_free_cells(np.array([0, 1]), np.array([3.2, 3.7]), np.array([4.9, 0.1]), 10)
    assert a.ix.tolist() == [3, 3] and a.iy.tolist() == [4, 0] and not a.moved.any()


def test_the_hit_nearer_the_centre_keeps_the_cell_and_the_other_takes_the_nearest_free_one():
    # both in cell (5, 5); hit 1 is nearer its centre (5.5, 5.5); hit 0 sits towards +x
    a = assign_free_cells(np.zeros(2, np.int64), np.array([5.9, 5.45]), np.array([5.6, 5.5]), 10)
    assert (a.ix[1], a.iy[1]) == (5, 5)
    assert (a.ix[0], a.iy[0]) == (6, 5) and a.moved.tolist() == [True, False]


def test_groups_do_not_compete():
    # one cell, two groups (two layers or two showers): no one moves
    a = assign_free_cells(np.array([0, 1]), np.full(2, 2.5), np.full(2, 2.5), 10)
    assert not a.moved.any()


def test_a_dense_core_gets_one_hit_per_cell_and_stays_compact():
    rng = np.random.default_rng(0)
    n = 40
    group = np.repeat(np.arange(50), n)
    u, v = rng.normal(20.0, 1.0, (2, group.size))
    a = assign_free_cells(group, u, v, 40)
    assert np.unique(_cells(group, a)).size == group.size  # no collisions left
    # every hit within the 7 x 7 neighbourhood of its own cell, most of them not moved at all
    assert np.abs(a.ix - np.floor(u)).max() <= 3 and np.abs(a.iy - np.floor(v)).max() <= 3
    assert 0.05 < a.moved.mean() < 0.6
    # the occupied cells of each group are the nearest ones to the core: no holes inside r = 2
    occupied = _cells(group, a)
    for g in range(5):
        cx, cy = np.meshgrid(np.arange(19, 22), np.arange(19, 22))
        assert np.isin((g * 100 + cy) * 100 + cx, occupied).all()


def test_a_saturated_neighbourhood_falls_back_to_the_own_cell():
    # 3 x 3 grid, radius 1: ten hits in the centre cell for nine cells; every cell is used once
    # and the one hit left over shares its own (centre) cell
    u = np.full(10, 1.5) + np.linspace(0, 0.4, 10)
    a = assign_free_cells(np.zeros(10, np.int64), u, np.full(10, 1.5), 3, radius=1)
    cells, count = np.unique(_cells(np.zeros(10, np.int64), a), return_counts=True)
    assert cells.size == 9 and count[cells == 1 * 100 + 1].item() == 2
    assert (~a.moved).sum() == 2


def test_cells_outside_the_grid_are_never_proposed():
    # corner cell (0, 0) of a 2 x 2 grid, four hits: each gets one of the four cells
    a = assign_free_cells(np.zeros(4, np.int64), np.full(4, 0.2), np.full(4, 0.3), 2)
    assert sorted(zip(a.ix.tolist(), a.iy.tolist(), strict=True)) == [
        (0, 0),
        (0, 1),
        (1, 0),
        (1, 1),
    ]
