"""The tiny shower sample the campaign tests' models are trained on."""

from __future__ import annotations

import numpy as np


def tiny_showers(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(showers (n, 8) MeV, e_inc (n,) MeV): what the tiny models are trained on."""
    rng = np.random.default_rng(seed)
    e_inc = np.exp(rng.uniform(np.log(1e3), np.log(1e5), n))
    profile = np.array([0.05, 0.02, 0.3, 0.2, 0.25, 0.1, 0.05, 0.03])
    return e_inc[:, None] * profile * rng.lognormal(0, 0.2, (n, 8)), e_inc
