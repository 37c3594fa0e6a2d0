"""Moved to farm.geometry (temporary re-export while the move lands)."""

from farm.geometry import *  # noqa: F403
from farm.geometry import KNOWN_GEOMETRIES, CaloGeometry, Layer, load_geometry  # noqa: F401
