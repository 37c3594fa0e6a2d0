"""Evaluation of whole events (reco sets): multiplicities, spectra, MET, HT, a classifier AUC.

Parnassus-style validation (arXiv:2406.01620) through farm.evaluation.core: event features
(reco multiplicity per class and in total, MET, HT) and per-particle reco pT (log), eta and phi
spectra, each as sep/ and w1/ beside the reference-vs-reference floor, and an event-level
classifier AUC (auc_event). Reco jets (anti-kt R=0.4) matched to truth jets are not computed here yet.
"""

from __future__ import annotations

import numpy as np

from farm.evaluation import core
from farm.evaluation.options import EvaluationOptions
from farm.evaluation.report import EvaluationResult
from farm.samples import EVENT_CLASSES, EventSample


def event_features(sample: EventSample) -> dict[str, np.ndarray]:
    """Per event: n_reco, n_<class> for each reco class, MET and HT (GeV) of the reco set."""
    n = len(sample)
    owner = np.repeat(np.arange(n), sample.reco_counts)
    feats = {"n_reco": sample.reco_counts.astype(np.float64)}
    for k, name in enumerate(EVENT_CLASSES):
        feats[f"n_{name}"] = np.bincount(
            owner, weights=(sample.reco["class"] == k).astype(np.float64), minlength=n
        )
    feats["met"] = np.hypot(sample.event["met_x"], sample.event["met_y"]).astype(np.float64)
    feats["ht"] = sample.event["ht"].astype(np.float64)
    return feats


def particle_spectra(sample: EventSample) -> dict[str, np.ndarray]:
    """All reco candidates: log pT (GeV), eta and phi."""
    pt = np.asarray(sample.reco["pt"], np.float64)
    return {
        "log_pt": np.log(np.clip(pt, 1e-6, None)),
        "eta": np.asarray(sample.reco["eta"], np.float64),
        "phi": np.asarray(sample.reco["phi"], np.float64),
    }


def evaluate_events(
    reference: EventSample,
    generated: EventSample,
    out_url: str | None = None,
    options: EvaluationOptions | None = None,
    **option_fields,
) -> EvaluationResult:
    """Compare generated with reference events; writes metrics.json and report.html under out_url."""
    options = options or EvaluationOptions(**option_fields)
    rng = np.random.default_rng(options.seed)
    ref = reference.subset(core.limit(len(reference), options.max_events, rng))
    gen = generated.subset(core.limit(len(generated), options.max_events, rng))
    ia, ib, ig = core.halves(len(ref), len(gen), rng)
    parts = {"a": ref.subset(ia), "b": ref.subset(ib), "g": gen.subset(ig)}
    result = EvaluationResult(kind="events")
    result.details.update(
        n_reference=len(ref),
        n_generated=len(gen),
        mean_n_reco={k: float(p.reco_counts.mean()) for k, p in parts.items()},
    )
    with core.small_sample_notes(result):
        feats = {k: event_features(p) for k, p in parts.items()}
        core.add_feature_metrics(result, feats["a"], feats["b"], feats["g"], options.seed)
        spectra = {k: particle_spectra(p) for k, p in parts.items()}
        for key in spectra["a"]:
            a, b, g = (spectra[k][key] for k in core.PARTS)
            core.add_pair(result, f"sep_particle_{key}", _sep, a, b, g, seed=options.seed)
        if options.classifier:
            stacked = tuple(np.stack(list(feats[k].values()), axis=1) for k in core.PARTS)
            core.add_classifiers(result, {"event": stacked}, options)
    if out_url is not None:
        result.write(out_url)
    return result


def _sep(a: np.ndarray, g: np.ndarray, seed: int) -> tuple[float, float]:
    from farm.evaluation import metrics as M

    return M.separation_power(a, g, seed=seed)


__all__ = ["evaluate_events", "event_features", "particle_spectra"]
