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
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from farm.errors import FarmError
from farm.evaluation import metrics as M
from farm.evaluation import shower_features as sf
from farm.evaluation.report import EvaluationResult
from farm.geometry import CaloGeometry, load_geometry

CHUNK_BYTES = 64 << 20  # showers per chunk: at most this many bytes of float32 voxels
SUBSAMPLE_EVENTS = 50_000  # events per part for FPD/KPD/classifiers/plots, at most ...
SUBSAMPLE_BYTES = 1 << 30  # ... and at most this many bytes of float32 showers for all parts
PARTS = ("a", "b", "g")


# --------------------------------------------------------------------------- files


@dataclass(frozen=True)
class ShowerFile:
    """One CaloChallenge HDF5 or farm showers Parquet file, known from its metadata only."""

    url: str
    n: int
    n_voxels: int
    geometry: str  # recorded in Parquet metadata; '' for HDF5


def inspect_file(url: str) -> ShowerFile:
    """Row count, voxel count and recorded geometry of a shower file without reading its data."""
    if url.endswith(".parquet"):
        from farm.formats.showers_parquet import _parquet_file, metadata

        pf, handle = _parquet_file(url)
        try:
            n_voxels = pf.schema_arrow.field("showers").type.list_size
            meta = metadata(pf.schema_arrow)
            return ShowerFile(url, pf.metadata.num_rows, n_voxels, meta.get("geometry", ""))
        finally:
            handle.close()
    from farm.formats.calochallenge import _datasets, _open

    with _open(url) as f:
        s_ds, _, n = _datasets(f, url, None)
        return ShowerFile(url, n, s_ds.shape[1], "")


