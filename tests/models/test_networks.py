"""Point-cloud networks are permutation equivariant and ignore padded points; voxel net shapes."""

from __future__ import annotations

import pytest
import torch

from models.networks.epic import EPiCConfig
from models.networks.pointcloud import PointCloudTransformerConfig, flatten_points, unflatten_points
from models.networks.voxel import VoxelTransformerConfig
from models.preprocessing import PointCloudPreprocessing

N_POINTS, N_FEAT = 10, 3
POINT_NETS = [
    PointCloudTransformerConfig(n_features=N_FEAT, width=32, depth=2, heads=4, embed_dim=16),
    PointCloudTransformerConfig(
        n_features=N_FEAT, width=32, depth=2, heads=4, embed_dim=16, attention="mean_field"
    ),
    EPiCConfig(n_features=N_FEAT, width=32, global_dim=8, depth=2, embed_dim=16),
]
IDS = ["full", "mean_field", "epic"]


def _inputs(count: list[int]):
    gen = torch.Generator().manual_seed(0)
    b = len(count)
    x = torch.randn(b, N_POINTS * N_FEAT, generator=gen)
    t = torch.rand(b, generator=gen)
    cond = torch.cat([torch.randn(b, 1, generator=gen), torch.tensor(count).float()[:, None]], 1)
    return x, t, cond


@pytest.mark.parametrize("config", POINT_NETS, ids=IDS)
def test_permutation_equivariance_and_masking(config):
    torch.manual_seed(0)
    net = config.build(N_POINTS * N_FEAT, 2).eval()
    count = [10, 6, 1, 0]
    x, t, cond = _inputs(count)
    out = net(x, t, cond)
    assert out.shape == x.shape and torch.isfinite(out).all()
    pts, out_pts = unflatten_points(x, N_FEAT), unflatten_points(out, N_FEAT)
    # padded points: output exactly 0
    for b, n in enumerate(count):
        assert torch.all(out_pts[b, n:] == 0)
    # permuting the valid points permutes the outputs
    perm_pts = pts.clone()
    for b, n in enumerate(count):
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(b))
        perm_pts[b, :n] = pts[b, perm]
        expected = out_pts[b, :n][perm]
        got = unflatten_points(net(flatten_points(perm_pts), t, cond), N_FEAT)[b, :n]
        assert torch.allclose(got, expected, atol=1e-5), b
    # changing padded points changes no valid output
    noisy = pts.clone()
    for b, n in enumerate(count):
        noisy[b, n:] = 100 * torch.randn_like(noisy[b, n:])
    out_noisy = unflatten_points(net(flatten_points(noisy), t, cond), N_FEAT)
    for b, n in enumerate(count):
        assert torch.allclose(out_noisy[b, :n], out_pts[b, :n], atol=1e-5)


@pytest.mark.parametrize("config", POINT_NETS, ids=IDS)
def test_equivariance_without_mask(config):
    torch.manual_seed(0)
    net = config.model_copy(update={"count_cond": False}).build(N_POINTS * N_FEAT, 1).eval()
    x, t, cond = _inputs([10, 10])
    cond = cond[:, :1]
    perm = torch.randperm(N_POINTS, generator=torch.Generator().manual_seed(5))
    out = unflatten_points(net(x, t, cond), N_FEAT)
    out_perm = unflatten_points(
        net(flatten_points(unflatten_points(x, N_FEAT)[:, perm]), t, cond), N_FEAT
    )
    assert torch.allclose(out_perm, out[:, perm], atol=1e-5)


def test_pointcloud_preprocessing_round_trip():
    count = torch.tensor([10.0, 4.0, 0.0])
    pts = torch.randn(3, N_POINTS, N_FEAT) * 5 + 2
    for b, n in enumerate(count.long()):
        pts[b, n:] = 0
    cond = torch.stack([torch.tensor([100.0, 200.0, 300.0]), count], dim=1)
    pre = PointCloudPreprocessing(N_POINTS * N_FEAT, 2, N_FEAT)
    pre.fit(flatten_points(pts), cond)
    x, c = pre.transform(flatten_points(pts), cond)
    assert torch.equal(c[:, -1], count)  # the count passes through raw
    assert torch.allclose(pre.inverse(x, cond), flatten_points(pts), atol=1e-4)
    assert torch.all(unflatten_points(x, N_FEAT)[1, 4:] == 0)


def test_voxel_transformer_shapes_and_layer_energy_conditioning():
    sizes = [8, 0, 24, 4]
    config = VoxelTransformerConfig(
        layer_sizes=sizes, width=32, depth=2, heads=4, embed_dim=16, layer_energy_cond=True
    )
    net = config.build(sum(sizes) + 5, 1 + len(sizes))  # 5 extra energy coordinates
    x, t = torch.randn(5, 41), torch.rand(5)
    cond = torch.randn(5, 5)
    out = net(x, t, cond)
    assert out.shape == (5, 41) and torch.isfinite(out).all()
    cond2 = cond.clone()
    cond2[:, 3] += 1.0  # energy of layer 2 changes the output
    assert not torch.allclose(net(x, t, cond2), out)
    with pytest.raises(ValueError, match="layer_sizes"):
        config.build(35, 5)  # fewer coordinates than voxels
