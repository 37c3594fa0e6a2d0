"""Orchestrators: generated vs reference showers or jets -> metrics with floors, plots, report.

The reference is split into two disjoint halves A and B (seeded). Each metric is computed for
(A, G) and, as its noise floor, for (A, B), with G the generated sample cut to the size of B:
value and floor then share sample sizes and reference events, and compare directly.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from farm import store
from farm.errors import FarmError
from farm.evaluation import jet_features as jf
from farm.evaluation import metrics as M
from farm.evaluation import shower_features as sf
from farm.evaluation.report import EvaluationResult
from farm.geometry import CaloGeometry, load_geometry

MAX_SPECTRUM_VOXELS = 2_000_000  # voxel energies entering the spectrum histogram, per sample


def default_threshold(geometry: CaloGeometry) -> float:
    """The challenge's per-voxel evaluation threshold: 1 MeV for DS1, 15 keV for DS2/DS3."""
    return 1.0 if geometry.name.startswith("ds1") or geometry.n_voxels < 1000 else 0.015


def _halves(n_ref: int, n_gen: int, rng: np.random.Generator):
    """Index arrays (A, B, G): disjoint reference halves and a generated subset of size |B|."""
    if n_ref < 4 or n_gen < 2:
        raise FarmError(f"too few events to evaluate: {n_ref} reference, {n_gen} generated")
    perm = rng.permutation(n_ref)
    half = n_ref // 2
    size = min(n_ref - half, n_gen)
    return perm[:half], perm[half : half + size], rng.permutation(n_gen)[:size]


def spectrum_edges(a_min: float, a_max: float, threshold: float) -> np.ndarray:
    """50 log bins of the voxel spectrum over reference half A's range (above the threshold)."""
    lo = max(threshold, a_min, 1e-6)
    return np.geomspace(lo, max(a_max, lo * 10), 51)


def _limit(n: int, max_events: int | None, rng: np.random.Generator) -> np.ndarray:
    idx = np.arange(n)
    if max_events is not None and n > max_events:
        idx = np.sort(rng.choice(n, max_events, replace=False))
    return idx


def _pairwise(
    result: EvaluationResult,
    name: str,
    metric: Callable[..., tuple[float, float]],
    a,
    b,
    g,
    **kwargs,
) -> None:
    result.add(name, metric(a, g, **kwargs), metric(a, b, **kwargs))


def _per_feature(
    result: EvaluationResult,
    fa: dict[str, np.ndarray],
    fb: dict[str, np.ndarray],
    fg: dict[str, np.ndarray],
    seed: int,
) -> dict[str, tuple[float, float]]:
    """sep/<f> and w1/<f> for every feature; returns name -> (sep value, sep floor)."""
    seps = {}
    for key in fa:
        sep_kw = {"seed": seed, "scale": sf.histogram_scale(key)}
        _pairwise(result, f"sep/{key}", M.separation_power, fa[key], fb[key], fg[key], **sep_kw)
        _pairwise(result, f"w1/{key}", M.wasserstein_1, fa[key], fb[key], fg[key], seed=seed)
        m = result.metrics[f"sep/{key}"]
        seps[key] = (m["value"], m["floor"])
    summarise_seps(result, seps)
    return seps


def summarise_seps(result: EvaluationResult, seps: dict[str, tuple[float, float]]) -> None:
    """sep_mean and sep_max (with the feature) from name -> (sep value, sep floor)."""
    vals = np.array([v for v, _ in seps.values()])
    floors = np.array([f for _, f in seps.values()])
    result.add("sep_mean", (vals.mean(), 0.0), (floors.mean(), 0.0))
    worst = int(np.argmax(vals))
    result.add("sep_max", (vals[worst], 0.0), (floors.max(), 0.0), feature=list(seps)[worst])


