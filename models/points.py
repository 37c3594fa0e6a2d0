"""A point-cloud shower model (CaloClouds, arXiv:2305.04847): the hit count, then the hits.

`Cardinality` draws n given E_inc; the hits model is a complete `GenerativeModel` (EPiC or the
point-cloud transformer over [B, n_max * 4] padded clouds, masks from the count in its last
condition column, any process and sampler, consistency distillation) generating (x, y, layer, E)
per hit given [E_inc, n]. With the count model's `energy`, it also draws the visible energy
E_sum with the count and the hit energies are scaled to sum to it (CaloClouds' calibration).
`generate` returns padded clouds in physical units with E = 0 on padding and on hits whose
energy comes back non-positive (removed: callers keep E > 0 only).
One state dict (`cardinality.*`, `hits.*`), one checkpoint folder, one `load_model`.
`UnrolledPoints` is `generate` on given noise with the hits sampler unrolled (for farm export).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from models.config import POINT_FEATURES, OptimConfig, PointShowerConfig
from models.data import TrainData
from models.generative import GenerativeModel
from models.loop import Report, prepare_batches, train_model
from models.objectives import process_objective
from models.unrolled import UnrolledSampler


class PointShowerModel(nn.Module):
    """Cardinality + hits; `net` is the hits model's network (what campaigns compile)."""

    def __init__(self, config: PointShowerConfig, dim: int, cond_dim: int = 1):
        """A model for clouds of dim / 4 hit slots conditioned on E_inc (`cond_dim` must be 1)."""
        super().__init__()
        if dim % POINT_FEATURES:
            raise ValueError(f"dim {dim} is not a multiple of {POINT_FEATURES} hit features")
        if cond_dim != 1:
            raise ValueError(
                f"a point-cloud shower model is conditioned on E_inc alone, got {cond_dim}"
            )
        self.config = config
        self.dim, self.cond_dim = dim, cond_dim
        self.n_max = dim // POINT_FEATURES
        self.cardinality = config.cardinality.build(self.n_max)
        self.hits = GenerativeModel(config.hits, dim, 2)

    @property
    def net(self) -> nn.Module:
        """The hits model's network."""
        return self.hits.net

    def __setattr__(self, name: str, value: Any) -> None:
        """`model.net = torch.compile(model.net)` replaces the hits model's network."""
        if name == "net":
            self.hits.net = value
        else:
            super().__setattr__(name, value)

    @property
    def default_sampler(self) -> str:
        """The hits model's default sampler."""
        return self.hits.default_sampler

    @torch.no_grad()
    def generate(
        self,
        cond: Tensor,
        *,
        counts: Tensor | None = None,
        generator: torch.Generator | None = None,
        **kwargs: Any,
    ) -> Tensor:
        """Padded clouds [B, n_max * 4] (x, y, layer, E) for E_inc `cond` [B, 1] in MeV.

        Counts come from the cardinality model unless given; `kwargs` (sampler, nfe, batch_size,
        autocast_dtype, options) go to the hits model. Hits with E <= 0 come back as all zeros.
        """
        e_inc = cond[:, :1].float()
        drawn, e_sum = self.cardinality.sample_totals(e_inc, generator)
        counts = drawn if counts is None else counts
        c = torch.cat([e_inc, counts.reshape(-1, 1).to(e_inc)], dim=1)
        x = self.hits.generate(c, generator=generator, **kwargs)
        return self.finish(x, e_sum)

    def from_noise(
        self, z: Tensor, z_count: Tensor, cond: Tensor, *, sampler: str, nfe: int, options: dict
    ) -> tuple[Tensor, Tensor]:
        """(`generate`'s clouds, the drawn counts) for given noise: hits z, totals z_count [2, B]."""
        e_inc = cond[:, :1].float()
        counts, e_sum = self.cardinality.totals_from_noise(e_inc, z_count)
        c = torch.cat([e_inc, counts.reshape(-1, 1).to(e_inc)], dim=1)
        x = self.hits.from_noise(z, c, sampler=sampler, nfe=nfe, options=options)
        return self.finish(x, e_sum), counts

    def finish(self, x: Tensor, e_sum: Tensor | None) -> Tensor:
        """Generated hits [B, n_max * 4]: E <= 0 zeroed, the rest calibrated to e_sum if given."""
        pts = x.reshape(x.shape[0], self.n_max, POINT_FEATURES)
        keep = pts[..., -1:] > 0
        pts = torch.where(keep, pts, torch.zeros_like(pts))
        if e_sum is not None:
            e = calibrated(pts[..., -1], e_sum.to(pts.device))
            pts = torch.cat([pts[..., :-1], e.unsqueeze(-1)], dim=-1)
        return pts.reshape(x.shape[0], -1)


