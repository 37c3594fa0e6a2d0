"""Point-cloud networks are permutation equivariant and ignore padded points; the voxel
transformer's patches are exact, it scales to DS2 and DS3, and its blocks start as the identity."""

from __future__ import annotations

import pytest
import torch

from models.networks.epic import EPiCConfig
from models.networks.pointcloud import PointCloudTransformerConfig, flatten_points, unflatten_points
from models.networks.voxel import PatchLayout, VoxelTransformerConfig
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


def test_patch_layout_round_trip_and_positions():
    # layer 0: 4 angular x 3 radial, layer 1: 2 x 5; patches of 2 x 2 (radial padded)
    layout = PatchLayout([(0, 4, 3), (1, 2, 5)], (2, 2))
    assert layout.n_tokens == 2 * 2 + 1 * 3 and layout.patch_size == 4
    x = torch.arange(1.0, 23.0).reshape(1, 22)
    tokens = layout.tokens(x)
    assert sorted(v for v in tokens.flatten().tolist() if v) == x.flatten().tolist()
    assert int((tokens == 0).sum()) == 7 * 4 - 22  # padding
    assert torch.equal(layout.voxels(tokens), x)
    # voxel (layer 0, angular 3, radial 2) = index 11: token (1, 1) of layer 0, slot (1, 0)
    assert tokens[0, 3, 2] == x[0, 11]
    assert layout.token_layer.tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert layout.token_angular.tolist() == [0, 0, 1, 1, 0, 0, 0]
    assert layout.token_radial.tolist() == [0, 1, 0, 1, 0, 1, 2]
    whole = PatchLayout([(0, 4, 3), (1, 2, 5)], None)  # one token per layer
    assert whole.n_tokens == 2 and torch.equal(whole.voxels(whole.tokens(x)), x)


@pytest.mark.parametrize(
    ("layers", "patch", "tokens"),
    [((16, 9), (4, 3), 45 * 4 * 3), ((50, 18), (10, 6), 45 * 5 * 3)],
    ids=["ds2", "ds3"],
)
def test_voxel_transformer_scales_to_ds2_and_ds3(layers, patch, tokens):
    config = VoxelTransformerConfig(
        layer_shapes=[layers] * 45, patch=patch, width=16, depth=1, heads=2, embed_dim=8
    )
    n_voxels = 45 * layers[0] * layers[1]
    net = config.build(n_voxels, 46)
    assert net.layout.n_tokens == tokens
    x = torch.randn(2, n_voxels)
    out = net(x, torch.rand(2), torch.randn(2, 46))
    assert out.shape == x.shape and torch.isfinite(out).all()


@pytest.mark.parametrize("position", ["learned", "sinusoidal"])
def test_voxel_transformer_blocks_start_as_identity(position):
    """adaLN-Zero: at initialisation a token's output depends only on its own patch and layer
    energy; once the gates open, attention mixes layers."""
    torch.manual_seed(0)
    shapes = [(2, 3), (4, 3), (1, 2)]
    config = VoxelTransformerConfig(
        layer_shapes=shapes,
        patch=(2, 3),
        width=16,
        depth=2,
        heads=2,
        embed_dim=8,
        layer_energy_cond=True,
        position=position,
    )
    net = config.build(20, 4).eval()
    x, t, cond = torch.randn(3, 20), torch.rand(3), torch.randn(3, 4)
    out = net(x, t, cond)
    bumped = cond.clone()
    bumped[:, 2] += 1.0  # the energy of layer 1 (voxels 6..17)
    changed = (net(x, t, bumped) != out).any(0)
    assert changed[6:18].all() and not changed[:6].any() and not changed[18:].any()
    with torch.no_grad():
        for block in net.blocks:
            block.modulation[1].weight.normal_(0, 0.5)
    out = net(x, t, cond)
    assert (net(x, t, bumped) != out).any(0)[:6].all()
    assert (net(x, t + 0.1, cond) != out).any()  # time enters through the modulation


def test_voxel_transformer_config_checks():
    with pytest.raises(ValueError, match="layer_shapes"):
        VoxelTransformerConfig().build(20, 1)
    with pytest.raises(ValueError, match="multiple of heads"):
        VoxelTransformerConfig(layer_sizes=[4], width=18, heads=4)
    with pytest.raises(ValueError, match="disagree"):
        VoxelTransformerConfig(layer_shapes=[(2, 3)], layer_sizes=[5])
    with pytest.raises(ValueError, match="patch needs layer_shapes"):
        VoxelTransformerConfig(layer_sizes=[6], patch=(1, 2))