def _classifiers(
    result: EvaluationResult,
    inputs: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    seed: int,
    classifier_kwargs: dict | None,
) -> None:
    for level, (a, b, g) in inputs.items():
        value = M.classifier_test(a, g, seed=seed, **(classifier_kwargs or {}))
        floor = M.classifier_test(a, b, seed=seed, **(classifier_kwargs or {}))
        result.add(f"auc_{level}", (value.auc, value.auc_error), (floor.auc, floor.auc_error))
        result.add(f"jsd_{level}", (value.jsd, 0.0), (floor.jsd, 0.0))
        result.details[f"classifier_{level}"] = {"value": value.to_dict(), "floor": floor.to_dict()}


def _shower_distances_and_classifiers(
    result: EvaluationResult,
    parts: dict[str, tuple[np.ndarray, np.ndarray]],
    feats: dict[str, dict[str, np.ndarray]],
    geometry: CaloGeometry,
    seed: int,
    classifier: bool,
    classifier_kwargs: dict | None,
    metric_kwargs: dict[str, dict] | None,
) -> None:
    """FPD and KPD on the physics features and the low/high-level classifier AUCs of parts a, b
    (reference halves) and g (generated): (showers, e_inc) each, with their features."""
    dist = {k: sf.distance_inputs(feats[k], parts[k][1], geometry) for k in ("a", "b", "g")}
    kw = metric_kwargs or {}
    _pairwise(result, "fpd", M.fpd, *dist.values(), seed=seed, **kw.get("fpd", {}))
    _pairwise(result, "kpd", M.kpd, *dist.values(), seed=seed, **kw.get("kpd", {}))
    if classifier:
        low = {k: sf.low_level_inputs(*parts[k]) for k in ("a", "b", "g")}
        high = {k: sf.high_level_inputs(feats[k], parts[k][1], geometry) for k in ("a", "b", "g")}
        _classifiers(
            result,
            {"low": (low["a"], low["b"], low["g"]), "high": (high["a"], high["b"], high["g"])},
            seed,
            classifier_kwargs,
        )


def _collect_warnings(result: EvaluationResult, caught: list) -> None:
    for w in caught:
        text = str(w.message)
        if text not in result.notes:
            result.notes.append(text)


# --------------------------------------------------------------------------- showers


