"""Deterministic train/validation/test splits by a seeded permutation, recorded in provenance."""

from __future__ import annotations

import numpy as np


def split_indices(n: int, train: float, val: float, seed: int) -> dict[str, np.ndarray]:
    """Sorted event indices of each split; the same (n, fractions, seed) always gives the same split."""
    perm = np.random.default_rng([seed, 0x5EED]).permutation(n)
    n_train, n_val = round(train * n), round(val * n)
    return {
        "train": np.sort(perm[:n_train]),
        "val": np.sort(perm[n_train : n_train + n_val]),
        "test": np.sort(perm[n_train + n_val :]),
    }
