"""Validation plots (PNG): histograms with ratio panels, average showers, per-energy summaries.

Style: mplhep's CMS style when it imports (no experiment label is drawn); Agg backend always.
Every figure function returns a matplotlib Figure; save_png writes one atomically to a URL.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm

from farm import store
from farm.evaluation.metrics import histogram_counts, histogram_edges
from farm.geometry import CaloGeometry

REF_COLOR, GEN_COLOR = "#5790fc", "#e42536"


def use_style() -> None:
    """Mplhep's CMS style if available (matplotlib defaults otherwise)."""
    try:
        import mplhep

        plt.style.use(mplhep.style.CMS)
        plt.rcParams.update({"figure.figsize": (7, 7), "font.size": 16})
    except Exception:
        plt.style.use("default")


def save_png(fig: plt.Figure, url: str, dpi: int = 100) -> str:
    """Write a figure as PNG to `url` atomically and close it; returns the url."""
    with store.atomic_local_file(url) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)  # margins set per figure: "tight" draws twice
    plt.close(fig)
    return url


def annotate(fig: plt.Figure, caption: str) -> None:
    """State what a figure shows (sample sizes, geometry, model) in small print at its foot."""
    if caption:
        fig.text(0.01, 0.005, caption, fontsize=9, color="0.35", ha="left", va="bottom")


RATIO_RANGE = (0.5, 1.5)  # the ratio panel's range unless points lie outside it
RATIO_MAX = 10.0  # the largest ratio the panel stretches to; beyond, points are marked at the edge


def ratio_limits(ratio: np.ndarray) -> tuple[float, float]:
    """The ratio panel's y range: 0.5-1.5, widened to the finite ratios (at most 0-10)."""
    finite = ratio[np.isfinite(ratio)]
    lo, hi = RATIO_RANGE
    if finite.size:
        lo = max(0.0, min(lo, float(finite.min()) * 0.9))
        hi = min(RATIO_MAX, max(hi, float(finite.max()) * 1.1))
    return lo, hi


def histogram_figure(
    reference: np.ndarray,
    generated: np.ndarray,
    xlabel: str,
    bins: int | np.ndarray | None = None,
    logy: bool = False,
    title: str | None = None,
    labels: tuple[str, str] = ("reference", "generated"),
) -> plt.Figure:
    """Normalised histograms of a feature with a generated/reference ratio panel.

    Bands: Poisson uncertainty of the reference (shaded) and of the generated (error bars).
    Entries outside the reference range count in the edge bins (the plot shows every event;
    separation_power leaves them out). The ratio panel widens to show excesses up to 10x and
    marks points beyond its range with arrows at the edge.
    """
    use_style()
    edges = histogram_edges(reference, bins)
    h_ref, h_gen = histogram_counts(reference, edges), histogram_counts(generated, edges)
    width = np.diff(edges)
    d_ref, d_gen = h_ref / (h_ref.sum() * width), h_gen / (h_gen.sum() * width)
    e_ref, e_gen = np.sqrt(h_ref) / (h_ref.sum() * width), np.sqrt(h_gen) / (h_gen.sum() * width)
    fig, (ax, rax) = plt.subplots(
        2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1], "hspace": 0.05}, figsize=(7, 7)
    )
    ax.stairs(d_ref, edges, color=REF_COLOR, linewidth=1.5, label=labels[0])
    ax.stairs(
        d_ref + e_ref,
        edges,
        baseline=np.clip(d_ref - e_ref, 0, None),
        fill=True,
        color=REF_COLOR,
        alpha=0.35,
        label="reference Poisson unc.",
    )
    ax.stairs(d_gen, edges, color=GEN_COLOR, linewidth=2, label=labels[1])
    centres = 0.5 * (edges[1:] + edges[:-1])
    lower = np.minimum(e_gen, d_gen)  # never below zero entries
    ax.errorbar(centres, d_gen, yerr=[lower, e_gen], fmt="none", ecolor=GEN_COLOR, linewidth=1)
    ax.set_ylabel("normalised entries")
    if logy:
        ax.set_yscale("log")
    if (
        edges[0] > 0
        and edges[-1] / edges[0] > 100
        and np.allclose(np.diff(np.log(edges)), np.log(edges[1] / edges[0]))
    ):
        ax.set_xscale("log")
    ax.legend(fontsize=13)
    if title:
        ax.set_title(title, fontsize=14)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(d_ref > 0, d_gen / d_ref, np.nan)
        r_ref = np.where(d_ref > 0, e_ref / d_ref, np.nan)
        r_gen = np.where(d_ref > 0, e_gen / d_ref, np.nan)
    rax.stairs(1 + r_ref, edges, baseline=1 - r_ref, fill=True, color=REF_COLOR, alpha=0.3)
    lo, hi = ratio_limits(ratio)
    inside = (ratio >= lo) & (ratio <= hi)
    rax.errorbar(
        centres[inside],
        ratio[inside],
        yerr=r_gen[inside],
        fmt="o",
        markersize=3,
        color=GEN_COLOR,
    )
    above, below = ratio > hi, ratio < lo
    rax.plot(centres[above], np.full(above.sum(), hi), "^", color=GEN_COLOR, markersize=6)
    rax.plot(centres[below], np.full(below.sum(), lo), "v", color=GEN_COLOR, markersize=6)
    rax.axhline(1.0, color="k", linewidth=1)
    rax.set_ylim(lo, hi)
    rax.set_ylabel("gen / ref", fontsize=13)
    rax.set_xlabel(xlabel)
    fig.subplots_adjust(left=0.17, right=0.96, top=0.93, bottom=0.11)
    return fig


