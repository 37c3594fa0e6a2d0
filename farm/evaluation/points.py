"""In-memory evaluation of point-cloud showers: hit-level features and the voxel projection's.

Point features per shower (n_hits, E_sum/E_inc, energy-weighted centre and width along z and in
r, mean hit energy) and the pooled hit-energy spectrum compare the clouds themselves; projected
onto the geometry's CaloChallenge-style binning (farm.samples.project_points), the same showers
get every CaloChallenge feature, FPD/KPD and the low/high-level classifier AUCs (CaloClouds,
arXiv:2305.04847, evaluates its point clouds on the projected cells the same way).
"""

from __future__ import annotations

import numpy as np

from farm.errors import FarmError
from farm.evaluation import core
from farm.evaluation import metrics as M
from farm.evaluation import shower_features as sf
from farm.evaluation.options import EvaluationOptions
from farm.evaluation.report import EvaluationResult
from farm.samples import PointSample


def _centre_width(coord: np.ndarray, energy: np.ndarray, owner: np.ndarray, n: int):
    """Energy-weighted mean and width of a hit coordinate per shower."""
    total = np.bincount(owner, weights=energy, minlength=n)
    safe = np.where(total > 0, total, 1.0)
    centre = np.bincount(owner, weights=energy * coord, minlength=n) / safe
    second = np.bincount(owner, weights=energy * coord * coord, minlength=n) / safe
    return centre, sf.weighted_width(second, centre)


def point_features(sample: PointSample) -> dict[str, np.ndarray]:
    """Per shower: n_hits, e_sum_ratio, cog_z, width_z, cog_r, width_r (mm), mean_hit_e (MeV)."""
    n = len(sample)
    owner = np.repeat(np.arange(n), sample.counts)
    e = sample.hits[:, 3].astype(np.float64)
    r = np.hypot(sample.hits[:, 0].astype(np.float64), sample.hits[:, 1].astype(np.float64))
    e_sum = sample.energy_sums()
    out = {"n_hits": sample.counts.astype(np.float64), "e_sum_ratio": e_sum / sample.e_inc}
    out["cog_z"], out["width_z"] = _centre_width(sample.hits[:, 2].astype(np.float64), e, owner, n)
    out["cog_r"], out["width_r"] = _centre_width(r, e, owner, n)
    out["mean_hit_e"] = e_sum / np.maximum(sample.counts, 1)
    return out


def longitudinal_profile(sample: PointSample) -> np.ndarray:
    """(n_layers,) mean energy per layer per shower, MeV."""
    per_layer = np.bincount(
        sample.layer, weights=sample.hits[:, 3], minlength=sample.geometry.n_layers
    )
    return per_layer / max(len(sample), 1)


def _hit_spectrum(sample: PointSample) -> np.ndarray:
    e = sample.hits[:, 3].astype(np.float64)
    return e if len(e) else np.zeros(1)


def evaluate_points(
    reference: PointSample,
    generated: PointSample,
    out_url: str | None = None,
    options: EvaluationOptions | None = None,
    **option_fields,
) -> EvaluationResult:
    """Compare generated with reference point-cloud showers (same cell geometry).

    Metrics: sep/ and w1/ of every point feature and of every CaloChallenge feature of the
    voxel projection (sep_mean, sep_max over both), sep_hit_spectrum, fpd and kpd of the
    projection and, with `options.classifier`, its auc_low / auc_high. Writes metrics.json and
    report.html (and the projection's plots) under out_url when given.
    """
    options = options or EvaluationOptions(**option_fields)
    if reference.geometry.name != generated.geometry.name:
        raise FarmError(
            f"generated showers are in geometry {generated.geometry.name!r}, the reference in "
            f"{reference.geometry.name!r}"
        )
    binning = reference.geometry.voxel_binning
    rng = np.random.default_rng(options.seed)
    ref = reference.subset(core.limit(len(reference), options.max_events, rng))
    gen = generated.subset(core.limit(len(generated), options.max_events, rng))
    ia, ib, ig = core.halves(len(ref), len(gen), rng)
    clouds = {"a": ref.subset(ia), "b": ref.subset(ib), "g": gen.subset(ig)}
    parts = {k: (c.to_voxels(binning).showers, c.e_inc) for k, c in clouds.items()}
    result = EvaluationResult(kind="points")
    core.shower_details(result, binning, 0.0, len(ref), len(gen), len(ib), options)
    result.details.update(
        point_geometry=reference.geometry.name,
        mean_hits={k: float(c.counts.mean()) for k, c in clouds.items()},
        longitudinal_profile={k: longitudinal_profile(c).tolist() for k, c in clouds.items()},
    )
    with core.small_sample_notes(result):
        voxel = {k: sf.shower_features(s, e, binning) for k, (s, e) in parts.items()}
        feats = {k: {**point_features(clouds[k]), **voxel[k]} for k in core.PARTS}
        seps = core.add_feature_metrics(result, feats["a"], feats["b"], feats["g"], options.seed)
        spectra = {k: _hit_spectrum(c) for k, c in clouds.items()}
        edges = core.spectrum_edges(float(spectra["a"].min()), float(spectra["a"].max()), 0.0)
        core.add_pair(
            result,
            "sep_hit_spectrum",
            M.separation_power,
            *(spectra[k] for k in core.PARTS),
            bins=edges,
            seed=options.seed,
        )
        core.add_shower_distances_and_classifiers(result, parts, voxel, binning, options)
    if out_url is not None:
        if options.plots:
            from farm.evaluation.plot_sets import shower_plots

            result.plots = shower_plots(
                out_url, parts, feats, spectra, edges, seps, binning, result.details
            )
        result.write(out_url)
    return result
