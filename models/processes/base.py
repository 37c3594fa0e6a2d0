"""The process contract: wraps net(x, t, cond) into what a sampler needs and owns the training loss."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from models.noise import rand, randn

__all__ = ["Net", "ProbabilityFlow", "Process", "rand", "randn"]

Net = Callable[[Tensor, Tensor, Tensor | None], Tensor]


@dataclass(frozen=True)
class ProbabilityFlow:
    """A process's probability-flow ODE dx/dt = drift(x, t), used for likelihoods.

    t is a 0-dim float64 tensor, from t_data (the data end) to t_prior, where
    x ~ N(0, prior_std^2 I).
    """

    drift: Callable[[Tensor, Tensor], Tensor]
    t_data: float
    t_prior: float
    prior_std: float


class Process(ABC):
    """One generative process (an SDE, EDM, or a flow): its loss and its samplers.

    `samplers` maps a sampler name to a pure function; `sample` draws the prior, builds the
    schedule for `nfe` network evaluations and calls that function.
    """

    name: str = ""
    samplers: tuple[str, ...] = ()
    default_sampler: str = ""
    unrollable: tuple[str, ...] = ()
    """Samplers that are a fixed function of the prior noise for a fixed NFE (`sample_from`)."""

    @abstractmethod
    def loss(
        self,
        net: nn.Module | Net,
        x: Tensor,
        cond: Tensor | None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Unreduced per-sample training loss, shape [B]."""

    def sample(
        self,
        net: nn.Module | Net,
        shape: tuple[int, ...],
        cond: Tensor | None,
        *,
        sampler: str,
        nfe: int,
        generator: torch.Generator | None,
        **options,
    ) -> Tensor:
        """Generate samples of `shape` in the network space: z ~ N(0, I), then `sample_from`."""
        self.check_sampler(sampler, nfe)
        device = cond.device if cond is not None else (generator.device if generator else "cpu")
        z = randn(tuple(shape), generator, device=device).to(device)
        return self.sample_from(
            net, z, cond, sampler=sampler, nfe=nfe, generator=generator, **options
        )

    @abstractmethod
    def sample_from(
        self,
        net: nn.Module | Net,
        z: Tensor,
        cond: Tensor | None,
        *,
        sampler: str,
        nfe: int,
        generator: torch.Generator | None = None,
        **options,
    ) -> Tensor:
        """Samples from standard-normal prior noise z in the network space (`sample` draws z)."""

    def unroll_refusal(self, sampler: str, nfe: int) -> str | None:
        """Why `sampler` at `nfe` is not a fixed function of the prior noise; None when it is."""
        if sampler in self.unrollable:
            return None
        allowed = ", ".join(self.unrollable) or "none"
        return (
            f"sampler {sampler!r} of process {self.name!r} cannot be unrolled for a fixed NFE "
            f"(adaptive, or draws noise while sampling); unrollable: {allowed}"
        )

    def check_sampler(self, sampler: str, nfe: int) -> None:
        """Raise ValueError for a sampler this process does not offer or a non-positive NFE."""
        if sampler not in self.samplers:
            raise ValueError(
                f"sampler {sampler!r} is not available for process {self.name!r}; "
                f"allowed: {', '.join(self.samplers)}"
            )
        if nfe < 1:
            raise ValueError(f"nfe must be >= 1, got {nfe}")