def evaluate_showers(
    reference: tuple[np.ndarray, np.ndarray],
    generated: tuple[np.ndarray, np.ndarray],
    geometry: CaloGeometry | str,
    out_url: str | None = None,
    seed: int = 0,
    classifier: bool = True,
    max_events: int | None = None,
    threshold_mev: float | None = None,
    classifier_kwargs: dict | None = None,
    plots: bool = True,
    metric_kwargs: dict[str, dict] | None = None,
) -> EvaluationResult:
    """Compare (showers (N, V) MeV, e_inc (N,) MeV) samples with the CaloChallenge metrics.

    Metrics: sep/<feature> and w1/<feature> for every shower_features feature (sep_mean,
    sep_max), sep_voxel_spectrum, fpd and kpd on distance_inputs, and with `classifier`
    auc_low / auc_high (+ jsd_*) as the challenge's cls-low and cls-high. Voxels at or below
    threshold_mev (default: 1 MeV DS1, 15 keV DS2/DS3) count as empty. Writes metrics.json,
    PNGs and report.html under out_url when given. metric_kwargs: extra keyword arguments
    per metric function name, e.g. {"fpd": {"num_batches": 5}, "kpd": {"batch_size": 2000}}.
    """
    geometry = load_geometry(geometry) if isinstance(geometry, str) else geometry
    threshold = default_threshold(geometry) if threshold_mev is None else float(threshold_mev)
    rng = np.random.default_rng(seed)
    samples = {}
    for name, (showers, e_inc) in (("reference", reference), ("generated", generated)):
        showers, e_inc = np.asarray(showers), np.asarray(e_inc, dtype=np.float64).reshape(-1)
        sf.check_showers(showers, e_inc, geometry, name)
        idx = _limit(len(showers), max_events, rng)
        samples[name] = (showers[idx], e_inc[idx])
    (ref_s, ref_e), (gen_s, gen_e) = samples["reference"], samples["generated"]
    ia, ib, ig = _halves(len(ref_s), len(gen_s), rng)
    parts = {"a": (ref_s[ia], ref_e[ia]), "b": (ref_s[ib], ref_e[ib]), "g": (gen_s[ig], gen_e[ig])}
    result = EvaluationResult(kind="showers")
    result.details.update(
        geometry=geometry.name,
        threshold_mev=threshold,
        n_reference=len(ref_s),
        n_generated=len(gen_s),
        n_compared=len(ib),
        seed=seed,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", M.SmallSampleWarning)
        feats = {k: sf.shower_features(s, e, geometry, threshold) for k, (s, e) in parts.items()}
        seps = _per_feature(result, feats["a"], feats["b"], feats["g"], seed)
        spectra = {}
        for k, (s, _) in parts.items():
            v = sf.voxel_energies(s, threshold)
            if len(v) > MAX_SPECTRUM_VOXELS:
                v = rng.choice(v, MAX_SPECTRUM_VOXELS, replace=False)
            spectra[k] = v if len(v) else np.zeros(1)
        edges = spectrum_edges(float(spectra["a"].min()), float(spectra["a"].max()), threshold)
        _pairwise(
            result,
            "sep_voxel_spectrum",
            M.separation_power,
            spectra["a"],
            spectra["b"],
            spectra["g"],
            bins=edges,
            seed=seed,
        )
        _shower_distances_and_classifiers(
            result, parts, feats, geometry, seed, classifier, classifier_kwargs, metric_kwargs
        )
    _collect_warnings(result, caught)
    if out_url is not None:
        if plots:
            from farm.evaluation.plot_sets import shower_plots

            result.plots = shower_plots(out_url, parts, feats, spectra, edges, seps, geometry)
        result.write(out_url)
    return result


# --------------------------------------------------------------------------- jets


def _jet_sample(x, name: str):
    """(constituents, mask, jet_pt, jet_eta) from a jets dict or a (N, P, 3|4) array."""
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
    reference,
    generated,
    out_url: str | None = None,
    seed: int = 0,
    classifier: bool = True,
    max_events: int | None = None,
    classifier_kwargs: dict | None = None,
    plots: bool = True,
    metric_kwargs: dict[str, dict] | None = None,
) -> EvaluationResult:
    """Compare jet samples with the JetNet metrics (Kansal et al. 2023, arXiv:2211.10295).

    Samples: dicts as farm.formats.jets ({'constituents' (N, P, 4), 'jet_features' (N, 4)}) or
    (N, P, 3|4) constituent arrays. Metrics: w1m (JetNet's: W1 of the relative jet mass
    m / pT_jet from the constituents), w1m_gev (W1 of the jet mass in GeV, when both have
    jet_features), w1p (mean of constituent eta_rel, phi_rel, pt_rel W1), sep/ and w1/ for jet
    mass (GeV when both have jet_features, else relative), pt, eta, n_constituents, tau21, tau32
    and the constituent features, fpd and kpd on JetNet's 36 EFPs (d <= 4, un-normalised), and
    auc_low (constituents) / auc_high (jet features + EFPs).
    metric_kwargs as evaluate_showers.
    """
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
        idx = _limit(len(c), max_events, rng)
        samples[key] = (
            c[idx],
            mask[idx],
            jet_pt[idx] if absolute else None,
            jet_eta[idx] if absolute else None,
        )
    ia, ib, ig = _halves(len(samples["reference"][0]), len(samples["generated"][0]), rng)
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
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", M.SmallSampleWarning)
        feats = {k: jf.jet_features(c, m, pt, eta) for k, (c, m, pt, eta) in parts.items()}
        for k, (c, m, _, _) in parts.items():
            feats[k].update(jf.constituent_features(c, m))
        _per_feature(result, feats["a"], feats["b"], feats["g"], seed)
        rel_mass = {k: jf.jet_kinematics(c, m)["mass"] for k, (c, m, _, _) in parts.items()}
        _pairwise(result, "w1m", M.wasserstein_1, *rel_mass.values(), seed=seed)
        if absolute:
            result.metrics["w1m_gev"] = dict(result.metrics["w1/mass"])
        w1p = [result.metrics[f"w1/{k}"] for k in ("eta_rel", "phi_rel", "pt_rel")]
        result.add(
            "w1p",
            (np.mean([m["value"] for m in w1p]), np.mean([m["error"] for m in w1p])),
            (np.mean([m["floor"] for m in w1p]), np.mean([m["floor_error"] for m in w1p])),
        )
        efp = {k: jf.efps(c, m) for k, (c, m, _, _) in parts.items()}
        kw = metric_kwargs or {}
        _pairwise(result, "fpd", M.fpd, *efp.values(), seed=seed, **kw.get("fpd", {}))
        _pairwise(result, "kpd", M.kpd, *efp.values(), seed=seed, **kw.get("kpd", {}))
        if classifier:
            low = {k: jf.constituent_inputs(c, m) for k, (c, m, _, _) in parts.items()}
            jet_keys = ("mass", "pt", "eta", "n_constituents", "tau21", "tau32")
            high = {
                k: np.concatenate([np.stack([feats[k][f] for f in jet_keys], 1), efp[k]], 1)
                for k in parts
            }
            _classifiers(
                result,
                {"low": (low["a"], low["b"], low["g"]), "high": (high["a"], high["b"], high["g"])},
                seed,
                classifier_kwargs,
            )
    _collect_warnings(result, caught)
    if out_url is not None:
        if plots:
            from farm.evaluation.plot_sets import jet_plots

            result.plots = jet_plots(out_url, feats, result.details["mass_units"])
        result.write(out_url)
    return result


