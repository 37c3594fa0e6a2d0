"""A set-to-set model with its preprocessing: the `fit` / `generate` / checkpoint contract for sets.

`SetModel` wraps `models.sets.SetToSetModel` (Parnassus, arXiv:2406.01620: event-level flow, then
reco tokens cross-attending to truth) and `SetPreprocessing`; it takes and returns physical
padded sets (cond (B, T * 5) truth, x (B, R * 4) reco, padded slots zero; with `condition:
scattered_electron` cond (B, 4 or 7), `models.set_conditions`), so `save_model`,
`load_model` and farm's generation treat it like every other model. One state dict
(`preprocessing.*`, `flow.*`), one checkpoint folder.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from models.config import OptimConfig, SetModelConfig
from models.data import TrainData
from models.loop import Objective, Report, prepare_batches, train_model
from models.set_conditions import ElectronPreprocessing, condition_dim
from models.set_preprocessing import (
    EVENT_DIM,
    SET_RECO,
    SET_TRUTH,
    TRUTH_TOKEN,
    SetPreprocessing,
)
from models.sets import SetFlowConfig, SetToSetModel

N_CLASSES = 5
"""Reco classes: charged hadron, electron, muon, neutral hadron, photon."""


class SetModel(nn.Module):
    """Physical padded truth sets -> physical padded reco sets (at most dim / 4 candidates)."""

    def __init__(self, config: SetModelConfig, dim: int, cond_dim: int):
        """A model for reco sets of dim / 4 slots given truth sets of cond_dim / 5 slots."""
        super().__init__()
        electron = config.condition == "scattered_electron"
        checks = [("dim", dim, SET_RECO)] + (
            [] if electron else [("cond_dim", cond_dim, SET_TRUTH)]
        )
        for what, size, per in checks:
            if size % per or size == 0:
                raise ValueError(f"{what} {size} is not a positive multiple of {per} features")
        if electron and cond_dim != condition_dim(config.dis_kinematics):
            raise ValueError(
                f"cond_dim {cond_dim}: a scattered-electron model takes "
                f"{condition_dim(config.dis_kinematics)} condition columns (E, pT, eta, phi"
                f"{', x, Q^2, y' if config.dis_kinematics else ''})"
            )
        self.config, self.dim, self.cond_dim = config, dim, cond_dim
        self.reco_max = dim // SET_RECO
        self.truth_max = 0 if electron else cond_dim // SET_TRUTH
        """Truth slots of a truth-set model (0: conditioned on the scattered electron)."""
        if electron:
            self.preprocessing = ElectronPreprocessing(
                config.preprocessing, self.reco_max, config.dis_kinematics
            )
            token_dim = self.preprocessing.token_dim
        else:
            self.preprocessing = SetPreprocessing(
                config.preprocessing, self.truth_max, self.reco_max
            )
            token_dim = TRUTH_TOKEN
        self.flow = SetToSetModel(
            SetFlowConfig(
                truth_dim=token_dim,
                reco_dim=3,
                n_classes=N_CLASSES,
                event_dim=EVENT_DIM,
                n_max=self.reco_max,
                width=config.width,
                heads=config.heads,
                layers=config.layers,
            )
        )

    @property
    def condition(self) -> str:
        """What the model is conditioned on: 'truth_set' or 'scattered_electron'."""
        return self.config.condition

    @property
    def default_sampler(self) -> str:
        """The configured sampler (flow ODE solver)."""
        return self.config.sampler.name or "midpoint"

    @torch.no_grad()
    def generate(
        self,
        cond: Tensor,
        *,
        sampler: str | None = None,
        nfe: int | None = None,
        generator: torch.Generator | None = None,
        batch_size: int = 4096,
        **kwargs: Any,
    ) -> Tensor:
        """Reco sets x (B, R * 4) (pT, eta, phi, class; padded slots zero) for `cond`.

        cond: padded truth sets (B, T * 5), or the scattered electron (B, 4 or 7).
        """
        sampler = sampler or self.default_sampler
        nfe = nfe or self.config.sampler.nfe
        device = next(self.parameters()).device
        out = []
        for start in range(0, len(cond), batch_size):
            tokens, mask = self.preprocessing.truth_tokens(cond[start : start + batch_size])
            res = self.flow.generate(
                tokens.to(device), mask.to(device), nfe, sampler, generator=generator
            )
            cls = res["cls"].clamp_min(0)
            out.append(self.preprocessing.inverse(res["reco"], cls, res["mask"]))
        return torch.cat(out) if out else torch.zeros(0, self.dim)


def set_objective(model: SetModel) -> Objective:
    """Optimise the flow on its two-stage loss over prepared batches (see `SetPreprocessing`)."""

    def loss(net: nn.Module, batch: tuple[Tensor, ...], generator) -> Tensor:
        return net.loss(*batch, generator=generator).expand(len(batch[0]))

    return Objective(trainable=model.flow, loss=loss)


def fit_sets(
    config: SetModelConfig,
    optim: OptimConfig,
    train: TrainData,
    val: TrainData,
    report: Report,
    *,
    device: str | torch.device = "cpu",
    resume_from: str | None = None,
    card: dict[str, Any] | None = None,
) -> SetModel:
    """Fit the preprocessing, then train the set-to-set flow; same contract as `fit`.

    `train.x` holds padded reco sets (N, R * 4), `train.cond` padded truth sets (N, T * 5).
    """
    device = torch.device(device)
    torch.manual_seed(optim.seed)
    model = SetModel(config, train.x.shape[1], train.cond.shape[1])
    batches = prepare_batches(model.preprocessing, train, val, seed=None)  # no random draws
    return train_model(
        model,
        lambda: set_objective(model),
        *batches,
        optim,
        report,
        device=device,
        resume_from=resume_from,
        card=card,
    )


__all__ = ["SetModel", "fit_sets", "set_objective"]
