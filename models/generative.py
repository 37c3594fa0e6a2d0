"""A generative model: network + process + fitted preprocessing; generates in physical units."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from models.config import ModelConfig


class GenerativeModel(nn.Module):
    """Bundles net(x, t, cond), its process and its preprocessing; `state_dict` holds all tensors."""

    def __init__(self, config: ModelConfig, dim: int, cond_dim: int):
        super().__init__()
        self.config = config
        self.dim, self.cond_dim = dim, cond_dim
        self.preprocessing = config.preprocessing.build(dim, cond_dim)
        self.net = config.network.build(self.preprocessing.out_dim, cond_dim)
        self.process = config.process.build()
        self.process.check_sampler(self.default_sampler, config.sampler.nfe)

    @property
    def default_sampler(self) -> str:
        """The configured sampler name, or the process's default when the config leaves it None."""
        return self.config.sampler.name or self.process.default_sampler

    def loss(
        self,
        x: Tensor,
        c: Tensor,
        net: nn.Module | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Per-sample loss on preprocessed (x, c); `net` may be a DDP wrapper of self.net."""
        return self.process.loss(self.net if net is None else net, x, c, generator)

    @torch.no_grad()
    def generate(
        self,
        cond: Tensor,
        *,
        sampler: str | None = None,
        nfe: int | None = None,
        generator: torch.Generator | None = None,
        batch_size: int = 4096,
        autocast_dtype: torch.dtype | None = None,
        options: dict[str, Any] | None = None,
    ) -> Tensor:
        """Samples in physical units for physical conditions `cond` [B, cond_dim].

        `options` (sampler keyword arguments) default to the config's when the sampler is the
        configured one.
        """
        if sampler is None or sampler == self.default_sampler:
            options = {**self.config.sampler.options, **(options or {})}
        sampler = sampler or self.default_sampler
        nfe = nfe or self.config.sampler.nfe
        extra = options or {}  # only passed when non-empty: any Process.sample works
        device = next(self.net.parameters()).device
        outs = []
        for start in range(0, cond.shape[0], batch_size):
            c_phys = cond[start : start + batch_size].to(device)
            c = self.preprocessing.transform_cond(c_phys)
            with torch.autocast(
                device.type,
                dtype=autocast_dtype or torch.bfloat16,
                enabled=autocast_dtype is not None,
            ):
                x = self.process.sample(
                    self.net,
                    (c.shape[0], self.preprocessing.out_dim),
                    c,
                    sampler=sampler,
                    nfe=nfe,
                    generator=generator,
                    **extra,
                )
            outs.append(self.preprocessing.inverse(x.float(), c_phys))
        return torch.cat(outs) if outs else torch.empty(0, self.dim)