def calibrated(e: Tensor, e_sum: Tensor) -> Tensor:
    """Hit energies [B, N] scaled so each shower's sum is e_sum [B] (CaloClouds' calibration)."""
    total = e.double().sum(1, keepdim=True)
    scale = torch.where(total > 0, e_sum.double().reshape(-1, 1) / total.clamp_min(1e-300), 1.0)
    return (e.double() * scale).to(e.dtype)


def point_stage_data(data: TrainData) -> tuple[Tensor, Tensor, Tensor]:
    """(counts (N,), E_inc (N,), E_sum (N,)) of training data whose cond is [E_inc, n]."""
    e = data.x.reshape(data.x.shape[0], -1, POINT_FEATURES)[..., -1].double()
    return data.cond[:, 1].round(), data.cond[:, 0], e.sum(1)


def fit_points(
    config: PointShowerConfig,
    optim: OptimConfig,
    train: TrainData,
    val: TrainData,
    report: Report,
    *,
    device: str | torch.device = "cpu",
    resume_from: str | None = None,
    card: dict[str, Any] | None = None,
) -> PointShowerModel:
    """Fit the count model (closed form), then train the hits model; same contract as `fit`.

    `train.x` holds padded clouds [N, n_max * 4] (valid hits first), `train.cond` [E_inc, n].
    """
    device = torch.device(device)
    torch.manual_seed(optim.seed)
    model = PointShowerModel(config, train.x.shape[1], 1)
    model.cardinality.fit(*point_stage_data(train))
    batches = prepare_batches(model.hits.preprocessing, train, val, optim.seed)
    return train_model(
        model,
        lambda: process_objective(model.hits),
        *batches,
        optim,
        report,
        device=device,
        resume_from=resume_from,
        card=card,
    )


class UnrolledPoints(nn.Module):
    """forward(z [B, n_max * 4], z_count [B, 2], cond [B, 1]) -> (hits, mask, counts).

    hits [B, n_max, 4] (x mm, y mm, layer, E MeV) are `PointShowerModel.generate`'s for that
    noise (E <= 0 and padding zeroed), mask [B, n_max] is E > 0, counts [B] the drawn counts.
    """

    def __init__(
        self,
        model: PointShowerModel,
        sampler: str | None = None,
        nfe: int | None = None,
        options: dict[str, Any] | None = None,
    ):
        """Unroll the hits model's `sampler` at `nfe`; ValueError if it cannot be unrolled."""
        super().__init__()
        self.hits = UnrolledSampler(model.hits, sampler, nfe, options)
        self.sampler, self.nfe, self.options = self.hits.sampler, self.hits.nfe, self.hits.options
        self.model = model.eval()

    @property
    def noise_dim(self) -> int:
        """Width of the hits model's prior noise z (n_max * 4)."""
        return self.hits.noise_dim

    @torch.no_grad()
    def forward(self, z: Tensor, z_count: Tensor, cond: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(hits, mask, counts) from the prior noise for physical E_inc cond [B, 1]."""
        x, counts = self.model.from_noise(
            z, z_count.double().T, cond, sampler=self.sampler, nfe=self.nfe, options=self.options
        )
        hits = x.reshape(x.shape[0], self.model.n_max, POINT_FEATURES)
        return hits, hits[..., -1] > 0, counts


__all__ = ["PointShowerModel", "UnrolledPoints", "fit_points", "point_stage_data"]
