"""Point-cloud showers as Parquet (list columns) and their exact projection to voxels."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from farm.data.hit_sim import simulate_hits
from farm.errors import FarmError
from farm.formats.points_parquet import read_points_parquet, to_table
from farm.formats.reader import read_sample, read_truth_energies, write_sample
from farm.geometry import load_cell_geometry
from farm.samples import PointSample, project_points

GEO = load_cell_geometry("ild-ecal-like")


@pytest.fixture(scope="module")
def sample():
    e = np.random.default_rng(1).uniform(1e4, 1e5, 20)
    h = simulate_hits(GEO, e, np.random.default_rng(2))
    return PointSample(h.counts, h.hits, h.layer, e, GEO, {}, np.arange(100, 120))


def test_lossless_round_trip_through_the_reader(tmp_path, sample):
    url = str(tmp_path / "p.parquet")
    write_sample(url, sample, {"seed": 4})
    assert not list(tmp_path.glob(".*"))  # atomic: no temporary left beside the file
    got = read_sample(url)
    assert got.kind == "points" and len(got) == 20
    assert got.hits.tobytes() == sample.hits.tobytes()
    assert (got.layer == sample.layer).all() and (got.counts == sample.counts).all()
    assert got.e_inc.tobytes() == sample.e_inc.tobytes()
    assert (got.event_id == np.arange(100, 120)).all()
    np.testing.assert_array_equal(read_truth_energies(str(tmp_path)), sample.e_inc)
    with pytest.raises(FarmError, match="Parquet, not HDF5"):
        write_sample(str(tmp_path / "p.h5"), sample)


def test_projection_conserves_energy_exactly_for_in_range_hits(sample):
    binning = GEO.voxel_binning
    vox = project_points(sample.counts, sample.hits, sample.layer, binning)
    assert vox.shape == (20, 30 * 9 * 16)
    r = np.hypot(sample.hits[:, 0].astype(float), sample.hits[:, 1].astype(float))
    inside = r < binning.layers[0].r_edges[-1]
    owner = np.repeat(np.arange(20), sample.counts)
    expected = np.bincount(owner[inside], weights=sample.hits[inside, 3].astype(float))
    np.testing.assert_allclose(vox.sum(1), expected, rtol=1e-13, atol=0)
    # per layer too, and the layer sums match the hits' layers
    per_layer = vox.reshape(20, 30, -1).sum((0, 2))
    want = np.bincount(sample.layer[inside], weights=sample.hits[inside, 3].astype(float))
    np.testing.assert_allclose(per_layer, want, rtol=1e-12)
    assert sample.to_voxels().showers.shape == (20, 4320)


def test_projection_puts_a_hit_in_the_calochallenge_voxel():
    hits = np.array([[3.0, 4.0, 0.0, 2.0], [0.0, -12.0, 0.0, 1.0], [200.0, 0.0, 0.0, 5.0]])
    layer = np.array([2, 5, 0])
    vox = project_points(np.array([3]), hits.astype(np.float32), layer, GEO.voxel_binning)
    n_r, n_a = 9, 16
    # r = 5 mm: ring 1 of [0, 5, 10, ...]; alpha = atan2(4, 3) = 0.93 rad: bin 10 of 16
    assert vox[0, 2 * n_r * n_a + 10 * n_r + 1] == 2.0
    # r = 12 mm: ring 2; alpha = -pi/2: bin 4
    assert vox[0, 5 * n_r * n_a + 4 * n_r + 2] == 1.0
    assert vox.sum() == 3.0  # r = 200 mm lies beyond the binning's last ring: dropped


def _write_table(path, table):
    pq.write_table(table, path)
    return str(path)


def _with_column(table, name, array):
    return table.set_column(table.schema.get_field_index(name), name, array)


def test_bad_files_are_one_line_naming_the_file(tmp_path, sample):
    table = to_table(sample.subset(np.arange(3)))
    counts = table.column("n_hits").to_numpy().copy()
    counts[1] += 1
    bad = _write_table(tmp_path / "count.parquet", _with_column(table, "n_hits", pa.array(counts)))
    with pytest.raises(FarmError, match=r"count.parquet: row 1 has n_hits = \d+ but \d+ values"):
        read_points_parquet(bad)

    def with_energy(value, name):
        e = table.column("e").combine_chunks()
        flat = e.flatten().to_numpy().copy()
        flat[5] = value
        col = pa.ListArray.from_arrays(e.offsets, pa.array(flat, pa.float32()))
        return _write_table(tmp_path / name, _with_column(table, "e", col))

    with pytest.raises(FarmError, match=r"nan.parquet: hit energy nan MeV is not a positive"):
        read_points_parquet(with_energy(np.nan, "nan.parquet"))
    with pytest.raises(FarmError, match=r"neg.parquet: hit energy -1.0 MeV"):
        read_points_parquet(with_energy(-1.0, "neg.parquet"))
    x = table.column("x").combine_chunks()
    flat = x.flatten().to_numpy().copy()
    flat[0] = 400.0
    col = pa.ListArray.from_arrays(x.offsets, pa.array(flat, pa.float32()))
    out = _write_table(tmp_path / "out.parquet", _with_column(table, "x", col))
    with pytest.raises(FarmError, match=r"out.parquet: hit at x = 400 mm.*outside geometry"):
        read_sample(out)
    missing = _write_table(tmp_path / "miss.parquet", table.drop(["layer"]))
    with pytest.raises(FarmError, match=r"miss.parquet: missing column 'layer'"):
        read_points_parquet(missing)
