"""Input checks shared by the metrics: finite samples, matching features, minimum sample sizes."""

from __future__ import annotations

import warnings

import numpy as np

from farm.errors import FarmError


class SmallSampleWarning(UserWarning):
    """A metric was evaluated on fewer events than recommended for a stable value."""


def warn_small(n: int, recommended: int, metric: str) -> str | None:
    """Warn (and return the note) when n < recommended."""
    if n >= recommended:
        return None
    note = f"{metric}: only {n} events, {recommended} recommended for a stable value"
    warnings.warn(note, SmallSampleWarning, stacklevel=3)
    return note


def as_sample(x: np.ndarray, name: str, ndim: int) -> np.ndarray:
    """float64 array of the given ndim; FarmError on NaN/Inf or empty input, naming `name`."""
    arr = np.asarray(x, dtype=np.float64)
    if ndim == 1:
        arr = arr.reshape(-1)
    elif arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != ndim:
        raise FarmError(f"{name}: expected a {ndim}-D array, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise FarmError(f"{name}: empty sample")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise FarmError(f"{name}: {int(bad.sum())} NaN/Inf values")
    return arr


def check_pair(reference, generated, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    """Checked float64 (reference, generated); FarmError if their feature counts differ."""
    ref = as_sample(reference, "reference", ndim)
    gen = as_sample(generated, "generated", ndim)
    if ndim == 2 and ref.shape[1] != gen.shape[1]:
        raise FarmError(
            f"feature sets differ: reference has {ref.shape[1]} features, "
            f"generated has {gen.shape[1]}"
        )
    return ref, gen
