"""Streaming evaluation: chunk-by-chunk histograms equal the in-memory metrics on small files."""

from __future__ import annotations

import numpy as np
import pytest
from eval_samples import make_jets, make_showers

from farm.cli import main
from farm.errors import FarmError
from farm.evaluation import metrics as M
from farm.evaluation.evaluate import evaluate_files
from farm.evaluation.options import EvaluationOptions
from farm.formats.calochallenge import write_calochallenge
from farm.formats.jets import write_jets
from farm.formats.shower_rows import ShowerSource
from farm.formats.showers_parquet import write_showers_parquet

pytestmark = pytest.mark.filterwarnings("ignore::farm.evaluation.checks.SmallSampleWarning")
SMALL = dict(epochs=2, hidden=16)
FAST = {"fpd": {"num_batches": 3, "num_points": 4}, "kpd": {"num_batches": 3, "batch_size": 300}}


@pytest.fixture(scope="module")
def files(geometry, tmp_path_factory):
    """Reference as 3 HDF5 shards, generated as 2 Parquet shards with small row groups."""
    root = tmp_path_factory.mktemp("stream")
    ref_s, ref_e = make_showers(geometry, 1300, seed=0)
    gen_s, gen_e = make_showers(geometry, 700, seed=1, scale=1.03)
    for k, (lo, hi) in enumerate([(0, 500), (500, 1000), (1000, 1300)]):
        write_calochallenge(str(root / "ref" / f"r{k}.h5"), ref_s[lo:hi], ref_e[lo:hi], geometry)
    for k, (lo, hi) in enumerate([(0, 400), (400, 700)]):
        write_showers_parquet(
            str(root / "gen" / f"g{k}.parquet"),
            gen_s[lo:hi],
            gen_e[lo:hi],
            np.arange(lo, hi),
            geometry.name,
            row_group_size=128,
        )
    return str(root / "gen"), str(root / "ref"), (ref_s, ref_e), (gen_s, gen_e)


def test_source_reads_only_requested_rows_in_order(files, geometry):
    gen_url, ref_url, (ref_s, ref_e), (gen_s, _) = files
    ref = ShowerSource(ref_url, geometry)
    assert ref.n == 1300 and ref.n_voxels == geometry.n_voxels
    rows = np.array([1299, 3, 500, 499, 7, 1000])
    showers, e_inc = ref.take(rows, chunk_rows=64)
    assert np.array_equal(showers, ref_s[rows]) and np.array_equal(e_inc, ref_e[rows])
    gen = ShowerSource(gen_url)
    assert gen.geometry_name == "ds1-photons"
    showers, _ = gen.take(np.array([650, 0, 399, 400]), chunk_rows=50)
    assert np.array_equal(showers, gen_s[[650, 0, 399, 400]])


def test_streamed_metrics_equal_in_memory(files):
    gen_url, ref_url, _, _ = files
    kwargs = dict(seed=3, classifier_kwargs=SMALL, metric_kwargs=FAST, max_events=1200)
    in_memory = EvaluationOptions(stream=False, **kwargs)
    memory = evaluate_files(gen_url, ref_url, "ds1-photons", options=in_memory)
    chunked = EvaluationOptions(stream=True, chunk_rows=97, **kwargs)
    streamed = evaluate_files(gen_url, ref_url, "ds1-photons", options=chunked)
    m, s = memory.metrics, streamed.metrics
    assert list(m) == list(s)
    assert streamed.details["streamed"] and streamed.details["subsample"] == 600
    for name in m:
        if name.startswith("w1/"):
            # fine bins: within the stated bound of the exact value, a bound below 1%
            scale = max(m[name]["value"], m[name]["floor"], 1e-9)
            for key, bound in (("value", "binning_error"), ("floor", "floor_binning_error")):
                assert abs(s[name][key] - m[name][key]) <= s[name][bound] + 1e-12, name
                assert s[name][bound] <= 0.01 * scale, name
        elif name.startswith("sep"):
            # histograms add up exactly; a feature rounded differently (BLAS sums a chunk in
            # another order) can move one event to the next bin: at most ~1/600 in sep
            for key in ("value", "error", "floor", "floor_error"):
                assert s[name][key] == pytest.approx(m[name][key], abs=2 / 600), (name, key)
        else:
            # FPD/KPD/classifiers see the same events in the same order
            tolerance = dict(abs=0.01) if name.startswith(("auc", "jsd")) else dict(rel=1e-6)
            for key in ("value", "floor"):
                assert s[name][key] == pytest.approx(m[name][key], **tolerance), (name, key)
    seps = [n for n in m if n.startswith("sep/")]
    identical = [
        n for n in seps if s[n]["value"] == m[n]["value"] and s[n]["error"] == m[n]["error"]
    ]
    assert len(identical) >= 0.95 * len(seps)  # all of them here; rounding is rare
    assert streamed.notes == memory.notes


def test_streamed_w1_bound_holds_for_outliers_and_atoms():
    rng = np.random.default_rng(0)
    ref = np.concatenate([rng.normal(0, 1, 5000), np.zeros(800)])  # an atom at 0
    gen = np.concatenate([rng.normal(0.2, 1.3, 4990), [9.0, 12.0, -15.0] * 3 + [20.0]])
    edges = M.fine_edges(ref.min(), ref.max(), ref[:1000], bins=256)
    tail = np.clip(edges[0] - gen, 0, None).sum() + np.clip(gen - edges[-1], 0, None).sum()
    halves = [M.binned_moments(gen[:3000], edges), M.binned_moments(gen[3000:], edges)]
    moments = M.binned_moments(ref, edges)
    value, error, bound = M.wasserstein_1_binned(moments, sum(halves), edges, tail / gen.size)
    exact = M.wasserstein_1(ref, gen)[0]
    assert abs(value - exact) <= bound and bound < 0.05 * exact and error > 0
    same = M.wasserstein_1_binned(moments, moments, edges)
    assert same[0] == 0.0 and same[2] > 0


def test_cli_stream_flag_and_jets_refused(files, tmp_path, capsys):
    gen_url, ref_url, _, _ = files
    argv = ["evaluate", gen_url, ref_url, "--no-classifier", "--stream", "--subsample", "200"]
    assert main([*argv, "--out", str(tmp_path / "r"), "--json"]) == 0
    assert (tmp_path / "r" / "report.html").exists()
    out = capsys.readouterr().out
    assert '"streamed": true' in out and "random subsample of 200" in out
    jets, mask = make_jets(50, seed=0)
    url = str(tmp_path / "j.h5")
    constituents = np.concatenate([jets, mask[..., None]], -1)
    features = np.tile(np.array([1000.0, 0.0, 80.0, 30.0], np.float32), (50, 1))
    write_jets(url, {"constituents": constituents, "jet_features": features})
    with pytest.raises(FarmError, match="shower files only"):
        evaluate_files(url, url, options=EvaluationOptions(stream=True))
