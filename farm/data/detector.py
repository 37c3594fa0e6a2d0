"""farm's own parametrised particle-flow detector response (synthetic; Delphes-like in spirit).

Pure, seeded numpy: truth particles (flat arrays with an event index) in, particle-flow candidates
out, one small function per effect, in the order `respond` applies them (docs/events.md):

1. true class from the pdg id and charge (charged hadron, electron, muon, neutral hadron, photon);
2. tracking: charged particles with pT >= track_pt_min and |eta| < eta_tracker are found with
   probability track_efficiency (exactly zero below the threshold or outside the tracker);
3. track pT smeared in curvature: sigma(pT)/pT = a (+) b pT (Gaussian in 1/pT, charge flips when
   the curvature changes sign), angles smeared by track_angle;
4. calorimeter deposits: photons and untracked electrons in the ECAL, neutral and untracked charged
   hadrons in the HCAL (untracked muons are lost), inside |eta| < eta_calo;
5. merging of close neutral deposits: deposits in the same (eta, phi) cell of a calorimeter
   (ecal_cell, hcal_cell) become one, energy summed, position energy-weighted;
6. calorimeter energy smeared: sigma(E)/E = a/sqrt(E) (+) c, ECAL and HCAL separately, then angles
   smeared by ecal_angle or hcal_angle;
7. thresholds on the measured energy (photon_e_min, neutral_e_min);
8. class assignment with confusions (identification efficiencies, fake rates; `assign_class`).

Neutral deposits are massless: |p| = E, pT = E / cosh(eta). Tracked particles leave no separate
calorimeter candidate (perfect particle-flow subtraction). No vertex, no pile-up.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from farm.samples import EVENT_CLASSES

CHARGED_HADRON, ELECTRON, MUON, NEUTRAL_HADRON, PHOTON = range(5)
CLASSES = EVENT_CLASSES
CLASS_MASS = np.array([0.13957, 0.000511, 0.10566, 0.0, 0.0])  # GeV, for four-momenta of candidates


@dataclass(frozen=True)
class Detector:
    """Parameters of the synthetic response (GeV, radians); presets `LHC` and `EIC` below."""

    name: str
    eta_tracker: float
    eta_calo: float
    track_pt_min: float
    track_efficiency: float
    track_res_a: float  # sigma(pT)/pT constant term
    track_res_b: float  # sigma(pT)/pT per GeV
    track_angle: float
    ecal_a: float  # sigma(E)/E stochastic term, sqrt(GeV)
    ecal_c: float
    hcal_a: float
    hcal_c: float
    ecal_angle: float
    hcal_angle: float
    ecal_cell: float  # merging cell size in eta and phi
    hcal_cell: float
    photon_e_min: float
    neutral_e_min: float
    electron_id: float  # probability a tracked electron above electron_pt_min is called electron
    electron_pt_min: float
    muon_id: float
    muon_pt_min: float
    hadron_as_electron: float
    hadron_as_muon: float
    photon_as_neutral: float
    neutral_as_photon: float

    def to_dict(self) -> dict:
        """The parameters as a plain dict (recorded in file metadata)."""
        return dataclasses.asdict(self)


LHC = Detector(
    name="lhc-pf-synthetic", eta_tracker=2.5, eta_calo=3.0, track_pt_min=0.5,
    track_efficiency=0.95, track_res_a=0.005, track_res_b=1.5e-4, track_angle=0.001,
    ecal_a=0.05, ecal_c=0.01, hcal_a=1.0, hcal_c=0.05, ecal_angle=0.005, hcal_angle=0.025,
    ecal_cell=0.05, hcal_cell=0.1, photon_e_min=0.5, neutral_e_min=1.0, electron_id=0.9,
    electron_pt_min=2.0, muon_id=0.95, muon_pt_min=3.0, hadron_as_electron=0.005,
    hadron_as_muon=0.002, photon_as_neutral=0.02, neutral_as_photon=0.05,
)  # fmt: skip
EIC = dataclasses.replace(
    LHC, name="eic-pf-synthetic", eta_tracker=3.5, eta_calo=4.0, track_pt_min=0.2,
    track_efficiency=0.97, track_res_a=0.005, track_res_b=5e-4, ecal_a=0.10, ecal_c=0.02,
    hcal_a=0.5, hcal_c=0.10, photon_e_min=0.1, neutral_e_min=0.5, electron_id=0.95,
    electron_pt_min=0.5, muon_pt_min=1.0,
)  # fmt: skip
DETECTORS = {"lhc": LHC, "eic": EIC}


def true_class(pdg: np.ndarray, charge: np.ndarray) -> np.ndarray:
    """(n,) int8 particle-flow class of each truth particle from its pdg id and charge."""
    a = np.abs(pdg)
    cls = np.where(charge != 0, CHARGED_HADRON, NEUTRAL_HADRON)
    cls = np.where(a == 11, ELECTRON, cls)
    cls = np.where(a == 13, MUON, cls)
    return np.where(a == 22, PHOTON, cls).astype(np.int8)


def tracked(pt, eta, charge, det: Detector, rng: np.random.Generator) -> np.ndarray:
    """(n,) bool: found by the tracker (efficiency exactly zero below track_pt_min)."""
    u = rng.random(len(pt))
    ok = (charge != 0) & (pt >= det.track_pt_min) & (np.abs(eta) < det.eta_tracker)
    return ok & (u < det.track_efficiency)


def track_resolution(pt: np.ndarray, det: Detector) -> np.ndarray:
    """Relative track pT resolution sigma(pT)/pT = a (+) b pT."""
    return np.hypot(det.track_res_a, det.track_res_b * pt)


def smear_track_pt(pt, charge, det: Detector, rng: np.random.Generator):
    """(pT, charge) measured: the curvature q/pT smeared by sigma(pT)/pT, Gaussian."""
    kappa = charge / pt * (1.0 + track_resolution(pt, det) * rng.standard_normal(len(pt)))
    kappa = np.where(kappa == 0, charge / pt, kappa)
    return 1.0 / np.abs(kappa), np.sign(kappa).astype(np.int8)


def calo_resolution(energy: np.ndarray, a: float, c: float) -> np.ndarray:
    """Relative calorimeter resolution sigma(E)/E = a / sqrt(E) (+) c."""
    return np.hypot(a / np.sqrt(energy), c)


def smear_energy(energy, a: float, c: float, rng: np.random.Generator) -> np.ndarray:
    """Measured energy: Gaussian with sigma(E)/E = a/sqrt(E) (+) c, clipped at 0."""
    rel = calo_resolution(energy, a, c)
    return np.maximum(energy * (1.0 + rel * rng.standard_normal(len(energy))), 0.0)


def smear_angles(eta, phi, sigma: float, rng: np.random.Generator):
    """(eta, phi) with Gaussian smearing of width sigma in each; phi wrapped to (-pi, pi]."""
    d = rng.standard_normal((2, len(eta))) * sigma
    return eta + d[0], np.pi - np.mod(np.pi - (phi + d[1]), 2 * np.pi)


def merge_cells(event, eta, phi, energy, cell: float):
    """Merge deposits sharing an (event, eta cell, phi cell): summed E, E-weighted eta and phi.

    Returns (event, eta, phi, energy) of the merged deposits sorted by (event, cell); phi is
    averaged relative to its cell centre, so merging never straddles the +-pi seam.
    """
    if len(event) == 0:
        return event, eta, phi, energy
    ieta = np.floor(eta / cell).astype(np.int64)
    n_phi = max(1, int(np.floor(2 * np.pi / cell)))
    iphi = np.minimum(np.floor((phi + np.pi) / (2 * np.pi) * n_phi).astype(np.int64), n_phi - 1)
    keys = np.stack([event, ieta, iphi], axis=1)
    uniq, inv = np.unique(keys, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    e_sum = np.bincount(inv, weights=energy, minlength=len(uniq))
    centre = (uniq[:, 2] + 0.5) * (2 * np.pi / n_phi) - np.pi
    dphi = np.pi - np.mod(np.pi - (phi - centre[inv]), 2 * np.pi)
    w = np.where(e_sum > 0, e_sum, 1.0)
    m_eta = np.bincount(inv, weights=energy * eta, minlength=len(uniq)) / w
    m_dphi = np.bincount(inv, weights=energy * dphi, minlength=len(uniq)) / w
    return uniq[:, 0], m_eta, centre + m_dphi, e_sum


def assign_class(cls: np.ndarray, pt: np.ndarray, det: Detector, rng) -> np.ndarray:
    """Reconstructed class from the detector class with identification and fake rates.

    Tracks: electrons (muons) above electron_pt_min (muon_pt_min) are identified with probability
    electron_id (muon_id), else called charged hadrons; charged hadrons are faked as electrons
    (muons) with probability hadron_as_electron (hadron_as_muon). ECAL deposits are photons, called
    neutral hadrons with probability photon_as_neutral; HCAL deposits the other way round.
    """
    u = rng.random(len(cls))
    out = cls.copy()
    e, m, h = cls == ELECTRON, cls == MUON, cls == CHARGED_HADRON
    out[e & ~((pt >= det.electron_pt_min) & (u < det.electron_id))] = CHARGED_HADRON
    out[m & ~((pt >= det.muon_pt_min) & (u < det.muon_id))] = CHARGED_HADRON
    out[h & (u < det.hadron_as_electron)] = ELECTRON
    out[h & (u >= det.hadron_as_electron) & (u < det.hadron_as_electron + det.hadron_as_muon)] = (
        MUON
    )
    out[(cls == PHOTON) & (u < det.photon_as_neutral)] = NEUTRAL_HADRON
    out[(cls == NEUTRAL_HADRON) & (u < det.neutral_as_photon)] = PHOTON
    return out


def _deposits(event, pt, eta, phi, in_calo, cell, a, c, angle, e_min, cls, rng):
    """One calorimeter: merge in cells, smear E and angles, apply the threshold."""
    ev, m_eta, m_phi, energy = merge_cells(
        event[in_calo], eta[in_calo], phi[in_calo], pt[in_calo] * np.cosh(eta[in_calo]), cell
    )
    e_meas = smear_energy(energy, a, c, rng)
    s_eta, s_phi = smear_angles(m_eta, m_phi, angle, rng)
    keep = e_meas >= e_min
    s_eta = s_eta[keep]
    return {
        "event": ev[keep],
        "pt": e_meas[keep] / np.cosh(s_eta),
        "eta": s_eta,
        "phi": s_phi[keep],
        "class": np.full(int(keep.sum()), cls, dtype=np.int8),
        "charge": np.zeros(int(keep.sum()), dtype=np.int8),
    }


def respond(truth: dict[str, np.ndarray], det: Detector, rng: np.random.Generator) -> dict:
    """Particle-flow candidates of truth particles (flat arrays event, pt, eta, phi, pdg, charge).

    Returns flat arrays event, pt, eta, phi, class (int8), charge (int8), sorted by event then
    decreasing pT. Every random number comes from `rng`, in a fixed order.
    """
    ev, pt, eta, phi = truth["event"], truth["pt"], truth["eta"], truth["phi"]
    charge, cls = truth["charge"], true_class(truth["pdg"], truth["charge"])
    trk = tracked(pt, eta, charge, det, rng)
    t_pt, t_q = smear_track_pt(pt[trk], charge[trk], det, rng)
    t_eta, t_phi = smear_angles(eta[trk], phi[trk], det.track_angle, rng)
    tracks = {
        "event": ev[trk], "pt": t_pt, "eta": t_eta, "phi": t_phi,
        "class": cls[trk], "charge": t_q,
    }  # fmt: skip
    calo = ~trk & (np.abs(eta) < det.eta_calo)
    to_ecal = calo & ((cls == PHOTON) | (cls == ELECTRON))
    to_hcal = calo & ((cls == NEUTRAL_HADRON) | (cls == CHARGED_HADRON))
    ecal = _deposits(
        ev, pt, eta, phi, to_ecal, det.ecal_cell, det.ecal_a, det.ecal_c, det.ecal_angle,
        det.photon_e_min, PHOTON, rng,
    )  # fmt: skip
    hcal = _deposits(
        ev, pt, eta, phi, to_hcal, det.hcal_cell, det.hcal_a, det.hcal_c, det.hcal_angle,
        det.neutral_e_min, NEUTRAL_HADRON, rng,
    )  # fmt: skip
    out = {k: np.concatenate([tracks[k], ecal[k], hcal[k]]) for k in tracks}
    out["class"] = assign_class(out["class"], out["pt"], det, rng)
    order = np.lexsort((-out["pt"], out["event"]))
    return {k: v[order] for k, v in out.items()}
