"""Synthetic CaloChallenge-like showers and JetNet-like jets: the tests need no simulator."""

from __future__ import annotations

import pytest

from farm.geometry import CaloGeometry, load_geometry


@pytest.fixture(scope="session")
def geometry() -> CaloGeometry:
    return load_geometry("ds1-photons")
