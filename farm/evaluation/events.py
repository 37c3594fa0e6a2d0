"""Evaluation of whole events (reco sets): multiplicities, spectra, MET, HT, a classifier AUC.

Parnassus-style validation (arXiv:2406.01620) through farm.evaluation.core: event features
(reco multiplicity per class and in total, MET, HT) and per-particle reco pT (log), eta and phi
spectra, each as sep/ and w1/ beside the reference-vs-reference floor, and an event-level
classifier AUC (auc_event). Reco jets (anti-kt R = 0.4, Cacciari-Salam-Soyez 2008, FastJet) on
the reco candidates, matched to truth jets (Delta R < 0.2): sep/ of the reco jet pT and mass, of
the pT response reco/truth and of the matched jets' C2 and D2 energy-correlation ratios (beta = 1,
Larkoski-Salam-Thaler arXiv:1305.0007, Larkoski-Moult-Neill arXiv:1409.6298) and their residuals
reco - truth; median and resolution (IQR / 1.349) of the response and residuals per part in the
details; distribution plots with ratio panels (farm.evaluation.plot_sets.event_plots).
"""

from __future__ import annotations

import numpy as np

from farm.evaluation import core
from farm.evaluation.jet_features import energy_correlators
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
SUBSTRUCTURE = ("c2", "d2")
"""Energy-correlation ratios (beta = 1) of matched jets, with residuals reco - truth."""


def _wrap(dphi: np.ndarray) -> np.ndarray:
    return np.remainder(dphi + np.pi, 2 * np.pi) - np.pi


def _jets(side: dict[str, np.ndarray], counts: np.ndarray) -> dict[str, np.ndarray]:
    """Per anti-kt jet of massless particles (one FastJet call): event, pt, eta, phi, mass, C2, D2."""
    pt, eta, phi = (np.asarray(side[k], np.float64) for k in ("pt", "eta", "phi"))
    p4 = np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta)], 1)
    events = np.split(p4, np.cumsum(counts)[:-1])
    event, j, index, offsets = cluster_antikt(fastjet_module(), events, JET_R, JET_PT_MIN)
    jpt = np.hypot(j[:, 0], j[:, 1])
    jets = {
        "event": event,
        "pt": jpt,
        "eta": np.arcsinh(j[:, 2] / jpt),
        "phi": np.arctan2(j[:, 1], j[:, 0]),
        "mass": np.sqrt(np.clip(j[:, 3] ** 2 - (j[:, :3] ** 2).sum(1), 0.0, None)),
    }
    flat = index + np.repeat(EventSample.offsets(counts)[event], np.diff(offsets))
    constituents = (eta[flat], phi[flat], pt[flat])
    return jets | substructure(constituents, offsets, jets)


def substructure(
    constituents: tuple[np.ndarray, np.ndarray, np.ndarray],
    offsets: np.ndarray,
    jets: dict[str, np.ndarray],
    group: int = 256,
) -> dict[str, np.ndarray]:
    """C2 and D2 (jet_features.energy_correlators, beta = 1) of jets given their flat constituents.

    constituents: flat (eta, phi, pT) with jet j's at offsets[j]:offsets[j + 1]; jets are padded
    in groups of similar multiplicity relative to their axis (eta, phi from `jets`).
    """
    eta, phi, pt = constituents
    n = np.diff(offsets)
    out = {k: np.zeros(len(n)) for k in SUBSTRUCTURE}
    order = np.argsort(n, kind="stable")
    for start in range(0, len(order), group):
        sel = order[start : start + group]
        rows = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in sel])
        slot = np.arange(n[sel].max()) < n[sel][:, None]
        c = np.zeros((len(sel), slot.shape[1], 3))
        owner = np.repeat(sel, n[sel])
        c[slot] = np.stack(
            [eta[rows] - jets["eta"][owner], _wrap(phi[rows] - jets["phi"][owner]), pt[rows]], 1
        )
        ecf = energy_correlators(c, slot)
        for k in SUBSTRUCTURE:
            out[k][sel] = ecf[k]
    return out


def match_jets(reco: dict[str, np.ndarray], truth: dict[str, np.ndarray]) -> np.ndarray:
    """(M, 2) indices (truth jet, reco jet): the nearest reco jet of the same event, ΔR < 0.2."""
    pairs = []
    for k in range(len(truth["pt"])):
        m = np.flatnonzero(reco["event"] == truth["event"][k])
        if not len(m):
            continue
        dr = np.hypot(reco["eta"][m] - truth["eta"][k], _wrap(reco["phi"][m] - truth["phi"][k]))
        if dr.min() < MATCH_DR:
            pairs.append((k, m[dr.argmin()]))
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


def jet_features(sample: EventSample) -> dict[str, np.ndarray]:
    """Reco jet pT and mass (GeV); matched jets' pT response, C2, D2 and residuals reco - truth."""
    reco = _jets(sample.reco, sample.reco_counts)
    truth = _jets(sample.truth, sample.truth_counts)
    t, r = match_jets(reco, truth).T
    feats = {
        "jet_pt": reco["pt"],
        "jet_mass": reco["mass"],
        "jet_response": reco["pt"][r] / truth["pt"][t],
    }
    for k in SUBSTRUCTURE:
        feats[f"jet_{k}"] = reco[k][r]
        feats[f"jet_{k}_residual"] = reco[k][r] - truth[k][t]
    return feats


def response_summary(response: np.ndarray) -> dict[str, float]:
    """Median and resolution (IQR / 1.349) of a jet pT response (or a residual), with the count."""
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
        n_compared=len(ib),
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
        for key in ("jet_response", *(f"jet_{k}_residual" for k in SUBSTRUCTURE)):
            result.details[key] = {k: response_summary(j[key]) for k, j in jets.items()}
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
        if options.plots:
            from farm.evaluation.plot_sets import event_plots

            drawn = {k: feats[k] | spectra[k] | jets[k] for k in ("a", "g")}
            result.plots = event_plots(out_url, drawn, result.details)
        result.write(out_url)
    return result


def _sep(a: np.ndarray, g: np.ndarray, seed: int) -> tuple[float, float]:
    from farm.evaluation import metrics as M

    return M.separation_power(a, g, seed=seed)


__all__ = ["evaluate_events", "event_features", "jet_features", "match_jets", "particle_spectra"]
