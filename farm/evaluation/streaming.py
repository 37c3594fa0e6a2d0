"""Shower evaluation of files larger than memory: histogram metrics streamed chunk by chunk.

The events are split exactly as evaluate_showers splits them in memory (the same seeded reference
halves A, B and generated subset G, by global row number), then:

- pass 1 reads reference half A chunk by chunk for each feature's summary (range, zeros,
  smallest positive value: metrics.FeatureSummary) and the voxel spectrum's range, which fix the
  histogram bins (the same edges evaluate_showers derives from A);
- pass 2 reads A, B and G chunk by chunk into those histograms: separation powers (sep/*,
  sep_mean, sep_max, sep_voxel_spectrum) are then identical to the in-memory ones (counts add
  up), up to floating-point rounding of the features (BLAS may sum a chunk in another order than
  the whole array), except that the in-memory voxel spectrum subsamples above
  MAX_SPECTRUM_VOXELS voxels and the streamed one uses them all; w1/* come from per-bin counts
  and moments in fine bins (metrics.W1_BINS, half at quantiles of A) with an exact tail term,
  each with its bound `binning_error` on |streamed - exact| (metrics.wasserstein_1_binned);
- FPD, KPD, the classifiers and the plots use the first `subsample` events of A, B and G in the
  in-memory order (a seeded random subsample; all of them when the parts are smaller, and then
  those metrics equal the in-memory ones too).

Memory: one chunk of showers (CHUNK_BYTES), the subsample, about 25 bytes per event for the
split and the row labels, and the histograms (about 100 kB per feature and sample).
"""

from __future__ import annotations

import os

import numpy as np

from farm.evaluation import core
from farm.evaluation import metrics as M
from farm.evaluation import shower_features as sf
from farm.evaluation.options import EvaluationOptions
from farm.evaluation.report import EvaluationResult
from farm.formats.shower_rows import ShowerSource, default_chunk_rows
from farm.geometry import CaloGeometry, load_geometry

SUBSAMPLE_EVENTS = 50_000  # events per part for FPD/KPD/classifiers/plots, at most ...
SUBSAMPLE_BYTES = 1 << 30  # ... and at most this many bytes of float32 showers for all parts


