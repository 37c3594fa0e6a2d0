"""Preprocessing of padded truth and reco sets for the set-to-set flow (Parnassus, arXiv:2406.01620).

Physical layout (what farm hands a set model, `SET_TRUTH` / `SET_RECO` features per slot, valid
particles first, padded slots all zero, so a slot is valid where pT > 0):
cond (B, T * 5) truth (pT GeV, eta, phi rad, pdg id, charge); x (B, R * 4) reco (pT, eta, phi,
class index). The network sees standardised (log pT, eta, phi) on both sides (means and widths
fitted over valid particles), the truth charge and a one-hot particle type from the pdg id
(charged hadron, electron, muon, neutral hadron, photon), the reco class as an index, and the
event summaries (MET x, MET y, log(1 + HT)) computed from the reco set and standardised.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

SET_TRUTH = 5
"""Truth features per slot: pT (GeV), eta, phi (rad), pdg id, charge."""
SET_RECO = 4
"""Reco features per slot: pT (GeV), eta, phi (rad), class index."""
N_TYPES = 5
"""Particle types of the truth one-hot, in the reco class order."""
TRUTH_TOKEN = 3 + 1 + N_TYPES
"""Network features of a truth token: log pT, eta, phi standardised, charge, one-hot type."""
EVENT_DIM = 3
"""Event summaries: MET x, MET y, log(1 + HT), standardised."""


class SetPreprocessingConfig(BaseModel):
    """Standardised (log pT, eta, phi) of truth and reco particles, event summaries from reco."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["sets"] = "sets"


def particle_type(pdg: Tensor, charge: Tensor) -> Tensor:
    """Type index of truth particles: 0 charged hadron, 1 e, 2 mu, 3 neutral hadron, 4 photon."""
    a = pdg.abs().round().long()
    t = torch.where(charge != 0, 0, 3)
    t = torch.where(a == 11, 1, t)
    t = torch.where(a == 13, 2, t)
    return torch.where(a == 22, 4, t)


def event_summaries(pt: Tensor, phi: Tensor, mask: Tensor) -> Tensor:
    """(B, 3) missing px, missing py and scalar sum pT of the valid particles (GeV)."""
    w = pt * mask
    return torch.stack(
        [-(w * torch.cos(phi)).sum(1), -(w * torch.sin(phi)).sum(1), w.sum(1)], dim=1
    )


def wrap_phi(phi: Tensor) -> Tensor:
    """Azimuth folded into [-pi, pi)."""
    return torch.remainder(phi + math.pi, 2 * math.pi) - math.pi