def layer_profile_figure(
    reference: dict[str, np.ndarray],
    generated: dict[str, np.ndarray],
    family: str,
    layers: list[int],
    ylabel: str,
    separation: dict[str, tuple[float, float]] | None = None,
) -> plt.Figure:
    """Median and central 68% (16th-84th percentile) of `family_{layer}` per layer, ref vs gen.

    With separation power and floor; the bands never extend past the data (no negative
    energies).
    """
    use_style()
    keys = [f"{family}_{i}" for i in layers if f"{family}_{i}" in reference]
    idx = [int(k.rsplit("_", 1)[1]) for k in keys]
    n_rows = 2 if separation else 1
    fig, axes = plt.subplots(
        n_rows, 1, sharex=True, figsize=(8, 4 + 3 * (n_rows - 1)), squeeze=False
    )
    ax = axes[0, 0]
    for data, color, label, shift in (
        (reference, REF_COLOR, "reference", -0.15),
        (generated, GEN_COLOR, "generated", 0.15),
    ):
        q16, q50, q84 = np.array([np.percentile(data[k], [16, 50, 84]) for k in keys]).T
        ax.errorbar(
            np.asarray(idx) + shift,
            q50,
            yerr=[q50 - q16, q84 - q50],
            fmt="o",
            color=color,
            label=f"{label} (median, 16-84%)",
        )
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=12)
    if separation:
        sax = axes[1, 0]
        vals = [separation[k] for k in keys if k in separation]
        sax.plot(idx, [v[0] for v in vals], "o-", color=GEN_COLOR, label="ref vs gen")
        sax.plot(idx, [v[1] for v in vals], "s--", color=REF_COLOR, label="ref vs ref (floor)")
        sax.set_yscale("log")
        sax.set_ylabel("separation power", fontsize=12)
        sax.legend(fontsize=11)
    axes[-1, 0].set_xlabel("layer")
    fig.subplots_adjust(left=0.15, right=0.97, top=0.95, bottom=0.1, hspace=0.08)
    return fig


