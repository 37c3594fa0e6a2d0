"""The standard plot sets of a shower, jet or event evaluation, written as PNGs under an output URL."""

from __future__ import annotations

import numpy as np

from farm import store
from farm.evaluation import plots as P
from farm.geometry import CaloGeometry

SHOWER_LABELS = {
    "e_layer": "$E_{layer}$ [MeV]",
    "ec_x": "centre of energy x [mm]",
    "ec_y": "centre of energy y [mm]",
    "width_x": "width x [mm]",
    "width_y": "width y [mm]",
    "ec_r": "centre of energy r [mm]",
    "width_r": "width r [mm]",
    "occupancy": "fraction of voxels above threshold",
}


class _Writer:
    """Writes the figures of one evaluation, each captioned with what it compares."""

    def __init__(self, out_url: str, details: dict, subject: str | None = None):
        self.out_url = out_url
        self.caption = caption(details, subject)
        self.written: list[str] = []

    def save(self, name: str, fig) -> None:
        P.annotate(fig, self.caption)
        P.save_png(fig, store.join(self.out_url, name))
        self.written.append(name)


def caption(details: dict, subject: str | None = None) -> str:
    """What a figure compares: subject (geometry or jets), events per sample, model and campaign."""
    n = details.get("n_compared")
    subject = subject or details.get("geometry")
    parts = [subject or f"{details.get('n_particles', '?')}-particle jets"]
    if n is not None:
        parts.append(f"{n:,} reference (half A) vs {n:,} generated events")
    for key in ("model", "campaign"):
        if details.get(key):
            parts.append(f"{key} {details[key]}")
    return " · ".join(parts)


def _peak_layer(geometry: CaloGeometry, feats: dict[str, np.ndarray]) -> int:
    """The active layer with the largest mean energy (its histograms are shown)."""
    layers = [layer.index for layer in geometry.active_layers]
    return max(layers, key=lambda i: feats[f"e_layer_{i}"].mean())


def shower_plots(
    out_url: str,
    parts: dict[str, tuple[np.ndarray, np.ndarray]],
    feats: dict[str, dict[str, np.ndarray]],
    spectra: dict[str, np.ndarray],
    spectrum_edges: np.ndarray,
    seps: dict[str, tuple[float, float]],
    geometry: CaloGeometry,
    details: dict,
) -> list[str]:
    """Histograms, layer profiles, average showers and energy summaries; returns file names."""
    a, g = feats["a"], feats["g"]
    out = _Writer(out_url, details)
    out.save("e_ratio.png", P.histogram_figure(a["e_ratio"], g["e_ratio"], "$E_{tot}/E_{inc}$"))
    out.save(
        "voxel_spectrum.png",
        P.histogram_figure(
            spectra["a"], spectra["g"], "voxel energy [MeV]", bins=spectrum_edges, logy=True
        ),
    )
    out.save("average_shower.png", P.average_shower_figure(parts["a"][0], parts["g"][0], geometry))
    out.save(
        "e_ratio_vs_e_inc.png",
        P.energy_summary_figure(a["e_ratio"], parts["a"][1], g["e_ratio"], parts["g"][1]),
    )
    layers = [layer.index for layer in geometry.active_layers]
    for family in ("e_layer", "width_r", "occupancy"):
        if not any(f"{family}_{i}" in a for i in layers):
            continue
        fig = P.layer_profile_figure(
            a,
            g,
            family,
            layers,
            SHOWER_LABELS[family],
            {f"{family}_{i}": seps[f"{family}_{i}"] for i in layers if f"{family}_{i}" in seps},
        )
        out.save(f"profile_{family}.png", fig)
    i = _peak_layer(geometry, a)
    for family in ("e_layer", "ec_x", "width_x", "width_r"):
        key = f"{family}_{i}"
        if key in a:
            fig = P.histogram_figure(a[key], g[key], SHOWER_LABELS[family], title=f"layer {i}")
            out.save(f"{key}.png", fig)
    return out.written


JET_LABELS = {
    "pt": "jet $p_T$",
    "eta": "jet $\\eta$",
    "n_constituents": "number of constituents",
    "tau21": "$\\tau_{21}$",
    "tau32": "$\\tau_{32}$",
    "eta_rel": "constituent $\\eta^{rel}$",
    "phi_rel": "constituent $\\phi^{rel}$",
    "pt_rel": "constituent $p_T^{rel}$",
}


def jet_plots(out_url: str, feats: dict[str, dict[str, np.ndarray]], details: dict) -> list[str]:
    """Jet mass, jet-level and constituent distributions with ratio panels; returns file names."""
    a, g = feats["a"], feats["g"]
    mass_units = details["mass_units"]
    out = _Writer(out_url, details)
    unit = "[GeV]" if mass_units == "GeV" else "/ $p_T^{jet}$"
    out.save("jet_mass.png", P.histogram_figure(a["mass"], g["mass"], f"jet mass {unit}"))
    for key, label in JET_LABELS.items():
        bins = np.arange(-0.5, a[key].max() + 1.5) if key == "n_constituents" else None
        fig = P.histogram_figure(a[key], g[key], label, bins=bins, logy=key == "pt_rel")
        out.save(f"{key}.png", fig)
    return out.written


EVENT_LABELS = {
    "n_reco": "reco candidates per event",
    "met": "missing $E_T$ [GeV]",
    "ht": "$H_T$ [GeV]",
    "log_pt": "candidate log($p_T$ / GeV)",
    "eta": "candidate $\\eta$",
    "phi": "candidate $\\phi$",
    "jet_pt": "reco jet $p_T$ [GeV]",
    "jet_mass": "reco jet mass [GeV]",
    "jet_response": "matched jet $p_T^{reco} / p_T^{truth}$",
    "jet_c2": "matched reco jet $C_2^{(\\beta=1)}$",
    "jet_d2": "matched reco jet $D_2^{(\\beta=1)}$",
    "jet_c2_residual": "$C_2^{reco} - C_2^{truth}$",
    "jet_d2_residual": "$D_2^{reco} - D_2^{truth}$",
}
"""Event-evaluation features plotted (event, particle and jet level), with their axis labels."""


def _central_bins(reference: np.ndarray, n: int = 50) -> np.ndarray | None:
    """Bins over the central 99% of the reference (heavy-tailed ratios such as D2)."""
    lo, hi = np.percentile(reference, [0.5, 99.5]) if len(reference) else (0.0, 0.0)
    return np.linspace(lo, hi, n + 1) if hi > lo else None


def event_plots(out_url: str, feats: dict[str, dict[str, np.ndarray]], details: dict) -> list[str]:
    """Multiplicity, MET, HT, candidate spectra and matched-jet response, C2, D2 and residuals.

    feats: part ("a", "g") -> feature name -> values (EVENT_LABELS names that are present and
    non-empty in both are drawn); returns file names.
    """
    a, g = feats["a"], feats["g"]
    out = _Writer(out_url, details, "events (reco sets)")
    for key, label in EVENT_LABELS.items():
        if key not in a or not len(a[key]) or not len(g[key]):
            continue
        if key == "n_reco":
            bins = np.arange(-0.5, a[key].max() + 1.5, max(1, int(a[key].max()) // 60))
        elif key.startswith("jet_") and key not in ("jet_pt", "jet_mass"):
            bins = _central_bins(a[key])
        else:
            bins = None
        logy = key in ("met", "ht", "jet_pt", "jet_mass")
        out.save(f"{key}.png", P.histogram_figure(a[key], g[key], label, bins=bins, logy=logy))
    return out.written
