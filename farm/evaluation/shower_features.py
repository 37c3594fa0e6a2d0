"""CaloChallenge 2022 high-level shower features (arXiv:2410.21611; code/HighLevelFeatures.py).

Definitions follow the challenge's evaluation code so that numbers compare:
- voxel positions are bin centres: r = (r_lo + r_hi) / 2, alpha = centre of the bin in an even split
  of [-pi, pi), x = r cos(alpha) (the challenge's "eta"), y = r sin(alpha) (its "phi");
- centre of energy EC_x = sum(x E) / (sum(E) + 1e-16), width = sqrt(max(<x^2> - EC_x^2, 0)),
  exactly 0 where the variance is below 1e-12 <x^2> (rounding; the challenge leaves ~1 ulp);
- x/y centres and widths exist only for layers binned in alpha (n_alpha > 1), as in the challenge;
  r centres and widths exist for every active layer;
- sparsity = 1 - (fraction of the layer's voxels above threshold), the challenge's definition;
  occupancy = fraction of voxels above threshold (its complement; also for the whole shower).
With threshold_mev > 0, voxels at or below the threshold count as empty (energy 0) in every feature;
with the default 0.0 the numbers equal the challenge's CalculateFeatures(data) output (widths up
to that rounding).
"""

from __future__ import annotations

import numpy as np

from farm.errors import FarmError
from farm.geometry import CaloGeometry

_EPS = 1e-16  # the challenge's guard against empty layers
_VAR_RTOL = 1e-12  # a variance below this fraction of <x^2> is rounding: the width is 0


def check_showers(
    showers: np.ndarray, e_inc: np.ndarray, geometry: CaloGeometry, name: str
) -> None:
    """Raise FarmError naming `name` on wrong shapes, a voxel count not matching, NaN or Inf."""
    if showers.ndim != 2:
        raise FarmError(
            f"{name}: showers must be a 2-D array (N, n_voxels), got shape {showers.shape}"
        )
    geometry.check_voxels(showers.shape[1], name)
    if e_inc.reshape(-1).shape[0] != showers.shape[0]:
        raise FarmError(
            f"{name}: {showers.shape[0]} showers but {e_inc.reshape(-1).shape[0]} incident energies"
        )
    for label, arr in (("showers", showers), ("incident energies", e_inc)):
        bad = ~np.isfinite(arr)
        if bad.any():
            rows = np.unique(np.nonzero(bad)[0])
            raise FarmError(
                f"{name}: {int(bad.sum())} NaN/Inf values in {label} "
                f"({rows.size} events, first at index {int(rows[0])})"
            )
    if np.any(e_inc <= 0):
        raise FarmError(f"{name}: incident energies must be positive (MeV)")


def _layer_energy(showers: np.ndarray, sl: slice, threshold_mev: float) -> np.ndarray:
    e = np.asarray(showers[:, sl], dtype=np.float64)
    if threshold_mev > 0:
        e = np.where(e > threshold_mev, e, 0.0)
    return e