def _masked_moments(v: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and std (floored at 1e-3) of (..., F) features over valid entries."""
    flat, m = v.reshape(-1, v.shape[-1]).double(), mask.reshape(-1)
    sel = flat[m] if m.any() else torch.zeros(1, v.shape[-1], dtype=torch.float64)
    return sel.mean(0).float(), sel.std(0, unbiased=False).clamp_min(1e-3).float()


class SetPreprocessing(nn.Module):
    """Physical padded sets <-> network tensors; statistics are buffers (saved with the weights)."""

    def __init__(
        self,
        config: SetPreprocessingConfig,
        truth_max: int,
        reco_max: int,
        condition: tuple[str, int] = ("truth", 3),
    ):
        """Buffers: `condition` (name, size) statistics of the condition, then reco and event."""
        super().__init__()
        self.config, self.truth_max, self.reco_max = config, truth_max, reco_max
        for name, size in (condition, ("reco", 3), ("event", EVENT_DIM)):
            self.register_buffer(f"{name}_mu", torch.zeros(size))
            self.register_buffer(f"{name}_sd", torch.ones(size))

    def split(self, x: Tensor | None, cond: Tensor) -> tuple[Tensor, Tensor | None]:
        """Truth cond (B, T * 5) -> (B, T, 5); reco x (B, R * 4) -> (B, R, 4)."""
        truth = cond.float().reshape(len(cond), self.truth_max, SET_TRUTH)
        reco = None if x is None else x.float().reshape(len(x), self.reco_max, SET_RECO)
        return truth, reco

    @staticmethod
    def _kinematics(p: Tensor) -> tuple[Tensor, Tensor]:
        """(log pT, eta, phi) (B, N, 3) and the valid mask (pT > 0)."""
        mask = p[..., 0] > 0
        k = torch.stack([torch.log(p[..., 0].clamp_min(1e-6)), p[..., 1], p[..., 2]], dim=-1)
        return k, mask

    def fit(self, x: Tensor, cond: Tensor) -> None:
        """Means and widths over the valid particles of training data in physical units."""
        self.fit_condition(cond)
        reco = self.reco(x)
        mu, sd = _masked_moments(*self._kinematics(reco))
        self.reco_mu.copy_(mu)
        self.reco_sd.copy_(sd)
        event = self._event(reco)
        self.event_mu.copy_(event.mean(0))
        self.event_sd.copy_(event.std(0, unbiased=False).clamp_min(1e-3))

    def fit_condition(self, cond: Tensor) -> None:
        """Means and widths of the truth (log pT, eta, phi) over valid truth particles."""
        truth, _ = self.split(None, cond)
        mu, sd = _masked_moments(*self._kinematics(truth))
        self.truth_mu.copy_(mu)
        self.truth_sd.copy_(sd)

    def reco(self, x: Tensor) -> Tensor:
        """Reco x (B, R * 4) -> (B, R, 4)."""
        return x.float().reshape(len(x), self.reco_max, SET_RECO)

    def _event(self, reco: Tensor) -> Tensor:
        mask = reco[..., 0] > 0
        e = event_summaries(reco[..., 0], reco[..., 2], mask)
        return torch.cat([e[:, :2], torch.log1p(e[:, 2:])], dim=1)

    def truth_tokens(self, cond: Tensor) -> tuple[Tensor, Tensor]:
        """(tokens (B, T, 9), mask (B, T)) of physical truth conditions; padded tokens are zero."""
        truth, _ = self.split(None, cond)
        k, mask = self._kinematics(truth)
        k = (k - self.truth_mu) / self.truth_sd
        types = nn.functional.one_hot(particle_type(truth[..., 3], truth[..., 4]), N_TYPES)
        tokens = torch.cat([k, truth[..., 4:5], types.float()], dim=-1)
        return tokens * mask.unsqueeze(-1), mask

    def transform(self, x: Tensor, cond: Tensor) -> tuple[Tensor, ...]:
        """(truth tokens, truth mask, reco (B, R, 3), class (B, R) long, reco mask, event (B, 3))."""
        tokens, truth_mask = self.truth_tokens(cond)
        reco = self.reco(x)
        k, mask = self._kinematics(reco)
        k = ((k - self.reco_mu) / self.reco_sd) * mask.unsqueeze(-1)
        cls = torch.where(mask, reco[..., 3].round().long(), 0)
        event = (self._event(reco) - self.event_mu) / self.event_sd
        return tokens, truth_mask, k, cls, mask, event

    def inverse(self, reco: Tensor, cls: Tensor, mask: Tensor) -> Tensor:
        """Physical x (B, R * 4) from network reco (B, R, 3), classes and the valid mask."""
        k = reco.float() * self.reco_sd + self.reco_mu
        pt = torch.exp(k[..., 0].clamp(max=20.0))
        out = torch.stack([pt, k[..., 1], wrap_phi(k[..., 2]), cls.float()], dim=-1)
        return (out * mask.unsqueeze(-1)).reshape(len(reco), -1)


__all__ = [
    "SET_RECO",
    "SET_TRUTH",
    "SetPreprocessing",
    "SetPreprocessingConfig",
    "event_summaries",
    "particle_type",
]
