"""In-memory jet evaluation: JetNet metrics of generated vs reference jets."""

from __future__ import annotations

import numpy as np

from farm.errors import FarmError
from farm.evaluation import core
from farm.evaluation import jet_features as jf
from farm.evaluation import metrics as M
from farm.evaluation.options import EvaluationOptions
from farm.evaluation.report import EvaluationResult
from farm.samples import JetSample

JetInput = JetSample | dict[str, np.ndarray] | np.ndarray


def _jet_sample(x, name: str):
    """(constituents, mask, jet_pt, jet_eta) from a jets dict or a (N, P, 3|4) array."""
    if isinstance(x, JetSample):
        x = x.as_dict()
    if isinstance(x, dict):
        if "constituents" not in x:
            raise FarmError(f"{name}: jets dict needs a 'constituents' array")
        c = np.asarray(x["constituents"])
        jets = x.get("jet_features")
        jet_pt = None if jets is None else np.asarray(jets)[:, 0]
        jet_eta = None if jets is None else np.asarray(jets)[:, 1]
    else:
        c, jet_pt, jet_eta = np.asarray(x), None, None
    eta, phi, pt, mask = jf.split_constituents(c, None, name)
    if jet_pt is not None and not np.all(np.isfinite(jet_pt)):
        raise FarmError(f"{name}: NaN/Inf values in jet_features")
    return np.stack([eta, phi, pt], axis=-1), mask, jet_pt, jet_eta


def evaluate_jets(
    reference: JetInput,
    generated: JetInput,
    out_url: str | None = None,
    options: EvaluationOptions | None = None,
    **option_fields,
) -> EvaluationResult:
    """Compare jet samples with the JetNet metrics (Kansal et al. 2023, arXiv:2211.10295).

    Samples: JetSamples, dicts as farm.formats.jets ({'constituents' (N, P, 4), 'jet_features'
    (N, 4)}) or (N, P, 3|4) constituent arrays. Metrics: w1m (JetNet's: W1 of the relative jet mass
    m / pT_jet from the constituents), w1m_gev (W1 of the jet mass in GeV, when both have
    jet_features), w1p (mean of constituent eta_rel, phi_rel, pt_rel W1), sep/ and w1/ for jet
    mass (GeV when both have jet_features, else relative), pt, eta, n_constituents, tau21, tau32
    and the constituent features, fpd and kpd on JetNet's 36 EFPs (d <= 4, un-normalised), and
    auc_low (constituents) / auc_high (jet features + EFPs).
    `options` (or its fields as keywords) as EvaluationOptions.
    """
    options = options or EvaluationOptions(**option_fields)
    seed = options.seed
    rng = np.random.default_rng(seed)
    ref, gen = _jet_sample(reference, "reference"), _jet_sample(generated, "generated")
    if ref[0].shape[1] != gen[0].shape[1]:
        raise FarmError(
            f"reference jets have {ref[0].shape[1]} constituent slots, generated "
            f"{gen[0].shape[1]}: evaluate samples with the same number of particles"
        )
    absolute = ref[2] is not None and gen[2] is not None
    samples = {}
    for key, (c, mask, jet_pt, jet_eta) in (("reference", ref), ("generated", gen)):
        idx = core.limit(len(c), options.max_events, rng)
        samples[key] = (
            c[idx],
            mask[idx],
            jet_pt[idx] if absolute else None,
            jet_eta[idx] if absolute else None,
        )
    ia, ib, ig = core.halves(len(samples["reference"][0]), len(samples["generated"][0]), rng)
    parts = {
        "a": tuple(None if v is None else v[ia] for v in samples["reference"]),
        "b": tuple(None if v is None else v[ib] for v in samples["reference"]),
        "g": tuple(None if v is None else v[ig] for v in samples["generated"]),
    }
    result = EvaluationResult(kind="jets")
    result.details.update(
        n_reference=len(samples["reference"][0]),
        n_generated=len(samples["generated"][0]),
        n_compared=len(ib),
        n_particles=ref[0].shape[1],
        mass_units="GeV" if absolute else "relative (m / pT_jet)",
        seed=seed,
        **options.labels,
    )
    with core.small_sample_notes(result):
        feats = {k: jf.jet_features(c, m, pt, eta) for k, (c, m, pt, eta) in parts.items()}
        for k, (c, m, _, _) in parts.items():
            feats[k].update(jf.constituent_features(c, m))
        core.add_feature_metrics(result, feats["a"], feats["b"], feats["g"], seed)
        rel_mass = {k: jf.jet_kinematics(c, m)["mass"] for k, (c, m, _, _) in parts.items()}
        core.add_pair(result, "w1m", M.wasserstein_1, *rel_mass.values(), seed=seed)
        if absolute:
            result.metrics["w1m_gev"] = dict(result.metrics["w1/mass"])
        w1p = [result.metrics[f"w1/{k}"] for k in ("eta_rel", "phi_rel", "pt_rel")]
        result.add(
            "w1p",
            (np.mean([m["value"] for m in w1p]), np.mean([m["error"] for m in w1p])),
            (np.mean([m["floor"] for m in w1p]), np.mean([m["floor_error"] for m in w1p])),
        )
        efp = {k: jf.efps(c, m) for k, (c, m, _, _) in parts.items()}
        kw = options.metric_kwargs
        core.add_pair(result, "fpd", M.fpd, *efp.values(), seed=seed, **kw.get("fpd", {}))
        core.add_pair(result, "kpd", M.kpd, *efp.values(), seed=seed, **kw.get("kpd", {}))
        if options.classifier:
            low = {k: jf.constituent_inputs(c, m) for k, (c, m, _, _) in parts.items()}
            jet_keys = ("mass", "pt", "eta", "n_constituents", "tau21", "tau32")
            high = {
                k: np.concatenate([np.stack([feats[k][f] for f in jet_keys], 1), efp[k]], 1)
                for k in parts
            }
            levels = {"low": tuple(low[k] for k in parts), "high": tuple(high[k] for k in parts)}
            core.add_classifiers(result, levels, options)
    if out_url is not None:
        if options.plots:
            from farm.evaluation.plot_sets import jet_plots

            result.plots = jet_plots(out_url, feats, result.details)
        result.write(out_url)
    return result
