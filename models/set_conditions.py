"""The scattered-electron condition of a set model (EIC DIS events): one condition token.

Physical layout (what farm hands the model, `farm.samples.EventSample.electron_inputs`):
cond (B, 4) = the scattered electron's (E GeV, pT GeV, eta, phi rad), or (B, 7) with the event's
(x, Q^2 GeV^2, y) after it. The network sees one token of standardised features (log E, log pT,
eta, cos phi, sin phi [, log x, log Q^2, y]): phi as a point on the circle (no seam at +-pi),
x and Q^2 in logs (they span decades). The token takes the place of the truth set, so the
event-level flow and the particle flow (`models.sets`) are unchanged: the pooled encoding and the
cross-attention read a set of one always-valid token.
"""

from __future__ import annotations

import torch
from torch import Tensor

from models.set_preprocessing import SetPreprocessing, SetPreprocessingConfig

ELECTRON_COND = 4
"""Condition columns of the scattered electron: E, pT, eta, phi."""
DIS_COND = 3
"""Condition columns of the event-level DIS kinematics: x, Q^2, y."""


def condition_dim(dis_kinematics: bool) -> int:
    """Physical condition columns of a scattered-electron model (4, or 7 with x, Q^2, y)."""
    return ELECTRON_COND + (DIS_COND if dis_kinematics else 0)


def electron_features(cond: Tensor, dis_kinematics: bool) -> Tensor:
    """(B, 5 or 8) network features of physical conditions (B, 4 or 7), unstandardised."""
    c = cond.float()
    log = lambda v: torch.log(v.clamp_min(1e-12))  # noqa: E731
    f = [log(c[:, 0]), log(c[:, 1]), c[:, 2], torch.cos(c[:, 3]), torch.sin(c[:, 3])]
    if dis_kinematics:
        f += [log(c[:, 4]), log(c[:, 5]), c[:, 6]]
    return torch.stack(f, dim=1)


class ElectronPreprocessing(SetPreprocessing):
    """Scattered-electron conditions -> one standardised token; reco side as `SetPreprocessing`."""

    def __init__(self, config: SetPreprocessingConfig, reco_max: int, dis_kinematics: bool):
        """Reco sets of reco_max slots given the electron (and x, Q^2, y with dis_kinematics)."""
        token_dim = condition_dim(dis_kinematics) + 1
        super().__init__(config, 0, reco_max, condition=("cond", token_dim))
        self.dis_kinematics, self.token_dim = dis_kinematics, token_dim

    def fit_condition(self, cond: Tensor) -> None:
        """Means and widths of the condition features over the training events."""
        f = electron_features(cond, self.dis_kinematics).double()
        self.cond_mu.copy_(f.mean(0).float())
        self.cond_sd.copy_(f.std(0, unbiased=False).clamp_min(1e-3).float())

    def truth_tokens(self, cond: Tensor) -> tuple[Tensor, Tensor]:
        """(tokens (B, 1, F), mask (B, 1) all True) of physical conditions."""
        f = (electron_features(cond, self.dis_kinematics) - self.cond_mu) / self.cond_sd
        return f.unsqueeze(1), torch.ones(len(f), 1, dtype=torch.bool, device=f.device)


__all__ = ["DIS_COND", "ELECTRON_COND", "ElectronPreprocessing", "condition_dim"]
