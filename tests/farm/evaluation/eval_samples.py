"""Synthetic shower and jet samples with known properties, shared by the evaluation tests."""

from __future__ import annotations

import numpy as np

from farm.geometry import CaloGeometry


def make_showers(
    geometry: CaloGeometry, n: int, seed: int, scale: float = 1.0, move_layer: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(showers (n, V) MeV, e_inc (n,) MeV): exponential radial profiles around a jittered centre.

    E_tot/E_inc ~ N(0.95, 0.02); layer fractions ~ Dirichlet; voxel weights get gamma noise.
    `scale` multiplies every voxel; `move_layer` moves that layer's energy into the next layer.
    """
    rng = np.random.default_rng(seed)
    e_inc = 2.0 ** rng.integers(10, 16, n).astype(float)
    e_tot = e_inc * rng.normal(0.95, 0.02, n)
    layers = geometry.active_layers
    fractions = rng.dirichlet(np.array([2.0, 30.0, 50.0, 6.0, 1.0])[: len(layers)] * 4, n)
    r_edges = geometry.voxel_r_edges
    n_alpha = np.concatenate([np.full(layer.n_voxels, layer.n_alpha) for layer in layers])
    area = (r_edges[:, 1] ** 2 - r_edges[:, 0] ** 2) * np.pi / n_alpha
    centre = rng.normal(0.0, 2.0, (n, 2))
    showers = np.zeros((n, geometry.n_voxels))
    xy = geometry.voxel_xy
    for k, layer in enumerate(layers):
        sl = geometry.layer_slices[layer.index]
        radius = 4.0 + 3.0 * k
        d = np.hypot(xy[sl, 0][None] - centre[:, :1], xy[sl, 1][None] - centre[:, 1:])
        w = area[sl][None] * np.exp(-d / radius) * rng.gamma(3.0, 1 / 3.0, (n, layer.n_voxels))
        showers[:, sl] = (e_tot * fractions[:, k])[:, None] * w / w.sum(axis=1, keepdims=True)
    showers[showers < 0.1] = 0.0
    if move_layer is not None:
        index = [layer.index for layer in layers]
        a = geometry.layer_slices[index[move_layer]]
        b = geometry.layer_slices[index[move_layer + 1]]
        moved = showers[:, a].sum(axis=1)
        nxt = showers[:, b]
        showers[:, b] = nxt + moved[:, None] * nxt / np.maximum(nxt.sum(1, keepdims=True), 1e-9)
        showers[:, a] = 0.0
    return (showers * scale).astype(np.float32), e_inc


def make_jets(
    n: int, seed: int, n_particles: int = 30, angle_smear: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """(constituents (n, P, 3) as (eta_rel, phi_rel, pT_rel), mask (n, P)): W-like two-prong jets.

    Two prongs of half the pT each, 0.3 +- 3% apart (relative mass ~0.15, narrow peak).
    `angle_smear` scales each jet's angles by (1 + angle_smear * N(0, 1)): smears the jet mass
    by about that fraction.
    """
    rng = np.random.default_rng(seed)
    n_const = rng.integers(10, n_particles + 1, n)
    mask = np.arange(n_particles)[None] < n_const[:, None]
    sep = rng.normal(0.3, 0.01, n)
    direction = rng.uniform(-np.pi, np.pi, n)
    half = 0.5 * sep[:, None] * np.stack([np.cos(direction), np.sin(direction)], axis=1)
    prong = np.arange(n_particles)[None] % 2  # alternate particles between the prongs
    sign = np.where(prong == 0, 1.0, -1.0)[..., None]
    angles = sign * half[:, None, :] + rng.normal(0.0, 0.015, (n, n_particles, 2))
    pt = rng.gamma(2.0, 1.0, (n, n_particles)) * mask
    for k in (0, 1):
        in_prong = prong == k
        pt = np.where(in_prong, 0.5 * pt / (pt * in_prong).sum(1, keepdims=True), pt)
    if angle_smear:
        angles = angles * (1.0 + angle_smear * rng.normal(0.0, 1.0, (n, 1, 1)))
    order = np.argsort(-pt, axis=1)
    pt = np.take_along_axis(pt, order, 1)
    angles = np.take_along_axis(angles, order[..., None].repeat(2, -1), 1)
    mask = np.take_along_axis(mask, order, 1)
    jets = np.concatenate([angles, pt[..., None]], axis=-1) * mask[..., None]
    return jets.astype(np.float32), mask
