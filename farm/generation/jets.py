"""Jets from a point-cloud jet model, post-processed into the JetNet layout.

A jet model generates (eta_rel, phi_rel, pt_rel) for every constituent slot, conditioned on
[jet pT, count]; the jet's generation then masks the slots beyond the count, clips pT fractions at
zero, orders constituents by pT and computes the jet mass from them and the conditioning pT
(massless constituents, as for the reference), so callers always get finished jets.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from farm.errors import FarmError
from farm.generation.settings import DEFAULT_SETTINGS, SamplerSettings, refuse_non_finite
from farm.kinematics import jet_kinematics
from farm.samples import JET_POINT_FEATURES, JetSample, JetTruth


def jet_slots(model: Any) -> int:
    """Constituent slots of a jet model."""
    return model.dim // JET_POINT_FEATURES


def jet_sample(
    model: Any,
    truth: JetTruth,
    *,
    generator: torch.Generator,
    settings: SamplerSettings = DEFAULT_SETTINGS,
) -> JetSample:
    """Jets for truth (pT GeV, eta, constituent count); NonFiniteOutput if any value is NaN/Inf."""
    n_points = jet_slots(model)
    counts = np.asarray(truth.counts).astype(np.int64).reshape(-1)
    if counts.min(initial=1) < 1 or counts.max(initial=1) > n_points:
        raise FarmError(
            f"constituent counts must lie in 1..{n_points}, got {counts.min()}..{counts.max()}"
        )
    pt = np.asarray(truth.pt).reshape(-1)
    eta = np.asarray(truth.eta).reshape(-1)
    cond = torch.from_numpy(np.stack([pt, counts], 1).astype(np.float32))
    x = settings.generate(model, cond, generator)
    refuse_non_finite("jet", x)
    points = x.reshape(len(counts), n_points, JET_POINT_FEATURES)
    mask = np.arange(n_points)[None, :] < counts[:, None]
    points[..., 2] = np.clip(points[..., 2], 0.0, None)  # pT fractions are non-negative
    points = np.where(mask[..., None], points, 0.0)
    order = np.argsort(-np.where(mask, points[..., 2], -np.inf), axis=1, kind="stable")
    points = np.take_along_axis(points, order[..., None], axis=1)
    constituents = np.concatenate([points, mask[..., None]], axis=-1).astype(np.float32)
    kin = jet_kinematics(constituents, mask, jet_pt=pt, jet_eta=eta)
    features = np.stack([pt, eta, kin["mass"], counts], 1).astype(np.float32)
    return JetSample(constituents, features)