def _centre_width(coord: np.ndarray, energy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Energy-weighted mean and standard deviation of `coord` (V,) over (N, V) energies."""
    total = energy.sum(axis=1) + _EPS
    centre = energy @ coord / total
    second = energy @ (coord * coord) / total
    return centre, weighted_width(second, centre)


def weighted_width(second: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """sqrt(max(<x^2> - <x>^2, 0)), 0 where the variance is rounding (< 1e-12 <x^2>).

    Energy in a single bin has width 0, but <x^2> - <x>^2 leaves ~1 ulp of <x^2> (e.g. 2^-21 mm
    at r ~ 40 mm): as a reference "spread" that tiny, it would blow up FPD/KPD's max-|x| scale.
    """
    var = second - centre**2
    return np.sqrt(np.where(var > _VAR_RTOL * second, var, 0.0))


def shower_features(
    showers: np.ndarray,
    e_inc: np.ndarray,
    geometry: CaloGeometry,
    threshold_mev: float = 0.0,
) -> dict[str, np.ndarray]:
    """CaloChallenge high-level features of (N, n_voxels) MeV showers with (N,) or (N, 1) E_inc.

    Returns name -> (N,) float64: e_ratio (E_tot/E_inc), e_tot, occupancy, and per active layer i:
    e_layer_i, ec_r_i, width_r_i, sparsity_i, occupancy_i, and for layers binned in alpha also
    ec_x_i, ec_y_i, width_x_i, width_y_i (mm).
    """
    showers = np.asarray(showers)
    e_inc = np.asarray(e_inc, dtype=np.float64).reshape(-1)
    check_showers(showers, e_inc, geometry, "showers")
    n = showers.shape[0]
    out: dict[str, np.ndarray] = {}
    e_tot = np.zeros(n)
    n_above = np.zeros(n)
    per_layer: dict[str, np.ndarray] = {}
    x, y = geometry.voxel_xy[:, 0], geometry.voxel_xy[:, 1]
    r = geometry.voxel_r
    for layer in geometry.active_layers:
        i, sl = layer.index, geometry.layer_slices[layer.index]
        energy = _layer_energy(showers, sl, threshold_mev)
        e_layer = energy.sum(axis=1)
        e_tot += e_layer
        above = (energy > 0).sum(axis=1)
        n_above += above
        per_layer[f"e_layer_{i}"] = e_layer
        if layer.n_alpha > 1:
            per_layer[f"ec_x_{i}"], per_layer[f"width_x_{i}"] = _centre_width(x[sl], energy)
            per_layer[f"ec_y_{i}"], per_layer[f"width_y_{i}"] = _centre_width(y[sl], energy)
        per_layer[f"ec_r_{i}"], per_layer[f"width_r_{i}"] = _centre_width(r[sl], energy)
        per_layer[f"occupancy_{i}"] = above / layer.n_voxels
        per_layer[f"sparsity_{i}"] = 1.0 - per_layer[f"occupancy_{i}"]
    out["e_ratio"] = e_tot / e_inc
    out["e_tot"] = e_tot
    out["occupancy"] = n_above / geometry.n_voxels
    out.update(per_layer)
    return out


def voxel_energies(showers: np.ndarray, threshold_mev: float = 0.0) -> np.ndarray:
    """Flattened energies (MeV) of all voxels above threshold: the challenge's voxel spectrum."""
    flat = np.asarray(showers).reshape(-1)
    return flat[flat > threshold_mev].astype(np.float64)


def occupancy(showers: np.ndarray, threshold_mev: float = 0.0) -> np.ndarray:
    """(N,) fraction of each shower's voxels with energy above threshold."""
    return (np.asarray(showers) > threshold_mev).mean(axis=1)


def layer_energies(showers: np.ndarray, geometry: CaloGeometry) -> np.ndarray:
    """(N, n_active_layers) energy per active layer in MeV."""
    return np.stack(
        [
            np.asarray(showers[:, geometry.layer_slices[layer.index]], dtype=np.float64).sum(axis=1)
            for layer in geometry.active_layers
        ],
        axis=1,
    )


def low_level_inputs(showers: np.ndarray, e_inc: np.ndarray) -> np.ndarray:
    """Classifier input as the challenge's cls-low: [log10 E_inc, voxel energies / E_inc]."""
    e_inc = np.asarray(e_inc, dtype=np.float64).reshape(-1, 1)
    return np.concatenate([np.log10(e_inc), np.asarray(showers, dtype=np.float64) / e_inc], axis=1)


def high_level_inputs(
    features: dict[str, np.ndarray], e_inc: np.ndarray, geometry: CaloGeometry
) -> np.ndarray:
    """Classifier input as the CaloChallenge 2022 final evaluation's cls-high (arXiv:2410.21611).

    Columns: log10 E_inc; log10(E_layer + 1e-8) per layer; EC_x, EC_y, width_x, width_y / 100 mm
    per layer binned in alpha; log10(E_tot + 1e-8); sparsity per layer; EC_r, width_r / 100 mm
    per layer. DS1 photons: 1 + 5 + 4 x 2 + 1 + 5 + 2 x 5 = 30 columns.
    """
    e_inc = np.asarray(e_inc, dtype=np.float64).reshape(-1)
    layers = [layer.index for layer in geometry.active_layers]
    binned = [layer.index for layer in geometry.active_layers if layer.n_alpha > 1]
    cols = [np.log10(e_inc)]
    cols += [np.log10(features[f"e_layer_{i}"] + 1e-8) for i in layers]
    for key in ("ec_x", "ec_y", "width_x", "width_y"):
        cols += [features[f"{key}_{i}"] / 100.0 for i in binned]
    cols.append(np.log10(features["e_tot"] + 1e-8))
    cols += [features[f"sparsity_{i}"] for i in layers]
    for key in ("ec_r", "width_r"):
        cols += [features[f"{key}_{i}"] / 100.0 for i in layers]
    return np.stack(cols, axis=1)


def histogram_scale(name: str) -> str:
    """Separation-power binning scale of a feature, as in the challenge's plots.

    'log' for energies (e_tot, e_layer_*), 'linear' for the other shower features, 'auto'
    (metrics.feature_edges decides from the data) for other names, e.g. jet features.
    """
    if name == "e_tot" or name.startswith("e_layer_"):
        return "log"
    shower_prefixes = ("e_ratio", "occupancy", "sparsity_", "ec_", "width_")
    return "linear" if name.startswith(shower_prefixes) else "auto"


def distance_inputs(
    features: dict[str, np.ndarray], e_inc: np.ndarray, geometry: CaloGeometry
) -> np.ndarray:
    """(N, D) FPD/KPD features of showers: E_tot/E_inc, E_layer/E_inc, centres, widths, occupancy.

    Energies are divided by E_inc so that the max-|x| normalisation of FPD/KPD keeps them
    sensitive to an energy-scale error (log10 E_layer, as in cls-high, hides a 5% scale).
    """
    e_inc = np.asarray(e_inc, dtype=np.float64).reshape(-1)
    cols = [features["e_ratio"]]
    for layer in geometry.active_layers:
        i = layer.index
        cols.append(features[f"e_layer_{i}"] / e_inc)
        keys = ["ec_x", "ec_y", "width_x", "width_y"] if layer.n_alpha > 1 else []
        cols += [features[f"{key}_{i}"] for key in [*keys, "ec_r", "width_r", "occupancy"]]
    return np.stack(cols, axis=1)
