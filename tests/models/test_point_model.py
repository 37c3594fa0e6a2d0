"""Point-cloud shower model (models.points): count model, masks, checkpoints, 1-step student."""

from __future__ import annotations

import math

import pytest
import torch

from models.cardinality import Cardinality
from models.checkpoint import save_model
from models.config import OptimConfig, PointShowerConfig, parse_model_config
from models.data import TrainData
from models.distill import DistillConfig, distill
from models.loading import load_model
from models.points import PointShowerModel
from models.training import fit

N_MAX = 24


def _config(process: str = "flow_matching", log_e: bool = True) -> PointShowerConfig:
    return parse_model_config(
        {
            "kind": "point_showers",
            "hits": {
                "network": {
                    "kind": "epic",
                    "n_features": 4,
                    "width": 16,
                    "global_dim": 4,
                    "depth": 2,
                    "embed_dim": 8,
                },
                "process": {"kind": process},
                "preprocessing": {
                    "kind": "pointcloud",
                    "n_features": 4,
                    "log_features": [3] if log_e else [],
                },
                "sampler": {"nfe": 4},
            },
            "cardinality": {"degree": 1},
        }
    )


def _clouds(n: int, seed: int) -> TrainData:
    """Toy showers: count ~ lognormal growing with E, hits Gaussian, energies sum ~ 0.01 E."""
    g = torch.Generator().manual_seed(seed)
    e = torch.exp(torch.empty(n).uniform_(math.log(1e4), math.log(1e5), generator=g))
    log_n = 1.2 + 0.5 * torch.log(e / 1e4) + 0.1 * torch.randn(n, generator=g)
    counts = torch.exp(log_n).round().clamp(1, N_MAX)
    pts = torch.randn(n, N_MAX, 4, generator=g) * torch.tensor([10.0, 10.0, 5.0, 0.3])
    pts[..., 2] += 10.0
    pts[..., 3] = (0.01 * e / counts).unsqueeze(1) * torch.exp(pts[..., 3])
    valid = torch.arange(N_MAX) < counts.unsqueeze(1)
    pts = torch.where(valid.unsqueeze(-1), pts, torch.zeros_like(pts))
    return TrainData(pts.reshape(n, -1), torch.stack([e, counts], 1))


def test_cardinality_recovers_a_known_lognormal():
    g = torch.Generator().manual_seed(0)
    e = torch.exp(torch.empty(20_000, dtype=torch.float64).uniform_(9.0, 12.0, generator=g))
    mu = 3.0 + 0.4 * (torch.log(e) - 10.5)
    sigma = 0.05 + 0.02 * (torch.log(e) - 9.0)
    n = torch.exp(mu + sigma * torch.randn(e.shape, generator=g, dtype=torch.float64))
    card = Cardinality(degree=2, n_max=10**6)
    card.fit(n, e)
    got_mu, got_sigma = card.params(e)
    assert (got_mu - mu).abs().max() < 0.01
    assert ((got_sigma - sigma).abs() / sigma).max() < 0.1
    draws = card.sample(torch.full((4000,), math.exp(10.5)), torch.Generator().manual_seed(1))
    assert draws.dtype == torch.int64 and draws.min() >= 1
    assert torch.log(draws.double()).mean().item() == pytest.approx(3.0, abs=0.01)


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    optim = OptimConfig(epochs=2, batch_size=64, lr=2e-3, warmup_steps=5, ema_decay=0.9)
    model = fit(_config(), optim, _clouds(512, 1), _clouds(64, 2), lambda m, d: None)
    return model, optim


def test_generated_counts_follow_the_cardinality_model(trained):
    model, _ = trained
    assert isinstance(model, PointShowerModel)
    e = torch.full((600, 1), 3e4)
    out = model.generate(e, generator=torch.Generator().manual_seed(3)).reshape(600, N_MAX, 4)
    counts = (out[..., 3] > 0).sum(1).double()
    mu, sigma = model.cardinality.params(e)
    # log-count moments of the draws against the fitted lognormal (clipped at 1..N_MAX)
    assert torch.log(counts).mean().item() == pytest.approx(mu[0].item(), abs=0.03)
    assert torch.log(counts).std().item() == pytest.approx(sigma[0].item(), rel=0.2)
    # and the fitted lognormal against the toy's truth: log n = 1.2 + 0.5 log(3) (+- 0.1)
    assert mu[0].item() == pytest.approx(1.2 + 0.5 * math.log(3.0), abs=0.05)
    # padding beyond each shower's count is exactly zero (valid hits first)
    slot = torch.arange(N_MAX).unsqueeze(0)
    assert (out[slot >= counts.unsqueeze(1)] == 0).all()


def test_given_counts_and_non_positive_energies_removed(trained):
    model, optim = trained
    e = torch.full((8, 1), 2e4)
    counts = torch.tensor([1, 2, 3, 5, 8, 13, 21, 24])
    out = model.generate(e, counts=counts, generator=torch.Generator().manual_seed(0))
    assert ((out.reshape(8, N_MAX, 4)[..., 3] > 0).sum(1) == counts).all()
    # a linear energy feature can come back negative: those hits are removed (all zeros)
    linear = fit(_config(log_e=False), optim, _clouds(256, 4), _clouds(32, 5), lambda m, d: None)
    full = torch.full((200,), N_MAX)  # every slot is a generated hit
    pts = linear.generate(
        torch.full((200, 1), 1e4), counts=full, generator=torch.Generator().manual_seed(1)
    )
    pts = pts.reshape(200, N_MAX, 4)
    removed = pts[..., 3] <= 0
    assert removed.any() and (pts[removed] == 0).all()


def test_checkpoint_round_trip_and_one_step_student(trained, tmp_path):
    model, optim = trained
    save_model(model, tmp_path / "teacher")
    again = load_model(tmp_path / "teacher")
    assert isinstance(again, PointShowerModel) and again.config == model.config
    e = torch.full((16, 1), 5e4)
    a = model.generate(e, generator=torch.Generator().manual_seed(9))
    b = again.generate(e, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a, b)
    student = distill(
        model,
        DistillConfig(n_steps=6),
        optim.model_copy(update={"epochs": 1}),
        _clouds(128, 6),
        lambda m, d: None,
    )
    assert student.config.kind == "point_showers"
    assert student.config.hits.process.kind == "consistency" and student.config.sampler.nfe == 1
    torch.testing.assert_close(student.cardinality.mu_coef, model.cardinality.mu_coef)
    out = student.generate(e, generator=torch.Generator().manual_seed(2)).reshape(16, N_MAX, 4)
    assert torch.isfinite(out).all() and ((out[..., 3] > 0).sum(1) >= 1).all()
    save_model(student, tmp_path / "student")
    assert load_model(tmp_path / "student").config.hits.process.kind == "consistency"
