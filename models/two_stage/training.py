"""Joint training of both stages of a two-stage shower model in the one training loop.

The shape stage trains on the true layer energies (teacher forcing), so the stages are
independent problems; `models.loop.joint_objective` sums their losses, clips each network's
gradient on its own and reports `train_loss_energy`, `val_loss_shape`, ... beside the sums. One
epoch counter, one checkpoint (both stages) and one resume state serve farm's report contract.
Streamed showers (`models.stream.StreamData`) are split into the stages batch by batch
(`StageStream`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from models.config import OptimConfig, TwoStageConfig
from models.data import BatchStream, TrainData
from models.generative import GenerativeModel
from models.loop import Report, joint_objective, seeded_generator, train_model
from models.objectives import process_objective
from models.stream import StreamData
from models.two_stage.model import TwoStageModel, stage_data

STAGES = ("energy", "shape")
"""The stages in the order their network-space tensors are concatenated in a batch."""

STAGE_STREAMS = {"energy": 10, "shape": 20}
"""Random streams of each stage's preprocessing: fit = s, train transform = s + 1, val = s + 2."""


def fit_stage_preprocessing(
    model: TwoStageModel,
    parts: tuple[TrainData, TrainData],
    seed: int,
    stages: tuple[str, ...] = STAGES,
) -> None:
    """Fit each stage's preprocessing on its part (`model.stage_data`), random stream s."""
    per_stage = dict(zip(STAGES, parts, strict=True))
    for name in stages:
        stage: GenerativeModel = getattr(model, name)
        data = per_stage[name]
        stage.preprocessing.fit(
            data.x, data.cond, generator=seeded_generator(seed, STAGE_STREAMS[name])
        )


def transform_stages(
    preprocessing: dict[str, nn.Module],
    parts: tuple[TrainData, TrainData],
    generators: dict[str, torch.Generator],
) -> tuple[torch.Tensor, ...]:
    """Network-space (x, c) of each stage in `preprocessing`'s order, concatenated."""
    per_stage = dict(zip(STAGES, parts, strict=True))
    out: list[torch.Tensor] = []
    for name, pre in preprocessing.items():
        data = per_stage[name]
        out += pre.transform(data.x, data.cond, generators[name])
    return tuple(out)


def prepared_stage_data(
    model: TwoStageModel,
    train: TrainData,
    val: TrainData | None,
    seed: int,
    stages: tuple[str, ...] = STAGES,
    fit: bool = True,
) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...] | None]:
    """Network-space (x, c) of each stage in order, concatenated: (x_e, c_e, x_s, c_s) for both.

    With `fit`, each stage's preprocessing is first fitted on its training data.
    """
    parts = model.stage_data(train)
    if fit:
        fit_stage_preprocessing(model, parts, seed, stages)
    prepared_val = None if val is None else _prepared(model, model.stage_data(val), seed, 2, stages)
    return _prepared(model, parts, seed, 1, stages), prepared_val


def _prepared(
    model: TwoStageModel,
    parts: tuple[TrainData, TrainData],
    seed: int,
    offset: int,
    stages: tuple[str, ...] = STAGES,
) -> tuple[torch.Tensor, ...]:
    """`transform_stages` with the model's preprocessing and streams (seed, s + offset)."""
    pre = {name: getattr(model, name).preprocessing for name in stages}
    gens = {n: seeded_generator(seed, STAGE_STREAMS[n] + offset) for n in stages}
    return transform_stages(pre, parts, gens)


class StageStream:
    """A physical-unit stream of showers as both stages' network-space batches, batch by batch.

    Transforms run on CPU copies of the fitted preprocessing (the model itself may move to the
    training device); batch i of (epoch, rank) draws from random streams (seed, s + 1, epoch,
    rank, i), so an epoch's batches are the same every time the stream is read.
    """

    def __init__(
        self,
        stream: BatchStream,
        model: TwoStageModel,
        seed: int,
        stages: tuple[str, ...] = STAGES,
    ):
        self.stream, self.seed = stream, seed
        self.n_events = stream.n_events
        self.preprocessing = {
            n: copy.deepcopy(getattr(model, n).preprocessing).cpu() for n in stages
        }
        self.layer_of_voxel = model.layer_of_voxel.detach().cpu()
        self.n_layers, self.threshold_mev = model.n_layers, model.threshold_mev
        self.layer_hits = model.layer_hits

    def batches(self, epoch: int, rank: int, batch_size: int) -> Iterator[tuple[torch.Tensor, ...]]:
        """(x_e, c_e, x_s, c_s) (the given stages') for each streamed batch of (epoch, rank)."""
        for i, (x, cond) in enumerate(self.stream.batches(epoch, rank, batch_size)):
            gens = {
                n: seeded_generator(self.seed, STAGE_STREAMS[n] + 1, epoch, rank, i)
                for n in self.preprocessing
            }
            with torch.no_grad():  # closed before the yield: the consumer keeps its grad mode
                parts = stage_data(
                    TrainData(x, cond),
                    self.layer_of_voxel,
                    self.n_layers,
                    self.threshold_mev,
                    self.layer_hits,
                )
                batch = transform_stages(self.preprocessing, parts, gens)
            yield batch


def stage_inputs(
    model: TwoStageModel,
    train: TrainData | StreamData,
    val: TrainData | None,
    seed: int,
    stages: tuple[str, ...] = STAGES,
    fit: bool = True,
) -> tuple[tuple[torch.Tensor, ...] | StageStream, tuple[torch.Tensor, ...] | None]:
    """The stages' network-space training input and val: a `StageStream` of a stream.

    A `StreamData` fits the preprocessing (with `fit`) on its subsample with the in-memory
    path's random streams; `TrainData` goes through `prepared_stage_data`.
    """
    if not isinstance(train, StreamData):
        return prepared_stage_data(model, train, val, seed, stages=stages, fit=fit)
    if fit:
        fit_stage_preprocessing(model, model.stage_data(train.fit_sample), seed, stages)
    prepared_val = None if val is None else _prepared(model, model.stage_data(val), seed, 2, stages)
    return StageStream(train.stream, model, seed, stages), prepared_val


def fit_two_stage(
    config: TwoStageConfig,
    optim: OptimConfig,
    train: TrainData | StreamData,
    val: TrainData,
    report: Report,
    *,
    device: str | torch.device = "cpu",
    resume_from: str | None = None,
    card: dict[str, Any] | None = None,
) -> TwoStageModel:
    """Train both stages on showers [N, V] and E_inc [N, 1] (or a stream); same contract as `fit`.

    A `StreamData` fits both preprocessings on its subsample with the in-memory path's random
    streams and feeds the loop from a `StageStream`.
    """
    device = torch.device(device)
    torch.manual_seed(optim.seed)
    sample = train.fit_sample if isinstance(train, StreamData) else train
    model = TwoStageModel(config, sample.x.shape[1], sample.cond.shape[1])
    train_batch, val_batch = stage_inputs(model, train, val, optim.seed)
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


__all__ = [
    "StageStream",
    "fit_stage_preprocessing",
    "fit_two_stage",
    "prepared_stage_data",
    "stage_inputs",
    "transform_stages",
]
