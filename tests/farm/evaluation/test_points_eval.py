"""Point-cloud evaluation: hit features and the voxel projection's CaloChallenge metrics."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from farm.data.hit_sim import simulate_hits
from farm.data.shower_sim import incident_energies
from farm.errors import FarmError
from farm.evaluation.evaluate import evaluate_files
from farm.evaluation.options import EvaluationOptions
from farm.evaluation.points import evaluate_points, point_features
from farm.formats.points_parquet import to_table, write_points_parquet
from farm.geometry import load_cell_geometry
from farm.samples import PointSample

GEO = load_cell_geometry("ild-ecal-like")
FAST = EvaluationOptions(
    classifier=False,
    plots=False,
    metric_kwargs={"fpd": {"num_batches": 1, "num_points": 2}, "kpd": {"num_batches": 2}},
)


def _sample(n: int, seed: int) -> PointSample:
    rng = np.random.default_rng(seed)
    e = rng.uniform(1e4, 5e4, n)
    h = simulate_hits(GEO, e, rng)
    return PointSample(h.counts, h.hits, h.layer, e, GEO, {}, np.arange(n))


@pytest.fixture(scope="module")
def ref():
    return _sample(300, 1)


def test_point_features_match_the_hits(ref):
    f = point_features(ref.subset(np.arange(3)))
    one = ref.subset(np.array([1]))
    r = np.hypot(one.hits[:, 0], one.hits[:, 1]).astype(float)
    e = one.hits[:, 3].astype(float)
    assert f["n_hits"][1] == one.counts[0]
    assert f["e_sum_ratio"][1] == pytest.approx(e.sum() / one.e_inc[0])
    assert f["cog_r"][1] == pytest.approx((e * r).sum() / e.sum())
    assert f["cog_z"][1] == pytest.approx((e * one.hits[:, 2]).sum() / e.sum(), rel=1e-6)


def test_same_physics_sits_on_the_floor_and_a_scale_error_does_not(ref):
    same = evaluate_points(ref, _sample(200, 2), options=FAST)
    assert same.kind == "points" and same.details["geometry"] == "ild-ecal-like-voxels"
    for key in ("sep/n_hits", "sep/e_sum_ratio", "sep/e_layer_10", "fpd", "sep_hit_spectrum"):
        assert key in same.metrics
    m = same.metrics["sep/e_sum_ratio"]
    assert m["value"] < m["floor"] + 4 * max(m["error"], m["floor_error"], 0.01)
    scaled = _sample(200, 2)
    scaled.hits[:, 3] *= 1.15  # a 15% energy-scale error
    bad = evaluate_points(ref, scaled, options=FAST)
    m = bad.metrics["sep/e_sum_ratio"]
    assert m["value"] > 0.5 and m["value"] > 5 * m["floor"]


def test_projection_fpd_and_kpd_are_finite_on_the_floor_and_see_a_scale_error():
    # bench/points.py's reference: layer 0's width_r is one radial bin (~1 ulp rounding) in half
    # A but not in B, which gave FPD floor 1.0 (the fit never moved) and KPD errors ~1e45
    def bench_like(n: int, seed: int) -> PointSample:
        rng = np.random.default_rng(seed)
        e = incident_energies(GEO, n, rng)
        h = simulate_hits(GEO, e, rng)
        return PointSample(h.counts, h.hits, h.layer, e, GEO, {}, np.arange(n))

    opts = EvaluationOptions(
        classifier=False, plots=False, metric_kwargs={"fpd": {"num_batches": 3, "num_points": 4}}
    )
    full = bench_like(800, 3)
    same = evaluate_points(full, bench_like(400, 4), options=opts)
    wrong = bench_like(400, 4)
    wrong.hits[:, 3] *= 1.15  # energy scale
    wrong.hits[:, :2] *= 1.2  # and radial spread
    bad = evaluate_points(full, wrong, options=opts)
    for key in ("fpd", "kpd"):
        m, b = same.metrics[key], bad.metrics[key]
        numbers = np.array([m[f] for f in ("value", "error", "floor", "floor_error")])
        assert np.all(np.isfinite(numbers) & (np.abs(numbers) < 100)), key  # normalised: O(1)
        assert abs(m["value"] - m["floor"]) < 5 * (m["error"] + m["floor_error"]), key
        assert np.isfinite(b["value"]) and b["value"] > 2 * m["value"], key
    assert same.metrics["fpd"]["floor"] < 3.0  # the O(D / N) bias of 241 features at 400 events


def test_files_cli_and_bad_input_in_one_line(tmp_path, ref, capsys):
    from farm.cli import main

    write_points_parquet(str(tmp_path / "ref.parquet"), ref)
    write_points_parquet(str(tmp_path / "gen.parquet"), _sample(100, 3))
    out = tmp_path / "ev"
    res = evaluate_files(
        str(tmp_path / "gen.parquet"), str(tmp_path / "ref.parquet"), None, str(out), FAST
    )
    assert json.loads((out / "metrics.json").read_text())["kind"] == "points"
    assert res.metrics["sep/n_hits"]["value"] >= 0
    table = to_table(ref.subset(np.arange(2)))
    counts = table.column("n_hits").to_numpy().copy()
    counts[0] = 0
    bad = tmp_path / "bad.parquet"
    pq.write_table(table.set_column(2, "n_hits", pa.array(counts)), bad)
    code = main(
        ["evaluate", str(bad), str(tmp_path / "ref.parquet"), "--out", str(tmp_path / "e2")]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "bad.parquet: row 0 has n_hits = 0" in err[0]
    assert not (tmp_path / "e2" / "metrics.json").exists()
    with pytest.raises(FarmError, match="point clouds are evaluated in memory"):
        evaluate_files(
            str(bad), str(tmp_path / "ref.parquet"), None, None, EvaluationOptions(stream=True)
        )
