"""The sparse shower layout: lossless, readable without farm, densified by every farm reader."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from farm.errors import FarmError
from farm.formats.reader import read_showers
from farm.formats.shower_rows import inspect_file, read_file_rows
from farm.formats.showers_parquet import (
    iter_showers_parquet,
    read_showers_parquet,
    write_showers_parquet,
)
from farm.formats.showers_sparse import densify, sparse_columns

N, V = 40, 368  # ds1-photons


@pytest.fixture(scope="module")
def sample():
    """Mostly-zero showers with the awkward cases: an empty shower, -0.0, a denormal, a full row."""
    rng = np.random.default_rng(2)
    showers = rng.exponential(1.0, size=(N, V)).astype(np.float32)
    showers[rng.random((N, V)) < 0.8] = 0.0
    showers[3] = 0.0
    showers[4, 7] = -0.0
    showers[5, 0] = np.float32(1e-45)
    showers[6] = rng.exponential(1.0, size=V)
    return showers, rng.uniform(256, 4e6, size=N), np.arange(500, 500 + N, dtype=np.int64)


@pytest.fixture
def sparse_file(tmp_path, sample):
    url = str(tmp_path / "sparse.parquet")
    write_showers_parquet(
        url, *sample, "ds1-photons", {"seed": 5}, row_group_size=16, layout="sparse"
    )
    return url


def test_round_trip_is_bit_exact(sparse_file, sample):
    showers, e_inc, ids = sample
    out = read_showers_parquet(sparse_file)
    assert out["showers"].dtype == np.float32 and out["showers"].tobytes() == showers.tobytes()
    assert out["incident_energy"].tobytes() == e_inc.tobytes()
    assert np.array_equal(out["event_id"], ids)
    assert out["metadata"]["layout"] == "sparse" and out["metadata"]["n_voxels"] == V
    streamed = np.concatenate([b["showers"] for b in iter_showers_parquet(sparse_file, 7)])
    assert streamed.tobytes() == showers.tobytes()


def test_only_nonzero_voxels_are_stored(sparse_file, sample):
    showers = sample[0]
    table = pq.read_table(sparse_file)
    assert table.schema.field("voxel_index").type == pa.list_(pa.int32())
    assert table.schema.field("voxel_energy").type == pa.list_(pa.float32())
    counts = table.column("voxel_index").combine_chunks().value_lengths().to_numpy()
    expected = (showers.view(np.uint32) != 0).sum(axis=1)
    assert np.array_equal(counts, expected) and counts[3] == 0 and counts[6] == V
    meta = json.loads(table.schema.metadata[b"farm"])
    assert meta["geometry"] == "ds1-photons" and meta["seed"] == 5


def test_pandas_and_awkward_read_it_without_farm(sparse_file, sample):
    import awkward as ak
    import pandas as pd

    showers = sample[0]
    df = pd.read_parquet(sparse_file)
    assert list(df.columns) == ["event_id", "incident_energy", "voxel_index", "voxel_energy"]
    row = np.zeros(V, dtype=np.float32)
    row[df["voxel_index"][6]] = df["voxel_energy"][6]
    assert row.tobytes() == showers[6].tobytes()
    arr = ak.from_parquet(sparse_file)
    assert ak.to_list(ak.num(arr.voxel_index)) == (showers.view(np.uint32) != 0).sum(1).tolist()
    # per-shower sums straight from the sparse columns
    np.testing.assert_allclose(
        ak.to_numpy(ak.sum(arr.voxel_energy, axis=1)), showers.sum(1), rtol=1e-5
    )


def test_farm_readers_densify(sparse_file, sample, tmp_path):
    showers = sample[0]
    sample_read = read_showers(sparse_file, "ds1-photons")
    assert np.asarray(sample_read.showers, dtype=np.float32).tobytes() == showers.tobytes()
    info = inspect_file(sparse_file)
    assert (info.n, info.n_voxels, info.geometry) == (N, V, "ds1-photons")
    wanted = np.zeros(N, dtype=bool)
    wanted[[2, 17, 39]] = True
    rows, got, _ = zip(*read_file_rows(info, wanted, chunk_rows=2), strict=True)
    assert np.concatenate(rows).tolist() == [2, 17, 39]
    assert np.concatenate(got).tobytes() == showers[[2, 17, 39]].tobytes()


def test_corrupt_sparse_columns_are_one_line():
    index, energy = sparse_columns(np.array([[0, 1.5, 0, 2.0]], dtype=np.float32))
    assert densify(index, energy, 4).tolist() == [[0, 1.5, 0, 2.0]]
    with pytest.raises(FarmError, match=r"f.parquet: sparse voxel index 3 outside 0\.\.2"):
        densify(index, energy, 3, "f.parquet")
    backwards = pa.array([[3, 1]], type=pa.list_(pa.int32()))
    with pytest.raises(FarmError, match="not strictly ascending"):
        densify(backwards, energy, 4, "f.parquet")
    with pytest.raises(FarmError, match="unequal length"):
        densify(index, pa.array([[1.0]], type=pa.list_(pa.float32())), 4, "f.parquet")


def test_sparse_file_without_voxel_count_is_refused(tmp_path):
    index, energy = sparse_columns(np.ones((2, 3), dtype=np.float32))
    table = pa.table(
        {
            "event_id": [0, 1],
            "incident_energy": [1e3, 2e3],
            "voxel_index": index,
            "voxel_energy": energy,
        }
    )
    url = str(tmp_path / "bare.parquet")
    pq.write_table(table, url)
    with pytest.raises(FarmError, match="needs n_voxels in its farm metadata"):
        read_showers_parquet(url)


def test_unknown_layout_is_refused(tmp_path, sample):
    with pytest.raises(FarmError, match="unknown shower layout 'coo'"):
        write_showers_parquet(str(tmp_path / "x.parquet"), *sample, "ds1-photons", layout="coo")
    assert not (tmp_path / "x.parquet").exists()
