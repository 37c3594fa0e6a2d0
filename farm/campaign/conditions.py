"""A shard's conditions, drawn reproducibly from its seed: incident energies or jet truth rows."""

from __future__ import annotations

import numpy as np

from farm.errors import FarmError
from farm.samples import EventSample, JetTruth
from farm.sharding import Shard
from farm.specs import EnergyConditions


def shard_energies(
    spec: EnergyConditions, shard: Shard, truth: np.ndarray | None = None
) -> np.ndarray:
    """(n,) incident energies in MeV for a shard; a truth file is used row by row, cyclically."""
    rng = np.random.default_rng([shard.seed, 1])
    if spec.distribution == "discrete":
        return rng.choice(np.asarray(spec.values, np.float64), size=shard.n)
    if spec.distribution == "log-uniform":
        return np.exp(rng.uniform(np.log(spec.min), np.log(spec.max), size=shard.n))
    if spec.distribution == "uniform":
        return rng.uniform(spec.min, spec.max, size=shard.n)
    if truth is None or len(truth) == 0:
        raise FarmError(f"{spec.url}: no truth energies to condition on")
    return truth[np.arange(shard.start, shard.stop) % len(truth)]


def shard_jet_truth(truth: JetTruth, shard: Shard) -> JetTruth:
    """(pT, eta, counts) for a shard's events: event i takes truth row i modulo the rows."""
    return truth.rows(np.arange(shard.start, shard.stop) % len(truth))


def shard_event_truth(truth: EventSample, shard: Shard) -> EventSample:
    """The truth events of a shard: event i takes truth event i modulo the events."""
    return truth.subset(np.arange(shard.start, shard.stop) % len(truth))


def energy_bounds(spec: EnergyConditions, truth: np.ndarray | None = None) -> tuple[float, float]:
    """The smallest and largest energy the conditions can produce."""
    if spec.distribution == "discrete":
        return min(spec.values), max(spec.values)
    if spec.distribution == "file":
        return float(truth.min()), float(truth.max())
    return spec.min, spec.max
