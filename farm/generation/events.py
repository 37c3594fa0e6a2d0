"""Reconstructed events from a set-to-set model, given truth events (Parnassus, arXiv:2406.01620).

The model (models.set_model.SetModel) takes the truth sets padded to its truth slots (bigger
events are refused, or truncated by pT when asked) and returns padded reco sets; the valid slots
(pT > 0) become each event's reco candidates. MET and HT are recomputed from the generated
candidates, the truth columns are kept. The charge of a charged candidate is that of the nearest
charged truth particle in (eta, phi) (the model generates the class, not the sign). A model
conditioned on the scattered electron (`condition: scattered_electron`) takes the electron
columns of the conditions events instead (`EventSample.electron_inputs`); their truth sets are
kept as they are and only give the charges.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from farm.errors import FarmError
from farm.generation.settings import DEFAULT_SETTINGS, SamplerSettings, refuse_non_finite
from farm.kinematics import met_ht
from farm.samples import RECO_SLOT, EventSample

CHARGED_CLASSES = (0, 1, 2)
"""Reco classes with a track: charged hadron, electron, muon."""


def is_set_model(model: Any) -> bool:
    """Whether a loaded model generates events (config kind sets)."""
    return getattr(getattr(model, "config", None), "kind", "") == "sets"


def _charges(reco: np.ndarray, valid: np.ndarray, truth: EventSample, truth_max: int):
    """Charge of each valid padded reco slot: the nearest charged truth particle's, 0 if neutral."""
    from farm.samples import pad_sets

    t = pad_sets(
        truth.truth_counts, truth.truth, ("eta", "phi", "charge"), truth_max, "truth", True
    )
    out = np.zeros(valid.shape, dtype=np.int8)
    for s in range(0, len(reco), 512):
        r, tt = reco[s : s + 512], t[s : s + 512]
        d_eta = r[:, :, None, 1] - tt[:, None, :, 0]
        d_phi = np.remainder(r[:, :, None, 2] - tt[:, None, :, 1] + np.pi, 2 * np.pi) - np.pi
        d2 = np.where(tt[:, None, :, 2] != 0, d_eta**2 + d_phi**2, np.inf)
        nearest = np.take_along_axis(tt[..., 2], d2.argmin(-1), axis=1)
        charged = np.isin(r[..., 3], CHARGED_CLASSES) & np.isfinite(d2.min(-1))
        out[s : s + 512] = np.where(charged, np.sign(nearest), 0).astype(np.int8)
    return out[valid]


def reco_from_padded(x: np.ndarray, truth: EventSample, truth_max: int) -> EventSample:
    """The truth events with their reco sets replaced by padded generated ones (N, R * 4)."""
    reco = x.reshape(len(truth), -1, len(RECO_SLOT))
    valid = reco[..., 0] > 0
    counts = valid.sum(1).astype(np.int64)
    flat = reco[valid]
    cls = np.clip(np.rint(flat[:, 3]), 0, None).astype(np.int8)
    charge = _charges(reco, valid, truth, truth_max)
    sets = {"pt": flat[:, 0], "eta": flat[:, 1], "phi": flat[:, 2], "class": cls, "charge": charge}
    mx, my, ht = met_ht(counts, flat[:, 0].astype(np.float64), flat[:, 2].astype(np.float64))
    event = {**truth.event, "met_x": mx, "met_y": my, "ht": ht}
    return EventSample(
        dict(truth.truth), truth.truth_counts, sets, counts, event, truth.event_id, {}
    )


def event_sample(
    model: Any,
    truth: EventSample,
    *,
    generator: torch.Generator,
    settings: SamplerSettings = DEFAULT_SETTINGS,
    truncate: bool = False,
) -> EventSample:
    """Reco events for the truth sets of `truth`; NonFiniteOutput on NaN/Inf.

    Events with more truth particles than the model's slots are refused in one line, or keep
    their highest-pT particles with `truncate` (recorded in the sample's provenance).
    """
    if not is_set_model(model):
        raise FarmError(
            "events take a set-to-set model (kind sets); this model generates another kind"
        )
    condition = getattr(model, "condition", "truth_set")
    truth_max, provenance = model.truth_max, {}
    if condition == "scattered_electron":
        dis = bool(model.config.dis_kinematics)
        cond = truth.electron_inputs(dis)  # the condition file's electron (and x, Q^2, y) columns
        provenance = {"condition": condition, "dis_kinematics": dis}
        truncated = 0
        charge_slots = int(truth.truth_counts.max(initial=1))  # every truth particle for charges
    else:
        cond = truth.truth_inputs(truth_max, truncate)
        truncated = int((truth.truth_counts > truth_max).sum())
        charge_slots = truth_max
    x = settings.generate(model, torch.from_numpy(cond), generator)
    refuse_non_finite("reco", x)
    out = reco_from_padded(x, truth, charge_slots)
    out.provenance = {
        "truth_slots": truth_max,
        "reco_slots": model.reco_max,
        "truncate": truncate,
        "truncated_events": truncated,
        **provenance,
    }
    return out


__all__ = ["event_sample", "is_set_model", "met_ht", "reco_from_padded"]
