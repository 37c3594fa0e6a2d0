"""Training data from a job's data spec: arrays in physical units, their split and provenance."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from farm.data.geometry import CaloGeometry, load_geometry
from farm.data.splits import split_indices
from farm.errors import FarmError
from farm.specs import CaloChallengeData, SimulatedShowersData


@dataclass
class ShowerDataset:
    """Showers (N, n_voxels) MeV with incident energies (N,) MeV, a geometry and provenance."""

    showers: np.ndarray
    e_inc: np.ndarray
    geometry: CaloGeometry
    provenance: dict[str, Any] = field(default_factory=dict)

    def subset(self, idx: np.ndarray) -> ShowerDataset:
        return ShowerDataset(self.showers[idx], self.e_inc[idx], self.geometry, self.provenance)


def simulate(
    geometry: CaloGeometry, events: int, seed: int, energies: list[float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Showers from the built-in simulator, identical to what `farm data showers` writes."""
    from farm.data.showers import simulate_in_memory

    return simulate_in_memory(geometry, events, seed, energies=energies)


def load_showers(spec: SimulatedShowersData | CaloChallengeData) -> ShowerDataset:
    """Load (or simulate) the showers a data spec names."""
    geometry = load_geometry(spec.geometry)
    if isinstance(spec, SimulatedShowersData):
        showers, e_inc = simulate(geometry, spec.events, spec.seed, spec.energies)
        provenance = {
            "source": spec.source,
            "geometry": geometry.name,
            "events": spec.events,
            "seed": spec.seed,
            "energies": spec.energies,
            "simulator": "farm.data.shower_sim",
        }
    elif isinstance(spec, CaloChallengeData):
        from farm.formats.calochallenge import read_calochallenge

        showers, e_inc = read_calochallenge(spec.url, geometry=geometry, stop=spec.max_events)
        provenance = {
            "source": spec.source,
            "url": spec.url,
            "geometry": geometry.name,
            "events": len(e_inc),
        }
    else:  # pragma: no cover - the spec union is closed
        raise FarmError(f"unsupported data source {spec!r}")
    return ShowerDataset(
        np.asarray(showers, np.float32),
        np.asarray(e_inc, np.float64).reshape(-1),
        geometry,
        provenance,
    )


def split(
    dataset: ShowerDataset, spec: SimulatedShowersData | CaloChallengeData
) -> dict[str, ShowerDataset]:
    """Deterministic train/val/test split; the split is recorded in the provenance."""
    s = spec.split
    idx = split_indices(len(dataset.e_inc), s.train, s.val, s.seed)
    dataset.provenance["split"] = {
        "train": s.train,
        "val": s.val,
        "seed": s.seed,
        **{f"n_{k}": len(v) for k, v in idx.items()},
    }
    return {k: dataset.subset(v) for k, v in idx.items()}
