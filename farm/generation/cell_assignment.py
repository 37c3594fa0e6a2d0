"""Collision-free cell assignment: generated hits to distinct cells of their layer's pad grid.

A point-cloud model draws continuous (x, y) positions; a readout has at most one hit per cell.
Snapping each hit to the cell it falls in merges hits that land in one cell and so loses hits
where the shower core is dense (18% of them for the ild-ecal-like teacher). Here every hit keeps
its own cell instead: hits propose cells in order of the distance from their position to the
cell's centre (their own cell first, then the (2R + 1)^2 - 1 nearest neighbours within R cells);
a cell goes to the nearest of the hits proposing it, the others propose their next cell, and a
cell once taken stays taken (a greedy nearest-free-cell matching, rank by rank). A hit finding no
free cell within R joins the hit of its own cell (energies summed), so energy is always conserved.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RADIUS = 3
"""Cells a hit may move in x and in y (a 7 x 7 neighbourhood: 49 candidate cells)."""


@dataclass(frozen=True)
class CellAssignment:
    """Cell (ix, iy) of each hit and whether it was moved off the cell it fell in."""

    ix: np.ndarray
    iy: np.ndarray
    moved: np.ndarray


def _offsets(radius: int) -> np.ndarray:
    """(K, 2) integer cell offsets (dx, dy) of the (2 radius + 1)^2 neighbourhood, (0, 0) first."""
    d = np.arange(-radius, radius + 1)
    dx, dy = np.meshgrid(d, d, indexing="ij")
    off = np.stack([dx.ravel(), dy.ravel()], axis=1)
    order = np.lexsort((off[:, 1], off[:, 0], (off**2).sum(axis=1)))
    return off[order]


def _candidates(
    u: np.ndarray, v: np.ndarray, offsets: np.ndarray, n_cells: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(H, K) candidate cells (cx, cy) of hits at (u, v), nearest centre first, and distances^2.

    Candidates outside the grid get distance inf (they sort last and are never taken).
    """
    cx = np.floor(u).astype(np.int64)[:, None] + offsets[None, :, 0]
    cy = np.floor(v).astype(np.int64)[:, None] + offsets[None, :, 1]
    d2 = (u[:, None] - cx - 0.5) ** 2 + (v[:, None] - cy - 0.5) ** 2
    d2[(cx < 0) | (cx >= n_cells) | (cy < 0) | (cy >= n_cells)] = np.inf
    order = np.argsort(d2, axis=1, kind="stable")
    take = np.take_along_axis
    return take(cx, order, 1), take(cy, order, 1), take(d2, order, 1)


def _claim(cell: np.ndarray, d2: np.ndarray, taken: np.ndarray) -> np.ndarray:
    """Which proposals win their cell (free, nearest proposer, lower index on ties); marks taken.

    cell indexes `taken` (one flag per cell that any hit may propose).
    """
    contenders = np.flatnonzero(np.isfinite(d2) & ~taken[cell])
    order = contenders[np.lexsort((contenders, d2[contenders], cell[contenders]))]
    _, first = np.unique(cell[order], return_index=True)
    won = np.zeros(cell.shape[0], bool)
    won[order[first]] = True
    taken[cell[won]] = True
    return won


def assign_free_cells(
    group: np.ndarray, u: np.ndarray, v: np.ndarray, n_cells: int, radius: int = RADIUS
) -> CellAssignment:
    """Distinct cells for hits at (u, v) in cell units of an n_cells grid, per group.

    u, v in [0, n_cells): the cell a hit falls in is (floor u, floor v). group (int64 >= 0) says
    which hits compete for cells (one shower's layer). The neighbourhood grows in stages (the 8
    neighbours, then the full radius) so that the few hits of a saturated core alone pay for it.
    """
    u = np.asarray(u, np.float64)
    v = np.asarray(v, np.float64)
    group = np.asarray(group, np.int64)
    ix = np.floor(u).astype(np.int64)
    iy = np.floor(v).astype(np.int64)
    base_x, base_y = ix.copy(), iy.copy()
    per_group = n_cells * n_cells

    def keys(hit: np.ndarray, cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
        return group[hit].reshape(-1, *([1] * (cx.ndim - 1))) * per_group + cy * n_cells + cx

    # rank 0: every hit claims its own cell; the nearest to the cell's centre keeps it
    everyone = np.arange(u.shape[0])
    d2 = (u - ix - 0.5) ** 2 + (v - iy - 0.5) ** 2
    own, inverse = np.unique(keys(everyone, ix, iy), return_inverse=True)
    placed = _claim(inverse, d2, np.zeros(own.shape[0], bool))
    for r in sorted({min(1, radius), radius}):
        pending = np.flatnonzero(~placed)
        if pending.size == 0 or r == 0:
            break
        cx, cy, cd2 = _candidates(u[pending], v[pending], _offsets(r), n_cells)
        cells, inverse = np.unique(keys(pending, cx, cy), return_inverse=True)
        taken = np.isin(cells, keys(np.flatnonzero(placed), ix[placed], iy[placed]))
        inverse = inverse.reshape(cx.shape)
        rows = np.arange(pending.size)
        for rank in range(cx.shape[1]):
            if rows.size == 0:
                break
            won = _claim(inverse[rows, rank], cd2[rows, rank], taken)
            hit = pending[rows[won]]
            ix[hit], iy[hit] = cx[rows[won], rank], cy[rows[won], rank]
            placed[hit] = True
            rows = rows[~won]
    # no free cell within the radius: the hit stays in its own cell, merged with its occupant
    moved = (ix != base_x) | (iy != base_y)
    return CellAssignment(ix, iy, moved)
