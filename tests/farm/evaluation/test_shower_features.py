"""Shower features against hand-built showers with known energies, centres and widths."""

from __future__ import annotations

import numpy as np
import pytest

from farm.errors import FarmError
from farm.evaluation.shower_features import (
    distance_inputs,
    high_level_inputs,
    histogram_scale,
    low_level_inputs,
    occupancy,
    shower_features,
    voxel_energies,
)


def _voxel(geometry, layer_index: int, alpha_bin: int, r_bin: int) -> int:
    layer = geometry.layers[layer_index]
    return geometry.layer_slices[layer_index].start + alpha_bin * layer.n_radial + r_bin


def _xy(geometry, layer_index: int, alpha_bin: int, r_bin: int) -> tuple[float, float]:
    layer = geometry.layers[layer_index]
    r = 0.5 * (layer.r_edges[r_bin] + layer.r_edges[r_bin + 1])
    alpha = -np.pi + (alpha_bin + 0.5) * 2 * np.pi / layer.n_alpha
    return r * np.cos(alpha), r * np.sin(alpha)


def test_two_voxel_shower_has_known_centre_and_width(geometry):
    shower = np.zeros((1, geometry.n_voxels))
    a, b = (1, 2, 3), (1, 7, 5)  # layer 1, (alpha bin, radial bin)
    shower[0, _voxel(geometry, *a)] = 100.0
    shower[0, _voxel(geometry, *b)] = 300.0
    shower[0, _voxel(geometry, 12, 0, 2)] = 50.0  # layer 12 has one angular bin
    f = shower_features(shower, np.array([1000.0]), geometry)
    (xa, ya), (xb, yb) = _xy(geometry, *a), _xy(geometry, *b)
    assert f["e_ratio"][0] == pytest.approx(0.45)
    assert f["e_layer_1"][0] == pytest.approx(400.0)
    assert f["e_layer_2"][0] == 0.0
    assert f["ec_x_1"][0] == pytest.approx((xa + 3 * xb) / 4)
    assert f["ec_y_1"][0] == pytest.approx((ya + 3 * yb) / 4)
    assert f["width_x_1"][0] == pytest.approx(abs(xa - xb) * np.sqrt(3) / 4)
    assert f["width_y_1"][0] == pytest.approx(abs(ya - yb) * np.sqrt(3) / 4)
    r_edges = geometry.layers[1].r_edges
    ra, rb = (0.5 * (r_edges[i] + r_edges[i + 1]) for i in (3, 5))
    assert f["ec_r_1"][0] == pytest.approx((ra + 3 * rb) / 4)
    assert f["width_r_1"][0] == pytest.approx(abs(ra - rb) * np.sqrt(3) / 4)
    assert f["sparsity_1"][0] == pytest.approx(1 - 2 / 160)
    assert f["occupancy_1"][0] == pytest.approx(2 / 160)
    assert f["occupancy"][0] == pytest.approx(3 / 368)
    r12 = geometry.layers[12].r_edges
    assert f["ec_r_12"][0] == pytest.approx(0.5 * (r12[2] + r12[3]))
    assert f["width_r_12"][0] == 0.0  # one voxel: exactly 0, not the ~1 ulp rounding left over
    assert "ec_x_12" not in f and "ec_y_0" not in f  # only alpha-binned layers, as the challenge
    # empty layers give 0 centre and width (the challenge's 1e-16 guard), not NaN
    assert f["ec_x_2"][0] == 0.0 and f["width_x_2"][0] == 0.0 and f["sparsity_2"][0] == 1.0


def test_threshold_removes_small_voxels_from_every_feature(geometry):
    shower = np.zeros((1, geometry.n_voxels))
    shower[0, _voxel(geometry, 1, 0, 0)] = 10.0
    shower[0, _voxel(geometry, 1, 5, 8)] = 0.5
    f = shower_features(shower, np.array([20.0]), geometry, threshold_mev=1.0)
    x0, _ = _xy(geometry, 1, 0, 0)
    assert f["e_layer_1"][0] == pytest.approx(10.0)
    assert f["ec_x_1"][0] == pytest.approx(x0)
    assert f["occupancy_1"][0] == pytest.approx(1 / 160)
    assert voxel_energies(shower, 1.0).tolist() == [10.0]
    assert occupancy(shower, 0.0)[0] == pytest.approx(2 / 368)


def test_classifier_inputs_have_the_challenge_layout(geometry):
    rng = np.random.default_rng(0)
    showers = rng.gamma(1.0, 1.0, (4, geometry.n_voxels))
    e_inc = np.full(4, 1000.0)
    f = shower_features(showers, e_inc, geometry)
    low = low_level_inputs(showers, e_inc)
    assert low.shape == (4, 1 + geometry.n_voxels)
    assert np.allclose(low[:, 0], 3.0) and np.allclose(low[:, 1:], showers / 1000.0)
    high = high_level_inputs(f, e_inc, geometry)
    # the challenge's final cls-high set: log E_inc, 5 log E_layer, EC/width x/y of the 2
    # alpha-binned layers, log E_tot, 5 sparsities, EC_r and width_r of the 5 layers
    assert high.shape == (4, 1 + 5 + 4 * 2 + 1 + 5 + 2 * 5)
    layers = [layer.index for layer in geometry.active_layers]
    assert np.allclose(high[:, 0], 3.0)
    assert np.allclose(high[:, 1:6], np.log10(np.stack([f[f"e_layer_{i}"] for i in layers], 1)))
    assert np.allclose(high[:, 6], f["ec_x_1"] / 100.0)  # first alpha-binned layer
    assert np.allclose(high[:, 13], f["width_y_2"] / 100.0)
    assert np.allclose(high[:, 14], np.log10(f["e_tot"] + 1e-8))
    assert np.allclose(high[:, 15:20], np.stack([f[f"sparsity_{i}"] for i in layers], 1))
    assert np.allclose(high[:, 20:25], np.stack([f[f"ec_r_{i}"] / 100 for i in layers], 1))
    assert np.allclose(high[:, 25:], np.stack([f[f"width_r_{i}"] / 100 for i in layers], 1))
    assert distance_inputs(f, e_inc, geometry).shape == (4, 1 + 5 + 3 * 5 + 4 * 2)


def test_histogram_scales_follow_the_challenge_plots():
    assert histogram_scale("e_layer_12") == histogram_scale("e_tot") == "log"
    for name in ("e_ratio", "ec_x_1", "ec_r_0", "width_r_2", "sparsity_3", "occupancy"):
        assert histogram_scale(name) == "linear"
    assert histogram_scale("pt_rel") == "auto"


def test_bad_showers_raise_one_clear_error(geometry):
    showers = np.ones((3, geometry.n_voxels))
    showers[1, 7] = np.nan
    with pytest.raises(FarmError, match=r"NaN/Inf values in showers .*first at index 1"):
        shower_features(showers, np.ones(3), geometry)
    with pytest.raises(FarmError, match="367 voxels per shower"):
        shower_features(np.ones((3, 367)), np.ones(3), geometry)
    with pytest.raises(FarmError, match="3 showers but 2 incident energies"):
        shower_features(np.ones((3, geometry.n_voxels)), np.ones(2), geometry)