# --------------------------------------------------------------------------- files


SUFFIXES = (".h5", ".hdf5", ".parquet")


def data_files(url: str) -> list[str]:
    """The file itself, or the .h5/.hdf5/.parquet files in a folder (shards), sorted."""
    fs, path = store.filesystem(url)
    if not fs.exists(path):
        raise FarmError(f"{url}: file not found")
    if not fs.isdir(path):
        return [url]
    names = [n for n in store.listdir(url) if n.endswith(SUFFIXES) and not n.startswith(".")]
    if not names:
        raise FarmError(f"{url}: folder holds no .h5, .hdf5 or .parquet files")
    return [store.join(url, n) for n in names]


def detect_kind(url: str) -> str:
    """'showers' or 'jets' from a file's contents (.h5/.hdf5 datasets or Parquet columns)."""
    fs, path = store.filesystem(url)
    if url.endswith(".parquet"):
        import pyarrow.parquet as pq

        with fs.open(path, "rb") as handle:
            names = set(pq.ParquetFile(handle).schema_arrow.names)
    elif url.endswith((".h5", ".hdf5")):
        import h5py

        with fs.open(path, "rb") as handle, h5py.File(handle, "r") as f:
            names = set(f.keys())
    else:
        raise FarmError(f"{url}: unknown file type; expected .h5, .hdf5 or .parquet")
    if "showers" in names:
        return "showers"
    if {"particle_features", "eta_rel"} & names:
        return "jets"
    raise FarmError(f"{url}: neither a showers nor a jets file (found {sorted(names)})")


def read_showers(url: str, geometry: CaloGeometry | None) -> tuple[np.ndarray, np.ndarray, str]:
    """read_showers_file over a file or a folder of shards (concatenated)."""
    parts = [read_showers_file(u, geometry) for u in data_files(url)]
    names = {p[2] for p in parts}
    if len(names) > 1:
        raise FarmError(f"{url}: files written for different geometries {sorted(names)}")
    return (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        names.pop(),
    )


def read_jet_sample(url: str) -> dict[str, np.ndarray]:
    """Jets dict (constituents, jet_features) from a file or a folder of shards."""
    from farm.formats.jets import read_jets_file as read_jets

    parts = [read_jets(u)[0] for u in data_files(url)]
    return {
        key: np.concatenate([p[key] for p in parts])
        for key in ("constituents", "jet_features")
        if all(key in p for p in parts)
    }


