"""Training validation figure: loss curves and generated-vs-reference shower summaries."""

from __future__ import annotations

import numpy as np

from farm.data.geometry import CaloGeometry


def training_validation_figure(
    history: dict[str, list[float]],
    reference: np.ndarray,
    generated: np.ndarray,
    e_inc: np.ndarray,
    geometry: CaloGeometry,
    path: str,
) -> None:
    """Four panels: loss per epoch, E_tot/E_inc, mean energy per layer, voxel energy spectrum."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
