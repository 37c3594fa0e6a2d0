"""Training data in physical units, as the training loop and distillation take it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from torch import Tensor


@dataclass
class TrainData:
    """Training or validation data in physical units: x [N, D], cond [N, C]."""

    x: Tensor
    cond: Tensor

    def __len__(self) -> int:
        """Number of events."""
        return self.x.shape[0]


@runtime_checkable
class BatchStream(Protocol):
    """Training batches that arrive one by one (a Ray Data shard, a file reader): `models.stream`."""

    n_events: int
    """Events in the whole training set (all ranks): fixes the steps per epoch."""

    def batches(self, epoch: int, rank: int, batch_size: int) -> Iterator[tuple[Tensor, ...]]:
        """This rank's batches of `batch_size` events for `epoch` (full batches only)."""
        ...


__all__ = ["BatchStream", "TrainData"]
