"""The evaluation entry points: samples in memory, or locations (files, folders, campaigns).

`evaluate_showers` and `evaluate_jets` compare samples in memory; `evaluate_files` reads two
locations through farm.formats (CaloChallenge HDF5, showers/jets Parquet, jets HDF5; a file, a
folder of shards or a campaign id) and picks the in-memory or the streamed shower evaluation.
"""

from __future__ import annotations

from farm.errors import FarmError
from farm.evaluation.jets import evaluate_jets
from farm.evaluation.options import EvaluationOptions
from farm.evaluation.points import evaluate_points
from farm.evaluation.report import EvaluationResult
from farm.evaluation.showers import evaluate_showers
from farm.evaluation.streaming import evaluate_showers_stream, stream_threshold_bytes
from farm.formats.reader import kind_of, read_jets, read_points, read_showers
from farm.formats.shower_rows import ShowerSource
from farm.geometry import CaloGeometry, load_geometry

__all__ = ["evaluate_files", "evaluate_jets", "evaluate_points", "evaluate_showers"]


def evaluate_files(
    generated: str,
    reference: str,
    geometry: str | None = None,
    out_url: str | None = None,
    options: EvaluationOptions | None = None,
) -> EvaluationResult:
    """Read two locations (generated, reference) and compare them (showers or jets).

    Showers need a geometry: the given one, else the one their files record. They are streamed
    chunk by chunk with `options.stream` True, or with None (auto) when both samples' showers
    would take more than stream_threshold_bytes() in memory.
    """
    options = options or EvaluationOptions()
    kinds = {kind_of(generated), kind_of(reference)}
    if len(kinds) != 1:
        raise FarmError(f"{generated} and {reference} hold different kinds of data")
    kind = kinds.pop()
    if kind == "events":
        from farm.evaluation.events import evaluate_events
        from farm.formats.reader import read_events

        samples = {url: read_events(url) for url in (reference, generated)}
        for url, sample in samples.items():
            if sample.truth_only:
                raise FarmError(f"{url}: a truth-only file has no reco set to evaluate")
        return evaluate_events(samples[reference], samples[generated], out_url, options)
    if kind == "points":
        if options.stream:
            raise FarmError(
                "streaming evaluation supports voxel showers only; point clouds are "
                "evaluated in memory (limit them with --max-events)"
            )
        return evaluate_points(read_points(reference), read_points(generated), out_url, options)
    if kind == "jets":
        if options.stream:
            raise FarmError(
                "streaming evaluation supports shower files only; jets are "
                "evaluated in memory (limit them with --max-events)"
            )
        return evaluate_jets(read_jets(reference), read_jets(generated), out_url, options)
    geo = load_geometry(geometry) if geometry else None
    gen_src, ref_src = ShowerSource(generated, geo), ShowerSource(reference, geo)
    geo = geo or _recorded_geometry(gen_src, ref_src)
    for name, src in (("generated", gen_src), ("reference", ref_src)):
        if src.geometry_name and src.geometry_name != geo.name:
            raise FarmError(
                f"{name} file was written for geometry {src.geometry_name!r}, not {geo.name!r}"
            )
        geo.check_voxels(src.n_voxels, src.url)
    too_big = gen_src.nbytes + ref_src.nbytes > stream_threshold_bytes()
    if options.stream or (options.stream is None and too_big):
        return evaluate_showers_stream(ref_src, gen_src, geo, out_url, options)
    return evaluate_showers(
        read_showers(reference, geo), read_showers(generated, geo), geo, out_url, options
    )


def _recorded_geometry(*sources: ShowerSource) -> CaloGeometry:
    """The one geometry the sources' files record, or a FarmError asking for --geometry."""
    names = {s.geometry_name for s in sources if s.geometry_name}
    if len(names) != 1:
        raise FarmError(
            "cannot tell the showers' geometry: pass --geometry (ds1-photons, ds1-pions, "
            "ds2, ds3)" + (f"; the files name {sorted(names)}" if names else "")
        )
    return load_geometry(names.pop())
