"""A shard's conditions, drawn reproducibly from its seed: energies, jet or event truth."""

from __future__ import annotations

import numpy as np

from farm.data.events import EventGenConfig, generate_events
from farm.errors import FarmError
from farm.samples import EventSample, JetTruth
from farm.sharding import Shard
from farm.specs import EnergyConditions, PythiaTruth


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


def pythia_config(spec: PythiaTruth, n_events: int) -> EventGenConfig:
    """The `EventGenConfig` of `n_events` events with a campaign's Pythia settings.

    FarmError (one line, from EventGenConfig) for a window empty with the process default, e.g.
    qcd (pT-hat > 100 GeV by default) with pt_hat_max 50.
    """
    return EventGenConfig(n_events=n_events, **spec.model_dump())


def shard_pythia_truth(spec: PythiaTruth, shard: Shard, n: int | None = None) -> EventSample:
    """The truth events of a shard generated with Pythia, seeded by `Shard.pythia_seed`.

    The same shard gives the same events bit for bit (with the same pythia8mc): shard i of a
    campaign with seed S and shard_size K holds the truth of shard i of `farm data events --seed S
    --shard-size K` with the same settings. `n` generates only the shard's first n events (the
    same first n: Pythia runs event after event from its seed).
    """
    sample = generate_events(pythia_config(spec, shard.n if n is None else n), shard.pythia_seed)
    sample.event_id = shard.event_ids()[: len(sample)]
    return sample


def energy_bounds(spec: EnergyConditions, truth: np.ndarray | None = None) -> tuple[float, float]:
    """The smallest and largest energy the conditions can produce."""
    if spec.distribution == "discrete":
        return min(spec.values), max(spec.values)
    if spec.distribution == "file":
        return float(truth.min()), float(truth.max())
    return spec.min, spec.max
