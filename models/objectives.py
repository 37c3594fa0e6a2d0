"""The objective of a generative model for `models.loop.train_loop`: its process's own loss.

Flow matching, score matching, EDM or consistency training, on the model's network.
"""

from __future__ import annotations

from models.generative import GenerativeModel
from models.loop import Objective


def process_objective(model: GenerativeModel) -> Objective:
    """Optimise `model.net` on `model.process.loss` over batches (x, cond)."""
    return Objective(
        trainable=model.net,
        loss=lambda net, batch, generator: model.process.loss(net, batch[0], batch[1], generator),
    )


__all__ = ["process_objective"]
