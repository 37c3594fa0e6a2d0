"""Fidelity of a checkpoint during training: separation powers of a small generated sample.

A search (`farm tune`, metric `fidelity.*`) scores each trial's checkpoints in its rank-0 Ray Train
worker: showers are generated for the incident energies of a seeded subset of the validation split
and compared with those validation showers, feature by feature, with the evaluation's separation
power (farm.evaluation.metrics, CaloChallenge eq. 15) on the challenge's high-level features
(farm.evaluation.shower_features), so `fidelity.sep_mean` means what `farm evaluate`'s sep_mean
means, on fewer events.

A checkpoint whose sample holds any NaN/Inf is refused by farm.generation (the one NaN policy) and
scores 1 (disjoint) on every objective, with fidelity.refused = 1.

The values carry a noise floor from the sample size: two independent samples of the DS1-photon
reference at the same energies score sep_mean 0.016 with 1000 events each (0.039 with 500, 0.006
with 3000). The energy features alone (sep_energy: E_tot/E_inc and the layer energies) sit near that
floor for every reasonable model (the hierarchical preprocessing makes them easy), while the shower
shapes (widths, centres, occupancies) separate good models from bad ones: sep_mean, not
sep_energy, is the objective that ranks trials.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from farm.evaluation import metrics as M
from farm.evaluation import shower_features as sf
from farm.evaluation.thresholds import default_threshold
from farm.generation import NonFiniteOutput, SamplerSettings, shower_sample
from farm.geometry import CaloGeometry
from models.loading import load_model

PREFIX = "fidelity."


def energy_features(geometry: CaloGeometry) -> list[str]:
    """E_tot/E_inc and each active layer's energy (shower_features names)."""
    return ["e_ratio", *(f"e_layer_{layer.index}" for layer in geometry.active_layers)]


def separation_scores(
    reference: np.ndarray,
    generated: np.ndarray,
    e_inc: np.ndarray,
    geometry: CaloGeometry,
    threshold_mev: float = 0.0,
    seed: int = 0,
) -> dict[str, float]:
    """Separation powers of paired (N, n_voxels) samples sharing the (N,) incident energies e_inc.

    Returns sep/<feature> for every shower_features feature; sep_mean and sep_max over all of
    them (as farm evaluate's); sep_energy, the mean over energy_features; sep_e_ratio. 0 is
    perfect, 1 disjoint. Both samples must be finite (farm.generation refuses others).
    """
    ref = sf.shower_features(reference, e_inc, geometry, threshold_mev)
    gen = sf.shower_features(generated, e_inc, geometry, threshold_mev)
    with warnings.catch_warnings():  # deliberately small samples: ranking, not publication
        warnings.simplefilter("ignore", M.SmallSampleWarning)
        seps = {
            k: M.separation_power(
                ref[k], gen[k], seed=seed, n_bootstrap=2, scale=sf.histogram_scale(k)
            )[0]
            for k in ref
        }
    return {
        **{f"sep/{k}": v for k, v in seps.items()},
        "sep_mean": float(np.mean(list(seps.values()))),
        "sep_max": float(max(seps.values())),
        "sep_energy": float(np.mean([seps[k] for k in energy_features(geometry)])),
        "sep_e_ratio": seps["e_ratio"],
    }


def refused_scores(geometry: CaloGeometry) -> dict[str, float]:
    """The scores of a checkpoint whose sample was refused (NaN/Inf): every separation 1."""
    return {"sep_mean": 1.0, "sep_max": 1.0, "sep_energy": 1.0, "sep_e_ratio": 1.0}


@dataclass(frozen=True)
class FidelityScorer:
    """Scores checkpoints of a shower model against validation showers (picklable, for workers)."""

    geometry: CaloGeometry
    events: int = 1000
    every: int = 1
    nfe: int | None = None
    threshold_mev: float = 0.0
    seed: int = 0

    def due(self, epoch: int, epochs: int) -> bool:
        """Whether a checkpoint written after `epoch` (of `epochs`) is scored."""
        return epoch % self.every == 0 or epoch >= epochs

    def __call__(self, checkpoint_dir: str, showers: np.ndarray, e_inc: np.ndarray) -> dict:
        """fidelity.* metrics of the checkpoint, scored against the validation showers.

        `events` showers are generated for a seeded subset of the validation energies and compared
        with the validation showers of the same events.
        """
        t0 = time.perf_counter()
        e_inc = np.asarray(e_inc, dtype=np.float64).reshape(-1)
        n = min(self.events, len(e_inc))
        idx = np.sort(np.random.default_rng(self.seed).permutation(len(e_inc))[:n])
        model = load_model(checkpoint_dir)
        generator = torch.Generator().manual_seed(self.seed)
        try:
            generated = shower_sample(
                model,
                e_inc[idx],
                self.geometry,
                generator=generator,
                settings=SamplerSettings(nfe=self.nfe),
            )
        except NonFiniteOutput:
            scores, refused = refused_scores(self.geometry), 1.0
        else:
            scores = separation_scores(
                np.asarray(showers)[idx],
                generated.showers,
                e_inc[idx],
                self.geometry,
                self.threshold_mev,
            )
            refused = 0.0
        extra = {"events": float(n), "refused": refused, "seconds": time.perf_counter() - t0}
        return {PREFIX + k: v for k, v in {**scores, **extra}.items()}


def scorer(spec, geometry: CaloGeometry) -> FidelityScorer:
    """The FidelityScorer of a tune job's `fidelity` block (threshold defaulted per geometry)."""
    threshold = default_threshold(geometry) if spec.threshold_mev is None else spec.threshold_mev
    return FidelityScorer(
        geometry=geometry,
        events=spec.events,
        every=spec.every,
        nfe=spec.nfe,
        threshold_mev=float(threshold),
        seed=spec.seed,
    )
