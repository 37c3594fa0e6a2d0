"""A small model trained on a 2-D two-mode mixture samples the right mode weights; distillation
to a 1-step consistency student keeps them and saves a loadable checkpoint."""

from __future__ import annotations

import shutil

import pytest
import torch

from models.config import ModelConfig, OptimConfig
from models.distill import DistillConfig, distill
from models.loading import load_model
from models.training import TrainData, fit

WEIGHT = 0.7  # of the mode at x0 = +2


def _mixture(n: int, seed: int) -> TrainData:
    gen = torch.Generator().manual_seed(seed)
    right = torch.rand(n, generator=gen) < WEIGHT
    centre = torch.where(right, 2.0, -2.0)
    x = torch.stack([centre, torch.zeros(n)], 1) + 0.3 * torch.randn(n, 2, generator=gen)
    return TrainData(x=x, cond=torch.zeros(n, 0))


def _check_modes(x: torch.Tensor, tol: float, near: float = 0.9):
    frac = (x[:, 0] > 0).float().mean().item()
    assert frac == pytest.approx(WEIGHT, abs=tol), frac
    on_mode = ((x[:, 0].abs() - 2).abs() < 1.0).float().mean().item()
    assert on_mode > near, on_mode


@pytest.fixture(scope="module")
def teacher():
    config = ModelConfig.model_validate(
        {
            "network": {
                "kind": "mlp",
                "width": 64,
                "depth": 2,
                "embed_dim": 32,
                "fourier_scale": 1.0,
            },
            "process": {"kind": "edm"},
            "preprocessing": {"kind": "standard"},
        }
    )
    optim = OptimConfig(epochs=25, batch_size=256, lr=3e-3, warmup_steps=20, ema_decay=0.99)
    reports = []
    model = fit(
        config, optim, _mixture(8192, 0), _mixture(1024, 1), lambda m, ckpt=None: reports.append(m)
    )
    assert reports[-1]["train_loss"] < reports[0]["train_loss"]
    return model


def test_trained_model_samples_mode_weights(teacher):
    x = teacher.generate(
        torch.zeros(4000, 0), sampler="heun", nfe=39, generator=torch.Generator().manual_seed(0)
    )
    _check_modes(x, tol=0.04)


def test_consistency_distillation_one_step(teacher, tmp_path):
    saved = tmp_path / "student"
    metrics = []

    def report(m, ckpt=None):
        metrics.append(m)
        if ckpt is not None:
            shutil.copytree(ckpt, saved, dirs_exist_ok=True)

    optim = OptimConfig(epochs=12, batch_size=256, lr=1e-3, warmup_steps=0, ema_decay=0.99)
    student = distill(
        teacher, DistillConfig(n_steps=18), optim, _mixture(8192, 2), report, val=_mixture(512, 3)
    )
    assert {"train_loss", "val_loss"} <= set(metrics[-1])
    loaded = load_model(saved)
    assert loaded.config.process.kind == "consistency" and loaded.default_sampler == "consistency"
    gen = torch.Generator().manual_seed(0)
    one = loaded.generate(torch.zeros(4000, 0), nfe=1, generator=gen)
    _check_modes(one, tol=0.08, near=0.8)
    two = student.generate(torch.zeros(4000, 0), nfe=2, generator=gen)
    _check_modes(two, tol=0.08, near=0.8)
