"""Typed in-memory samples: showers (MeV) and jets (JetNet layout), what farm's stages pass along."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from farm.geometry import CaloGeometry

JET_POINT_FEATURES = 3
"""Jet models see (eta_rel, phi_rel, pt_rel) per constituent; the mask comes from the count."""


@dataclass
class ShowerSample:
    """Showers (N, n_voxels) MeV with incident energies (N,) MeV, a geometry and provenance."""

    showers: np.ndarray
    e_inc: np.ndarray
    geometry: CaloGeometry
    provenance: dict[str, Any] = field(default_factory=dict)
    event_id: np.ndarray | None = None

    kind = "showers"

    def __len__(self) -> int:
        """Number of showers."""
        return len(self.e_inc)

    def subset(self, idx: np.ndarray) -> ShowerSample:
        """The showers at the given indices (provenance shared)."""
        ids = None if self.event_id is None else self.event_id[idx]
        return ShowerSample(self.showers[idx], self.e_inc[idx], self.geometry, self.provenance, ids)

    def model_inputs(self) -> tuple[np.ndarray, np.ndarray]:
        """(x, cond) for a model: voxel energies (N, V) MeV and incident energy (N, 1) MeV."""
        return self.showers, self.e_inc.reshape(-1, 1)


@dataclass(frozen=True)
class JetTruth:
    """What a jet model is conditioned on, per jet: pT (GeV), eta and the constituent count."""

    pt: np.ndarray
    eta: np.ndarray
    counts: np.ndarray

    def __len__(self) -> int:
        """Number of jets."""
        return len(self.pt)

    def rows(self, rows: np.ndarray) -> JetTruth:
        """The truth of the given rows."""
        return JetTruth(self.pt[rows], self.eta[rows], self.counts[rows])


@dataclass
class JetSample:
    """Jets as farm.formats.jets writes them, with provenance.

    constituents (N, P, 4) [eta_rel, phi_rel, pt_rel, mask] and jet_features (N, 4) [pt GeV, eta,
    mass GeV, n_constituents].
    """

    constituents: np.ndarray
    jet_features: np.ndarray
    provenance: dict[str, Any] = field(default_factory=dict)
    event_id: np.ndarray | None = None

    kind = "jets"

    def __len__(self) -> int:
        """Number of jets."""
        return len(self.jet_features)

    def subset(self, idx: np.ndarray) -> JetSample:
        """The jets at the given indices (provenance shared)."""
        ids = None if self.event_id is None else self.event_id[idx]
        return JetSample(self.constituents[idx], self.jet_features[idx], self.provenance, ids)

    @property
    def n_particles(self) -> int:
        """Constituent slots per jet."""
        return self.constituents.shape[1]

    @property
    def counts(self) -> np.ndarray:
        """(N,) number of real constituents kept per jet."""
        return (self.constituents[:, :, 3] > 0).sum(1)

    def truth(self) -> JetTruth:
        """(jet pT, jet eta, kept constituent count): the truth a jet model is given."""
        return JetTruth(
            np.asarray(self.jet_features[:, 0], np.float64),
            np.asarray(self.jet_features[:, 1], np.float64),
            self.counts,
        )

    def model_inputs(self) -> tuple[np.ndarray, np.ndarray]:
        """(x, cond): flattened constituents and jet conditions, as jet models take them.

        x is (eta_rel, phi_rel, pt_rel) flattened (N, P * 3) with real constituents first
        (pT order), and cond (N, 2) = [jet pT (GeV), number of real constituents kept (<= P)]
        (the count last, as models' point-cloud masks expect).
        """
        x = self.constituents[:, :, :JET_POINT_FEATURES].reshape(len(self), -1)
        cond = np.stack([self.jet_features[:, 0], self.counts], axis=1)
        return np.ascontiguousarray(x, np.float32), cond.astype(np.float32)

    def as_dict(self) -> dict[str, np.ndarray]:
        """The arrays as farm.formats.jets takes them (event ids included when known)."""
        out = {"constituents": self.constituents, "jet_features": self.jet_features}
        if self.event_id is not None:
            out["event_id"] = self.event_id
        return out


Sample = ShowerSample | JetSample
