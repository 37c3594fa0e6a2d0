"""Voxelised showers <-> point clouds (as CaloClouds / CaloPointFlow use): one point per hit voxel.

Coordinates: "xyz" = (x mm, y mm, z = layer index, E MeV), x = r cos(alpha), y = r sin(alpha) at the
voxel centre; "cylindrical" = (layer index, alpha rad, r mm, E MeV). Summing points back into voxels
(points_to_voxels) is lossless for voxel-centre points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from farm.data.geometry import CaloGeometry
from farm.errors import FarmError

COLUMNS = {"xyz": ("x", "y", "z", "E"), "cylindrical": ("layer", "alpha", "r", "E")}


@dataclass(frozen=True)
class PointCloud:
    """Points of many showers, flat: points (M, 4) float32, event (M,) int64 owner of each point."""

    points: np.ndarray
    event: np.ndarray
    n_events: int
    coords: str

    @property
    def columns(self) -> tuple[str, ...]:
        return COLUMNS[self.coords]

    @property
    def counts(self) -> np.ndarray:
        """(n_events,) number of points per shower."""
        return np.bincount(self.event, minlength=self.n_events)

    def padded(self, max_points: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(N, P, 4) zero-padded points, (N, P) bool mask; P = max_points or the largest count."""
        counts = self.counts
        P = int(counts.max(initial=0)) if max_points is None else max_points
        if counts.max(initial=0) > P:
            raise FarmError(f"a shower has {counts.max()} points, more than max_points={P}")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        slot = np.arange(self.event.shape[0]) - starts[self.event]
        out = np.zeros((self.n_events, P, 4), dtype=np.float32)
        mask = np.zeros((self.n_events, P), dtype=bool)
        out[self.event, slot] = self.points
        mask[self.event, slot] = True
        return out, mask


def _check_coords(coords: str) -> None:
    if coords not in COLUMNS:
        raise FarmError(f"unknown point-cloud coordinates {coords!r}: allowed {', '.join(COLUMNS)}")


def voxels_to_points(
    showers: np.ndarray, geometry: CaloGeometry, coords: str = "xyz", threshold: float = 0.0
) -> PointCloud:
    """One point per voxel with E > threshold, at the voxel centre; sorted by (event, voxel)."""
    _check_coords(coords)
    x = np.asarray(showers)
    geometry.check_voxels(x.shape[-1], "showers array")
    event, voxel = np.nonzero(x > threshold)
    E = x[event, voxel].astype(np.float32)
    layer = geometry.voxel_layer[voxel].astype(np.float32)
    if coords == "xyz":
        xy = geometry.voxel_xy[voxel].astype(np.float32)
        pts = np.column_stack([xy[:, 0], xy[:, 1], layer, E])
    else:
        alpha = geometry.voxel_alpha[voxel].astype(np.float32)
        r = geometry.voxel_r[voxel].astype(np.float32)
        pts = np.column_stack([layer, alpha, r, E])
    return PointCloud(pts.astype(np.float32), event.astype(np.int64), x.shape[0], coords)


def point_voxels(points: np.ndarray, geometry: CaloGeometry, coords: str = "xyz") -> np.ndarray:
    """Flat voxel index of each point (M,), -1 where it lies outside the geometry."""
    _check_coords(coords)
    p = np.asarray(points, dtype=np.float64)
    if coords == "xyz":
        layer, r, alpha = p[:, 2], np.hypot(p[:, 0], p[:, 1]), np.arctan2(p[:, 1], p[:, 0])
    else:
        layer, alpha, r = p[:, 0], p[:, 1], p[:, 2]
    layer_i = np.rint(layer).astype(np.int64)
    out = np.full(p.shape[0], -1, dtype=np.int64)
    for lay in geometry.active_layers:
        sel = np.flatnonzero(layer_i == lay.index)
        if not sel.size:
            continue
        edges = np.asarray(lay.r_edges)
        i_r = np.searchsorted(edges, r[sel], side="right") - 1
        a = np.mod(alpha[sel] + np.pi, 2 * np.pi)  # [0, 2 pi)
        i_a = np.minimum((a * lay.n_alpha / (2 * np.pi)).astype(np.int64), lay.n_alpha - 1)
        ok = (i_r >= 0) & (i_r < lay.n_radial)
        start = geometry.layer_slices[lay.index].start
        out[sel[ok]] = start + i_a[ok] * lay.n_radial + i_r[ok]
    return out


def points_to_voxels(
    points: np.ndarray | PointCloud,
    geometry: CaloGeometry,
    event: np.ndarray | None = None,
    n_events: int | None = None,
    coords: str = "xyz",
) -> np.ndarray:
    """Sum point energies into (n_events, n_voxels) float32 MeV; points outside are dropped."""
    if isinstance(points, PointCloud):
        cloud = points
        points, event, n_events, coords = cloud.points, cloud.event, cloud.n_events, cloud.coords
    p = np.asarray(points)
    event = np.zeros(p.shape[0], dtype=np.int64) if event is None else np.asarray(event)
    n_events = int(event.max(initial=-1)) + 1 if n_events is None else n_events
    V = geometry.n_voxels
    idx = point_voxels(p, geometry, coords)
    keep = idx >= 0
    flat = event[keep] * V + idx[keep]
    sums = np.bincount(flat, weights=p[keep, 3].astype(np.float64), minlength=n_events * V)
    return sums.reshape(n_events, V).astype(np.float32)
