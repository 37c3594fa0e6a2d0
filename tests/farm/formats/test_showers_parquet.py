"""Showers as Parquet: plain Arrow types readable without farm, metadata, lossless, streaming."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from farm import store
from farm.errors import FarmError
from farm.formats.showers_parquet import (
    iter_showers_parquet,
    read_showers_parquet,
    write_showers_parquet,
)


@pytest.fixture(scope="module")
def sample():
    rng = np.random.default_rng(1)
    showers = rng.exponential(1.0, size=(30, 368)).astype(np.float32)
    e_inc = rng.uniform(256, 4e6, size=30)
    ids = np.arange(1000, 1030, dtype=np.int64)
    return showers, e_inc, ids


def test_pyarrow_and_pandas_read_without_farm(tmp_path, sample):
    showers, e_inc, ids = sample
    path = tmp_path / "s.parquet"
    write_showers_parquet(str(path), showers, e_inc, ids, "ds1-photons", {"seed": 3})
    table = pq.read_table(path)
    assert table.schema.field("event_id").type == pa.int64()
    assert table.schema.field("incident_energy").type == pa.float64()
    assert table.schema.field("showers").type == pa.list_(pa.float32(), 368)
    meta = json.loads(table.schema.metadata[b"farm"])
    assert meta["geometry"] == "ds1-photons" and meta["n_voxels"] == 368 and meta["seed"] == 3
    assert meta["units"] == {"incident_energy": "MeV", "showers": "MeV"}
    assert "radial bin fastest" in meta["voxel_order"]
    df = pd_read(path)
    assert list(df.columns) == ["event_id", "incident_energy", "showers"]
    np.testing.assert_array_equal(np.stack(df["showers"].to_numpy()), showers)
    np.testing.assert_array_equal(df["event_id"].to_numpy(), ids)


def pd_read(path):
    import pandas as pd

    return pd.read_parquet(path)


def test_lossless_round_trip_and_streaming(tmp_path, sample):
    showers, e_inc, ids = sample
    url = str(tmp_path / "r.parquet")
    write_showers_parquet(url, showers, e_inc, ids, "ds1-photons", row_group_size=8)
    out = read_showers_parquet(url)
    assert out["showers"].dtype == np.float32 and out["showers"].tobytes() == showers.tobytes()
    assert out["incident_energy"].tobytes() == e_inc.tobytes()
    assert out["event_id"].tobytes() == ids.tobytes()
    assert out["metadata"]["geometry"] == "ds1-photons"
    assert pq.ParquetFile(url).num_row_groups == 4
    batches = list(iter_showers_parquet(url, batch_rows=8))
    assert [len(b["event_id"]) for b in batches] == [8, 8, 8, 6]
    np.testing.assert_array_equal(np.concatenate([b["showers"] for b in batches]), showers)


def test_s3_round_trip(s3_bucket, sample):
    url = store.join(s3_bucket, "p", "s.parquet")
    write_showers_parquet(url, *sample, "ds1-photons")
    out = read_showers_parquet(url)
    assert out["showers"].tobytes() == sample[0].tobytes()


def test_errors_name_the_file(tmp_path, sample):
    showers, e_inc, ids = sample
    with pytest.raises(FarmError, match="must share N"):
        write_showers_parquet(str(tmp_path / "x.parquet"), showers, e_inc[:5], ids, "ds1-photons")
    assert not (tmp_path / "x.parquet").exists()
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"garbage")
    with pytest.raises(FarmError, match=r"bad\.parquet: not a readable Parquet"):
        read_showers_parquet(str(bad))
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"a": [1, 2]}), other)
    with pytest.raises(FarmError, match=r"other\.parquet: missing column 'event_id'"):
        read_showers_parquet(str(other))
