"""Set model conditioned on the scattered electron: config, shapes, masks, training, condition."""

from __future__ import annotations

import shutil

import pytest
import torch

from models.config import OptimConfig, SetModelConfig, parse_model_config
from models.data import TrainData
from models.loading import load_model
from models.set_conditions import electron_features
from models.set_model import SetModel
from models.training import fit

R = 50


def electron_events(n: int, seed: int) -> TrainData:
    """Toy DIS: electron (E, pT, eta, phi); 2 reco candidates below E = 12 GeV, 9 above, at phi + pi."""
    g = torch.Generator().manual_seed(seed)
    e = 6.0 + 12.0 * torch.rand(n, generator=g)
    eta = -2.5 + 2.0 * torch.rand(n, generator=g)
    phi = (2 * torch.rand(n, generator=g) - 1) * torch.pi
    cond = torch.stack([e, e / torch.cosh(eta), eta, phi], dim=1)
    nr = torch.where(e > 12.0, 9, 2)
    reco = torch.zeros(n, R, 4)
    reco[..., 0] = torch.exp(torch.randn(n, R, generator=g))
    reco[..., 1] = torch.randn(n, R, generator=g)
    recoil = phi[:, None] + 2 * torch.pi + 0.3 * torch.randn(n, R, generator=g)  # back to back
    reco[..., 2] = torch.remainder(recoil, 2 * torch.pi) - torch.pi
    reco[..., 3] = torch.randint(0, 5, (n, R), generator=g).float()
    reco *= (torch.arange(R)[None] < nr[:, None]).unsqueeze(-1)
    return TrainData(reco.reshape(n, -1), cond)


def test_defaults_are_omitted_from_dumps_and_bad_settings_refused():
    assert "condition" not in SetModelConfig().model_dump()  # truth-set cards keep their hash
    assert "dis_kinematics" not in SetModelConfig().model_dump(mode="json")
    doc = {"kind": "sets", "condition": "scattered_electron", "dis_kinematics": True}
    assert parse_model_config(doc).model_dump(mode="json")["dis_kinematics"] is True
    with pytest.raises(ValueError, match="dis_kinematics: true needs condition"):
        SetModelConfig(dis_kinematics=True)
    with pytest.raises(ValueError, match="condition"):
        SetModelConfig(condition="jets")
    config = SetModelConfig(condition="scattered_electron")
    with pytest.raises(ValueError, match="takes 4 condition columns"):
        SetModel(config, R * 4, 7)
    assert SetModel(config.model_copy(update={"dis_kinematics": True}), R * 4, 7).truth_max == 0


def test_condition_features_are_periodic_in_phi():
    cond = torch.tensor([[10.0, 3.0, -1.5, torch.pi - 1e-4], [10.0, 3.0, -1.5, -torch.pi + 1e-4]])
    f = electron_features(cond, False)
    assert f.shape == (2, 5)
    torch.testing.assert_close(f[0], f[1], atol=1e-3, rtol=0)  # no seam at +-pi
    f7 = electron_features(torch.cat([cond, torch.tensor([[1e-3, 20.0, 0.5]] * 2)], 1), True)
    torch.testing.assert_close(f7[0, 5:], torch.tensor([-6.9078, 2.9957, 0.5]), atol=1e-4, rtol=0)


def test_tiny_electron_model_trains_respects_masks_and_follows_the_condition(tmp_path):
    config = parse_model_config(
        {"kind": "sets", "condition": "scattered_electron", "width": 16, "heads": 2, "layers": 1}
    )
    optim = OptimConfig(epochs=12, batch_size=64, lr=3e-3, warmup_steps=5)
    saved = []

    def report(metrics, ckpt):
        if ckpt:
            shutil.copytree(ckpt, tmp_path / "ckpt", dirs_exist_ok=True)
            saved.append(metrics)

    model = fit(config, optim, electron_events(512, 1), electron_events(64, 2), report)
    assert model.truth_max == 0 and model.reco_max == R
    assert saved and torch.isfinite(torch.tensor(saved[-1]["val_loss"]))

    cond = electron_events(200, 3).cond
    low, high = cond.clone(), cond.clone()
    low[:, 0], high[:, 0] = 8.0, 16.0  # same electrons but their energy
    low[:, 1], high[:, 1] = 8.0 / torch.cosh(cond[:, 2]), 16.0 / torch.cosh(cond[:, 2])

    def generate(m, c):
        return m.generate(c, nfe=4, sampler="euler", generator=torch.Generator().manual_seed(7))

    x_low, x_high = generate(model, low), generate(model, high)
    assert torch.equal(x_low, generate(model, low))  # seeded
    assert torch.equal(x_low, generate(load_model(tmp_path / "ckpt"), low))  # checkpoint reload
    for x in (x_low, x_high):
        sets = x.reshape(len(cond), R, 4)
        valid = sets[..., 0] > 0
        n = valid.sum(1)
        assert (n <= R).all()
        assert torch.equal(valid, torch.arange(R)[None] < n[:, None])  # valid slots first
        assert (sets[~valid] == 0).all()  # padded slots stay empty
        assert ((sets[..., 3][valid] >= 0) & (sets[..., 3][valid] < 5)).all()
    n_low = (x_low.reshape(-1, R, 4)[..., 0] > 0).sum(1).float().mean()
    n_high = (x_high.reshape(-1, R, 4)[..., 0] > 0).sum(1).float().mean()
    assert n_high > n_low + 3.0, (n_low, n_high)  # wanted 2 vs 9: the output follows E
    sets = x_high.reshape(-1, R, 4)
    valid = sets[..., 0] > 0
    recoil = torch.cos(sets[..., 2] - cond[:, 3:4])[valid].mean()
    assert recoil < -0.25, recoil  # candidates opposite the electron in phi (wanted -0.96)