def read_showers_file(
    url: str, geometry: CaloGeometry | None
) -> tuple[np.ndarray, np.ndarray, str]:
    """(showers, e_inc, geometry name or '') from CaloChallenge HDF5 or farm showers Parquet."""
    if url.endswith(".parquet"):
        from farm.formats.showers_parquet import read_showers_parquet

        data = read_showers_parquet(url)
        name = data.get("metadata", {}).get("geometry", "")
        return data["showers"], data["incident_energy"], name
    from farm.formats.calochallenge import read_calochallenge

    showers, e_inc = read_calochallenge(url, geometry)
    return showers, e_inc, ""


def evaluate_files(
    generated_url: str,
    reference_url: str,
    geometry_name: str | None = None,
    out_url: str | None = None,
    seed: int = 0,
    classifier: bool = True,
    max_events: int | None = None,
    classifier_kwargs: dict | None = None,
    stream: bool | None = None,
    subsample: int | None = None,
    chunk_rows: int | None = None,
    metric_kwargs: dict[str, dict] | None = None,
) -> EvaluationResult:
    """Read generated and reference files (CaloChallenge HDF5, showers/jets Parquet, jets HDF5)
    and run evaluate_showers or evaluate_jets. Showers need a geometry: geometry_name, else the
    one recorded in a Parquet file's metadata.

    Showers are streamed chunk by chunk (farm.evaluation.streaming) with `stream` True, or with
    None (auto) when both samples' showers would take more than
    streaming.stream_threshold_bytes() in memory; `subsample` and `chunk_rows` tune streaming.
    """
    kinds = {detect_kind(data_files(u)[0]) for u in (generated_url, reference_url)}
    if len(kinds) != 1:
        raise FarmError(f"{generated_url} and {reference_url} hold different kinds of data")
    kind = kinds.pop()
    if kind == "jets":
        if stream:
            raise FarmError(
                "streaming evaluation supports shower files only; jets are "
                "evaluated in memory (limit them with --max-events)"
            )
        gen, ref = read_jet_sample(generated_url), read_jet_sample(reference_url)
        return evaluate_jets(
            ref,
            gen,
            out_url,
            seed,
            classifier,
            max_events,
            classifier_kwargs=classifier_kwargs,
            metric_kwargs=metric_kwargs,
        )
    if stream is not False:
        from farm.evaluation import streaming

        gen_src, ref_src, geo = streaming.sources_for(generated_url, reference_url, geometry_name)
        if stream or gen_src.nbytes + ref_src.nbytes > streaming.stream_threshold_bytes():
            return streaming.evaluate_showers_stream(
                ref_src,
                gen_src,
                geo,
                out_url,
                seed,
                classifier,
                max_events,
                classifier_kwargs=classifier_kwargs,
                metric_kwargs=metric_kwargs,
                subsample=subsample,
                chunk_rows=chunk_rows,
            )
    geometry = load_geometry(geometry_name) if geometry_name else None
    gen_s, gen_e, gen_geo = read_showers(generated_url, geometry)
    ref_s, ref_e, ref_geo = read_showers(reference_url, geometry)
    if geometry is None:
        names = {n for n in (gen_geo, ref_geo) if n}
        if len(names) != 1:
            raise FarmError(
                "cannot tell the showers' geometry: pass --geometry (ds1-photons, ds1-pions, "
                "ds2, ds3)" + (f"; the files name {sorted(names)}" if names else "")
            )
        geometry = load_geometry(names.pop())
    for name, found in (("generated", gen_geo), ("reference", ref_geo)):
        if found and found != geometry.name:
            raise FarmError(
                f"{name} file was written for geometry {found!r}, not {geometry.name!r}"
            )
    return evaluate_showers(
        (ref_s, ref_e),
        (gen_s, gen_e),
        geometry,
        out_url,
        seed,
        classifier,
        max_events,
        classifier_kwargs=classifier_kwargs,
        metric_kwargs=metric_kwargs,
    )
