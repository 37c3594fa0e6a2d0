"""Fidelity of a checkpoint during training: separation powers of a small generated sample.

A search (`farm tune`, metric `fidelity.*`) scores each trial's checkpoints in its rank-0 Ray Train
worker: showers are generated for the incident energies of a seeded subset of the validation split
and compared with those validation showers, feature by feature, with the evaluation's separation
power (farm.evaluation.metrics, CaloChallenge eq. 15) on the challenge's high-level features
(farm.evaluation.shower_features), so `fidelity.sep_mean` means what `farm evaluate`'s sep_mean
means, on fewer events.

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

from farm.data.geometry import CaloGeometry
from farm.evaluation import metrics as M
from farm.evaluation import shower_features as sf

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
    them (as farm evaluate's); sep_energy, the mean over energy_features; sep_e_ratio; and
    broken_fraction. 0 is perfect, 1 disjoint. Generated events with NaN/Inf voxels count as
    empty showers, so a diverging model scores as badly as its broken fraction deserves.
    """
    generated = np.asarray(generated, dtype=np.float64)
    broken = ~np.isfinite(generated).all(axis=1)
    if broken.any():
        generated = np.where(broken[:, None], 0.0, generated)
    ref = sf.shower_features(reference, e_inc, geometry, threshold_mev)
    gen = sf.shower_features(generated, e_inc, geometry, threshold_mev)
    with warnings.catch_warnings():  # deliberately small samples: ranking, not publication
        warnings.simplefilter("ignore", M.SmallSampleWarning)
        seps = {k: M.separation_power(ref[k], gen[k], seed=seed, n_bootstrap=2)[0] for k in ref}
    return {
        **{f"sep/{k}": v for k, v in seps.items()},
        "sep_mean": float(np.mean(list(seps.values()))),
        "sep_max": float(max(seps.values())),
        "sep_energy": float(np.mean([seps[k] for k in energy_features(geometry)])),
        "sep_e_ratio": seps["e_ratio"],
        "broken_fraction": float(broken.mean()),
    }


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
        """fidelity.* metrics of the checkpoint: `events` showers generated for a seeded subset
        of the validation energies, against the validation showers of the same events."""
        import torch

        from models.checkpoint import load_model

        t0 = time.perf_counter()
        e_inc = np.asarray(e_inc, dtype=np.float64).reshape(-1)
        n = min(self.events, len(e_inc))
        idx = np.sort(np.random.default_rng(self.seed).permutation(len(e_inc))[:n])
        model = load_model(checkpoint_dir)
        cond = torch.from_numpy(e_inc[idx]).float().reshape(-1, 1)
        generator = torch.Generator().manual_seed(self.seed)
        with torch.no_grad():
            generated = model.generate(cond, nfe=self.nfe, generator=generator).numpy()
        scores = separation_scores(
            np.asarray(showers)[idx], generated, e_inc[idx], self.geometry, self.threshold_mev
        )
        extra = {"events": float(n), "seconds": time.perf_counter() - t0}
        return {PREFIX + k: v for k, v in {**scores, **extra}.items()}


def scorer(spec, geometry: CaloGeometry) -> FidelityScorer:
    """The FidelityScorer of a tune job's `fidelity` block (threshold defaulted per geometry)."""
    from farm.evaluation.evaluate import default_threshold

    threshold = default_threshold(geometry) if spec.threshold_mev is None else spec.threshold_mev
    return FidelityScorer(
        geometry=geometry,
        events=spec.events,
        every=spec.every,
        nfe=spec.nfe,
        threshold_mev=float(threshold),
        seed=spec.seed,
    )
