"""Per-voxel evaluation thresholds of the CaloChallenge."""

from __future__ import annotations

from farm.geometry import CaloGeometry


def default_threshold(geometry: CaloGeometry) -> float:
    """The challenge's per-voxel evaluation threshold: 1 MeV for DS1, 15 keV for DS2/DS3."""
    return 1.0 if geometry.name.startswith("ds1") or geometry.n_voxels < 1000 else 0.015
