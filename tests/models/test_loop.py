"""The one training loop: resume bit for bit, jointly trained networks train as if alone,
the schedule, and the report/checkpoint contract."""

from __future__ import annotations

import math
import shutil

import pytest
import torch
from torch import nn

from models.checkpoint import load_train_state, read_card
from models.config import ModelConfig, OptimConfig
from models.loop import Objective, joint_objective, lr_factor, train_loop
from models.training import TrainData, fit


def _data(n: int, seed: int) -> TrainData:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=gen) * torch.tensor([1.0, 2.0, 0.5]) + 1
    return TrainData(x, torch.rand(n, 1, generator=gen) + 1)


def test_lr_schedule():
    assert lr_factor(0, 4, 20, 0.1) == pytest.approx(0.25)
    assert lr_factor(3, 4, 20, 0.1) == pytest.approx(1.0)
    assert lr_factor(4, 4, 20, 0.1) == pytest.approx(1.0)
    assert lr_factor(12, 4, 20, 0.1) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 2)))
    assert lr_factor(20, 4, 20, 0.1) == pytest.approx(0.1)
    assert lr_factor(50, 4, 20, 0.1) == pytest.approx(0.1)


@pytest.mark.parametrize("process", ["edm", "flow_matching", "vp_sde"])
def test_fit_resume_is_bit_for_bit(tmp_path, process):
    config = ModelConfig.model_validate(
        {
            "network": {"kind": "mlp", "width": 16, "depth": 1, "embed_dim": 8},
            "process": {"kind": process},
            "preprocessing": {"kind": "standard"},
        }
    )
    optim = OptimConfig(epochs=4, batch_size=64, warmup_steps=3, checkpoint_every=2)
    saved = {}

    def report(metrics, checkpoint_dir=None):
        assert (checkpoint_dir is not None) == (metrics["epoch"] % 2 == 0)
        if checkpoint_dir is not None:
            saved[metrics["epoch"]] = shutil.copytree(
                checkpoint_dir, tmp_path / str(metrics["epoch"])
            )

    full = fit(config, optim, _data(512, 0), _data(128, 1), report)
    resumed_metrics = []
    resumed = fit(
        config,
        optim,
        _data(512, 0),
        _data(128, 1),
        lambda m, c=None: resumed_metrics.append(m),
        resume_from=str(saved[2]),
    )
    assert [m["epoch"] for m in resumed_metrics] == [3, 4]
    assert resumed_metrics[-1]["resumed_from_epoch"] == 2
    for key, value in full.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    card = read_card(saved[4])
    assert card["epoch"] == 4 and card["step"] == 32 and set(card["metrics"]) >= {"val_loss"}
    tensors, meta = load_train_state(saved[4])
    assert meta["epoch"] == 4 and any(k.startswith("raw.") for k in tensors)


class _Pair(nn.Module):
    """Two regression networks inside one saved model (config, dim, cond_dim for its card)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(3, 2), nn.Linear(3, 2)
        self.config, self.dim, self.cond_dim = ModelConfig(), 3, 0


def _regression(scale: float) -> callable:
    def loss(net, batch, generator=None):
        x, y = batch
        return scale * (net(x) - y).pow(2).mean(1)

    return loss


def _run(model: nn.Module, objective: Objective, batch, optim: OptimConfig) -> None:
    train_loop(model, objective, batch, None, optim, lambda m, c=None: None)


def test_joint_networks_train_as_if_alone():
    """Per-network clipping: a part whose gradients are 1e6 times larger does not slow the other."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 3, generator=gen)
    ya, yb = x @ torch.randn(3, 2, generator=gen), x @ torch.randn(3, 2, generator=gen)
    optim = OptimConfig(epochs=3, batch_size=32, warmup_steps=2, grad_clip=0.5)
    torch.manual_seed(1)
    joint = _Pair()
    alone_a, alone_b = _Pair(), _Pair()
    alone_a.load_state_dict(joint.state_dict())
    alone_b.load_state_dict(joint.state_dict())
    objective = joint_objective(
        {
            "a": Objective(joint.a, _regression(1.0)),
            "b": Objective(joint.b, _regression(1e6)),
        }
    )
    _run(joint, objective, (x, ya, x, yb), optim)
    _run(alone_a, Objective(alone_a.a, _regression(1.0)), (x, ya), optim)
    _run(alone_b, Objective(alone_b.b, _regression(1e6)), (x, yb), optim)
    for name, module in (("a", alone_a.a), ("b", alone_b.b)):
        for key, value in module.state_dict().items():
            assert torch.equal(getattr(joint, name).state_dict()[key], value), (name, key)
