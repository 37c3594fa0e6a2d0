"""Set model contract: preprocessing round trip, fit, checkpoint reload, multiplicities and masks."""

from __future__ import annotations

import shutil

import torch

from models.config import OptimConfig, SetModelConfig, parse_model_config
from models.data import TrainData
from models.loading import load_model
from models.set_preprocessing import SetPreprocessing, SetPreprocessingConfig, particle_type
from models.training import fit

T, R = 12, 10


def padded_sets(n: int, seed: int) -> TrainData:
    """Physical padded sets: truth (pT, eta, phi, pdg, charge), reco (pT, eta, phi, class)."""
    g = torch.Generator().manual_seed(seed)
    nt = torch.randint(1, T + 1, (n,), generator=g)
    nr = torch.clamp(nt - torch.randint(0, 3, (n,), generator=g), 0, R)
    truth = torch.zeros(n, T, 5)
    truth[..., 0] = torch.exp(torch.randn(n, T, generator=g))
    truth[..., 1] = torch.randn(n, T, generator=g) * 2
    truth[..., 2] = (torch.rand(n, T, generator=g) * 2 - 1) * torch.pi
    pdg = torch.tensor([211.0, -211.0, 22.0, 11.0, 2112.0, 13.0])
    truth[..., 3] = pdg[torch.randint(0, 6, (n, T), generator=g)]
    truth[..., 4] = torch.where(
        torch.isin(truth[..., 3].abs(), torch.tensor([22.0, 2112.0])), 0.0, 1.0
    )
    truth *= (torch.arange(T)[None] < nt[:, None]).unsqueeze(-1)
    reco = torch.zeros(n, R, 4)
    reco[..., :3] = truth[:, :R, :3] * torch.tensor([1.05, 1.0, 1.0])
    reco[..., 3] = particle_type(truth[:, :R, 3], truth[:, :R, 4]).float()
    reco *= (torch.arange(R)[None] < nr[:, None]).unsqueeze(-1)
    return TrainData(reco.reshape(n, -1), truth.reshape(n, -1))


def test_preprocessing_inverts_transform_on_valid_slots_and_zeros_padding():
    data = padded_sets(64, 0)
    pre = SetPreprocessing(SetPreprocessingConfig(), T, R)
    pre.fit(data.x, data.cond)
    tokens, truth_mask, reco, cls, mask, event = pre.transform(data.x, data.cond)
    assert tokens.shape == (64, T, 9) and event.shape == (64, 3)
    assert (tokens[~truth_mask] == 0).all() and (reco[~mask] == 0).all()
    assert abs(float(reco[mask].mean())) < 0.2  # standardised over valid particles
    back = pre.inverse(reco, cls, mask)
    torch.testing.assert_close(back, data.x, atol=1e-4, rtol=1e-4)


def test_tiny_model_trains_reloads_and_generates_the_event_models_multiplicities(tmp_path):
    config = parse_model_config({"kind": "sets", "width": 16, "heads": 2, "layers": 1})
    assert isinstance(config, SetModelConfig)
    optim = OptimConfig(epochs=2, batch_size=32, warmup_steps=2)
    saved = []

    def report(metrics, ckpt):
        if ckpt:
            shutil.copytree(ckpt, tmp_path / "ckpt", dirs_exist_ok=True)
            saved.append(metrics)

    model = fit(config, optim, padded_sets(128, 1), padded_sets(32, 2), report)
    assert saved and torch.isfinite(torch.tensor(saved[-1]["val_loss"]))
    cond = padded_sets(16, 3).cond
    x = model.generate(cond, nfe=2, sampler="euler", generator=torch.Generator().manual_seed(5))
    reloaded = load_model(tmp_path / "ckpt")
    x2 = reloaded.generate(cond, nfe=2, sampler="euler", generator=torch.Generator().manual_seed(5))
    assert torch.equal(x, x2)

    tokens, truth_mask = model.preprocessing.truth_tokens(cond)
    g = torch.Generator().manual_seed(5)
    n, _ = model.flow.event.sample(tokens, truth_mask, 2, "euler", generator=g)
    sets = x.reshape(16, R, 4)
    valid = sets[..., 0] > 0
    assert torch.equal(valid.sum(1), n)  # the event model's multiplicities, exactly
    assert torch.equal(valid, torch.arange(R)[None] < n[:, None])  # valid slots first
    assert (sets[~valid] == 0).all()  # padded slots stay empty
    assert ((sets[..., 3][valid] >= 0) & (sets[..., 3][valid] < 5)).all()
    assert (sets[..., 2].abs() <= torch.pi + 1e-6).all()