def _polar_layer(ax, energies: np.ndarray, layer, vmin: float, vmax: float):
    """One layer as rings of equal width per radial bin (DS1 bins span 100x in r)."""
    edges = np.arange(layer.n_radial + 1, dtype=float)
    r_max = float(layer.n_radial)
    theta = np.linspace(-np.pi, np.pi, layer.n_alpha * max(1, 360 // layer.n_alpha) + 1)
    image = energies.reshape(layer.n_alpha, layer.n_radial)  # angular slow, radial fast
    image = np.repeat(image, (len(theta) - 1) // layer.n_alpha, axis=0)
    mesh = ax.pcolormesh(
        theta, edges, image.T + 1e-16, norm=LogNorm(vmin=vmin, vmax=vmax), shading="flat"
    )
    ax.set_ylim(0, r_max)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    return mesh


def average_shower_figure(
    reference: np.ndarray,
    generated: np.ndarray,
    geometry: CaloGeometry,
    max_layers: int = 9,
    title: str | None = None,
) -> plt.Figure:
    """Average shower per layer as r-alpha images (rows: reference, generated), log colour.

    Radial bins are drawn as rings of equal width (bin index, not mm), alpha as the angle.
    """
    use_style()
    layers = list(geometry.active_layers)
    if len(layers) > max_layers:
        pick = np.unique(np.linspace(0, len(layers) - 1, max_layers).round().astype(int))
        layers = [layers[i] for i in pick]
    mean_ref, mean_gen = np.asarray(reference).mean(0), np.asarray(generated).mean(0)
    vmax = float(max(mean_ref.max(), mean_gen.max(), 1e-6))
    vmin = max(vmax * 1e-5, 1e-6)
    fig, axes = plt.subplots(
        2,
        len(layers),
        subplot_kw={"projection": "polar"},
        figsize=(2.2 * len(layers), 5),
        squeeze=False,
    )
    mesh = None
    for col, layer in enumerate(layers):
        sl = geometry.layer_slices[layer.index]
        for row, mean in enumerate((mean_ref, mean_gen)):
            mesh = _polar_layer(axes[row, col], mean[sl], layer, vmin, vmax)
        axes[0, col].set_title(f"layer {layer.index}", fontsize=11)
    axes[0, 0].set_ylabel("reference", fontsize=12, labelpad=20)
    axes[1, 0].set_ylabel("generated", fontsize=12, labelpad=20)
    fig.colorbar(mesh, ax=axes, orientation="horizontal", fraction=0.05, label="mean energy [MeV]")
    if title:
        fig.suptitle(title, fontsize=13)
    return fig


def energy_bins(e_inc: np.ndarray, max_discrete: int = 20) -> np.ndarray:
    """Bin edges in E_inc: one bin per discrete energy (DS1), else decades (DS2/DS3)."""
    values = np.unique(e_inc)
    if len(values) <= max_discrete:
        mids = np.sqrt(values[1:] * values[:-1])
        return np.concatenate([[values[0] / 1.5], mids, [values[-1] * 1.5]])
    lo, hi = np.floor(np.log10(values[0])), np.ceil(np.log10(values[-1]))
    return 10.0 ** np.arange(lo, hi + 1)


def energy_summary_figure(
    reference: np.ndarray,
    ref_e_inc: np.ndarray,
    generated: np.ndarray,
    gen_e_inc: np.ndarray,
    ylabel: str = "$E_{tot}/E_{inc}$",
) -> plt.Figure:
    """Mean (markers) and standard deviation (bars, clipped at 0) of a quantity per E_inc bin.

    The quantity is per event, binned in incident energy; a second panel shows the relative
    spread std / mean.
    """
    use_style()
    edges = energy_bins(np.concatenate([ref_e_inc, gen_e_inc]))
    centres = np.sqrt(edges[1:] * edges[:-1])
    fig, (ax, sax) = plt.subplots(2, 1, sharex=True, figsize=(8, 7))
    for data, e, color, label, shift in (
        (reference, ref_e_inc, REF_COLOR, "reference", 0.97),
        (generated, gen_e_inc, GEN_COLOR, "generated", 1.03),
    ):
        which = np.digitize(e, edges) - 1
        stats = [
            (data[which == b].mean(), data[which == b].std())
            if (which == b).any()
            else (np.nan, np.nan)
            for b in range(len(centres))
        ]
        mean, std = np.asarray(stats).T
        yerr = [np.minimum(std, mean), std]
        ax.errorbar(
            centres * shift, mean, yerr=yerr, fmt="o", color=color, label=f"{label}: mean ± std"
        )
        sax.plot(centres, std / mean, "o-", color=color, label=label)
    ax.set_xscale("log")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=12)
    sax.set_ylabel("std / mean", fontsize=13)
    sax.set_xlabel("$E_{inc}$ [MeV]")
    fig.subplots_adjust(left=0.15, right=0.97, top=0.95, bottom=0.1, hspace=0.08)
    return fig


def training_validation_figure(
    history: dict[str, list[float]],
    reference: np.ndarray,
    generated: np.ndarray,
    e_inc: np.ndarray,
    geometry: CaloGeometry,
    path: str,
) -> None:
    """Four panels: loss per epoch, E_tot/E_inc, mean energy per layer, voxel energy spectrum."""
    fig, ax = plt.subplots(2, 2, figsize=(10, 7.5))
    for key, values in history.items():
        ax[0, 0].plot(np.arange(1, len(values) + 1), values, marker="o", label=key)
    ax[0, 0].set(xlabel="epoch", ylabel="loss", title="training")
    ax[0, 0].legend()

    r_ref, r_gen = reference.sum(1) / e_inc, generated.sum(1) / e_inc
    bins = np.linspace(*np.quantile(np.concatenate([r_ref, r_gen]), [0.001, 0.999]), 50)
    ax[0, 1].hist(r_ref, bins, histtype="stepfilled", alpha=0.35, density=True, label="reference")
    ax[0, 1].hist(r_gen, bins, histtype="step", lw=1.8, density=True, label="generated")
    ax[0, 1].set(xlabel=r"$E_\mathrm{tot}/E_\mathrm{inc}$", ylabel="density")
    ax[0, 1].legend()

    layers = list(geometry.layer_slices)
    mean_ref = [reference[:, s].sum(1).mean() for s in geometry.layer_slices.values()]
    mean_gen = [generated[:, s].sum(1).mean() for s in geometry.layer_slices.values()]
    x = np.arange(len(layers))
    ax[1, 0].bar(x - 0.2, mean_ref, 0.4, label="reference")
    ax[1, 0].bar(x + 0.2, mean_gen, 0.4, label="generated")
    ax[1, 0].set(
        xticks=x, xticklabels=layers, xlabel="layer", ylabel="mean energy [MeV]", yscale="log"
    )
    ax[1, 0].legend()

    v_ref, v_gen = reference[reference > 0], generated[generated > 0]
    if v_ref.size and v_gen.size:
        bins = np.logspace(
            np.log10(min(v_ref.min(), v_gen.min())), np.log10(max(v_ref.max(), v_gen.max())), 60
        )
        ax[1, 1].hist(
            v_ref, bins, histtype="stepfilled", alpha=0.35, density=True, label="reference"
        )
        ax[1, 1].hist(v_gen, bins, histtype="step", lw=1.8, density=True, label="generated")
    ax[1, 1].set(xscale="log", yscale="log", xlabel="voxel energy [MeV]", ylabel="density")
    ax[1, 1].legend()
    fig.suptitle(f"validation: {geometry.name}, {len(e_inc)} showers")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
