"""Training data from a job's data spec: arrays in physical units, their split and provenance."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from farm.data.geometry import CaloGeometry, load_geometry
from farm.data.splits import split_indices
from farm.errors import FarmError
from farm.specs import (
    JET_POINT_FEATURES,
    CaloChallengeData,
    JetFileData,
    SimulatedJetsData,
    SimulatedShowersData,
)


@dataclass
class ShowerDataset:
    """Showers (N, n_voxels) MeV with incident energies (N,) MeV, a geometry and provenance."""

    showers: np.ndarray
    e_inc: np.ndarray
    geometry: CaloGeometry
    provenance: dict[str, Any] = field(default_factory=dict)

    kind = "showers"

    def __len__(self) -> int:
        return len(self.e_inc)

    def subset(self, idx: np.ndarray) -> ShowerDataset:
        return ShowerDataset(self.showers[idx], self.e_inc[idx], self.geometry, self.provenance)

    def model_inputs(self) -> tuple[np.ndarray, np.ndarray]:
        """(x, cond) for a model: voxel energies (N, V) MeV and incident energy (N, 1) MeV."""
        return self.showers, self.e_inc.reshape(-1, 1)


@dataclass
class JetDataset:
    """Jets as in farm.formats.jets: constituents (N, P, 4) [eta_rel, phi_rel, pt_rel, mask] and
    jet_features (N, 4) [pt GeV, eta, mass GeV, n_constituents], with provenance."""

    constituents: np.ndarray
    jet_features: np.ndarray
    provenance: dict[str, Any] = field(default_factory=dict)

    kind = "jets"

    def __len__(self) -> int:
        return len(self.jet_features)

    def subset(self, idx: np.ndarray) -> JetDataset:
        return JetDataset(self.constituents[idx], self.jet_features[idx], self.provenance)

    @property
    def n_particles(self) -> int:
        return self.constituents.shape[1]

    def model_inputs(self) -> tuple[np.ndarray, np.ndarray]:
        """(x, cond): (eta_rel, phi_rel, pt_rel) flattened (N, P * 3) with real constituents first
        (pT order), and cond (N, 2) = [jet pT (GeV), number of real constituents kept (<= P)]
        (the count last, as models' point-cloud masks expect)."""
        x = self.constituents[:, :, :JET_POINT_FEATURES].reshape(len(self), -1)
        count = (self.constituents[:, :, 3] > 0).sum(1)
        cond = np.stack([self.jet_features[:, 0], count], axis=1)
        return np.ascontiguousarray(x, np.float32), cond.astype(np.float32)

    def as_dict(self) -> dict[str, np.ndarray]:
        return {"constituents": self.constituents, "jet_features": self.jet_features}


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
        from farm.data.shower_sim import energy_range

        showers, e_inc = simulate(geometry, spec.events, spec.seed, spec.energies)
        provenance = {
            "source": spec.source,
            "geometry": geometry.name,
            "events": spec.events,
            "seed": spec.seed,
            "energies": spec.energies,
            "simulator": "farm.data.shower_sim",
            "e_inc_range": [min(spec.energies), max(spec.energies)]
            if spec.energies
            else list(energy_range(geometry)),
        }
    elif isinstance(spec, CaloChallengeData):
        from farm.formats.calochallenge import read_calochallenge

        showers, e_inc = read_calochallenge(spec.url, geometry=geometry, stop=spec.max_events)
        provenance = {
            "source": spec.source,
            "url": spec.url,
            "geometry": geometry.name,
            "events": len(e_inc),
            "e_inc_range": [float(np.min(e_inc)), float(np.max(e_inc))],
        }
    else:  # pragma: no cover - the spec union is closed
        raise FarmError(f"unsupported data source {spec!r}")
    return ShowerDataset(
        np.asarray(showers, np.float32),
        np.asarray(e_inc, np.float64).reshape(-1),
        geometry,
        provenance,
    )


def jets_cache_url(spec: SimulatedJetsData) -> str:
    """Where `simulated_jets` data is generated once and reused (keyed by the generator settings)."""
    import hashlib
    import json

    from farm import store

    key = spec.model_dump(mode="json", exclude={"split"})
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return store.join(store.home(), "datasets", "jets", f"{spec.process}-{digest}")


def load_jets(spec: SimulatedJetsData | JetFileData, progress: bool = False) -> JetDataset:
    """Load (or generate with Pythia once, cached under FARM_HOME) the jets a data spec names."""
    from farm.evaluation.evaluate import read_jet_sample

    if isinstance(spec, SimulatedJetsData):
        from farm.data.jets import JetGenConfig, generate_jets_sharded

        config = JetGenConfig(
            process=spec.process,
            n_jets=spec.events,
            pt_hat_min=spec.pt_hat_min,
            pt_hat_max=spec.pt_hat_max,
            n_constituents=spec.n_constituents,
        )
        url = jets_cache_url(spec)
        generate_jets_sharded(config, spec.seed, url, spec.shard_size, progress=progress)
        provenance = {
            "source": spec.source,
            "process": spec.process,
            "events": spec.events,
            "seed": spec.seed,
            "pt_hat": [spec.pt_hat_min, spec.pt_hat_max],
            "cache": url,
            "generator": "farm.data.jets (Pythia 8 + FastJet anti-kt R=0.8)",
        }
    else:
        url = spec.url
        provenance = {"source": spec.source, "url": url}
    jets = read_jet_sample(url)
    if "jet_features" not in jets:
        raise FarmError(f"{url}: jets have no jet_features; training needs jet pT and counts")
    stop = spec.max_events if isinstance(spec, JetFileData) else None  # the cache holds `events`
    constituents, features = jets["constituents"][:stop], jets["jet_features"][:stop]
    if not (np.isfinite(constituents).all() and np.isfinite(features).all()):
        raise FarmError(f"{url}: NaN/Inf values in the jets")
    provenance.update(events=len(features), n_particles=constituents.shape[1])
    return JetDataset(
        np.asarray(constituents, np.float32), np.asarray(features, np.float32), provenance
    )


def load_dataset(spec: Any, progress: bool = False) -> ShowerDataset | JetDataset:
    """The showers or jets a training job's data spec names."""
    if isinstance(spec, SimulatedJetsData | JetFileData):
        return load_jets(spec, progress=progress)
    return load_showers(spec)


def split(dataset: ShowerDataset | JetDataset, spec: Any) -> dict[str, Any]:
    """Deterministic train/val/test split; the split is recorded in the provenance."""
    s = spec.split
    idx = split_indices(len(dataset), s.train, s.val, s.seed)
    dataset.provenance["split"] = {
        "train": s.train,
        "val": s.val,
        "seed": s.seed,
        **{f"n_{k}": len(v) for k, v in idx.items()},
    }
    return {k: dataset.subset(v) for k, v in idx.items()}
