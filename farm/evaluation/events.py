"""Evaluation of whole events (reco sets): multiplicities, spectra, MET, HT, a classifier AUC.

Parnassus-style validation (arXiv:2406.01620) through farm.evaluation.core: event features
(reco multiplicity per class and in total, MET, HT) and per-particle reco pT (log), eta and phi
spectra, each as sep/ and w1/ beside the reference-vs-reference floor, and an event-level
classifier AUC (auc_event). Reco jets (anti-kt R = 0.4, Cacciari-Salam-Soyez 2008, FastJet) on
the reco candidates, matched to truth jets (Delta R < 0.2): sep/ of the reco jet pT and mass and of
the pT response reco/truth, with its median and resolution (IQR / 1.349) per part in the details.
"""

from __future__ import annotations

import numpy as np

from farm.evaluation import core
from farm.evaluation.options import EvaluationOptions
from farm.evaluation.report import EvaluationResult
from farm.kinematics import cluster_antikt, fastjet_module
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


JET_R, JET_PT_MIN, MATCH_DR = 0.4, 5.0, 0.2
"""Anti-kt radius, jet pT threshold (GeV) and truth-reco matching distance."""


def _jets(side: dict[str, np.ndarray], counts: np.ndarray):
    """(event, pT, eta, phi, mass) of the anti-kt jets of massless particles, one FastJet call."""
    pt, eta, phi = (np.asarray(side[k], np.float64) for k in ("pt", "eta", "phi"))
    p4 = np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta)], 1)
    events = np.split(p4, np.cumsum(counts)[:-1])
    event, j, _, _ = cluster_antikt(fastjet_module(), events, JET_R, JET_PT_MIN)
    jpt = np.hypot(j[:, 0], j[:, 1])
    mass = np.sqrt(np.clip(j[:, 3] ** 2 - (j[:, :3] ** 2).sum(1), 0.0, None))
    return event, jpt, np.arcsinh(j[:, 2] / jpt), np.arctan2(j[:, 1], j[:, 0]), mass


def jet_features(sample: EventSample) -> dict[str, np.ndarray]:
    """Reco jet pT and mass (GeV), and the pT response reco/truth of matched truth jets."""
    r_event, r_pt, r_eta, r_phi, r_mass = _jets(sample.reco, sample.reco_counts)
    t_event, t_pt, t_eta, t_phi, _ = _jets(sample.truth, sample.truth_counts)
    response = []
    for k in range(len(t_pt)):
        m = np.flatnonzero(r_event == t_event[k])
        if not len(m):
            continue
        d_phi = np.remainder(r_phi[m] - t_phi[k] + np.pi, 2 * np.pi) - np.pi
        dr = np.hypot(r_eta[m] - t_eta[k], d_phi)
        if dr.min() < MATCH_DR:
            response.append(r_pt[m[dr.argmin()]] / t_pt[k])
    return {"jet_pt": r_pt, "jet_mass": r_mass, "jet_response": np.asarray(response)}


def response_summary(response: np.ndarray) -> dict[str, float]:
    """Median and resolution (IQR / 1.349) of a jet pT response, with the number of jets."""
    if len(response) < 2:
        return {"jets": float(len(response))}
    q1, q2, q3 = np.percentile(response, [25, 50, 75])
    return {
        "jets": float(len(response)),
        "median": float(q2),
        "resolution": float((q3 - q1) / 1.349),
    }


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
        jets = {k: jet_features(p) for k, p in parts.items()}
        result.details["jet_response"] = {
            k: response_summary(j["jet_response"]) for k, j in jets.items()
        }
        for key in jets["a"]:
            a, b, g = (jets[k][key] for k in core.PARTS)
            if min(len(a), len(b), len(g)) < 2:
                result.notes.append(f"{key}: fewer than 2 jets in a part, not compared")
                continue
            core.add_pair(result, f"sep_{key}", _sep, a, b, g, seed=options.seed)
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
