"""Typed in-memory samples: showers (MeV) and jets (JetNet layout), what farm's stages pass along."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from farm.errors import FarmError
from farm.geometry import CaloGeometry, CellGeometry

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


POINT_FEATURES = ("x", "y", "z", "e")
"""Columns of PointSample.hits: position (mm) and energy (MeV) of each hit."""


def project_points(
    counts: np.ndarray, hits: np.ndarray, layer: np.ndarray, binning: CaloGeometry
) -> np.ndarray:
    """(N, n_voxels) float64 MeV: each hit's energy summed into its CaloChallenge voxel.

    Voxel of a hit: its layer, the ring of r = sqrt(x^2 + y^2) in the layer's r_edges and the
    angular bin of atan2(y, x) in [-pi, pi) (CaloChallenge order: layer, angle, radius fastest).
    Hits beyond the last ring or in a layer the binning lacks are dropped; the rest is conserved
    exactly (one float64 bincount).
    """
    counts = np.asarray(counts, dtype=np.int64)
    owner = np.repeat(np.arange(counts.shape[0]), counts)
    x, y = hits[:, 0].astype(np.float64), hits[:, 1].astype(np.float64)
    r, alpha = np.hypot(x, y), np.arctan2(y, x)
    flat = np.full(hits.shape[0], -1, dtype=np.int64)
    for lay in binning.active_layers:
        here = np.asarray(layer) == lay.index
        edges = np.asarray(lay.r_edges)
        i_r = np.searchsorted(edges, r[here], side="right") - 1
        i_a = np.floor((alpha[here] + np.pi) * lay.n_alpha / (2 * np.pi)).astype(np.int64)
        i_a = np.clip(i_a, 0, lay.n_alpha - 1)
        ok = (i_r >= 0) & (i_r < lay.n_radial)
        idx = binning.layer_slices[lay.index].start + i_a * lay.n_radial + i_r
        flat[here] = np.where(ok, idx, -1)
    keep = flat >= 0
    V = binning.n_voxels
    out = np.bincount(
        owner[keep] * V + flat[keep],
        weights=hits[keep, 3].astype(np.float64),
        minlength=counts.shape[0] * V,
    )
    return out.reshape(counts.shape[0], V)


@dataclass
class PointSample:
    """Showers as point clouds: per shower a variable number of hits (x, y, z mm, E MeV).

    counts (N,) int64 hits per shower; hits (M, 4) float32 [x, y, z, e] and layer (M,) int16,
    shower by shower in order (M = counts.sum()); e_inc (N,) MeV; the CellGeometry they live in.
    """

    counts: np.ndarray
    hits: np.ndarray
    layer: np.ndarray
    e_inc: np.ndarray
    geometry: CellGeometry
    provenance: dict[str, Any] = field(default_factory=dict)
    event_id: np.ndarray | None = None

    kind = "points"

    def __len__(self) -> int:
        """Number of showers."""
        return len(self.e_inc)

    @property
    def offsets(self) -> np.ndarray:
        """(N + 1,) start of each shower's hits, then M."""
        return np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)

    def subset(self, idx: np.ndarray) -> PointSample:
        """The showers at the given indices (provenance shared)."""
        idx = np.arange(len(self))[idx]
        counts = self.counts[idx]
        starts = np.repeat(self.offsets[:-1][idx], counts)
        first = np.repeat(np.cumsum(counts) - counts, counts)
        rows = starts + np.arange(int(counts.sum())) - first
        ids = None if self.event_id is None else self.event_id[idx]
        return PointSample(
            self.counts[idx],
            self.hits[rows],
            self.layer[rows],
            self.e_inc[idx],
            self.geometry,
            self.provenance,
            ids,
        )

    def energy_sums(self) -> np.ndarray:
        """(N,) float64 sum of hit energies per shower, MeV."""
        owner = np.repeat(np.arange(len(self)), self.counts)
        return np.bincount(owner, weights=self.hits[:, 3].astype(np.float64), minlength=len(self))

    def padded(self, n_max: int | None = None) -> np.ndarray:
        """(N, n_max, 4) float32 hits, valid hits first and zeros after (truncated at n_max)."""
        n_max = int(self.counts.max(initial=0)) if n_max is None else n_max
        out = np.zeros((len(self), n_max, 4), dtype=np.float32)
        slot = np.arange(self.hits.shape[0]) - np.repeat(self.offsets[:-1], self.counts)
        owner = np.repeat(np.arange(len(self)), self.counts)
        keep = slot < n_max
        out[owner[keep], slot[keep]] = self.hits[keep]
        return out

    def model_inputs(self, n_max: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(x, cond) for a point-cloud model: hits padded, cond [E_inc MeV, number of hits].

        x is (x, y, layer, E) per hit, valid hits first, flattened to (N, n_max * 4); the count
        is the last condition column, as point-cloud masks expect.
        """
        pts = self.padded(n_max)
        layers = np.zeros(pts.shape[:2], dtype=np.float32)
        slot = np.arange(self.hits.shape[0]) - np.repeat(self.offsets[:-1], self.counts)
        owner = np.repeat(np.arange(len(self)), self.counts)
        keep = slot < pts.shape[1]
        layers[owner[keep], slot[keep]] = self.layer[keep]
        pts[..., 2] = layers
        counts = np.minimum(self.counts, pts.shape[1])
        cond = np.stack([self.e_inc, counts], axis=1).astype(np.float32)
        return pts.reshape(len(self), -1), cond

    def to_voxels(self, binning: CaloGeometry | None = None) -> ShowerSample:
        """The CaloChallenge-style voxel projection (default: the geometry's own binning)."""
        binning = binning or self.geometry.voxel_binning
        showers = project_points(self.counts, self.hits, self.layer, binning)
        return ShowerSample(
            showers.astype(np.float32), self.e_inc, binning, self.provenance, self.event_id
        )


EVENT_CLASSES = ("charged_hadron", "electron", "muon", "neutral_hadron", "photon")
"""Reconstructed particle-flow classes, by index (EventSample.reco["class"])."""
STABLE_PDG = {
    11: 1, 13: 1, 22: 0, 211: 1, 321: 1, 2212: 1, 2112: 0, 130: 0, 310: 0,
    3122: 0, 3112: 1, 3222: 1, 3312: 1, 3322: 0, 3334: 1,
}  # fmt: skip
"""|pdg id| -> |charge| of the stable particles a truth set may hold."""


def unknown_pdg(pdg: np.ndarray) -> int | None:
    """The first pdg id that is not a known stable particle (None if all are known)."""
    known = np.isin(np.abs(pdg), np.fromiter(STABLE_PDG, dtype=np.int64))
    return None if known.all() else int(np.asarray(pdg)[~known][0])


TRUTH_SLOT = ("pt", "eta", "phi", "pdg", "charge")
"""Features of a truth slot in a set model's padded conditions (models.set_preprocessing)."""
RECO_SLOT = ("pt", "eta", "phi", "class")
"""Features of a reco slot in a set model's padded data (padded slots are all zero)."""


def pad_sets(
    counts: np.ndarray,
    values: dict[str, np.ndarray],
    features: tuple[str, ...],
    n_max: int,
    side: str,
    truncate: bool = False,
) -> np.ndarray:
    """(N, n_max, F) float32 sets, highest pT first, zeros after; FarmError on oversize events.

    An event with more than n_max particles is refused in one line, or with `truncate` keeps
    its n_max highest-pT particles.
    """
    counts = np.asarray(counts, dtype=np.int64)
    over = np.flatnonzero(counts > n_max)
    if len(over) and not truncate:
        raise FarmError(
            f"{len(over)} event(s) have more than {n_max} {side} particles (largest "
            f"{int(counts.max())}); the model takes at most {n_max}: truncate (data.truncate, "
            f"farm generate --truncate) keeps the {n_max} highest-pT ones"
        )
    owner = np.repeat(np.arange(len(counts)), counts)
    order = np.lexsort((-np.asarray(values["pt"], np.float64), owner))
    start = np.repeat(EventSample.offsets(counts)[:-1], counts)
    slot = np.arange(len(owner)) - start
    keep = slot < n_max
    out = np.zeros((len(counts), n_max, len(features)), dtype=np.float32)
    for j, name in enumerate(features):
        out[owner[keep], slot[keep], j] = np.asarray(values[name])[order][keep]
    return out


ELECTRON_COLUMNS = ("electron_e", "electron_pt", "electron_eta", "electron_phi")
"""The scattered electron per DIS event: E (GeV), pT (GeV), eta, phi (rad)."""
DIS_KINEMATICS = ("x_bj", "q2", "y_inel")
"""Event-level DIS kinematics a scattered-electron model may add to its condition (x, Q^2, y)."""


@dataclass
class EventSample:
    """Whole events: a truth set and a reconstructed set per event (flat arrays with counts).

    truth: flat pt (GeV), eta, phi (rad), pdg (int32), charge (int8), truth_counts (N,);
    reco: flat pt, eta, phi, class (int8, farm.data.detector.CLASSES), charge (int8), reco_counts
    (N,); event: per-event columns (met_x, met_y, ht GeV, ...); event_id (N,) int64.
    """

    truth: dict[str, np.ndarray]
    truth_counts: np.ndarray
    reco: dict[str, np.ndarray]
    reco_counts: np.ndarray
    event: dict[str, np.ndarray]
    event_id: np.ndarray
    provenance: dict[str, Any] = field(default_factory=dict)

    kind = "events"

    def __len__(self) -> int:
        """Number of events."""
        return len(self.event_id)

    @property
    def truth_only(self) -> bool:
        """Conditions read from a truth-only file: no reco set (and no reco MET) to compare."""
        return "met_x" not in self.event

    def subset(self, idx: np.ndarray) -> EventSample:
        """The events at the given indices (provenance shared)."""
        idx = np.arange(len(self))[idx]

        def rows(counts: np.ndarray) -> np.ndarray:
            off = EventSample.offsets(counts)
            parts = [np.arange(off[i], off[i + 1]) for i in idx]
            return np.concatenate(parts or [np.zeros(0)]).astype(np.int64)

        t, r = rows(self.truth_counts), rows(self.reco_counts)
        return EventSample(
            {k: v[t] for k, v in self.truth.items()},
            self.truth_counts[idx],
            {k: v[r] for k, v in self.reco.items()},
            self.reco_counts[idx],
            {k: v[idx] for k, v in self.event.items()},
            self.event_id[idx],
            self.provenance,
        )

    def truth_inputs(self, truth_max: int, truncate: bool = False) -> np.ndarray:
        """Conditions (N, truth_max * 5) of a set model: truth (pT, eta, phi, pdg, charge) padded."""
        sets = pad_sets(self.truth_counts, self.truth, TRUTH_SLOT, truth_max, "truth", truncate)
        return sets.reshape(len(self), -1)

    def model_inputs(
        self,
        truth_max: int,
        reco_max: int,
        truncate: bool = False,
        condition: str = "truth_set",
        dis_kinematics: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(x (N, reco_max * 4) reco (pT, eta, phi, class) padded, cond (`condition_inputs`))."""
        reco = pad_sets(self.reco_counts, self.reco, RECO_SLOT, reco_max, "reco", truncate)
        cond = self.condition_inputs(condition, truth_max, truncate, dis_kinematics)
        return reco.reshape(len(self), -1), cond

    def condition_inputs(
        self,
        condition: str,
        truth_max: int,
        truncate: bool = False,
        dis_kinematics: bool = False,
    ) -> np.ndarray:
        """A set model's conditions: padded truth sets (truth_set) or the scattered electron."""
        if condition == "scattered_electron":
            return self.electron_inputs(dis_kinematics)
        return self.truth_inputs(truth_max, truncate)

    def electron_inputs(self, dis_kinematics: bool = False) -> np.ndarray:
        """Conditions (N, 4) (E, pT, eta, phi) of the scattered electron, + (x, Q^2, y): (N, 7).

        Files without those columns (not DIS, or written before farm stored the electron) are
        one FarmError line naming the file and the missing columns.
        """
        names = (*ELECTRON_COLUMNS, *(DIS_KINEMATICS if dis_kinematics else ()))
        where = self.provenance.get("url") or self.provenance.get("cache") or "events"
        missing = [c for c in names if c not in self.event]
        if missing:
            raise FarmError(
                f"{where}: no column(s) {missing}: a model conditioned on the scattered electron "
                f"needs {list(names)} (DIS events from `farm data events --process dis`; files "
                "written before farm stored the electron lack them: regenerate)"
            )
        cond = np.stack([np.asarray(self.event[c], np.float32) for c in names], axis=1)
        bad = ~np.isfinite(cond).all(1) | (cond[:, 0] <= 0) | (cond[:, 1] <= 0)
        if bad.any():
            raise FarmError(
                f"{where}: {int(bad.sum())} event(s) with a non-finite or non-positive scattered "
                f"electron (first: event_id {int(self.event_id[np.argmax(bad)])})"
            )
        return cond

    @staticmethod
    def offsets(counts: np.ndarray) -> np.ndarray:
        """(N + 1,) start of each event's particles, then the total."""
        return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    @staticmethod
    def concat(parts: list[EventSample], provenance: dict[str, Any]) -> EventSample:
        """Events of several samples, in order."""

        def cat(name: str) -> dict[str, np.ndarray]:
            keys = getattr(parts[0], name).keys()
            return {k: np.concatenate([getattr(p, name)[k] for p in parts]) for k in keys}

        return EventSample(
            cat("truth"),
            np.concatenate([p.truth_counts for p in parts]),
            cat("reco"),
            np.concatenate([p.reco_counts for p in parts]),
            cat("event"),
            np.concatenate([p.event_id for p in parts]),
            provenance,
        )


Sample = ShowerSample | JetSample | PointSample | EventSample
