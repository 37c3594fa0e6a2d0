"""In-memory shower evaluation: CaloChallenge metrics of generated vs reference showers."""

from __future__ import annotations

import numpy as np

from farm.evaluation import core
from farm.evaluation import metrics as M
from farm.evaluation import shower_features as sf
from farm.evaluation.options import EvaluationOptions
from farm.evaluation.report import EvaluationResult
from farm.geometry import CaloGeometry, load_geometry
from farm.samples import ShowerSample

MAX_SPECTRUM_VOXELS = 2_000_000  # voxel energies entering the spectrum histogram, per sample

ShowerInput = ShowerSample | tuple[np.ndarray, np.ndarray]


def _arrays(sample: ShowerInput) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(sample, ShowerSample):
        return sample.showers, sample.e_inc
    showers, e_inc = sample
    return np.asarray(showers), np.asarray(e_inc, dtype=np.float64).reshape(-1)


def evaluate_showers(
    reference: ShowerInput,
    generated: ShowerInput,
    geometry: CaloGeometry | str,
    out_url: str | None = None,
    options: EvaluationOptions | None = None,
    **option_fields,
) -> EvaluationResult:
    """Compare generated with reference showers (MeV) with the CaloChallenge metrics.

    Metrics: sep/<feature> and w1/<feature> for every shower_features feature (sep_mean,
    sep_max), sep_voxel_spectrum, fpd and kpd on distance_inputs, and with `options.classifier`
    auc_low / auc_high (+ jsd_*) as the challenge's cls-low and cls-high. Samples are
    ShowerSamples or (showers (N, V), e_inc (N,)) pairs; `options` (or its fields as keywords)
    as EvaluationOptions. Writes metrics.json, PNGs and report.html under out_url when given.
    """
    options = options or EvaluationOptions(**option_fields)
    geometry = load_geometry(geometry) if isinstance(geometry, str) else geometry
    threshold = core.threshold_of(geometry, options)
    rng = np.random.default_rng(options.seed)
    samples = {}
    for name, sample in (("reference", reference), ("generated", generated)):
        showers, e_inc = _arrays(sample)
        sf.check_showers(showers, e_inc, geometry, name)
        idx = core.limit(len(showers), options.max_events, rng)
        samples[name] = (showers[idx], e_inc[idx])
    (ref_s, ref_e), (gen_s, gen_e) = samples["reference"], samples["generated"]
    ia, ib, ig = core.halves(len(ref_s), len(gen_s), rng)
    parts = {"a": (ref_s[ia], ref_e[ia]), "b": (ref_s[ib], ref_e[ib]), "g": (gen_s[ig], gen_e[ig])}
    result = EvaluationResult(kind="showers")
    core.shower_details(result, geometry, threshold, len(ref_s), len(gen_s), len(ib), options)
    with core.small_sample_notes(result):
        feats = {k: sf.shower_features(s, e, geometry, threshold) for k, (s, e) in parts.items()}
        seps = core.add_feature_metrics(result, feats["a"], feats["b"], feats["g"], options.seed)
        spectra = {k: _spectrum(s, threshold, rng) for k, (s, _) in parts.items()}
        edges = core.spectrum_edges(float(spectra["a"].min()), float(spectra["a"].max()), threshold)
        core.add_pair(
            result,
            "sep_voxel_spectrum",
            M.separation_power,
            *(spectra[k] for k in core.PARTS),
            bins=edges,
            seed=options.seed,
        )
        core.add_shower_distances_and_classifiers(result, parts, feats, geometry, options)
    if out_url is not None:
        if options.plots:
            from farm.evaluation.plot_sets import shower_plots

            result.plots = shower_plots(
                out_url, parts, feats, spectra, edges, seps, geometry, result.details
            )
        result.write(out_url)
    return result


def _spectrum(showers: np.ndarray, threshold: float, rng: np.random.Generator) -> np.ndarray:
    """Voxel energies above threshold (a seeded subset beyond MAX_SPECTRUM_VOXELS; one 0 if none)."""
    v = sf.voxel_energies(showers, threshold)
    if len(v) > MAX_SPECTRUM_VOXELS:
        v = rng.choice(v, MAX_SPECTRUM_VOXELS, replace=False)
    return v if len(v) else np.zeros(1)
