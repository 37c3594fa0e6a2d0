"""Training data in physical units, as the training loop and distillation take it."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class TrainData:
    """Training or validation data in physical units: x [N, D], cond [N, C]."""

    x: Tensor
    cond: Tensor

    def __len__(self) -> int:
        """Number of events."""
        return self.x.shape[0]


__all__ = ["TrainData"]
