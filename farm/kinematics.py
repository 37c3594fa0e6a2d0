"""Jet kinematics: the massless four-momentum sum of JetNet-style constituents; anti-kt (FastJet).

Constituents are (N, P, 3) arrays of (eta_rel, phi_rel, pT_rel) = (eta - eta_jet, phi - phi_jet,
pT / pT_jet), zero-padded, optionally with a 4th column (mask) or a separate (N, P) mask. Used by
the jet features of the evaluation and by the post-processing of generated jets.
"""

from __future__ import annotations

import numpy as np

from farm.errors import FarmError


def split_constituents(
    constituents: np.ndarray, mask: np.ndarray | None = None, name: str = "jets"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(eta, phi, pt, mask) float64 (N, P) each; pt and angles zeroed where mask is False."""
    c = np.asarray(constituents, dtype=np.float64)
    if c.ndim != 3 or c.shape[2] not in (3, 4):
        raise FarmError(
            f"{name}: constituents must be (N, P, 3 or 4) as (eta_rel, phi_rel, pT_rel[, mask]), "
            f"got shape {c.shape}"
        )
    bad = ~np.isfinite(c)
    if bad.any():
        raise FarmError(f"{name}: {int(bad.sum())} NaN/Inf values in constituents")
    if mask is None:
        mask = c[..., 3] > 0 if c.shape[2] == 4 else c[..., 2] > 0
    mask = np.asarray(mask).astype(bool)
    if mask.shape != c.shape[:2]:
        raise FarmError(f"{name}: mask shape {mask.shape} does not match constituents {c.shape}")
    eta, phi, pt = (np.where(mask, c[..., k], 0.0) for k in range(3))
    return eta, phi, pt, mask


def jet_kinematics(
    constituents: np.ndarray,
    mask: np.ndarray | None = None,
    jet_pt: np.ndarray | None = None,
    jet_eta: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Jet mass, pt, eta and n_constituents from the massless constituent four-momentum sum.

    Without jet_pt/jet_eta these are relative (mass / pT_jet, pt / pT_jet, eta - eta_jet),
    JetNet's convention for W1M; with them, absolute (GeV, pseudorapidity).
    """
    eta, phi, pt, mask = split_constituents(constituents, mask)
    if jet_pt is not None:
        pt = pt * np.asarray(jet_pt, dtype=np.float64).reshape(-1, 1)
    if jet_eta is not None:
        eta = eta + np.asarray(jet_eta, dtype=np.float64).reshape(-1, 1)
    px, py = (pt * np.cos(phi)).sum(1), (pt * np.sin(phi)).sum(1)
    pz, e = (pt * np.sinh(eta)).sum(1), (pt * np.cosh(eta) * mask).sum(1)
    jpt = np.hypot(px, py)
    return {
        "mass": np.sqrt(np.clip(e**2 - px**2 - py**2 - pz**2, 0.0, None)),
        "pt": jpt,
        "eta": np.arcsinh(np.divide(pz, jpt, out=np.zeros_like(pz), where=jpt > 0)),
        "n_constituents": mask.sum(1).astype(np.float64),
    }


def fastjet_module():
    """The fastjet module with its banner silenced."""
    import fastjet

    fastjet._swig.ClusterSequence.set_fastjet_banner_stream(None)
    return fastjet


def momenta_4d(p4: np.ndarray, counts: np.ndarray):
    """Jagged awkward array of Momentum4D records (one list per event) for fastjet."""
    import awkward as ak

    cols = {"px": p4[:, 0], "py": p4[:, 1], "pz": p4[:, 2], "E": p4[:, 3]}
    return ak.unflatten(ak.zip(cols, with_name="Momentum4D"), counts)


def cluster_antikt(fj, events: list[np.ndarray], R: float, pt_min: float):
    """Anti-kt (Cacciari-Salam-Soyez 2008) over many events in one FastJet call.

    Returns per jet: event index, jet (px, py, pz, E), and constituent indices into its event
    (flat array + offsets).
    """
    import awkward as ak

    counts = np.array([len(e) for e in events], dtype=np.int64)
    cs = fj.ClusterSequence(
        momenta_4d(np.concatenate(events), counts), fj.JetDefinition(fj.antikt_algorithm, R)
    )
    jets = cs.inclusive_jets(pt_min)
    index = cs.constituent_index(pt_min)
    flat = ak.flatten(jets)
    jet_p4 = np.stack([ak.to_numpy(flat[c]) for c in ("px", "py", "pz", "E")], axis=1)
    jet_event = np.repeat(np.arange(len(events)), ak.to_numpy(ak.num(jets)))
    n_const = ak.to_numpy(ak.flatten(ak.num(index, axis=2)))
    offsets = np.concatenate([[0], np.cumsum(n_const)])
    return jet_event, jet_p4.reshape(-1, 4), ak.to_numpy(ak.flatten(index, axis=None)), offsets


def met_ht(counts: np.ndarray, pt: np.ndarray, phi: np.ndarray):
    """Per event (missing px, missing py, scalar sum pT) of a flat set, GeV."""
    owner = np.repeat(np.arange(len(counts)), counts)
    n = len(counts)
    mx = -np.bincount(owner, weights=pt * np.cos(phi), minlength=n)
    my = -np.bincount(owner, weights=pt * np.sin(phi), minlength=n)
    return mx, my, np.bincount(owner, weights=pt, minlength=n)
