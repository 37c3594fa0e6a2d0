"""Streamed training data: batches that arrive from an iterator instead of tensors held in memory.

A `BatchStream` (`models.data`) yields physical-unit (x, cond) batches for one (epoch, rank);
`TransformedStream` maps them into network space with a fitted preprocessing, seeding its random
stream (dequantisation noise) from (seed, epoch, rank, batch) so the same epoch of the same stream
always gives the same network-space batches. `StreamData` is what `models.training.fit` takes in
place of `TrainData` when the training set does not fit in memory: a subsample to fit the
preprocessing on, and the stream itself. This module never imports Ray; farm supplies the stream.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from models.data import BatchStream, TrainData
from models.loop import Batch, prepare_batches, seeded_generator

TRANSFORM_STREAM = 2
"""The preprocessing's random stream for training data (fit = 1, train = 2, val = 3), as in memory."""


@dataclass
class StreamData:
    """A streamed training set: the stream, and the subsample its preprocessing is fitted on."""

    stream: BatchStream
    fit_sample: TrainData

    def __len__(self) -> int:
        """Number of training events (the stream's, not the subsample's)."""
        return self.stream.n_events


class TransformedStream:
    """A physical-unit stream mapped into network space by a fitted preprocessing, per batch.

    The transform runs on a CPU copy of the preprocessing, taken here: the model that owns the
    original may move to the training device, while streamed batches arrive on the CPU.
    """

    def __init__(self, stream: BatchStream, preprocessing: nn.Module, seed: int | None):
        self.stream, self.seed = stream, seed
        self.preprocessing = copy.deepcopy(preprocessing).cpu()
        self.n_events = stream.n_events

    def batches(self, epoch: int, rank: int, batch_size: int) -> Iterator[tuple[Tensor, ...]]:
        """Network-space batches: preprocessing.transform of each streamed (x, cond) batch."""
        for i, (x, cond) in enumerate(self.stream.batches(epoch, rank, batch_size)):
            streams = (TRANSFORM_STREAM, epoch, rank, i)
            generator = () if self.seed is None else (seeded_generator(self.seed, *streams),)
            with torch.no_grad():  # closed before the yield: the consumer keeps its grad mode
                batch = tuple(self.preprocessing.transform(x, cond, *generator))
            yield batch


def prepare_stream(
    preprocessing: nn.Module,
    train: StreamData,
    val: TrainData | None,
    seed: int | None,
    *,
    fit: bool = True,
) -> tuple[TransformedStream, Batch | None]:
    """Fit `preprocessing` on the stream's subsample (stream 1), transform val (3) and the stream.

    fit False: the preprocessing is already fitted (distillation copies the teacher's).
    """

    def stream(s: int) -> tuple[torch.Generator, ...]:
        return () if seed is None else (seeded_generator(seed, s),)

    if fit:
        preprocessing.fit(train.fit_sample.x, train.fit_sample.cond, *stream(1))
    prepared_val = None if val is None else preprocessing.transform(val.x, val.cond, *stream(3))
    return TransformedStream(train.stream, preprocessing, seed), prepared_val


def prepared_inputs(
    preprocessing: nn.Module,
    train: TrainData | StreamData,
    val: TrainData | None,
    seed: int | None,
    *,
    fit: bool = True,
) -> tuple[Batch | TransformedStream, Batch | None]:
    """Network-space training input and val: `prepare_stream` of a stream, else `prepare_batches`."""
    if isinstance(train, StreamData):
        return prepare_stream(preprocessing, train, val, seed, fit=fit)
    return prepare_batches(preprocessing, train, val, seed, fit=fit)


__all__ = ["BatchStream", "StreamData", "TransformedStream", "prepare_stream", "prepared_inputs"]
