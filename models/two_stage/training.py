"""Joint training of both stages of a two-stage shower model in the one training loop.

The shape stage trains on the true layer energies (teacher forcing), so the stages are
independent problems; `models.loop.joint_objective` sums their losses, clips each network's
gradient on its own and reports `train_loss_energy`, `val_loss_shape`, ... beside the sums. One
epoch counter, one checkpoint (both stages) and one resume state serve farm's report contract.
"""

from __future__ import annotations

from typing import Any

import torch

from models.config import OptimConfig, TwoStageConfig
from models.data import TrainData
from models.generative import GenerativeModel
from models.loop import Report, joint_objective, seeded_generator, train_model
from models.objectives import process_objective
from models.two_stage.model import TwoStageModel

STAGE_STREAMS = {"energy": 10, "shape": 20}
"""Random streams of each stage's preprocessing: fit = s, train transform = s + 1, val = s + 2."""


def prepared_stage_data(
    model: TwoStageModel,
    train: TrainData,
    val: TrainData | None,
    seed: int,
    stages: tuple[str, ...] = ("energy", "shape"),
    fit: bool = True,
) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...] | None]:
    """Network-space (x, c) of each stage in order, concatenated: (x_e, c_e, x_s, c_s) for both.

    With `fit`, each stage's preprocessing is first fitted on its training data.
    """
    per_train = dict(zip(("energy", "shape"), model.stage_data(train), strict=True))
    per_val = dict(zip(("energy", "shape"), model.stage_data(val), strict=True)) if val else None
    train_out: list[torch.Tensor] = []
    val_out: list[torch.Tensor] = []
    for name in stages:
        stage: GenerativeModel = getattr(model, name)
        s, data = STAGE_STREAMS[name], per_train[name]
        if fit:
            stage.preprocessing.fit(data.x, data.cond, generator=seeded_generator(seed, s))
        train_out += stage.preprocessing.transform(data.x, data.cond, seeded_generator(seed, s + 1))
        if per_val is not None:
            v = per_val[name]
            val_out += stage.preprocessing.transform(v.x, v.cond, seeded_generator(seed, s + 2))
    return tuple(train_out), (tuple(val_out) if per_val is not None else None)


def fit_two_stage(
    config: TwoStageConfig,
    optim: OptimConfig,
    train: TrainData,
    val: TrainData,
    report: Report,
    *,
    device: str | torch.device = "cpu",
    resume_from: str | None = None,
    card: dict[str, Any] | None = None,
) -> TwoStageModel:
    """Train both stages on showers [N, V] and E_inc [N, 1]; same contract as `fit`."""
    device = torch.device(device)
    torch.manual_seed(optim.seed)
    model = TwoStageModel(config, train.x.shape[1], train.cond.shape[1])
    train_batch, val_batch = prepared_stage_data(model, train, val, optim.seed)
    return train_model(
        model,
        lambda: joint_objective(
            {"energy": process_objective(model.energy), "shape": process_objective(model.shape)}
        ),
        train_batch,
        val_batch,
        optim,
        report,
        device=device,
        resume_from=resume_from,
        card=card,
    )


__all__ = ["fit_two_stage", "prepared_stage_data"]
