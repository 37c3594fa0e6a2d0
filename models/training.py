"""`fit`: train a model of any kind from physical-unit data (the entry point farm's workers call).

A single-stage model fits its preprocessing, then `models.loop.train_loop` optimises its process's
loss; a two-stage shower model trains both stages jointly in the same loop
(`models.two_stage.training`). Metrics and checkpoints leave through the injected `report`.
"""

from __future__ import annotations

from typing import Any

import torch

from models.config import (
    AnyModelConfig,
    ModelConfig,
    OptimConfig,
    PointShowerConfig,
    SetModelConfig,
    TwoStageConfig,
)
from models.data import TrainData
from models.generative import GenerativeModel
from models.loop import Report, train_model
from models.objectives import process_objective
from models.points import PointShowerModel, fit_points
from models.set_model import SetModel, fit_sets
from models.stream import StreamData, prepared_inputs
from models.two_stage.model import TwoStageModel
from models.two_stage.training import fit_two_stage


def fit(
    config: AnyModelConfig,
    optim: OptimConfig,
    train: TrainData | StreamData,
    val: TrainData,
    report: Report,
    *,
    device: str | torch.device = "cpu",
    resume_from: str | None = None,
    card: dict[str, Any] | None = None,
) -> GenerativeModel | TwoStageModel | PointShowerModel | SetModel:
    """Train a model; returns it with EMA weights (what the checkpoints hold).

    Args:
        config: A `ModelConfig` (one network and process) or a `TwoStageConfig`.
        optim: Optimiser, schedule, EMA, precision and checkpoint settings.
        train: Training data in physical units (showers [N, voxels], E_inc [N, 1] for showers),
            or a `StreamData` for data that does not fit in memory (single- and two-stage
            shower models).
        val: Validation data in physical units.
        report: report(metrics, checkpoint_dir) once per epoch.
        device: Training device.
        resume_from: A checkpoint directory of this run to continue from (bit for bit).
        card: Extra model-card entries (provenance) for every checkpoint.

    Returns:
        The trained model in eval mode.
    """
    if isinstance(train, StreamData) and not isinstance(config, ModelConfig | TwoStageConfig):
        raise ValueError(
            "streamed training data supports single-stage and two-stage shower models, not "
            f"{type(config).__name__} (train it from memory: data.loading: memory)"
        )
    if isinstance(config, TwoStageConfig):
        return fit_two_stage(
            config, optim, train, val, report, device=device, resume_from=resume_from, card=card
        )
    if isinstance(config, PointShowerConfig):
        return fit_points(
            config, optim, train, val, report, device=device, resume_from=resume_from, card=card
        )
    if isinstance(config, SetModelConfig):
        return fit_sets(
            config, optim, train, val, report, device=device, resume_from=resume_from, card=card
        )
    return _fit_single_stage(config, optim, train, val, report, device, resume_from, card)


def _fit_single_stage(
    config: ModelConfig,
    optim: OptimConfig,
    train: TrainData | StreamData,
    val: TrainData,
    report: Report,
    device: str | torch.device,
    resume_from: str | None,
    card: dict[str, Any] | None,
) -> GenerativeModel:
    device = torch.device(device)
    torch.manual_seed(optim.seed)
    sample = train.fit_sample if isinstance(train, StreamData) else train
    model = GenerativeModel(config, sample.x.shape[1], sample.cond.shape[1])
    batches = prepared_inputs(model.preprocessing, train, val, optim.seed)
    return train_model(
        model,
        lambda: process_objective(model),
        *batches,
        optim,
        report,
        device=device,
        resume_from=resume_from,
        card=card,
    )


__all__ = ["Report", "TrainData", "fit"]
