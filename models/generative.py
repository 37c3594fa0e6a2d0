"""A generative model: network + process + fitted preprocessing; generates in physical units."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from models.config import ModelConfig
from models.noise import randn


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
        sampler, nfe, options = self.sampler_settings(sampler, nfe, options)
        device = next(self.net.parameters()).device
        outs = []
        for start in range(0, cond.shape[0], batch_size):
            c_phys = cond[start : start + batch_size].to(device)
            self.process.check_sampler(sampler, nfe)
            z = randn((c_phys.shape[0], self.preprocessing.out_dim), generator, device=device)
            x = self.from_noise(
                z.to(device),
                c_phys,
                sampler=sampler,
                nfe=nfe,
                options=options,
                generator=generator,
                autocast_dtype=autocast_dtype,
            )
            outs.append(x)
        return torch.cat(outs) if outs else torch.empty(0, self.dim)

    def sampler_settings(
        self, sampler: str | None, nfe: int | None, options: dict[str, Any] | None
    ) -> tuple[str, int, dict[str, Any]]:
        """(sampler, nfe, options) with the config's defaults filled in.

        `options` (sampler keyword arguments) default to the config's when the sampler is the
        configured one.
        """
        if sampler is None or sampler == self.default_sampler:
            options = {**self.config.sampler.options, **(options or {})}
        return sampler or self.default_sampler, nfe or self.config.sampler.nfe, options or {}

    def from_noise(
        self,
        z: Tensor,
        c_phys: Tensor,
        *,
        sampler: str,
        nfe: int,
        options: dict[str, Any],
        generator: torch.Generator | None = None,
        autocast_dtype: torch.dtype | None = None,
    ) -> Tensor:
        """Physical samples from prior noise z [B, out_dim] for physical conditions [B, cond_dim]."""
        c = self.preprocessing.transform_cond(c_phys)
        with torch.autocast(
            z.device.type,
            dtype=autocast_dtype or torch.bfloat16,
            enabled=autocast_dtype is not None,
        ):
            x = self.process.sample_from(
                self.net, z, c, sampler=sampler, nfe=nfe, generator=generator, **options
            )
        return self.preprocessing.inverse(x.float(), c_phys)
