"""Incident-energy conditions for a shard, drawn reproducibly from the shard's seed."""

from __future__ import annotations

import numpy as np

from farm.campaign.plan import Shard
from farm.errors import FarmError
from farm.specs import EnergyConditions


def read_truth_energies(url: str) -> np.ndarray:
    """Incident energies (MeV) from a truth file: CaloChallenge HDF5 or farm shower Parquet."""
    if url.endswith(".parquet"):
        from farm.formats.showers_parquet import read_showers_parquet

        return np.asarray(read_showers_parquet(url)["incident_energy"], np.float64)
    import h5py

    from farm import store

    fs, path = store.filesystem(url)
    try:
        with fs.open(path, "rb") as fh, h5py.File(fh, "r") as f:
            return np.asarray(f["incident_energies"][:], np.float64).reshape(-1)
    except FileNotFoundError:
        raise FarmError(f"{url}: conditions file not found") from None
    except (OSError, KeyError) as exc:
        raise FarmError(f"{url}: cannot read 'incident_energies' ({exc})") from None


def read_truth_jets(url: str) -> dict[str, np.ndarray]:
    """Truth (jet pT GeV, eta, kept constituent count) per row of a jets file or folder of shards."""
    from farm.evaluation.evaluate import read_jet_sample
    from farm.generation import jet_conditions

    try:
        jets = read_jet_sample(url)
    except FileNotFoundError:
        raise FarmError(f"{url}: jet truth file not found") from None
    if "jet_features" not in jets or not len(jets["jet_features"]):
        raise FarmError(f"{url}: no jets with jet_features (pT, eta) to condition on")
    pt, eta, counts = jet_conditions(jets)
    return {"pt": np.asarray(pt, np.float64), "eta": np.asarray(eta, np.float64), "counts": counts}


def shard_jet_truth(truth: dict[str, np.ndarray], shard: Shard) -> tuple[np.ndarray, ...]:
    """(pT, eta, counts) for a shard's events: event i takes truth row i modulo the rows."""
    rows = np.arange(shard.start, shard.stop) % len(truth["pt"])
    return truth["pt"][rows], truth["eta"][rows], truth["counts"][rows]


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


def energy_bounds(spec: EnergyConditions, truth: np.ndarray | None = None) -> tuple[float, float]:
    """The smallest and largest energy the conditions can produce."""
    if spec.distribution == "discrete":
        return min(spec.values), max(spec.values)
    if spec.distribution == "file":
        return float(truth.min()), float(truth.max())
    return spec.min, spec.max