def read_file_rows(
    f: ShowerFile, wanted: np.ndarray, chunk_rows: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(local rows, showers, e_inc) of the wanted rows (bool mask over the file), in order.

    Parquet: only row groups holding wanted rows are read. HDF5: slices of chunk_rows rows, read
    whole when at least a quarter of their rows are wanted, else row by row (h5py selection).
    """
    if f.url.endswith(".parquet"):
        from farm.formats.showers_parquet import COLUMNS, _batch_arrays, _parquet_file

        pf, handle = _parquet_file(f.url)
        try:
            start = 0
            for g in range(pf.metadata.num_row_groups):
                n = pf.metadata.row_group(g).num_rows
                sel = np.flatnonzero(wanted[start : start + n])
                if sel.size:
                    data = _batch_arrays(pf.read_row_group(g, columns=list(COLUMNS)))
                    for lo in range(0, sel.size, chunk_rows):
                        idx = sel[lo : lo + chunk_rows]
                        yield start + idx, data["showers"][idx], data["incident_energy"][idx]
                start += n
        finally:
            handle.close()
        return
    from farm.formats.calochallenge import _datasets, _open, _read_rows

    with _open(f.url) as h5:
        s_ds, e_ds, n = _datasets(h5, f.url, None)
        for start in range(0, n, chunk_rows):
            stop = min(start + chunk_rows, n)
            sel = np.flatnonzero(wanted[start:stop])
            if not sel.size:
                continue
            if sel.size * 4 >= stop - start:
                showers, e_inc = _read_rows(s_ds, e_ds, start, stop, f.url, np.float32)
                yield start + sel, showers[sel], e_inc[sel]
                continue
            rows = start + sel
            try:
                showers = np.asarray(s_ds[rows], dtype=np.float32)
                e_inc = np.asarray(e_ds[rows], dtype=np.float64).reshape(-1)
            except (OSError, ValueError, RuntimeError) as exc:
                raise FarmError(
                    f"{f.url}: cannot read rows near {start}, file corrupt ({exc})"
                ) from None
            yield rows, showers, e_inc


class ShowerSource:
    """Shower files (one, or a folder of shards) seen as one sample with global row numbers."""

    def __init__(self, url: str, geometry: CaloGeometry | None = None):
        from farm.evaluation.evaluate import data_files

        self.url = url
        self.files = [inspect_file(u) for u in data_files(url)]
        voxels = {f.n_voxels for f in self.files}
        if len(voxels) > 1:
            raise FarmError(f"{url}: files with different voxel counts {sorted(voxels)}")
        names = {f.geometry for f in self.files if f.geometry}
        if len(names) > 1:
            raise FarmError(f"{url}: files written for different geometries {sorted(names)}")
        self.geometry_name = names.pop() if names else ""
        self.n_voxels = voxels.pop()
        if geometry is not None:
            geometry.check_voxels(self.n_voxels, url)
        self.offsets = np.cumsum([0] + [f.n for f in self.files])

    @property
    def n(self) -> int:
        return int(self.offsets[-1])

    @property
    def nbytes(self) -> int:
        """Size of all the showers as float32 in memory."""
        return self.n * self.n_voxels * 4

    def chunks(
        self, wanted: np.ndarray, chunk_rows: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(global rows, showers, e_inc) of the wanted rows (bool mask over all rows), in order."""
        for f, start in zip(self.files, self.offsets[:-1], strict=True):
            mask = wanted[start : start + f.n]
            if mask.any():
                for rows, showers, e_inc in read_file_rows(f, mask, chunk_rows):
                    yield start + rows, showers, e_inc

    def take(
        self, rows: np.ndarray, chunk_rows: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(showers, e_inc) of the given global rows, in the given order; reads only those."""
        rows = np.asarray(rows, dtype=np.int64)
        wanted = np.zeros(self.n, dtype=bool)
        wanted[rows] = True
        slot = np.full(self.n, -1, dtype=np.int64)
        slot[rows] = np.arange(rows.size)
        showers = np.empty((rows.size, self.n_voxels), dtype=np.float32)
        e_inc = np.empty(rows.size, dtype=np.float64)
        for got, s, e in self.chunks(wanted, chunk_rows or default_chunk_rows(self.n_voxels)):
            showers[slot[got]], e_inc[slot[got]] = s, e
        return showers, e_inc


def default_chunk_rows(n_voxels: int) -> int:
    return max(1, CHUNK_BYTES // (4 * n_voxels))


def default_subsample(n_voxels: int) -> int:
    """Events per part for FPD/KPD/classifiers/plots: 50,000, fewer for big geometries (1 GiB)."""
    return int(max(1000, min(SUBSAMPLE_EVENTS, SUBSAMPLE_BYTES // (3 * 4 * n_voxels))))


def stream_threshold_bytes() -> int:
    """Above this many bytes of showers (both samples, float32) farm evaluate streams by default:
    FARM_EVAL_STREAM_BYTES, else a quarter of the physical memory (at most 8 GiB)."""
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
    seed: int = 0,
    classifier: bool = True,
    max_events: int | None = None,
    threshold_mev: float | None = None,
    classifier_kwargs: dict | None = None,
    plots: bool = True,
    metric_kwargs: dict[str, dict] | None = None,
    subsample: int | None = None,
    chunk_rows: int | None = None,
) -> EvaluationResult:
    """evaluate_showers over files read chunk by chunk (see the module docstring for what is
    exact and what is computed on a subsample). Arguments as evaluate_showers, plus `subsample`
    (events per part for FPD/KPD/classifiers/plots; default_subsample) and `chunk_rows`."""
    from farm.evaluation.evaluate import (
        _collect_warnings,
        _halves,
        _limit,
        _shower_distances_and_classifiers,
        default_threshold,
        spectrum_edges,
        summarise_seps,
    )

    geometry = load_geometry(geometry) if isinstance(geometry, str) else geometry
    for name, src in (("reference", reference), ("generated", generated)):
        geometry.check_voxels(src.n_voxels, f"{name} {src.url}")
    threshold = default_threshold(geometry) if threshold_mev is None else float(threshold_mev)
    chunk = chunk_rows or default_chunk_rows(geometry.n_voxels)
    cap = subsample or default_subsample(geometry.n_voxels)
    rng = np.random.default_rng(seed)
    ref_idx = _limit(reference.n, max_events, rng)
    gen_idx = _limit(generated.n, max_events, rng)
    ia, ib, ig = _halves(len(ref_idx), len(gen_idx), rng)
    rows = {"a": ref_idx[ia], "b": ref_idx[ib], "g": gen_idx[ig]}
    sub_rows = {k: r[:cap] for k, r in rows.items()}
    label = {"ref": np.zeros(reference.n, np.int8), "gen": np.zeros(generated.n, np.int8)}
    label["ref"][rows["a"]], label["ref"][rows["b"]], label["gen"][rows["g"]] = 1, 2, 3
    code = {"a": 1, "b": 2, "g": 3}

    result = EvaluationResult(kind="showers")
    result.details.update(
        geometry=geometry.name,
        threshold_mev=threshold,
        n_reference=len(ref_idx),
        n_generated=len(gen_idx),
        n_compared=len(ib),
        seed=seed,
        streamed=True,
        chunk_rows=chunk,
        subsample=min(cap, len(ib)),
    )

    slot = {"ref": np.full(reference.n, -1, np.int64), "gen": np.full(generated.n, -1, np.int64)}
    for p in PARTS:
        slot["gen" if p == "g" else "ref"][sub_rows[p]] = np.arange(sub_rows[p].size)
    sub = {
        p: (np.empty((sub_rows[p].size, geometry.n_voxels), np.float32), np.empty(sub_rows[p].size))
        for p in PARTS
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

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", M.SmallSampleWarning)
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
        spec_edges = spectrum_edges(spec.lo.get("v", 0.0), spec.hi.get("v", 0.0), threshold)
        # pass 2: histograms of A, B and G
        hists = {p: _Histograms(sep_edges, w1_edges, spec_edges) for p in PARTS}
        for which, wanted in (("ref", ("a", "b")), ("gen", ("g",))):
            for p, showers, e_inc in parts_of(which, wanted):
                feats = sf.shower_features(showers, e_inc, geometry, threshold)
                hists[p].fill(feats, sf.voxel_energies(showers, threshold))
        a, b, g = (hists[p] for p in PARTS)
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
        summarise_seps(result, seps)
        M.warn_small(min(a.n_voxels, b.n_voxels, g.n_voxels), M.MIN_N_HISTOGRAM, "separation power")
        result.add(
            "sep_voxel_spectrum",
            M.separation_power_counts(a.spectrum, g.spectrum, seed),
            M.separation_power_counts(a.spectrum, b.spectrum, seed),
        )
        # subsample metrics, exactly as in memory on those events
        _shower_distances_and_classifiers(
            result, sub, sub_feats, geometry, seed, classifier, classifier_kwargs, metric_kwargs
        )
    _collect_warnings(result, caught)
    if cap < len(ib):
        result.notes.append(
            f"streamed: histogram metrics use all {len(ib)} events per sample; FPD, KPD, "
            f"classifiers and plots a random subsample of {cap}"
        )
    if out_url is not None:
        if plots:
            from farm.evaluation.plot_sets import shower_plots

            spectra = {p: sf.voxel_energies(sub[p][0], threshold) for p in PARTS}
            spectra = {p: v if len(v) else np.zeros(1) for p, v in spectra.items()}
            result.plots = shower_plots(
                out_url, sub, sub_feats, spectra, spec_edges, seps, geometry
            )
        result.write(out_url)
    return result


def sources_for(
    generated_url: str, reference_url: str, geometry_name: str | None
) -> tuple[ShowerSource, ShowerSource, CaloGeometry]:
    """Shower sources for two URLs and their geometry (given, or recorded in Parquet metadata)."""
    geometry = load_geometry(geometry_name) if geometry_name else None
    gen = ShowerSource(generated_url, geometry)
    ref = ShowerSource(reference_url, geometry)
    if geometry is None:
        names = {n for n in (gen.geometry_name, ref.geometry_name) if n}
        if len(names) != 1:
            raise FarmError(
                "cannot tell the showers' geometry: pass --geometry (ds1-photons, ds1-pions, "
                "ds2, ds3)" + (f"; the files name {sorted(names)}" if names else "")
            )
        geometry = load_geometry(names.pop())
        for src in (gen, ref):
            geometry.check_voxels(src.n_voxels, src.url)
    for name, src in (("generated", gen), ("reference", ref)):
        if src.geometry_name and src.geometry_name != geometry.name:
            raise FarmError(
                f"{name} file was written for geometry {src.geometry_name!r}, not {geometry.name!r}"
            )
    return gen, ref, geometry


__all__ = [
    "ShowerFile",
    "ShowerSource",
    "evaluate_showers_stream",
    "inspect_file",
    "read_file_rows",
    "sources_for",
    "stream_threshold_bytes",
]
