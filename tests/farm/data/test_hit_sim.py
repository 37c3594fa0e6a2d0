"""Point-cloud reference showers (farm.data.hit_sim): the physics trends of the parametrisation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from farm.data.hit_sim import simulate_hits
from farm.data.points import generate_points
from farm.data.shower_sim import default_params, mean_log_parameters
from farm.errors import FarmError
from farm.geometry import load_cell_geometry
from farm.samples import PointSample

GEO = load_cell_geometry("ild-ecal-like")
ENERGIES = (10_000.0, 30_000.0, 100_000.0)


@pytest.fixture(scope="module")
def samples():
    rng = np.random.default_rng(7)
    out = {}
    for e in ENERGIES:
        h = simulate_hits(GEO, np.full(300, e), rng)
        out[e] = PointSample(h.counts, h.hits, h.layer, np.full(300, e), GEO)
    return out


def _depth_profile(sample: PointSample) -> np.ndarray:
    """Mean dE/dt per layer (MeV per X0)."""
    per_layer = np.bincount(sample.layer, weights=sample.hits[:, 3], minlength=GEO.n_layers)
    return per_layer / np.diff(GEO.depth_edges) / len(sample)


def test_energy_sum_is_the_sampling_fraction_on_average(samples):
    f_s = default_params(GEO).sampling_fraction
    for e, s in samples.items():
        ratio = s.energy_sums() / e
        # the 0.5 MIP threshold removes ~2% of the signal; the containment is ~100% (24 X0)
        assert ratio.mean() == pytest.approx(f_s, rel=0.04), e
        # resolution a/sqrt(E) (+) b, within a factor of the simulator's own a, b
        expected = np.hypot(0.166 / np.sqrt(e / 1000), 0.011)
        assert 0.7 * expected < ratio.std() / ratio.mean() < 1.4 * expected


def test_longitudinal_profile_peaks_at_the_parametrised_depth_and_moves_deeper(samples):
    peaks = []
    for e, s in samples.items():
        prof = _depth_profile(s)
        centres = 0.5 * (np.asarray(GEO.depth_edges[1:]) + np.asarray(GEO.depth_edges[:-1]))
        peak = centres[np.argmax(prof)]
        mu_T = mean_log_parameters(np.array([e]), default_params(GEO))[0][0]
        # GP: the median depth of maximum is exp(<ln T>); layers are 0.6 / 1.2 X0 thick
        assert abs(peak - np.exp(mu_T)) < 1.3, (e, peak, np.exp(mu_T))
        peaks.append(peak)
    assert peaks[0] < peaks[-1]


def test_hit_count_grows_with_energy(samples):
    means = [samples[e].counts.mean() for e in ENERGIES]
    assert means[0] < means[1] < means[2]
    assert means[0] > 50  # a real point cloud, not a handful of cells


def test_hits_lie_on_cell_centres_inside_the_geometry(samples):
    s = samples[30_000.0]
    assert GEO.contains(s.hits[:, 0], s.hits[:, 1], s.layer).all()
    frac = (s.hits[:, :2] + GEO.half_width) / GEO.cell_size - 0.5
    np.testing.assert_allclose(frac, np.round(frac), atol=1e-4)
    np.testing.assert_array_equal(s.hits[:, 2], np.asarray(GEO.z_mm, np.float32)[s.layer])
    assert (s.hits[:, 3] >= default_params(GEO).threshold).all()


def test_same_seed_same_hits_and_energy_range_is_enforced():
    a = simulate_hits(GEO, np.full(5, 2e4), np.random.default_rng(3))
    b = simulate_hits(GEO, np.full(5, 2e4), np.random.default_rng(3))
    assert a.hits.tobytes() == b.hits.tobytes() and (a.counts == b.counts).all()
    with pytest.raises(FarmError, match="outside the range of geometry 'ild-ecal-like'"):
        simulate_hits(GEO, np.array([1e6]), np.random.default_rng(0))


def test_cli_writes_points_shards_readable_without_farm(tmp_path, capsys):
    import awkward as ak
    import pandas as pd
    import pyarrow.parquet as pq

    from farm.cli import main

    out = str(tmp_path / "pts")
    argv = ["data", "showers", "--geometry", "ild-ecal-like", "--n", "12", "--out", out]
    assert main([*argv, "--shard-size", "5", "--seed", "2", "--workers", "0"]) == 0
    files = sorted(p.name for p in (tmp_path / "pts").glob("*.parquet"))
    assert files == [f"points-ild-ecal-like-0000{k}.parquet" for k in range(3)]
    path = tmp_path / "pts" / files[0]
    meta = json.loads(pq.read_schema(path).metadata[b"farm"])
    assert meta["units"]["e"] == "MeV" and meta["units"]["x"] == "mm"
    assert meta["geometry"] == "ild-ecal-like" and meta["seed"] == 2 and meta["shard"] == 0
    df = pd.read_parquet(path)
    assert (df["n_hits"].to_numpy() == [len(v) for v in df["e"]]).all()
    arr = ak.from_parquet(path)
    assert ak.to_list(ak.num(arr.x)) == df["n_hits"].tolist()
    # resumable and reproducible: the same call again rewrites nothing and gives the same files
    again = generate_points("ild-ecal-like", 12, out, seed=2, shard_size=5)
    assert [u.rsplit("/", 1)[-1] for u in again] == files
    assert "12 showers (ild-ecal-like)" in capsys.readouterr().out
    with pytest.raises(FarmError, match="Parquet only"):
        generate_points("ild-ecal-like", 4, str(tmp_path / "h5"), seed=1, formats=("h5",))