def default_subsample(n_voxels: int) -> int:
    """Events per part for FPD/KPD/classifiers/plots: 50,000, fewer for big geometries (1 GiB)."""
    return int(max(1000, min(SUBSAMPLE_EVENTS, SUBSAMPLE_BYTES // (3 * 4 * n_voxels))))


def stream_threshold_bytes() -> int:
    """Bytes of showers (both samples, float32) above which farm evaluate streams by default.

    FARM_EVAL_STREAM_BYTES, else a quarter of the physical memory (at most 8 GiB).
    """
    if os.environ.get("FARM_EVAL_STREAM_BYTES"):
        return int(float(os.environ["FARM_EVAL_STREAM_BYTES"]))
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        physical = 16 << 30
    return int(min(physical // 4, 8 << 30))


# --------------------------------------------------------------------------- accumulators


class _Range:
    """Running minimum and maximum per feature."""

    def __init__(self):
        self.lo: dict[str, float] = {}
        self.hi: dict[str, float] = {}

    def update(self, key: str, values: np.ndarray) -> None:
        if values.size:
            lo, hi = float(values.min()), float(values.max())
            self.lo[key] = min(self.lo.get(key, lo), lo)
            self.hi[key] = max(self.hi.get(key, hi), hi)


class _Histograms:
    """Separation-power and fine W1 histograms (with tails) of one part, filled chunk by chunk."""

    def __init__(self, sep_edges: dict, w1_edges: dict, spec_edges: np.ndarray):
        self.sep_edges, self.w1_edges, self.spec_edges = sep_edges, w1_edges, spec_edges
        self.sep = {k: np.zeros(len(e) - 1) for k, e in sep_edges.items()}
        self.w1 = {k: np.zeros((3, len(e) - 1)) for k, e in w1_edges.items()}
        self.tail = dict.fromkeys(w1_edges, 0.0)
        self.spectrum = np.zeros(len(spec_edges) - 1)
        self.n_events = 0
        self.n_voxels = 0

    def fill(self, feats: dict[str, np.ndarray], voxels: np.ndarray) -> None:
        for key, values in feats.items():
            self.sep[key] += M.separation_counts(values, self.sep_edges[key])
            edges = self.w1_edges[key]
            lo, hi = edges[0], edges[-1]
            self.tail[key] += float(
                np.clip(lo - values, 0, None).sum() + np.clip(values - hi, 0, None).sum()
            )
            self.w1[key] += M.binned_moments(values, edges)
        self.spectrum += M.separation_counts(voxels, self.spec_edges)
        self.n_events += len(next(iter(feats.values()))) if feats else 0
        self.n_voxels += voxels.size


# --------------------------------------------------------------------------- evaluation


def evaluate_showers_stream(
    reference: ShowerSource,
    generated: ShowerSource,
    geometry: CaloGeometry | str,
    out_url: str | None = None,
    options: EvaluationOptions | None = None,
    **option_fields,
) -> EvaluationResult:
    """evaluate_showers over files read chunk by chunk.

    See the module docstring for what is exact and what is computed on a subsample;
    `options.subsample` sets the events per part for FPD/KPD/classifiers/plots
    (default_subsample), `options.chunk_rows` the showers per read.
    """
    options = options or EvaluationOptions(**option_fields)
    seed = options.seed
    geometry = load_geometry(geometry) if isinstance(geometry, str) else geometry
    for name, src in (("reference", reference), ("generated", generated)):
        geometry.check_voxels(src.n_voxels, f"{name} {src.url}")
    threshold = core.threshold_of(geometry, options)
    chunk = options.chunk_rows or default_chunk_rows(geometry.n_voxels)
    cap = options.subsample or default_subsample(geometry.n_voxels)
    rng = np.random.default_rng(seed)
    ref_idx = core.limit(reference.n, options.max_events, rng)
    gen_idx = core.limit(generated.n, options.max_events, rng)
    ia, ib, ig = core.halves(len(ref_idx), len(gen_idx), rng)
    rows = {"a": ref_idx[ia], "b": ref_idx[ib], "g": gen_idx[ig]}
    sub_rows = {k: r[:cap] for k, r in rows.items()}
    label = {"ref": np.zeros(reference.n, np.int8), "gen": np.zeros(generated.n, np.int8)}
    label["ref"][rows["a"]], label["ref"][rows["b"]], label["gen"][rows["g"]] = 1, 2, 3
    code = {"a": 1, "b": 2, "g": 3}

    result = EvaluationResult(kind="showers")
    core.shower_details(result, geometry, threshold, len(ref_idx), len(gen_idx), len(ib), options)
    result.details.update(
        streamed=True,
        chunk_rows=chunk,
        subsample=min(cap, len(ib)),
    )

    slot = {"ref": np.full(reference.n, -1, np.int64), "gen": np.full(generated.n, -1, np.int64)}
    for p in core.PARTS:
        slot["gen" if p == "g" else "ref"][sub_rows[p]] = np.arange(sub_rows[p].size)
    sub = {
        p: (np.empty((sub_rows[p].size, geometry.n_voxels), np.float32), np.empty(sub_rows[p].size))
        for p in core.PARTS
    }
    names = {"ref": "reference", "gen": "generated"}

    def parts_of(which: str, wanted_parts: tuple[str, ...]):
        """Yield (part, showers, e_inc) chunks of one sample; copy subsample events on the way."""
        lab = label[which]
        src = reference if which == "ref" else generated
        wanted = np.isin(lab, [code[p] for p in wanted_parts])
        for got, showers, e_inc in src.chunks(wanted, chunk):
            sf.check_showers(showers, e_inc, geometry, f"{names[which]} {src.url}")
            for p in wanted_parts:
                sel = lab[got] == code[p]
                if not sel.any():
                    continue
                at = slot[which][got[sel]]
                keep = at >= 0
                sub[p][0][at[keep]] = showers[sel][keep]
                sub[p][1][at[keep]] = e_inc[sel][keep]
                yield p, showers[sel], e_inc[sel]

    with core.small_sample_notes(result):
        # pass 1: summaries of half A fix the bins (and A's subsample is copied)
        summaries: dict[str, M.FeatureSummary] = {}
        spec = _Range()
        for _, showers, e_inc in parts_of("ref", ("a",)):
            for key, values in sf.shower_features(showers, e_inc, geometry, threshold).items():
                summaries[key] = M.FeatureSummary.of(values).merge(summaries.get(key))
            spec.update("v", sf.voxel_energies(showers, threshold))
        sub_feats = {"a": sf.shower_features(*sub["a"], geometry, threshold)}
        keys = list(sub_feats["a"])
        sep_edges = {k: M.feature_edges(summaries[k], sf.histogram_scale(k)) for k in keys}
        w1_edges = {
            k: M.fine_edges(summaries[k].lo, summaries[k].hi, sub_feats["a"][k]) for k in keys
        }
        spec_edges = core.spectrum_edges(spec.lo.get("v", 0.0), spec.hi.get("v", 0.0), threshold)
        # pass 2: histograms of A, B and G
        hists = {p: _Histograms(sep_edges, w1_edges, spec_edges) for p in core.PARTS}
        for which, wanted in (("ref", ("a", "b")), ("gen", ("g",))):
            for p, showers, e_inc in parts_of(which, wanted):
                feats = sf.shower_features(showers, e_inc, geometry, threshold)
                hists[p].fill(feats, sf.voxel_energies(showers, threshold))
        a, b, g = (hists[p] for p in core.PARTS)
        for p in ("b", "g"):
            sub_feats[p] = sf.shower_features(*sub[p], geometry, threshold)
        for h in hists.values():
            if h.n_voxels == 0:  # as in memory: an empty spectrum counts one zero
                h.spectrum[0], h.n_voxels = 1.0, 1
        n_small = min(a.n_events, b.n_events, g.n_events)
        M.warn_small(n_small, M.MIN_N_HISTOGRAM, "separation power")
        M.warn_small(n_small, M.MIN_N_W1, "Wasserstein-1")
        seps = {}
        for key in keys:
            result.add(
                f"sep/{key}",
                M.separation_power_counts(a.sep[key], g.sep[key], seed),
                M.separation_power_counts(a.sep[key], b.sep[key], seed),
            )
            value = M.wasserstein_1_binned(
                a.w1[key], g.w1[key], w1_edges[key], g.tail[key] / g.n_events, seed
            )
            floor = M.wasserstein_1_binned(
                a.w1[key], b.w1[key], w1_edges[key], b.tail[key] / b.n_events, seed
            )
            result.add(
                f"w1/{key}",
                value[:2],
                floor[:2],
                binning_error=value[2],
                floor_binning_error=floor[2],
            )
            seps[key] = (
                result.metrics[f"sep/{key}"]["value"],
                result.metrics[f"sep/{key}"]["floor"],
            )
        core.summarise_seps(result, seps)
        M.warn_small(min(a.n_voxels, b.n_voxels, g.n_voxels), M.MIN_N_HISTOGRAM, "separation power")
        result.add(
            "sep_voxel_spectrum",
            M.separation_power_counts(a.spectrum, g.spectrum, seed),
            M.separation_power_counts(a.spectrum, b.spectrum, seed),
        )
        # subsample metrics, exactly as in memory on those events
        core.add_shower_distances_and_classifiers(result, sub, sub_feats, geometry, options)
    if cap < len(ib):
        result.notes.append(
            f"streamed: histogram metrics use all {len(ib)} events per sample; FPD, KPD, "
            f"classifiers and plots a random subsample of {cap}"
        )
    if out_url is not None:
        if options.plots:
            from farm.evaluation.plot_sets import shower_plots

            spectra = {p: sf.voxel_energies(sub[p][0], threshold) for p in core.PARTS}
            spectra = {p: v if len(v) else np.zeros(1) for p, v in spectra.items()}
            result.plots = shower_plots(
                out_url, sub, sub_feats, spectra, spec_edges, seps, geometry, result.details
            )
        result.write(out_url)
    return result
