"""Voxels <-> point clouds: voxel-centre points sum back to the same voxels exactly."""

from __future__ import annotations

import numpy as np
import pytest

from farm.data.geometry import load_geometry
from farm.errors import FarmError
from farm.formats.pointcloud import point_voxels, points_to_voxels, voxels_to_points


@pytest.mark.parametrize("name", ["ds1-photons", "ds1-pions", "ds2"])
@pytest.mark.parametrize("coords", ["xyz", "cylindrical"])
def test_round_trip_is_lossless(name, coords):
    g = load_geometry(name)
    rng = np.random.default_rng(0)
    x = rng.exponential(1.0, size=(6, g.n_voxels)).astype(np.float32)
    x[x < 1.0] = 0.0
    cloud = voxels_to_points(x, g, coords)
    assert cloud.points.shape == (int((x > 0).sum()), 4) and cloud.points.dtype == np.float32
    np.testing.assert_array_equal(cloud.counts, (x > 0).sum(axis=1))
    np.testing.assert_array_equal(points_to_voxels(cloud, g), x)


def test_every_voxel_centre_maps_to_itself():
    g = load_geometry("ds1-photons")
    cloud = voxels_to_points(np.ones((1, g.n_voxels), np.float32), g, "xyz")
    np.testing.assert_array_equal(point_voxels(cloud.points, g, "xyz"), np.arange(g.n_voxels))
    # layer index in z, the hadronic layer 12 included; x, y at the voxel centre
    assert set(np.unique(cloud.points[:, 2])) == {0, 1, 2, 3, 12}
    np.testing.assert_allclose(
        np.hypot(cloud.points[:, 0], cloud.points[:, 1]), g.voxel_r, rtol=1e-6
    )


def test_points_sum_and_outside_points_drop():
    g = load_geometry("ds2")
    # two points in the first voxel of layer 0 (r = 1 mm, alpha just above -pi), one outside
    pts = np.array(
        [[0, -np.pi + 0.01, 1.0, 2.0], [0, -np.pi + 0.02, 2.0, 3.0], [0, 0.0, 500.0, 7.0]],
        dtype=np.float32,
    )
    v = points_to_voxels(pts, g, event=np.array([0, 0, 0]), coords="cylindrical")
    assert v.shape == (1, g.n_voxels) and v[0, 0] == 5.0 and v.sum() == 5.0


def test_padding_and_bad_coords():
    g = load_geometry("ds2")
    x = np.zeros((3, g.n_voxels), np.float32)
    x[0, :5] = 1.0
    x[2, 10] = 2.0
    cloud = voxels_to_points(x, g)
    padded, mask = cloud.padded()
    assert padded.shape == (3, 5, 4) and mask.sum() == 6 and mask[1].sum() == 0
    assert padded[2, 0, 3] == 2.0
    with pytest.raises(FarmError, match="max_points=2"):
        cloud.padded(2)
    with pytest.raises(FarmError, match="allowed xyz, cylindrical"):
        voxels_to_points(x, g, "spherical")
    with pytest.raises(FarmError, match="6480"):
        voxels_to_points(np.zeros((1, 10)), g)
